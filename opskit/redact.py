"""Remove secrets from any text before it leaves the process (logs, pings, errors)."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "********"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with every non-trivial secret replaced by a mask."""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
