"""Control flags and heartbeats in Redis: what the supervisor writes and reads, and what every
bot runtime obeys (see ``docs/runtime.md``)."""

from __future__ import annotations

import redis

from coyote_sdk import protocol
from coyote_sdk.protocol import BotState, BotStatus, ControlFlag

# Increments the flag's generation, stores the flag and announces it, all in one step, so two
# concurrent writers can never leave an older generation in place of a newer one. The floor
# (ARGV[2]) carries the count over a Redis restart that lost the counter; ARGV[3...] are the
# channels announcing the change (see _channels).
_SET_FLAG = """
local generation = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[2])
if generation <= floor then
  generation = floor + 1
  redis.call('SET', KEYS[2], generation)
end
local flag = cjson.decode(ARGV[1])
flag['generation'] = generation
redis.call('SET', KEYS[1], cjson.encode(flag))
for i = 3, #ARGV do
  redis.call('PUBLISH', ARGV[i], flag['bot_id'])
end
return generation
"""


def _generation_key(bot_id: str) -> str:
    return protocol.control_flag_key(bot_id) + ":generation"


def _channels(bot_id: str) -> tuple[str, str]:
    """Where a change of the bot's flag is announced: its own channel, which its runtime
    follows, and the deprecated shared one runtimes of older SDKs still follow."""
    return protocol.control_channel(bot_id), protocol.CONTROL_CHANNEL


def set_control_flag(
    client: redis.Redis,
    bot_id: str,
    desired: BotState | str,
    *,
    reason: str | None = None,
    set_by: str | None = None,
    min_generation: int = 0,
) -> ControlFlag:
    """Sets a bot's desired state with the next generation and notifies its runtime.

    ``min_generation`` is the last generation the caller knows was written (the supervisor
    keeps it in its database): the new one is above it even if Redis lost its counter, so a
    runtime that saw the old flag does not take the new one for a stale copy.
    """
    draft = ControlFlag(
        bot_id=bot_id,
        desired=BotState(desired),
        generation=0,
        ts_ms=protocol.now_ms(),
        reason=reason,
        set_by=set_by,
    )
    generation = client.eval(
        _SET_FLAG,
        2,
        protocol.control_flag_key(bot_id),
        _generation_key(bot_id),
        protocol.encode(draft),
        min_generation,
        *_channels(bot_id),
    )
    return ControlFlag(
        bot_id=bot_id,
        desired=draft.desired,
        generation=int(generation),
        ts_ms=draft.ts_ms,
        reason=reason,
        set_by=set_by,
    )


def read_control_flag(client: redis.Redis, bot_id: str) -> ControlFlag | None:
    raw = client.get(protocol.control_flag_key(bot_id))
    return None if raw is None else protocol.decode(raw, ControlFlag)


def clear_control_flag(client: redis.Redis, bot_id: str) -> None:
    """Removes a bot's flag: its runtime then emits nothing (fail safe) until one is set."""
    client.delete(protocol.control_flag_key(bot_id))
    for channel in _channels(bot_id):
        client.publish(channel, bot_id)


def read_status(client: redis.Redis, bot_id: str) -> BotStatus | None:
    """The bot runtime's last heartbeat, or None if it expired (dead or stuck) or never was."""
    raw = client.get(protocol.heartbeat_key(bot_id))
    return None if raw is None else protocol.decode(raw, BotStatus)
