"""What every integration shares: the framework check, the report, the scrubbed context.

An integration turns a framework's failure (a view that raised, a task that
failed for good, a worker killed) into one :meth:`Engine.alert` call keyed by
what makes it the same bug (the route template or the task name, and the
exception type), with a small context table (method, route, status, user id;
task name, id, retries) scrubbed by the one scrubber
(:mod:`smtp_alerts._util.scrub`). :meth:`Engine.alert` marks the exception, so
the log record the framework writes for it is not counted again.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING

from smtp_alerts._util.scrub import mask_url_credentials

if TYPE_CHECKING:
    from smtp_alerts._facade import Engine

__all__ = ["exception_key", "report", "require", "safe_keys", "safe_url"]


def require(module: str, *, package: str, extra: str) -> ModuleType:
    """Import the framework ``module``, or fail with the line that installs it.

    Raises:
        ImportError: the framework is not installed; the message names the
            package and the extra (``pip install 'smtp-alerts[flask]'``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"smtp_alerts.integrations.{extra} needs {package}, which is not installed: "
            f"pip install 'smtp-alerts[{extra}]' (or pip install {package})"
        ) from exc


def exception_key(where: str, exc: BaseException) -> str:
    """What makes two failures the same bug: where (a route, a task) and the exception type."""
    exc_type = type(exc)
    module = exc_type.__module__
    name = (
        exc_type.__qualname__
        if module in ("builtins", "__main__")
        else (f"{module}.{exc_type.__qualname__}")
    )
    return f"{where} {name}"


def safe_url(url: str) -> str:
    """A URL without its query string (tokens live there) and without a password."""
    return mask_url_credentials(url.partition("?")[0])


def safe_keys(names: object, limit: int = 20) -> str:
    """The names of a form's or a JSON body's fields, never their values; secrets named as such."""
    try:
        keys = [str(name) for name in list(names)[:limit]]  # type: ignore[call-overload]
    except Exception:  # noqa: BLE001 - a body we cannot read says nothing
        return ""
    return ", ".join(keys)


def report(
    engine: Engine,
    exc: BaseException,
    *,
    message: str,
    key: str,
    name: str,
    context: Mapping[str, object],
    group: str | None = None,
    level: int = logging.ERROR,
) -> bool:
    """Raise ``exc`` as an alert keyed by ``key``; never raises.

    ``context`` is scrubbed by :meth:`Engine.alert` (the one scrubber).
    """
    try:
        return engine.alert(
            message,
            level=level,
            name=name,
            key=key,
            exc=exc,
            group=group if group is not None else "default",
            context=context,
        )
    except Exception:
        logging.getLogger("smtp_alerts.integrations").debug("reporting failed", exc_info=True)
        return False
