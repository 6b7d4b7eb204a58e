"""Remove secrets from any text before it leaves the process (logs, pings, errors)."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "********"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with every non-trivial secret replaced by a mask."""
    # A tool may echo part of a multi-line secret: mask each line of it too.
    parts = {p for s in secrets if s for p in (s, *s.splitlines()) if len(p) >= 3}
    for secret in sorted(parts, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
