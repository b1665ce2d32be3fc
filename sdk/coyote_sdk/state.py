"""A bot's key-value state store: JSON values, the same semantics in a backtest and live.

Values go through JSON (msgspec), so what a bot reads back is what would survive a restart:
numbers, strings, booleans, lists and dicts; a ``Decimal`` comes back as its string.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import msgspec
import redis

from coyote_sdk.protocol import state_key


class _JsonState(MutableMapping[str, Any]):
    def _load(self, raw: bytes) -> Any:
        return msgspec.json.decode(raw)

    def _dump(self, key: str, value: Any) -> bytes:
        if not isinstance(key, str):
            raise TypeError(f"state keys are strings, got {key!r}")
        try:
            return msgspec.json.encode(value)
        except TypeError as exc:
            raise TypeError(f"state[{key!r}] must be JSON-serialisable: {exc}") from exc


class MemoryState(_JsonState):
    """State kept in memory (backtests), with the JSON round trip of the live store."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    def __getitem__(self, key: str) -> Any:
        return self._load(self._data[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = self._dump(key, value)

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)


class RedisState(_JsonState):
    """State in a Redis hash (``coyote:bot:{bot_id}:state``) that survives restarts.

    Every read and write goes to Redis at once; a bot's state is small (settings, counters, the
    last signal), not a database.
    """

    def __init__(self, client: redis.Redis, bot_id: str) -> None:
        self._client = client
        self._key = state_key(bot_id)

    def __getitem__(self, key: str) -> Any:
        raw = self._client.hget(self._key, key)
        if raw is None:
            raise KeyError(key)
        return self._load(raw)  # type: ignore[arg-type]

    def __setitem__(self, key: str, value: Any) -> None:
        self._client.hset(self._key, key, self._dump(key, value))

    def __delitem__(self, key: str) -> None:
        if not self._client.hdel(self._key, key):
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter([k.decode() for k in self._client.hkeys(self._key)])  # type: ignore[union-attr]

    def __len__(self) -> int:
        return int(self._client.hlen(self._key))
