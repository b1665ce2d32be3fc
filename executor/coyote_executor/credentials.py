"""Broker credentials: read from Vault's KV v2 engine, cached, and rotated without a restart.

Each trading account keeps its broker secret at ``secret/coyote/accounts/<account>`` (mount
``secret``, KV version 2). A broker adapter holds a *credentials provider* per account: an object
with an async ``get()`` answering the secret's key/value pairs and an ``invalidate()`` that makes
the next ``get()`` read the secret again. Adapters call ``invalidate()`` when the broker refuses
the credentials (HTTP 401), then retry once: a key rotated in Vault is picked up at once, without
waiting for the cache to expire and without restarting the executor.

Secret values never appear in logs, reprs or error messages; errors name the Vault path and the
missing key only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, Protocol

import hvac.exceptions

from coyote_executor.brokers.base import BrokerAuthError, BrokerUnavailable

log = logging.getLogger(__name__)

DEFAULT_MOUNT = "secret"
"""The KV v2 mount the credentials live under."""
ACCOUNTS_PREFIX = "coyote/accounts"
"""Path of the account secrets inside the mount: ``coyote/accounts/<account>``."""
_RETRY_AFTER_FAILURE_S = 5.0


# -- ERRORS ----------------------------------------------------------------------------------


class CredentialsError(BrokerAuthError):
    """A secret, or a key of it, is missing or unreadable: trading waits until it is fixed."""

    code = "broker.credentials"


class CredentialsUnavailable(BrokerUnavailable):
    """Vault could not be reached (or failed) and no cached secret could stand in."""

    code = "broker.credentials_unavailable"


# -- SECRETS ---------------------------------------------------------------------------------


class Credentials(Mapping[str, str]):
    """A secret's key/value pairs that never show their values.

    Args:
        values: The secret's keys and values.
        source: Where the secret came from (``secret/coyote/accounts/alpaca-paper``), for
            error messages.
    """

    __slots__ = ("_values", "source")

    def __init__(self, values: Mapping[str, str], *, source: str = "credentials") -> None:
        self._values = dict(values)
        self.source = source

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Credentials(source={self.source!r}, keys={sorted(self._values)})"

    __str__ = __repr__


def require(credentials: Mapping[str, str], key: str) -> str:
    """The value of ``key``, or a :class:`CredentialsError` naming the key and the secret.

    Works with any mapping, so a test may hand an adapter a plain dict.
    """
    value = credentials.get(key)
    if isinstance(value, str) and value:
        return value
    source = getattr(credentials, "source", "the credentials")
    present = ", ".join(sorted(credentials)) or "none"
    problem = "has no key" if value is None else "has an empty or non-string value for key"
    raise CredentialsError(f"{source} {problem} {key!r} (keys present: {present})")


class CredentialsProvider(Protocol):
    """What a broker adapter needs to authenticate: the current secret, and a way to drop it."""

    async def get(self) -> Mapping[str, str]:
        """The current key/value pairs of the secret."""
        ...

    def invalidate(self) -> None:
        """Forgets the cached secret, so that the next :meth:`get` reads it again."""
        ...


class StaticCredentials:
    """Fixed credentials, for tests and local development.

    Args:
        values: The key/value pairs.
        source: A name for error messages.
    """

    def __init__(self, values: Mapping[str, str], *, source: str = "static credentials") -> None:
        self._credentials = Credentials(values, source=source)

    async def get(self) -> Credentials:
        return self._credentials

    def invalidate(self) -> None:
        """Nothing to re-read."""

    def __repr__(self) -> str:
        return f"StaticCredentials({self._credentials!r})"


class VaultCredentials:
    """A broker secret read from Vault KV v2 and cached for ``ttl_s`` seconds.

    When the cache expires and Vault cannot be reached, the last secret keeps being used (a
    warning is logged) and Vault is asked again a few seconds later; after :meth:`invalidate`
    there is no such fallback, since the broker has just refused that secret.

    Args:
        client: An authenticated hvac client; it is used from a worker thread, one call at a time.
        path: The secret's path inside the mount, e.g. ``coyote/accounts/alpaca-paper``.
        mount_point: The KV v2 mount.
        required_keys: Keys the secret must have; a read without one of them fails with a
            :class:`CredentialsError` naming the path and the key.
        ttl_s: How long a read secret is used before Vault is asked again.
        clock: Monotonic time in seconds (injectable for tests).
    """

    def __init__(
        self,
        client: Any,
        path: str,
        *,
        mount_point: str = DEFAULT_MOUNT,
        required_keys: Collection[str] = (),
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not path.strip("/"):
            raise ValueError("`path` must name a secret, e.g. 'coyote/accounts/alpaca-paper'")
        if ttl_s < 0:
            raise ValueError(f"`ttl_s` must not be negative, got {ttl_s}")
        self._client = client
        self._path = path.strip("/")
        self._mount = mount_point
        self._required = tuple(required_keys)
        self._ttl = ttl_s
        self._clock = clock
        self._cached: Credentials | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    @classmethod
    def for_account(
        cls,
        client: Any,
        account_id: str,
        *,
        required_keys: Collection[str] = (),
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> VaultCredentials:
        """The credentials of a Coyote account, at ``secret/coyote/accounts/<account_id>``."""
        if not account_id or "/" in account_id:
            raise ValueError(f"`account_id` must be a plain account id, got {account_id!r}")
        return cls(
            client,
            f"{ACCOUNTS_PREFIX}/{account_id}",
            required_keys=required_keys,
            ttl_s=ttl_s,
            clock=clock,
        )

    @property
    def location(self) -> str:
        """The secret's full name, ``<mount>/<path>``: safe to log."""
        return f"{self._mount}/{self._path}"

    async def get(self) -> Credentials:
        """The secret, from the cache while it is fresh, otherwise read from Vault."""
        cached = self._cached
        if cached is not None and self._clock() < self._expires_at:
            return cached
        async with self._lock:
            # Another task may have refreshed the secret while this one waited for the lock.
            cached = self._cached
            if cached is not None and self._clock() < self._expires_at:
                return cached
            try:
                fresh = await asyncio.to_thread(self._read)
            except CredentialsUnavailable as exc:
                if cached is None:
                    raise
                log.warning(
                    "vault unavailable, keeping the cached secret %s for now: %s",
                    self.location,
                    exc,
                )
                self._expires_at = self._clock() + min(self._ttl, _RETRY_AFTER_FAILURE_S)
                return cached
            self._cached = fresh
            self._expires_at = self._clock() + self._ttl
            return fresh

    def invalidate(self) -> None:
        """Drops the cached secret: the next :meth:`get` reads Vault, with no stale fallback."""
        self._cached = None
        self._expires_at = 0.0

    def _read(self) -> Credentials:
        try:
            answer = self._client.secrets.kv.v2.read_secret_version(
                path=self._path, mount_point=self._mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath as exc:
            raise CredentialsError(f"no secret at {self.location} in Vault") from exc
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized) as exc:
            raise CredentialsError(
                f"Vault refused to read {self.location}: the token lacks the permission "
                "or has expired"
            ) from exc
        except (
            hvac.exceptions.VaultDown,
            hvac.exceptions.InternalServerError,
            hvac.exceptions.BadGateway,
            hvac.exceptions.RateLimitExceeded,
            OSError,  # requests' connection errors and timeouts derive from OSError
        ) as exc:
            raise CredentialsUnavailable(
                f"could not read {self.location} from Vault: {type(exc).__name__}"
            ) from exc
        except hvac.exceptions.VaultError as exc:
            raise CredentialsError(
                f"could not read {self.location} from Vault: {type(exc).__name__}"
            ) from exc
        data = (answer or {}).get("data", {}).get("data")
        if not isinstance(data, Mapping):
            raise CredentialsError(f"the Vault secret {self.location} holds no key/value data")
        credentials = Credentials(data, source=f"the Vault secret {self.location}")
        for key in self._required:
            require(credentials, key)
        for key, value in data.items():
            if not isinstance(value, str):
                raise CredentialsError(
                    f"the Vault secret {self.location} has a non-string value for key {key!r}"
                )
        return credentials

    def __repr__(self) -> str:
        return (
            f"VaultCredentials(location={self.location!r}, ttl_s={self._ttl}, "
            f"cached={self._cached is not None})"
        )
