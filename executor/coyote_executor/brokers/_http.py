"""HTTP plumbing shared by the REST broker adapters: retries, rate limits, credentials.

:class:`HttpClient` wraps one :class:`httpx.AsyncClient` per broker and sends each request with
the headers of an account's current credentials. It sorts what comes back into three kinds:

* *transient* failures — a connect error or timeout, a server error (5xx), a rate limit (429) —
  are retried with exponential backoff and jitter; 429 waits as long as ``Retry-After`` asks.
  When the attempts run out the call fails with :class:`~.base.BrokerUnavailable` (or
  :class:`~.base.BrokerRateLimited`).
* *auth* failures (401 by default) invalidate the credentials and are retried once at once with
  a fresh read, so a key rotated in Vault is picked up; a second refusal is a
  :class:`~.base.BrokerAuthError`.
* anything else is answered to the adapter, which reads the venue's error body.

A retried request is sent again exactly as it was: an order submission keeps its client order
id, so the venue can recognise the repeat instead of opening a second order. Whether a failure
is *ambiguous* — the request may have reached the venue (a read timeout, a 5xx) — is recorded on
:class:`TransientError`, so an adapter whose venue cannot detect every duplicate can look the
order up before sending it again (see :meth:`HttpClient.retrying`).

Credentials and auth headers are never logged; log lines carry the venue, method, path and
status.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import httpx

from coyote_executor.brokers.base import (
    BrokerAuthError,
    BrokerError,
    BrokerRateLimited,
    BrokerUnavailable,
)
from coyote_executor.credentials import CredentialsProvider

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0, pool=5.0)
"""Per-request timeouts: a broker that has not answered in 10 s is treated as unavailable."""

# Failures where the request cannot have reached the venue: sending it again is always safe.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures are retried.

    Attributes:
        attempts: How many times a request is sent at most (1: never retried).
        base_delay_s: The first backoff; each further one doubles, up to ``max_delay_s``.
        max_delay_s: The longest backoff.
        jitter: Fraction of each backoff that is randomised away, so that clients which failed
            together do not retry together.
        max_retry_after_s: The longest ``Retry-After`` waited for; a venue asking for more
            gets a :class:`~.base.BrokerRateLimited` at once rather than a blocked caller.
    """

    attempts: int = 3
    base_delay_s: float = 0.2
    max_delay_s: float = 2.0
    jitter: float = 0.5
    max_retry_after_s: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"`attempts` must be at least 1, got {self.attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("delays must not be negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"`jitter` must be between 0 and 1, got {self.jitter}")

    def backoff(self, attempt: int, draw: float) -> float:
        """The delay after failed attempt number ``attempt`` (1-based); ``draw`` is in [0, 1)."""
        delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return delay * (1 - self.jitter * draw)


@dataclasses.dataclass(frozen=True, slots=True)
class Auth:
    """One account's credentials and how they become request headers."""

    credentials: CredentialsProvider
    headers: Callable[[Mapping[str, str]], Mapping[str, str]]


class TransientError(Exception):
    """A failure worth retrying (internal to the adapters; callers see ``BrokerUnavailable``).

    Attributes:
        ambiguous: Whether the venue may have acted on the request (it was sent, but no answer
            came back, or the answer was a server error).
        rate_limited: Whether the venue answered 429.
        retry_after_s: How long the venue asked us to wait, if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        ambiguous: bool,
        rate_limited: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous
        self.rate_limited = rate_limited
        self.retry_after_s = retry_after_s

    def final(self, attempts: int) -> BrokerUnavailable:
        """The error a caller sees once the attempts have run out."""
        message = f"{self} (after {attempts} attempt{'s' if attempts > 1 else ''})"
        if self.rate_limited:
            return BrokerRateLimited(message, retry_after_s=self.retry_after_s)
        return BrokerUnavailable(message)


def unauthorized(response: httpx.Response) -> bool:
    """The default test for refused credentials: HTTP 401 or 403."""
    return response.status_code in (401, 403)


def retry_after_header(response: httpx.Response) -> float | None:
    """Seconds to wait according to ``Retry-After`` (delta-seconds or an HTTP date), if given."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpClient:
    """An :class:`httpx.AsyncClient` for one venue, with retries and credential refresh.

    Args:
        venue: The venue's name, for messages (``alpaca``).
        base_url: Scheme and host of the venue's REST API.
        retry: The retry policy.
        timeout: Request timeouts.
        transport: An httpx transport to use instead of the network (tests).
        sleep: Awaited between attempts (tests inject one that does not wait).
        is_auth_failure: Whether a response means the credentials were refused.
        retry_after: How long a 429 response asks us to wait, if it says.
        draw: Random numbers in [0, 1) for the jitter.
    """

    def __init__(
        self,
        venue: str,
        base_url: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        is_auth_failure: Callable[[httpx.Response], bool] = unauthorized,
        retry_after: Callable[[httpx.Response], float | None] = retry_after_header,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.venue = venue
        self.retry = retry or RetryPolicy()
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
            transport=transport,
            headers={"Accept": "application/json"},
        )
        self._sleep = sleep
        self._is_auth_failure = is_auth_failure
        self._retry_after = retry_after
        self._draw = draw

    async def aclose(self) -> None:
        """Closes the connection pool."""
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        auth: Auth,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """Sends a request, retrying transient failures; answers any non-transient response.

        Raises:
            BrokerUnavailable: The venue could not be reached or kept failing.
            BrokerRateLimited: The venue kept answering 429.
            BrokerAuthError: The venue refused the credentials, fresh ones included.
        """
        return await self.retrying(
            lambda: self.send(method, path, auth=auth, params=params, json=json)
        )

    async def send(
        self,
        method: str,
        path: str,
        *,
        auth: Auth,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """Sends a request once (plus one retry with fresh credentials after an auth failure).

        Raises:
            TransientError: A failure worth retrying.
            BrokerAuthError: The venue refused the credentials twice.
        """
        refreshed = False
        what = f"{self.venue} {method} {path}"
        while True:
            headers = auth.headers(await auth.credentials.get())
            try:
                response = await self._client.request(
                    method, path, params=params, json=json, headers=dict(headers)
                )
            except _NOT_SENT as exc:
                raise TransientError(f"{what}: {type(exc).__name__}", ambiguous=False) from exc
            except httpx.TransportError as exc:
                # The request may have been sent and acted on; only its answer was lost.
                raise TransientError(f"{what}: {type(exc).__name__}", ambiguous=True) from exc
            if self._is_auth_failure(response):
                if refreshed:
                    raise BrokerAuthError(
                        f"{what}: the credentials were refused (HTTP {response.status_code}), "
                        "also after reading them again"
                    )
                log.warning(
                    "%s: credentials refused (HTTP %s); reading them again and retrying once",
                    what,
                    response.status_code,
                )
                auth.credentials.invalidate()
                refreshed = True
                continue
            if response.status_code == 429:
                raise TransientError(
                    f"{what}: rate limited (HTTP 429)",
                    ambiguous=False,
                    rate_limited=True,
                    retry_after_s=self._retry_after(response),
                )
            if response.status_code >= 500:
                raise TransientError(f"{what}: HTTP {response.status_code}", ambiguous=True)
            return response

    @contextlib.asynccontextmanager
    async def stream(
        self, url: str, *, auth: Auth, silence_s: float
    ) -> AsyncIterator[httpx.Response]:
        """A long-lived ``GET`` whose body is read as it arrives (a venue's event stream); its
        read fails once nothing has come for ``silence_s``. Fresh credentials are read once
        after an auth failure. Not retried: the caller reconnects.

        Raises:
            TransientError: The stream could not be opened (connection, 429, 5xx).
            BrokerAuthError: The venue refused the credentials twice.
            BrokerError: Any other answer but 200 (a wrong path or account).
        """
        timeout = httpx.Timeout(silence_s, connect=self._client.timeout.connect)
        refreshed = False
        what = f"{self.venue} stream {httpx.URL(url).path}"
        while True:
            headers = auth.headers(await auth.credentials.get())
            request = self._client.build_request("GET", url, headers=dict(headers), timeout=timeout)
            try:
                response = await self._client.send(request, stream=True)
            except httpx.TransportError as exc:
                raise TransientError(f"{what}: {type(exc).__name__}", ambiguous=False) from exc
            try:
                if self._is_auth_failure(response):
                    if refreshed:
                        raise BrokerAuthError(f"{what}: the credentials were refused, also anew")
                    log.warning("%s: credentials refused; reading them again", what)
                    auth.credentials.invalidate()
                    refreshed = True
                    continue
                if response.status_code == 429 or response.status_code >= 500:
                    raise TransientError(f"{what}: HTTP {response.status_code}", ambiguous=False)
                if response.status_code != 200:
                    body = (await response.aread())[:300].decode(errors="replace")
                    raise BrokerError(f"{what}: HTTP {response.status_code} {body}")
                yield response
                return
            finally:
                await response.aclose()

    async def retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Runs ``attempt`` until it succeeds or the policy gives up.

        ``attempt`` signals a failure worth retrying by raising :class:`TransientError`; it is
        typically one :meth:`send`, but an adapter may wrap more around it — e.g. look the order
        up before sending it again after an ambiguous failure.
        """
        policy = self.retry
        for number in range(1, policy.attempts + 1):
            try:
                return await attempt()
            except TransientError as exc:
                wait = exc.retry_after_s
                if wait is not None and wait > policy.max_retry_after_s:
                    raise BrokerRateLimited(
                        f"{exc}: asked to wait {wait:.1f} s, more than the "
                        f"{policy.max_retry_after_s:.1f} s allowed",
                        retry_after_s=wait,
                    ) from exc
                if number == policy.attempts:
                    raise exc.final(number) from exc
                delay = wait if wait is not None else policy.backoff(number, self._draw())
                log.warning(
                    "%s; retrying in %.2f s (attempt %d of %d)", exc, delay, number, policy.attempts
                )
                await self._sleep(delay)
        raise AssertionError("unreachable: the last attempt either returns or raises")


# -- DECODING --------------------------------------------------------------------------------


def decode(response: httpx.Response) -> Any:
    """The response's JSON with every number as a :class:`~decimal.Decimal` (never a float).

    An empty or non-JSON body decodes to None.
    """
    if not response.content:
        return None
    try:
        return json.loads(response.content, parse_float=Decimal)
    except ValueError:
        return None


def to_decimal(value: Any) -> Decimal | None:
    """A decimal from a JSON string or number; None for null or an empty string."""
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a decimal number, got {value!r}")
    if isinstance(value, int | str):
        try:
            return Decimal(value)
        except InvalidOperation as exc:
            raise ValueError(f"expected a decimal number, got {value!r}") from exc
    raise ValueError(f"expected a decimal number, got {type(value).__name__} {value!r}")


def decimal_str(value: Decimal) -> str:
    """A decimal as venues expect it on the wire: plain notation, never an exponent."""
    return format(value, "f")


_RFC3339 = re.compile(
    r"^(?P<main>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<frac>\d+))?(?P<zone>Z|[+-]\d\d:\d\d)$",
    re.IGNORECASE,
)


def timestamp_ms(value: Any) -> int:
    """Epoch milliseconds from an RFC 3339 time (any fraction digits) or Unix seconds.

    Brokers send nanosecond fractions (``2016-10-24T21:48:18.593753865Z``); OANDA can also send
    ``"1476893734.561528357"``. Unknown or missing values give 0.
    """
    if value is None or value == "":
        return 0
    text = str(value)
    match = _RFC3339.match(text)
    if match is None:
        try:
            return int(Decimal(text) * 1000)
        except InvalidOperation:
            log.warning("unreadable timestamp %r", text)
            return 0
    zone = match["zone"].upper()
    moment = datetime.fromisoformat(match["main"] + ("+00:00" if zone == "Z" else zone))
    millis = int((match["frac"] or "0")[:3].ljust(3, "0"))
    return int(moment.timestamp()) * 1000 + millis
