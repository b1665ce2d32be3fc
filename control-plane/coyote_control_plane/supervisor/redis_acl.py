"""Each bot runtime's own Redis user: it reaches its own keys and the market data, nothing else.

The supervisor gives every deployment that may run a Redis ACL user, ``coyote-bot:<runtime
id>``, and hands its runtime a URL with that user instead of the control plane's. The user may
(see :func:`runtime_acl_rules`):

- read its control flag and follow its flag channel (:func:`coyote_sdk.protocol.control_flag_key`,
  :func:`~coyote_sdk.protocol.control_channel`), never write them;
- write its heartbeat (``SET … PX``) and read and write its state store's hash;
- read market data (``TS.MRANGE``, ``TS.MREVRANGE``, ``TS.MGET``) and follow the bar and trade
  channels, never write them or publish on them;

and nothing more: no other bot's keys or channels, no halts, account documents or broker book,
no ``KEYS``, ``SCAN``, ``FLUSHALL``, ``CONFIG``, ``ACL``, scripts or transactions. Commands are
allowed one by one, not by category: RedisTimeSeries 1.12 (Redis Stack 7.4) puts its commands in
no ACL category at all, and ``+@read`` would also allow ``KEYS`` and ``SCAN``.

RedisTimeSeries does not check key permissions on the series a label filter selects
(``TS.MRANGE … FILTER``): a runtime can read every time series in the Redis, not only
``coyote:md:*``. Market data are the only series Coyote writes, so that reveals nothing of
another bot. The key pattern is kept for a RedisTimeSeries that does check.

Redis is not the source of truth: users are lost with a restart (they are in no snapshot or
append-only file), so the supervisor writes them again on every pass, like flags, from the
database (:func:`sync_runtime_users`). Passwords are not stored anywhere: each is the HMAC of
the control plane's secret and the runtime id, so any supervisor replica derives the same one
after a restart and a runtime's URL stays valid for its whole life.

A change to what the runtime (``coyote_sdk.runtime``) does in Redis must be made here too;
``tests/control_plane/test_redis_acl.py`` runs a real runtime under these rules.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Collection
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import redis
from sqlmodel import Session, select

from coyote_control_plane.models import Deployment, DesiredState, Organization, RuntimeStatus
from coyote_sdk import protocol

logger = logging.getLogger("coyote.supervisor")

USER_PREFIX = "coyote-bot:"
"""Every runtime's Redis user is named ``coyote-bot:<runtime id>``."""

RUNTIME_COMMANDS = (
    "get",  # its control flag and saved portfolio
    "set",  # its heartbeat (SET … PX) and saved portfolio
    "hget",  # its state store (coyote_sdk.state.RedisState) …
    "hset",
    "hdel",
    "hkeys",
    "hlen",
    "ts.mrange",  # market data (coyote_sdk.marketdata.MarketDataReader): bars …
    "ts.mrevrange",  # … the last ones (history) …
    "ts.mget",  # … and last prices
    "subscribe",  # its flag channel, bars and trades
    "unsubscribe",
    "ping",  # connection health checks
    "client|setinfo",  # redis-py names itself on every new connection
    "select",  # a Redis URL naming a database other than 0
)
"""The only commands a runtime's user may run (AUTH and HELLO need no permission)."""

_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


def username(runtime_id: str) -> str:
    """The Redis user of a runtime: ``coyote-bot:<runtime id>``.

    Raises:
        ValueError: ``runtime_id`` is empty or holds whitespace (Redis refuses such names).
    """
    if not runtime_id or any(c.isspace() or c == "\0" for c in runtime_id):
        raise ValueError(
            f"a runtime id must be non-empty, without spaces or control characters, got "
            f"{runtime_id!r}"
        )
    return USER_PREFIX + runtime_id


def runtime_acl_rules(runtime_id: str) -> list[str]:
    """The ``ACL SETUSER`` rules of a runtime's user, password aside.

    Its own keys are named exactly (the id's glob characters escaped), so no other bot's key
    matches; ``resetchannels`` follows ``reset`` because ``reset`` allows every channel on a
    server whose ``acl-pubsub-default`` is ``allchannels``.
    """
    username(runtime_id)  # validates the id
    own = _literal
    return [
        "reset",
        "resetchannels",
        "on",
        f"%R~{own(protocol.control_flag_key(runtime_id))}",
        f"%W~{own(protocol.heartbeat_key(runtime_id))}",
        f"~{own(protocol.state_key(runtime_id))}",
        f"~{own(protocol.portfolio_key(runtime_id))}",
        f"%R~{protocol.KEY_PREFIX}:md:*",
        f"&{own(protocol.control_channel(runtime_id))}",
        f"&{protocol.KEY_PREFIX}:bars:*",
        f"&{protocol.KEY_PREFIX}:trades:*",
        *(f"+{command}" for command in RUNTIME_COMMANDS),
    ]


def runtime_password(secret: bytes, runtime_id: str) -> str:
    """A runtime's Redis password: HMAC-SHA256 of ``secret`` and its id, in hex."""
    return hmac.new(
        secret, b"coyote redis user\0" + runtime_id.encode(), hashlib.sha256
    ).hexdigest()


def with_user(redis_url: str, user: str, password: str) -> str:
    """``redis_url`` with ``user`` and ``password`` in place of its own credentials."""
    parts = urlsplit(redis_url)
    address = parts.netloc.rpartition("@")[2]
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{credentials}@{address}"))


def secret_from_file(path: Path) -> bytes:
    """The key in ``path``, made (256 random bits, mode 0600) if the file does not exist."""
    if not path.exists():
        draft = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
            file.write(secrets.token_hex(32))
        try:
            os.link(draft, path)  # atomic, and refuses to replace a key made meanwhile
        except FileExistsError:
            pass  # another process made it first: its key stands
        finally:
            draft.unlink()
    key = path.read_text().strip()
    if not key:
        raise ValueError(f"{path} is empty: delete it to have a new key made")
    return key.encode()


class RuntimeRedisAccess:
    """How bot runtimes reach Redis: the URL each gets, and the ACL user behind it.

    Args:
        client: The control plane's Redis (a user that may run ``ACL`` commands).
        redis_url: The stack's Redis URL; runtimes get it with their own user.
        secret: The key passwords are derived from; ``None`` turns the per-runtime users off,
            and every runtime gets ``redis_url`` itself.
    """

    def __init__(self, client: redis.Redis, redis_url: str, *, secret: bytes | None) -> None:
        self._client = client
        self._url = redis_url
        self._secret = secret
        self._written: dict[str, Any] = {}
        """What Redis answered for each user right after we wrote it: a user that differs
        from it was lost or changed, and is written again."""
        self._last_problem: str | None = None
        self._default_user_checked = False

    @property
    def acl(self) -> bool:
        """Whether each runtime has a Redis user of its own."""
        return self._secret is not None

    def env(self, runtime_id: str) -> dict[str, str]:
        """The runtime's Redis environment: ``COYOTE_REDIS_URL`` with its own user (or the
        stack's URL when users are off). It holds a password: backends keep it secret."""
        if self._secret is None:
            return {"COYOTE_REDIS_URL": self._url}
        password = runtime_password(self._secret, runtime_id)
        return {"COYOTE_REDIS_URL": with_user(self._url, username(runtime_id), password)}

    def grant(self, runtime_id: str) -> dict[str, str]:
        """Makes sure the runtime's user exists as it should, and answers :meth:`env`.

        Redis unreachable, or refusing ACL commands (logged), is not raised: the runtime is
        launched all the same, fails safe until it can authenticate, and a later :meth:`sync`
        writes the user.
        """
        if self._secret is not None:
            try:
                self._ensure(runtime_id, self._client.acl_getuser(username(runtime_id)))
            except redis.ResponseError as exc:
                self._complain(f"Redis refused the user of {runtime_id}: {exc}")
            except redis.RedisError:
                pass  # unreachable: the supervisor's pass says so, and syncs once it is back
        return self.env(runtime_id)

    def sync(self, wanted: Collection[str], *, org_slugs: Collection[str]) -> None:
        """Gives each runtime of ``wanted`` its user (written again if lost or changed) and
        deletes the users of the other runtimes of ``org_slugs`` (a shared Redis may hold
        another control plane's). Deleting a user disconnects its clients.

        Raises:
            redis.ConnectionError: Redis is unreachable. A Redis that refuses ACL commands is
                logged (once), not raised: flags and halts must not wait for it.
        """
        if self._secret is None:
            return
        try:
            self._check_default_user()
            names: Any = self._client.acl_users()
            present = {
                name.removeprefix(USER_PREFIX)
                for name in map(_text, names)
                if name.startswith(USER_PREFIX)
            }
            slugs = set(org_slugs)
            gone = sorted(
                runtime_id
                for runtime_id in present - set(wanted)
                if runtime_id.partition(".")[0] in slugs
            )
            if gone:
                self._client.acl_deluser(*(username(runtime_id) for runtime_id in gone))
                for runtime_id in gone:
                    self._written.pop(runtime_id, None)
                logger.info("deleted the Redis users of %s", ", ".join(gone))
            for runtime_id in sorted(wanted):
                current = (
                    self._client.acl_getuser(username(runtime_id))
                    if runtime_id in present
                    else None
                )
                self._ensure(runtime_id, current)
        except redis.ResponseError as exc:
            self._complain(f"Redis refused to manage the bots' users: {exc}")
            return
        self._last_problem = None

    def _ensure(self, runtime_id: str, current: Any) -> None:
        if current is not None and current == self._written.get(runtime_id):
            return
        if runtime_id in self._written:
            how = "lost (a Redis restart?)" if current is None else "changed by someone else"
            logger.warning("the Redis user of %s was %s: written again", runtime_id, how)
        assert self._secret is not None
        name = username(runtime_id)
        password = runtime_password(self._secret, runtime_id)
        self._client.execute_command(
            "ACL", "SETUSER", name, *runtime_acl_rules(runtime_id), f">{password}"
        )
        self._written[runtime_id] = self._client.acl_getuser(name)

    def _check_default_user(self) -> None:
        """Warns once when Redis' default user needs no password: any client can then be it,
        and the bots' users limit nothing."""
        if self._default_user_checked:
            return
        default: Any = self._client.acl_getuser("default")
        self._default_user_checked = True
        flags = set(map(_text, default["flags"])) if default else set()
        if {"on", "nopass"} <= flags:
            logger.warning(
                "Redis' default user needs no password: a bot can connect as it and bypass "
                "its own Redis user; give it one (requirepass) for the bots' users to hold"
            )

    def _complain(self, problem: str) -> None:
        if problem != self._last_problem:
            logger.warning(
                "%s; runtimes cannot authenticate until it is fixed (or set "
                "COYOTE_CONTROL_PLANE_SUPERVISOR__REDIS_ACL=false for a Redis without ACLs)",
                problem,
            )
        self._last_problem = problem


def sync_runtime_users(session: Session, access: RuntimeRedisAccess) -> None:
    """Redis users from the database: one for each deployment whose runtime may run (it should,
    or it has not been seen stopped yet), none for the others."""
    if not access.acl:
        return
    slugs = list(session.exec(select(Organization.slug)))
    wanted = {
        deployment.runtime_id
        for deployment in session.exec(select(Deployment))
        if deployment.desired is not DesiredState.STOPPED
        or deployment.status is not RuntimeStatus.STOPPED
    }
    access.sync(wanted, org_slugs=slugs)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _literal(text: str) -> str:
    """``text`` as a Redis glob pattern matching only itself."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)
