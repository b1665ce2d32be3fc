"""Each bot runtime's own Redis user on the stack's real Redis: a runtime under it does all it
needs and nothing else, and the supervisor makes the user before a launch, writes it again when
Redis loses it, and deletes it once the deployment is stopped."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis

from coyote_control_plane.config import Settings, SupervisorSettings
from coyote_control_plane.main import runtime_redis_access
from coyote_control_plane.supervisor.redis_acl import (
    RUNTIME_COMMANDS,
    RuntimeRedisAccess,
    runtime_acl_rules,
    runtime_password,
    username,
)
from coyote_sdk import Bar, Bot, Trade, protocol
from coyote_sdk.config import Endpoints, StackSettings
from coyote_sdk.control import set_control_flag
from coyote_sdk.marketdata import MarketDataWriter
from coyote_sdk.protocol import BotState, RuntimeState
from coyote_sdk.runtime import BotRuntime
from tests.control_plane.conftest import ControlPlaneUnderTest, deploy
from tests.control_plane.test_supervisor import (
    status_of,
    supervised,  # noqa: F401 - a fixture: a control plane with a supervisor and a bot
    until,
)
from tests.sdk._runtime_harness import Harness, eventually, has, publish_bars, status, until_state

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(endpoints: Endpoints) -> Iterator[redis.Redis]:
    """The control plane's side of Redis: the default user."""
    client = redis.Redis.from_url(endpoints.redis_url)
    yield client
    client.close()


@pytest.fixture
def access(admin: redis.Redis, endpoints: Endpoints, unique: str) -> Iterator[RuntimeRedisAccess]:
    """Per-runtime users with a key of this test's own; the users it made go after."""
    yield RuntimeRedisAccess(admin, endpoints.redis_url, secret=secrets.token_bytes(32))
    made = [name for name in admin.acl_users() if unique in name]
    if made:
        admin.acl_deluser(*made)


def user_of(access: RuntimeRedisAccess, runtime_id: str) -> redis.Redis:
    """A client of the runtime's own user, as its runtime connects."""
    return redis.Redis.from_url(access.env(runtime_id)["COYOTE_REDIS_URL"])


def denials(admin: redis.Redis, user: str) -> list[dict[str, Any]]:
    """The commands, keys and channels Redis refused ``user`` (its ACL log, logins aside)."""
    return [
        entry
        for entry in admin.acl_log(count=1000)
        if entry.get("username") == user and entry.get("reason") != "auth"
    ]


# -- a runtime under its own user ----------------------------------------------------------


class Explorer(Bot):
    """Uses everything a bot may: its state, history, last prices, bars, ticks and orders."""

    symbols = ["GOOG", "MSFT"]
    timeframe = "1m"

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.history_lengths: list[int] = []
        self.prices: list[Decimal | None] = []
        self.seen_ticks: list[Trade] = []
        self.recent_ticks: list[list[Trade]] = []
        self.state_keys: list[str] = []

    def on_start(self) -> None:
        self.state["starts"] = self.state.get("starts", 0) + 1
        self.state["scratch"] = {"a": [1, 2]}
        del self.state["scratch"]
        self.state_keys = sorted(self.state)

    def on_bar(self, bar: Bar) -> None:
        if bar.symbol == "GOOG":
            self.history_lengths.append(len(self.history("GOOG", 3)))
            self.prices.append(self.last_price("MSFT"))
            self.recent_ticks.append(self.ticks("MSFT", 5))
            self.buy("GOOG", 1)

    def on_tick(self, trade: Trade) -> None:
        self.seen_ticks.append(trade)


async def test_a_runtime_under_its_own_user_does_everything_it_needs(
    access: RuntimeRedisAccess, admin: redis.Redis, endpoints: Endpoints, unique: str
) -> None:
    harness = Harness(endpoints, unique)  # its own client is the admin's: flags, bars, reads
    await harness.watch_intents()
    try:
        env = access.grant(harness.bot_id)
        own = dataclasses.replace(endpoints, redis_url=env["COYOTE_REDIS_URL"])
        set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
        bot = Explorer()
        # Flag changes can only arrive through the bot's own channel: no polling in this test.
        runtime = BotRuntime(bot, harness.options(flag_refresh_s=60, flag_stale_s=120), own)
        run = asyncio.create_task(runtime.run())
        harness.tasks.append(run)
        await until_state(harness, RuntimeState.RUNNING)  # the flag read, a heartbeat written
        users = {client["user"] for client in admin.client_list()}

        ticks = MarketDataWriter(harness.redis, venue=harness.venue, publish_trades=True)
        trade = Trade(
            symbol="MSFT", venue=harness.venue, ts_ms=1_000, price=Decimal("412.5"), size=Decimal(2)
        )
        while not bot.seen_ticks:  # the bot subscribes a moment after its first heartbeat
            ticks.add_trades([trade])
            await asyncio.sleep(0.1)
        publish_bars(harness, 1, 2, 3)
        await eventually(lambda: has(harness, 3))

        set_control_flag(harness.redis, harness.bot_id, BotState.PAUSED, reason="lunch")
        await until_state(harness, RuntimeState.PAUSED, within=2)
        set_control_flag(harness.redis, harness.bot_id, BotState.STOPPED)
        outcome = await asyncio.wait_for(run, timeout=10)
        beat = status(harness)  # its last heartbeat
        starts = harness.redis.hget(protocol.state_key(harness.bot_id), "starts")
        saved = harness.redis.get(protocol.portfolio_key(harness.bot_id))
    finally:
        await harness.close()

    assert (outcome.code, outcome.state) == (0, RuntimeState.STOPPED)
    assert beat is not None and beat.state is RuntimeState.STOPPED
    # Three orders, and the cancel of them it sent as it stopped (no executor answered them).
    assert (beat.bars, beat.intents, beat.errors) == (3, 4, 0)
    assert username(harness.bot_id) in users  # the runtime's connections are its user's
    assert starts == b"1"
    assert saved is not None  # its portfolio, saved as it stopped
    assert bot.state_keys == ["starts"]
    # The first bar read the history from Redis (all three written before any was published).
    assert bot.history_lengths == [3, 3, 3]
    assert bot.prices == [Decimal("412.5")] * 3
    assert [t.price for t in bot.seen_ticks[:1]] == [Decimal("412.5")]
    assert [[(t.ts_ms, t.price) for t in recent] for recent in bot.recent_ticks] == [
        [(1_000, Decimal("412.5"))]
    ] * 3
    assert denials(admin, username(harness.bot_id)) == []


# -- and nothing else ----------------------------------------------------------------------

OWN = "acme{unique}.own"
OTHER = "acme{unique}.other"  # a neighbour whose id shares the runtime's prefix
MD = protocol.market_data_key("demo", "GOOG", "close", "1m")

REFUSED: dict[str, Callable[[redis.Redis, str, str], object]] = {
    "reading another bot's flag": lambda c, own, other: c.get(protocol.control_flag_key(other)),
    "writing its own flag": lambda c, own, other: c.set(protocol.control_flag_key(own), b"{}"),
    "its flag's generation": lambda c, own, other: c.get(
        protocol.control_flag_key(own) + ":generation"
    ),
    "reading another bot's heartbeat": lambda c, own, other: c.get(protocol.heartbeat_key(other)),
    "writing another bot's heartbeat": lambda c, own, other: c.set(
        protocol.heartbeat_key(other), b"{}"
    ),
    "reading another bot's state": lambda c, own, other: c.hget(protocol.state_key(other), "k"),
    "writing another bot's state": lambda c, own, other: c.hset(
        protocol.state_key(other), "k", "1"
    ),
    "reading another bot's portfolio": lambda c, own, other: c.get(protocol.portfolio_key(other)),
    "writing another bot's portfolio": lambda c, own, other: c.set(
        protocol.portfolio_key(other), b"{}"
    ),
    "reading the halts": lambda c, own, other: c.hget(protocol.HALTS_KEY, f"bot:{own}"),
    "lifting a halt": lambda c, own, other: c.hdel(protocol.HALTS_KEY, f"bot:{own}"),
    "reading the account documents": lambda c, own, other: c.hget(protocol.ACCOUNTS_KEY, "x"),
    "writing an account document": lambda c, own, other: c.hset(protocol.ACCOUNTS_KEY, "x", "{}"),
    "writing market data": lambda c, own, other: c.ts().add(MD, 1, 1.0),
    "overwriting market data": lambda c, own, other: c.set(MD, b"x"),
    "deleting market data": lambda c, own, other: c.delete(MD),
    "publishing a bar": lambda c, own, other: c.publish(
        protocol.bar_channel("demo", "GOOG", "1m"), b"{}"
    ),
    "announcing a flag": lambda c, own, other: c.publish(protocol.control_channel(own), own),
    "reading the paper broker's book": lambda c, own, other: c.hget(
        f"coyote:paper:{own}:orders", "x"
    ),
    "writing the paper broker's book": lambda c, own, other: c.hset(
        f"coyote:paper:{own}:orders", "x", "{}"
    ),
    "FLUSHALL": lambda c, own, other: c.flushall(),
    "FLUSHDB": lambda c, own, other: c.flushdb(),
    "KEYS": lambda c, own, other: c.keys("*"),
    "SCAN": lambda c, own, other: c.scan(0),
    "CONFIG": lambda c, own, other: c.config_get("requirepass"),
    "ACL LIST": lambda c, own, other: c.acl_list(),
    "ACL SETUSER": lambda c, own, other: c.execute_command(
        "ACL", "SETUSER", username(own), "+@all", "~*"
    ),
    "EVAL": lambda c, own, other: c.eval("return redis.call('FLUSHALL')", 0),
    "MULTI": lambda c, own, other: c.execute_command("MULTI"),
    "CLIENT KILL": lambda c, own, other: c.execute_command("CLIENT", "KILL", "ID", "1"),
    "SHUTDOWN": lambda c, own, other: c.execute_command("SHUTDOWN", "NOSAVE"),
}
REFUSED_CHANNELS = {
    "another bot's flag channel": lambda own, other: protocol.control_channel(other),
    "the shared flag channel": lambda own, other: protocol.CONTROL_CHANNEL,
    "the halts channel": lambda own, other: protocol.HALTS_CHANNEL,
    "the accounts channel": lambda own, other: protocol.ACCOUNTS_CHANNEL,
}


@pytest.mark.parametrize("action", sorted(REFUSED))
def test_the_runtimes_user_is_refused(
    access: RuntimeRedisAccess, admin: redis.Redis, unique: str, action: str
) -> None:
    own, other = OWN.format(unique=unique), OTHER.format(unique=unique)
    access.grant(own)
    client = user_of(access, own)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            REFUSED[action](client, own, other)
    finally:
        client.close()


@pytest.mark.parametrize("channel", sorted(REFUSED_CHANNELS))
def test_the_runtimes_user_may_not_follow(
    access: RuntimeRedisAccess, unique: str, channel: str
) -> None:
    own, other = OWN.format(unique=unique), OTHER.format(unique=unique)
    access.grant(own)
    client = user_of(access, own)
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(protocol.control_channel(own))  # its own: allowed
        assert pubsub.get_message(timeout=2)["type"] == "subscribe"  # type: ignore[index]
        pubsub.subscribe(REFUSED_CHANNELS[channel](own, other))
        with pytest.raises(redis.exceptions.NoPermissionError):
            pubsub.get_message(timeout=2)
    finally:
        pubsub.close()
        client.close()


def test_rules_name_the_runtimes_own_keys_exactly() -> None:
    rules = runtime_acl_rules("acme.a*b?[c]")

    assert rules[:3] == ["reset", "resetchannels", "on"]  # nothing of a previous rule set
    assert r"%R~coyote:bot:acme.a\*b\?\[c\]:control" in rules  # a glob matching only this id
    assert r"~coyote:bot:acme.a\*b\?\[c\]:state" in rules
    assert r"&coyote:control:acme.a\*b\?\[c\]" in rules
    assert not [rule for rule in rules if "@" in rule]  # commands one by one, no category
    assert [rule[1:] for rule in rules if rule.startswith("+")] == list(RUNTIME_COMMANDS)
    with pytest.raises(ValueError, match="without spaces"):
        runtime_acl_rules("acme.two words")


# -- the users, kept in step with the database ---------------------------------------------


def test_sync_makes_the_wanted_users_and_deletes_the_others_of_its_organisations(
    access: RuntimeRedisAccess, admin: redis.Redis, unique: str
) -> None:
    ours, theirs = f"a{unique}", f"b{unique}"
    keep, drop, foreign = f"{ours}.keep", f"{ours}.drop", f"{theirs}.bot"
    access.sync({keep, drop}, org_slugs=[ours])
    RuntimeRedisAccess(admin, "redis://r:6379/0", secret=b"another control plane").sync(
        {foreign}, org_slugs=[theirs]
    )

    access.sync({keep}, org_slugs=[ours])

    users = set(admin.acl_users())
    assert username(keep) in users
    assert username(drop) not in users
    assert username(foreign) in users  # not ours to delete
    user = admin.acl_getuser(username(keep))
    password = access.env(keep)["COYOTE_REDIS_URL"].split(":")[2].split("@")[0]
    assert user["passwords"] == [hashlib.sha256(password.encode()).hexdigest()]
    assert user["flags"][0] == "on" and "nopass" not in user["flags"]
    assert user["keys"] == [
        f"%R~coyote:bot:{keep}:control",
        f"%W~coyote:bot:{keep}:heartbeat",
        f"~coyote:bot:{keep}:state",
        f"~coyote:bot:{keep}:portfolio",
        "%R~coyote:md:*",
    ]
    assert user["channels"] == [f"&coyote:control:{keep}", "&coyote:bars:*", "&coyote:trades:*"]
    assert user["commands"] == [f"+{command}" for command in RUNTIME_COMMANDS]


def test_a_user_redis_lost_or_someone_changed_is_written_again(
    access: RuntimeRedisAccess, admin: redis.Redis, unique: str
) -> None:
    runtime_id = f"a{unique}.bot"
    access.sync({runtime_id}, org_slugs=[f"a{unique}"])
    written = admin.acl_getuser(username(runtime_id))

    admin.acl_deluser(username(runtime_id))  # a Redis restart loses every user
    access.sync({runtime_id}, org_slugs=[f"a{unique}"])
    recreated = admin.acl_getuser(username(runtime_id))
    admin.execute_command("ACL", "SETUSER", username(runtime_id), "+@all", "~*", "&*")
    access.sync({runtime_id}, org_slugs=[f"a{unique}"])

    assert recreated == written
    assert admin.acl_getuser(username(runtime_id)) == written


def test_passwords_are_derived_so_any_replica_gives_the_same_url(admin: redis.Redis) -> None:
    key = secrets.token_bytes(32)
    one = RuntimeRedisAccess(admin, "redis://:admin-secret@redis:6379/2", secret=key)
    two = RuntimeRedisAccess(admin, "redis://:admin-secret@redis:6379/2", secret=key)

    url = one.env("acme.sma")["COYOTE_REDIS_URL"]

    assert url == two.env("acme.sma")["COYOTE_REDIS_URL"]
    assert url == f"redis://coyote-bot%3Aacme.sma:{runtime_password(key, 'acme.sma')}@redis:6379/2"
    assert "admin-secret" not in url
    assert runtime_password(key, "acme.sma") != runtime_password(key, "acme.smb")
    assert runtime_password(b"another key", "acme.sma") != runtime_password(key, "acme.sma")


def test_with_acls_off_runtimes_get_the_stacks_url_and_no_user(
    admin: redis.Redis, tmp_path: Path, unique: str
) -> None:
    stack = StackSettings(home=tmp_path, redis_url="redis://:pw@127.0.0.1:16379/0")
    off = Settings(stack=stack, supervisor=SupervisorSettings(redis_acl=False))
    access = runtime_redis_access(off, stack.endpoints(), admin)

    access.sync({f"a{unique}.bot"}, org_slugs=[f"a{unique}"])

    assert not access.acl
    assert access.env(f"a{unique}.bot") == {"COYOTE_REDIS_URL": "redis://:pw@127.0.0.1:16379/0"}
    assert username(f"a{unique}.bot") not in admin.acl_users()


def test_the_local_control_plane_keeps_its_generated_key(
    tmp_path: Path, admin: redis.Redis
) -> None:
    stack = StackSettings(home=tmp_path)
    settings = Settings(stack=stack)

    first = runtime_redis_access(settings, stack.endpoints(), admin).env("acme.sma")
    again = runtime_redis_access(settings, stack.endpoints(), admin).env("acme.sma")

    key = tmp_path / "control-plane" / "redis-acl.key"
    assert first == again
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(key.read_text()) == 64
    assert runtime_password(key.read_text().encode(), "acme.sma") in first["COYOTE_REDIS_URL"]


def test_a_configured_secret_is_used_and_no_key_is_generated(
    tmp_path: Path, admin: redis.Redis
) -> None:
    stack = StackSettings(home=tmp_path)
    settings = Settings(
        stack=stack,
        supervisor=SupervisorSettings(backend="kubernetes", redis_acl_secret="from-a-secret"),
    )

    env = runtime_redis_access(settings, stack.endpoints(), admin).env("acme.sma")

    assert runtime_password(b"from-a-secret", "acme.sma") in env["COYOTE_REDIS_URL"]
    assert not (tmp_path / "control-plane").exists()


# -- the supervisor ------------------------------------------------------------------------


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_text().split("\0")
    return dict(entry.split("=", 1) for entry in raw if "=" in entry)


async def test_the_supervisor_gives_a_runtime_its_user_repairs_it_and_takes_it_back(
    supervised: ControlPlaneUnderTest,  # noqa: F811 - the fixture imported above
    admin: redis.Redis,
    endpoints: Endpoints,
) -> None:
    cp = supervised
    made = deploy(cp.acme.trader, start=True)
    user = username(made["runtime_id"])
    await until(lambda: status_of(cp, "buy")["status"] == "running", what="running")
    rules = admin.acl_getuser(user)
    environ = environ_of(status_of(cp, "buy")["heartbeat"]["pid"])

    admin.acl_deluser(user)  # Redis lost it (and cut the runtime off)
    await until(lambda: admin.acl_getuser(user) is not None, within=10, what="user written again")
    lost_at = time.time() * 1000
    await until(
        lambda: (
            (beat := status_of(cp, "buy")["heartbeat"]) is not None
            and beat["ts_ms"] > lost_at
            and beat["state"] == "running"
        ),
        within=20,
        what="the runtime back on its user",
    )
    restored = admin.acl_getuser(user)
    cp.acme.trader.post("/v1/deployments/buy/stop")
    await until(lambda: status_of(cp, "buy")["status"] == "stopped", within=40, what="stopped")
    await until(lambda: user not in admin.acl_users(), within=10, what="user deleted")

    assert rules is not None and rules["keys"][0] == f"%R~coyote:bot:{made['runtime_id']}:control"
    assert restored == rules
    url = environ["COYOTE_REDIS_URL"]
    assert url.startswith(f"redis://coyote-bot%3A{made['runtime_id']}:")
    assert url != endpoints.redis_url
    assert denials(admin, user) == []
