"""What happens after an attempt: the outcome of one try at an endpoint, and the retry
policy that turns it into the delivery's next state. Pure: `now` and the random draw are
passed in.

Backoff is exponential with "equal jitter": after the n-th failed attempt the next one
waits d/2 + U(0, d/2), d = min(max_s, initial_s * 2**(n-1)) — spread out, so endpoints
that failed together are not hit together again, yet never sooner than d/2. A delivery
whose attempts reach max_attempts, or whose endpoint refused it for good (HTTP 410, an
SMTP 5xx reply), is dead."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# The reason codes of an attempt that did not deliver (notice_deliveries.last_reason).
HTTP_STATUS = "HTTP_STATUS"  # the webhook answered, but not 2xx
GONE = "GONE"  # HTTP 410: the receiver says it will never want this again
TIMEOUT = "TIMEOUT"  # no answer within the endpoint's timeout_s
CONNECT_FAILED = "CONNECT_FAILED"  # refused, unreachable, unknown host, TLS failure
PROTOCOL_ERROR = "PROTOCOL_ERROR"  # the peer spoke something else
SMTP_TEMPORARY = "SMTP_TEMPORARY"  # a 4xx reply: try again later
SMTP_REJECTED = "SMTP_REJECTED"  # a 5xx reply: the server will not take it
ADDRESS_NOT_ALLOWED = "ADDRESS_NOT_ALLOWED"  # a webhook on a private/loopback address
ENDPOINT_DISABLED = "ENDPOINT_DISABLED"  # disabled or removed before the attempt


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt at one endpoint."""

    delivered: bool
    status: int | None = None  # the HTTP status or SMTP reply code, when there was one
    reason: str = ""  # a code above; "" when delivered
    error: str = ""  # what a person reads to fix it (never a secret)
    permanent: bool = False  # retrying cannot help

    @classmethod
    def ok(cls, status: int | None) -> Outcome:
        return cls(True, status)

    @classmethod
    def failed(cls, reason: str, error: str, status: int | None = None, permanent: bool = False) -> Outcome:
        return cls(False, status, reason, error[:500], permanent)


def http_outcome(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.ok(status)
    if status == 410:
        return Outcome.failed(GONE, "the receiver answered 410 Gone", status, permanent=True)
    return Outcome.failed(HTTP_STATUS, f"the receiver answered HTTP {status}", status)


def smtp_outcome(code: int, message: str, about_the_message: bool = True) -> Outcome:
    """A 5xx about the recipient or the message is for good; about the platform's own
    login or sender address (`about_the_message` False) it is the operator's to fix, and
    the delivery waits for that."""
    if 200 <= code < 300:
        return Outcome.ok(code)
    if 500 <= code < 600 and about_the_message:
        return Outcome.failed(SMTP_REJECTED, f"SMTP {code} {message}", code, permanent=True)
    return Outcome.failed(SMTP_TEMPORARY, f"SMTP {code} {message}", code)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    initial_s: float = 10.0
    max_s: float = 3600.0

    def delay_s(self, failed_attempts: int, draw: float) -> float:
        """The wait after the `failed_attempts`-th failure (1, 2, ...); draw in [0, 1)."""
        step = min(self.max_s, self.initial_s * 2.0 ** min(max(failed_attempts, 1) - 1, 62))
        return step / 2 + step / 2 * draw


@dataclass(frozen=True, slots=True)
class Step:
    """The delivery row after an attempt."""

    state: str  # delivered | failed | dead
    next_attempt_at: datetime
    delivered_at: datetime | None


def after_attempt(outcome: Outcome, attempts: int, policy: RetryPolicy, now: datetime, draw: float) -> Step:
    """`attempts` counts this one."""
    if outcome.delivered:
        return Step("delivered", now, now)
    if outcome.permanent or attempts >= policy.max_attempts:
        return Step("dead", now, None)
    return Step("failed", now + timedelta(seconds=policy.delay_s(attempts, draw)), None)
