"""Fallback channels through `apprise <https://github.com/caronc/apprise>`_ URLs.

:class:`AppriseTransport` sends a digest, condensed to its title and a short
plain-text summary, to every apprise URL it was given (``FALLBACK_URLS``). It
uses apprise behind our transport protocol and fixes what we do not copy from
its style:

- apprise is imported on the first send (or :meth:`AppriseTransport.load`),
  never by ``import smtp_alerts`` nor by importing this module;
- the blocking ``Apprise.notify()`` runs on one of the event loop's worker
  threads, under our own deadline; each service's socket timeouts are set
  just past that deadline, so the deadline decides, and a call we stopped
  waiting for frees its thread soon after;
- apprise's throttling sleep (5.5 s between two requests of one service by
  default) is switched off on our own service objects only;
- apprise's result (2.x: an ``AppriseResult`` with an overall status, one
  ``NotifyResult`` per service and the logs each one wrote) becomes a
  :class:`~smtp_alerts.errors.DeliveryError` that carries the cause: the HTTP
  status when the service logged one, and the service's own words;
- URLs hold tokens, so they never appear in a name, an error or a log line:
  a channel is named by scheme and host only (``apprise:json://10.0.0.5:8080``,
  or ``apprise:tgram`` when the "host" of the URL is really a token), and
  every part of the URL that can be a secret is masked in apprise's words.

Outcomes:

========================  ====================================================
apprise 2.x status        what :meth:`AppriseTransport.send` does
========================  ====================================================
``SUCCESS``               returns
``PARTIAL``               returns when at least one service took the digest,
                          and logs a warning naming the others and why
``FAILURE``               raises the error of the most hopeful failed service:
                          a timeout, then a refused connection, then HTTP
                          5xx/408/429 (:class:`TemporaryReplyError`), then an
                          unexplained failure (:class:`DeliveryError`), then
                          other HTTP codes (:class:`PermanentReplyError`)
``TIMEOUT``               raises :class:`DeliveryTimeoutError`
``NOMATCH``               raises :class:`DeliveryError` (no usable service:
                          a configuration problem, not a transient one)
our deadline passes       raises :class:`DeliveryTimeoutError`
========================  ====================================================

``PARTIAL`` counts as delivered because the digest reached a person: raising
would make the fallback chain retry or spool it, and the next attempt would
send it again to every service, including those that already showed it. The
warning keeps the broken service visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import (
    ConnectError,
    DeliveryError,
    DeliveryTimeoutError,
    PermanentReplyError,
    TemporaryReplyError,
)
from ._base import Transport

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from ..models import OutgoingMessage

__all__ = ["DEFAULT_TIMEOUT", "AppriseTransport"]

DEFAULT_TIMEOUT = 30.0
"""The deadline of one :meth:`AppriseTransport.send`, in seconds."""

_log = logging.getLogger("smtp_alerts.transports.apprise")

# apprise's own rule for the scheme of a URL (apprise.utils.parse.GET_SCHEMA_RE).
_URL = re.compile(r"(?P<scheme>[A-Za-z0-9]{1,32})://(?P<rest>\S*)")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,31}(?=:)")  # not digits: a token's id
# Most apprise plugins report an HTTP failure as "...: <reason>, error=<status>."
_HTTP_STATUS = re.compile(r"\berror=(\d{3})\b")
# ...and a failure to reach the server as "A Connection error occurred ...".
_CONNECTION_FAILURE = re.compile(
    r"connection error|connection refused|could not connect|unreachable", re.IGNORECASE
)
_TRANSIENT_HTTP = frozenset({408, 425, 429})
_DNS_NAME = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}")
_MIN_SECRET = 4  # shorter URL parts are words ("api", "v1"), masking them would garble logs
_MAX_CAUSE = 400
_SOCKET_GRACE = 1.0  # seconds the socket timeouts exceed the deadline by
_MASK = "***"

# The most hopeful failure first: the one a later attempt is likeliest to fix.
_RANK: dict[type[DeliveryError], int] = {
    DeliveryTimeoutError: 0,
    ConnectError: 1,
    TemporaryReplyError: 2,
    DeliveryError: 3,
    PermanentReplyError: 4,
}


@dataclass(frozen=True)
class _Target:
    """One URL, with what may be shown of it and what must be masked."""

    position: int
    scheme: str
    channel: str
    url: str
    secrets: frozenset[str]


@dataclass(frozen=True)
class _Loaded:
    """apprise, imported, and the verdict on each URL; built once, never changed."""

    module: Any
    asset: Any
    usable: tuple[_Target, ...]
    unusable: tuple[tuple[_Target, str], ...]


@dataclass(frozen=True)
class _Failure:
    """Why one service did not take the digest."""

    channel: str
    kind: type[DeliveryError]
    cause: str
    code: int | None = None

    @property
    def summary(self) -> str:
        """The cause, led by the HTTP status when there is one."""
        return f"HTTP {self.code}: {self.cause}" if self.code is not None else self.cause


@dataclass(frozen=True)
class _Report:
    """The outcome of one notify call, reduced to plain values in the worker thread."""

    status: str
    delivered: tuple[str, ...]
    failures: tuple[_Failure, ...]


class AppriseTransport(Transport):
    """Sends a condensed digest (title and plain-text summary) to apprise URLs.

    Every URL is notified on each send, one after the other on one worker
    thread: apprise's own thread pool refuses work while the interpreter shuts
    down, which is when a crashing program's last alerts go out.

    A call that passed the deadline cannot be stopped (a thread cannot be
    killed); it goes on in the background, bounded by the socket timeouts, and
    its late result is dropped. Each send builds its own apprise objects, so
    a late call shares nothing with later sends. Delivery is therefore at
    least once: a service that answers after the deadline may show a digest
    that is then also sent through another channel.

    Args:
        urls: apprise URLs (``json://host/path``, ``ntfy://host/topic``,
            ``tgram://token/chat``...). They hold secrets and are never shown.
        timeout: the deadline of one :meth:`send`, in seconds.
        name: the transport's name in logs and errors; by default built from
            each URL's scheme and host.

    Raises:
        ValueError: no URL, a non-positive timeout, or a string that is not
            ``scheme://...``; the message names the URL's position and
            scheme, never the URL.
        TypeError: ``urls`` is one string, or holds something else than strings.
    """

    def __init__(
        self, urls: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, name: str | None = None
    ) -> None:
        if isinstance(urls, str):
            raise TypeError("urls must be a sequence of URLs, not one string")
        if not urls:
            raise ValueError("at least one apprise URL is required")
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self._targets = tuple(_target(position, url) for position, url in enumerate(urls, 1))
        self._timeout = float(timeout)
        self._secrets = frozenset(s for target in self._targets for s in target.secrets)
        self.name = name or _transport_name(self._targets)
        self._loaded: _Loaded | None = None
        self._load_lock = threading.Lock()
        _REDACTOR.add(self._secrets)

    @property
    def channels(self) -> tuple[str, ...]:
        """The name of each URL's channel, in order (scheme and host only)."""
        return tuple(target.channel for target in self._targets)

    def start_loading(self, on_problem: Callable[[str], None]) -> None:
        """Load apprise on a thread of its own now, so that the first send finds it ready.

        Never raises: a URL apprise cannot use, or an apprise that cannot load,
        is told to ``on_problem`` (and a send reports it as this channel's
        failure). When no thread can start (the interpreter is shutting down),
        the first send loads apprise instead.

        Args:
            on_problem: told, from the loading thread, what cannot be used.
        """

        def load() -> None:
            try:
                self.load()
            except Exception as exc:  # noqa: BLE001 - one failed channel, never the engine
                on_problem(_mask(f"{type(exc).__name__}: {exc}", self._secrets))

        with contextlib.suppress(RuntimeError):
            threading.Thread(target=load, name="smtp-alerts-apprise", daemon=True).start()

    def load(self) -> None:
        """Import apprise and check every URL with it now, instead of on the first send.

        Blocking (apprise loads its plugins: a few hundred milliseconds), so
        call it at start-up or from a worker thread. :meth:`send` does the same
        on first use, then skips the URLs apprise cannot use and reports them
        as failed channels.

        Raises:
            ValueError: apprise cannot use some URL; the message names its
                position and scheme.
        """
        problems = [problem for _, problem in self._load().unusable]
        if problems:
            raise ValueError("; ".join(problems))

    async def send(self, message: OutgoingMessage, /) -> None:
        """Notify every URL with ``message.title`` and ``message.summary``.

        Args:
            message: the rendered digest; only its title and summary are sent.

        Raises:
            DeliveryError: no service took the message; the subclass and
                ``code`` say why (see the module's table).
        """
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(
            None, self._notify, message.title, message.summary, _notify_type(message)
        )
        try:
            report = await asyncio.wait_for(call, self._timeout)
        except asyncio.TimeoutError:
            raise DeliveryTimeoutError(
                f"no answer from apprise within the {self._timeout:g}s deadline",
                channel=self.name,
                step="notify",
            ) from None
        self._settle(report)

    # -- in the worker thread ----------------------------------------------------

    def _load(self) -> _Loaded:
        """Import apprise and check the URLs, once (racing threads wait for the first)."""
        if self._loaded is None:
            with self._load_lock:
                if self._loaded is None:
                    self._loaded = self._import()
        return self._loaded

    def _import(self) -> _Loaded:
        with warnings.catch_warnings():
            # apprise loads its plugins on first use, and one of them imports the
            # stdlib's deprecated imghdr (a shim for pgpy): a DeprecationWarning
            # the user can do nothing about, and an error under -W error.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"apprise\b")
            import apprise  # noqa: PLC0415 - lazy on purpose: heavy, and only for fallbacks

            _REDACTOR.install()  # before apprise logs the URLs it loads

            asset = apprise.AppriseAsset(
                # One service after the other in this thread: apprise's thread
                # pool would refuse work during interpreter shutdown.
                async_mode=False,
                # No deadline of apprise's own: ours applies, and with one set
                # apprise would again hand each call to its thread pool.
                service_timeout=0,
                # Nothing written to disk on behalf of a library.
                storage_mode="memory",
            )
            manager = apprise.NotificationManager()  # type: ignore[no-untyped-call]
            usable: list[_Target] = []
            unusable: list[tuple[_Target, str]] = []
            for target in self._targets:
                if apprise.Apprise.instantiate(target.url, asset=asset) is not None:
                    usable.append(target)
                    continue
                reason = (
                    "apprise could not parse it"
                    if target.scheme.lower() in manager
                    else "apprise has no such scheme"
                )
                unusable.append(
                    (target, f"URL #{target.position} ({target.scheme}://...): {reason}")
                )
        _REDACTOR.install()  # on the loggers of the plugins just loaded
        return _Loaded(apprise, asset, tuple(usable), tuple(unusable))

    def _notify(self, title: str, body: str, notify_type: str) -> _Report:
        """The blocking part of :meth:`send`; returns plain values only."""
        try:
            loaded = self._load()
        except Exception as exc:  # noqa: BLE001 - reported like any failure; the next send retries
            cause = _mask(
                f"apprise could not be loaded: {type(exc).__name__}: {exc}", self._secrets
            )
            return _Report("FAILURE", (), (_Failure(self.name, DeliveryError, cause),))
        apprise = loaded.module
        _REDACTOR.install()  # on loggers created since the load too
        unusable = tuple(
            _Failure(target.channel, DeliveryError, f"not a URL apprise can use: {problem}")
            for target, problem in loaded.unusable
        )
        # Fresh service objects for every send: a call that outlives our
        # deadline keeps its own, and cannot disturb this one.
        notifier = apprise.Apprise(asset=loaded.asset)
        channels: dict[Any, str] = {}
        ordered: list[str] = []
        for target in loaded.usable:
            service = apprise.Apprise.instantiate(target.url, asset=loaded.asset)
            if service is None:  # it parsed in _import; same code, same URL
                unusable += (_Failure(target.channel, DeliveryError, "apprise rejected it"),)
                continue
            self._tune(service)
            notifier.add(service)
            url_id = service.url_id()
            if url_id is not None:
                channels[url_id] = target.channel
            ordered.append(target.channel)
        if not ordered:
            return _Report("NOMATCH", (), unusable)
        try:
            result = notifier.notify(
                body=body,
                title=title,
                body_format=apprise.NotifyFormat.TEXT,
                notify_type=notify_type,
            )
        except Exception as exc:  # noqa: BLE001 - apprise catches its own; anything else is a bug
            cause = _mask(f"apprise raised {type(exc).__name__}: {exc}", self._secrets)
            return _Report("FAILURE", (), (*unusable, _Failure(self.name, DeliveryError, cause)))
        with result:
            return self._report(result, channels, ordered, unusable)

    def _tune(self, service: Any) -> None:
        """Make one service object fit our deadline; class defaults stay untouched."""
        # An instance attribute, so only this object stops sleeping between
        # requests (it would sleep 5.5 s between two targets of one URL).
        service.request_rate_per_sec = 0
        # The socket timeouts of requests: our deadline plus a grace, so that
        # our deadline decides (a read timeout would reach us as apprise's
        # vague "connection error") and an abandoned call still ends soon
        # after it. apprise's own 4 s default would cut short a slow endpoint
        # the user gave more time; a value set in the URL (?rto=, ?cto=) only
        # ever gets shorter.
        limit = self._timeout + _SOCKET_GRACE
        for attribute in ("socket_connect_timeout", "socket_read_timeout"):
            value = getattr(service, attribute, None)
            if not isinstance(value, (int, float)):
                continue
            from_url = value != getattr(type(service), attribute, value)
            setattr(service, attribute, min(value, limit) if from_url else limit)

    def _report(
        self,
        result: Any,
        channels: dict[Any, str],
        ordered: list[str],
        unusable: tuple[_Failure, ...],
    ) -> _Report:
        delivered: list[str] = []
        failures = list(unusable)
        for index, service in enumerate(result):
            channel = channels.get(service.url_id) or (
                ordered[index] if index < len(ordered) else f"apprise:{service.name}"
            )
            # By its attempts, not its status: apprise counts a failed service
            # marked ?optional=yes as SUCCESS, but it showed nothing to anyone.
            if any(attempt.status.name == "SUCCESS" for attempt in service.attempts):
                delivered.append(channel)
            else:
                failures.append(self._failure(channel, service))
        status = result.status.name
        if status != "SUCCESS" and not failures:
            # A failure apprise reports for the call, not for a service
            # (a message it could not prepare): its own words say why.
            failures.append(_Failure(self.name, DeliveryError, self._cause(result.call_logs())))
        elif status == "SUCCESS" and failures:
            status = "PARTIAL" if delivered else "FAILURE"
        return _Report(status, tuple(delivered), tuple(failures))

    def _failure(self, channel: str, service: Any) -> _Failure:
        """Classify one failed service by its status and the words it logged."""
        cause = self._cause(service.logs())
        if service.status.name == "TIMEOUT":
            return _Failure(channel, DeliveryTimeoutError, cause)
        match = _HTTP_STATUS.search(cause)
        if match:
            code = int(match.group(1))
            transient = code >= 500 or code in _TRANSIENT_HTTP
            kind = TemporaryReplyError if transient else PermanentReplyError
            return _Failure(channel, kind, cause, code)
        if _CONNECTION_FAILURE.search(cause):
            return _Failure(channel, ConnectError, cause)
        return _Failure(channel, DeliveryError, cause)

    def _cause(self, entries: Iterable[Any]) -> str:
        """apprise's captured log lines (WARNING and up), masked, deduplicated, bounded."""
        lines: list[str] = []
        for entry in entries:
            line = _mask(str(entry.message).strip().rstrip("."), self._secrets)
            if line and line not in lines:
                lines.append(line)
        if not lines:
            return (
                "apprise gave no reason (a plugin that raised logs the exception "
                "at DEBUG on the 'apprise' logger)"
            )
        cause = "; ".join(lines)
        return cause if len(cause) <= _MAX_CAUSE else cause[: _MAX_CAUSE - 3] + "..."

    # -- back in the event loop --------------------------------------------------

    def _settle(self, report: _Report) -> None:
        """Return if the digest reached someone; raise the most hopeful failure if not."""
        if report.delivered:
            if report.failures:
                _log.warning(
                    "%s: delivered through %s, but not through %s",
                    self.name,
                    ", ".join(report.delivered),
                    "; ".join(
                        f"{failure.channel} ({failure.summary})" for failure in report.failures
                    ),
                )
            return
        failures = report.failures or (
            _Failure(self.name, DeliveryError, f"apprise reported {report.status}"),
        )
        if report.status == "TIMEOUT":
            failures = tuple(
                failure
                if failure.kind is not DeliveryError
                else _Failure(failure.channel, DeliveryTimeoutError, failure.cause)
                for failure in failures
            )
        primary = min(failures, key=lambda failure: _RANK[failure.kind])
        if len(failures) == 1:
            text = primary.summary
            channel = primary.channel
        else:
            text = "no channel took the message: " + "; ".join(
                f"{failure.channel}: {failure.summary}" for failure in failures
            )
            channel = self.name
        raise primary.kind(
            text, channel=channel, step="notify", code=primary.code, reply=primary.cause
        )


class _Redactor(logging.Filter):
    """Masks our URLs' secrets in what apprise and the HTTP libraries log.

    apprise logs each URL it loads and posts to at DEBUG, and urllib3 logs
    every request line: Slack's and Discord's tokens live in the path, so a
    program logging at DEBUG would write them into its own logs. A logger's
    filter sees only the records made on that very logger, so the filter is
    put on each logger of those libraries that exists.
    """

    _PREFIXES = ("apprise", "urllib3", "requests")

    def __init__(self) -> None:
        super().__init__()
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, secrets: Iterable[str]) -> None:
        """Mask ``secrets`` from now on."""
        with self._lock:
            self._secrets = self._secrets | frozenset(secrets)

    def install(self) -> None:
        """Put this filter on every logger of apprise and the HTTP libraries (idempotent)."""
        names = [
            name
            for name in list(logging.Logger.manager.loggerDict)
            if name.split(".", 1)[0] in self._PREFIXES
        ]
        for name in {*self._PREFIXES, *names}:
            logger = logging.getLogger(name)
            if self not in logger.filters:
                logger.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record's text in place; never drops it, never raises."""
        secrets = self._secrets
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the logging module's to report
            return True
        if any(secret in text for secret in secrets):
            record.msg, record.args = _mask(text, secrets), None
        if record.exc_info and not record.exc_text:
            # urllib3's exceptions quote the URL: format the traceback now, masked
            # (formatters use exc_text when it is set).
            record.exc_text = _mask(_FORMATTER.formatException(record.exc_info), secrets)
        return True


_REDACTOR = _Redactor()
_FORMATTER = logging.Formatter()


def _notify_type(message: OutgoingMessage) -> str:
    """apprise's notification type (its colour and icon) from the digest's worst level."""
    digest = message.digest
    if digest is None:
        return "info"
    if digest.max_level >= logging.ERROR:
        return "failure"
    if digest.max_level >= logging.WARNING:
        return "warning"
    return "info"


def _target(position: int, url: str) -> _Target:
    """Check a URL's shape (without apprise) and find what of it may be shown."""
    if not isinstance(url, str):
        raise TypeError(f"apprise URL #{position} is a {type(url).__name__}, not a string")
    url = url.strip()
    match = _URL.fullmatch(url)
    if match is None:
        prefix = _SCHEME.match(url)
        shown = f" ({prefix.group()}:...)" if prefix else ""
        raise ValueError(
            f"apprise URL #{position}{shown} is not a URL of the form scheme://..., "
            "e.g. json://host/path (the URL itself is not shown: it may hold a token)"
        )
    scheme = match.group("scheme")
    host, shown_host, port = _address(url)
    channel = f"apprise:{scheme}"
    if shown_host:
        channel += f"://{shown_host}" + (f":{port}" if port else "")
    secrets = {part for part in _parts(url, match.group("rest")) if len(part) >= _MIN_SECRET}
    if shown_host:
        secrets -= {host, str(port)}
    return _Target(position, scheme, channel, url, frozenset(secrets))


def _address(url: str) -> tuple[str, str, int | None]:
    """The host, how to show it (empty when it looks like a token) and the port."""
    try:
        split = urlsplit(url)
        host = split.hostname or ""
        # "tgram://123456:AAF-token/..." has a token where a port would be.
        port = split.port
    except ValueError:
        return "", "", None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        looks_like_a_name = host == "localhost" or bool(_DNS_NAME.fullmatch(host))
        return host, (host if looks_like_a_name else ""), port
    return host, (f"[{address}]" if address.version == 6 else str(address)), port


def _parts(url: str, rest: str) -> set[str]:
    """Every piece of a URL that may be a secret: credentials, path, query values, host."""
    pieces = set(re.split(r"[/?&=#:@,;+\s]+", rest))  # the fallback when urlsplit gives up
    try:
        split = urlsplit(url)
        pieces |= {split.username or "", split.password or "", split.hostname or ""}
        pieces |= set(split.path.split("/"))
        pieces |= {value for _, value in parse_qsl(split.query, keep_blank_values=True)}
        pieces.add(split.fragment)
    except ValueError:
        pass
    return pieces | {unquote(piece) for piece in pieces}


def _mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``, longest first."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def _transport_name(targets: Sequence[_Target]) -> str:
    if len(targets) == 1:
        return targets[0].channel
    return "apprise:" + "+".join(target.channel.removeprefix("apprise:") for target in targets)
