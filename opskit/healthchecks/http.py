"""HTTP for Healthchecks: one retry policy for pings and the management API, no redirects."""

from __future__ import annotations

import dataclasses
import enum
import http.client
import time
import urllib.request
from collections.abc import Callable
from email.message import Message
from typing import IO, Generic, TypeVar

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MIN_ATTEMPT = 0.05  # below this a request cannot finish, so the budget counts as spent
FIRST_DELAY = 0.5  # seconds before the first retry; each next wait doubles

T = TypeVar("T")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would replay a POST as a GET and drop the body (or the key)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def opener() -> urllib.request.OpenerDirector:
    """A urllib opener that never follows a redirect."""
    return urllib.request.build_opener(NoRedirect)


def retry_after(headers: Message | None) -> float:
    """The seconds a Retry-After header asks for (its delta-seconds form), else 0."""
    value = str(headers.get("Retry-After", "") if headers is not None else "")
    return float(value) if value.isdigit() else 0.0


@dataclasses.dataclass(frozen=True)
class Answer(Generic[T]):
    """What one attempt got: a status (None when nothing answered), a reason, a value."""

    status: int | None
    reason: str
    wait: float = 0.0  # what the server asked for (Retry-After), in seconds
    value: T | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """No answer at all, or a status that says "later"."""
        return self.status is None or self.status in RETRY_STATUSES


class Stop(enum.Enum):
    """Why the retries ended."""

    ANSWERED = "answered"  # a success, or an answer that retrying cannot change
    GAVE_UP = "gave up"  # the next wait would not leave room for another attempt
    SPENT = "spent"  # the budget ran out between attempts, or before the first one
    ATTEMPTS = "attempts"  # the last allowed attempt failed


@dataclasses.dataclass(frozen=True)
class Outcome(Generic[T]):
    """The last answer (None when no attempt was made), how many attempts, and why it stopped."""

    answer: Answer[T] | None
    attempts: int
    stop: Stop


def delay(attempt: int, wait: float) -> float:
    """The pause after a failed ``attempt`` (1-based): 0.5 s doubling, or what the server asked."""
    return max(FIRST_DELAY * 2.0 ** (attempt - 1), wait)


def with_retries(
    attempt: Callable[[float], Answer[T]],
    *,
    budget: float,
    timeout: float,
    attempts: int | None = None,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[Answer[T]], object] = lambda answer: None,
) -> Outcome[T]:
    """Call ``attempt(timeout)`` until it answers for good, within ``budget`` seconds in all.

    Each attempt gets ``timeout`` or what is left of the budget, whichever is less; at most
    ``attempts`` are made when given. Retried: no answer, or a status in RETRY_STATUSES.
    """
    began, made, answer = clock(), 0, None
    while (left := budget - (clock() - began)) >= MIN_ATTEMPT:
        made += 1
        answer = attempt(min(timeout, left))
        if answer.ok or not answer.retryable:
            return Outcome(answer, made, Stop.ANSWERED)
        if attempts is not None and made >= attempts:
            return Outcome(answer, made, Stop.ATTEMPTS)
        pause = delay(made, answer.wait)
        if pause + MIN_ATTEMPT > budget - (clock() - began):
            return Outcome(answer, made, Stop.GAVE_UP)
        on_retry(answer)
        sleep(pause)
    return Outcome(answer, made, Stop.SPENT)
