"""Transports: the channels a rendered digest can leave by.

A transport is a tiny object with one async :meth:`~Transport.send` and
:meth:`~Transport.aclose`, in the style of httpx. The SMTP transport's
session lives in :mod:`smtp_alerts.transports.smtp` and its error mapping in
:mod:`smtp_alerts.transports.smtp_errors` (the only modules that import
aiosmtplib); :class:`MemoryTransport` keeps what it is given, for tests.
Transports know no settings: :mod:`smtp_alerts._delivery.channels` builds
them from :class:`~smtp_alerts.Settings`.
"""

from __future__ import annotations

from .._util.lazy import present_as
from ._base import MemoryTransport, Transport

__all__ = ["MemoryTransport", "Transport"]

present_as(__name__, MemoryTransport, Transport)
