"""Turn a :class:`~smtp_alerts.models.Digest` into an alert email.

Pure and free of I/O: the same digest and context always give the same bytes
(apart from the MIME boundary), so rendering is tested with plain calls and a
spooled digest re-renders to the same Message-ID.

What the renderer guarantees, and the module that keeps each promise:

- **No header injection** (:mod:`.headers`, :mod:`.safe_text`). Everything that
  reaches a header from log text (the headline's message, logger name,
  exception type) has its control and line-separator characters replaced by
  spaces and is length-limited; the recipients come only from
  :class:`RenderContext` (:mod:`.context`), whose addresses are checked.
- **Escaped HTML** (:mod:`.html_part`). Every piece of log text is passed through
  :func:`html.escape`; the styles are inline because Gmail drops ``<style>``
  blocks in many of its clients.
- **Bounded size** (:mod:`.view`, :mod:`.fit`). Samples, tracebacks and the number
  of rows are capped; if the message is still larger than
  :attr:`RenderContext.max_bytes` it is rendered again with tighter caps
  (tracebacks shortened, then dropped, then rows).
- **Threading** (:mod:`.headers`). Digests of one incident share a thread:
  deterministic Message-IDs ``<incident.sequence@sender-domain>``,
  ``In-Reply-To`` and ``References`` to the earlier ones, and
  ``Re: <first subject>`` because Gmail only threads messages whose subjects match.

- **Readable on a phone** (:mod:`.html_part`). One card per problem in a
  single column of limited width, from 360 pixels up; long tokens wrap.
- **Titles that do not mislead** (:mod:`.row`, :mod:`.template`). A row whose
  occurrences differ is titled by their template, the varying parts marked,
  with the first and a later sample.
- **A timeline per problem** (:mod:`.timeline`): bars of its occurrences per
  interval, table cells in HTML, a sparkline in plain text.

The plain-text part (:mod:`.text_part`) and the short summary for chat channels
(:mod:`.summary`) complete the set; :func:`render` (:mod:`.compose`) puts them together.
"""

from __future__ import annotations

from .compose import render
from .context import DEFAULT_MAX_BYTES, MIN_MAX_BYTES, RenderContext

__all__ = ["DEFAULT_MAX_BYTES", "MIN_MAX_BYTES", "RenderContext", "render"]
