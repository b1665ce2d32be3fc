"""Decoding an order intent: the executor's decoder against a bare msgspec decode and pydantic v2.

The executor decodes every record it consumes with ``coyote_sdk.protocol.decode_intent`` (see
``Executor._handle_intents``): the tagged union of the four intents, every field validated (the
id patterns, ``ts_ms >= 0``, ``v == 1``, enums, decimals) and ``NewOrder.__post_init__`` (positive
quantity and prices, the prices its order type needs). Timed on the same bytes:

- the floor: ``msgspec.json.decode`` into a plain struct of the same fields and types (no
  constraint, no ``__post_init__``, no union): what a decode without validation costs;
- for scale: pydantic v2 (``model_validate_json``) into a model of the same shape and the same
  checks.

The intents are market orders as a bot runtime sends them (every field present, defaults
included), 1,000 different ones cycled so that ids and values vary. Target (issue 5): near the
bare msgspec decode, which the issue puts at ~0.5 us against ~2.3 us for pydantic.

Run: .venv/bin/python bench/decode.py [--no-record]
"""

from __future__ import annotations

import argparse
import sys
import typing
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import msgspec
import pydantic

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, measurement, record

from coyote_sdk import protocol
from coyote_sdk.protocol import NewOrder, OrderType, Side, TimeInForce

DECODES = 200_000


def intents(count: int) -> list[bytes]:
    """``count`` encoded market orders of one shape, as a bot runtime produces them."""
    now = protocol.now_ms()
    return [
        protocol.encode(
            NewOrder(
                intent_id=protocol.new_intent_id(),
                ts_ms=now + i,
                account_id=f"bench.a{i % 48:02d}",
                bot_id=f"bench-a{i % 48:02d}-b{i % 2}",
                symbol="EURUSD",
                side=Side.BUY if i % 2 else Side.SELL,
                quantity=Decimal(1 + i % 3),
            )
        )
        for i in range(count)
    ]


def _without_checks(struct: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """A struct of ``struct``'s fields and types with their constraints stripped (no pattern, no
    bound), no ``__post_init__`` and the union's tag as a plain field: the floor."""
    hints = typing.get_type_hints(struct)  # without include_extras: the Meta constraints go
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [("action", str)]
    for field in msgspec.structs.fields(struct):
        if field.required:
            fields.append((field.name, hints[field.name]))
        else:
            fields.append((field.name, hints[field.name], field.default))
    return msgspec.defstruct(f"Plain{struct.__name__}", fields, kw_only=True, frozen=True)


PlainNewOrder = _without_checks(NewOrder)


def _pattern(alias: Any) -> str:
    """The regular expression of one of the protocol's constrained string types."""
    _, meta = typing.get_args(alias)
    return str(meta.pattern)


_IDENTIFIER = _pattern(protocol.Identifier)
_SYMBOL = _pattern(protocol.Symbol)


class PydanticNewOrder(pydantic.BaseModel):
    """NewOrder in pydantic v2 with the same checks as the protocol's."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    action: Literal["new"]
    v: Literal[1] = 1
    intent_id: uuid.UUID
    ts_ms: Annotated[int, pydantic.Field(ge=0)]
    account_id: Annotated[str, pydantic.Field(pattern=_IDENTIFIER)]
    bot_id: Annotated[str, pydantic.Field(pattern=_IDENTIFIER)]
    bar_ts_ms: Annotated[int, pydantic.Field(ge=0)] | None = None
    symbol: Annotated[str, pydantic.Field(pattern=_SYMBOL)]
    side: Side
    quantity: Annotated[Decimal, pydantic.Field(gt=0, allow_inf_nan=False)]
    order_type: OrderType = OrderType.MARKET
    limit_price: Annotated[Decimal, pydantic.Field(gt=0, allow_inf_nan=False)] | None = None
    stop_price: Annotated[Decimal, pydantic.Field(gt=0, allow_inf_nan=False)] | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    tag: Annotated[str, pydantic.Field(max_length=64)] | None = None

    @pydantic.model_validator(mode="after")
    def _prices_match_the_order_type(self) -> Self:
        needs_limit = self.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        needs_stop = self.order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
        if needs_limit != (self.limit_price is not None):
            raise ValueError("limit_price does not match the order type")
        if needs_stop != (self.stop_price is not None):
            raise ValueError("stop_price does not match the order type")
        return self


def _per_decode_us(decode: Callable[[bytes], object], raws: list[bytes]) -> float:
    rounds = DECODES // len(raws)

    def loop() -> None:
        for _ in range(rounds):
            for raw in raws:
                decode(raw)

    return round(best_of(3, loop) / (rounds * len(raws)) * 1e6, 3)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="example: .venv/bin/python bench/decode.py --no-record",
    )
    parser.add_argument("--no-record", action="store_true", help="print, do not record")
    args = parser.parse_args()
    raws = intents(1000)
    # The three decode the same bytes into the same values: the comparison is like for like.
    sample = raws[0]
    expected = protocol.decode_intent(sample)
    bare = msgspec.json.Decoder(PlainNewOrder)
    assert msgspec.structs.asdict(bare.decode(sample)) == msgspec.structs.asdict(expected) | {
        "action": "new"
    }
    assert PydanticNewOrder.model_validate_json(sample).model_dump() == msgspec.structs.asdict(
        bare.decode(sample)
    )
    size = sum(map(len, raws)) / len(raws)
    print(f"intent: {size:.0f} bytes on average, e.g. {sample.decode()}")

    coyote_us = _per_decode_us(protocol.decode_intent, raws)
    bare_us = _per_decode_us(bare.decode, raws)
    pydantic_us = _per_decode_us(PydanticNewOrder.model_validate_json, raws)
    entries = [
        measurement(
            "executor.intent_decode_us",
            coyote_us,
            "us",
            "bare msgspec decode of the same bytes into a plain struct (no validation)",
            bare_us,
        ),
        measurement(
            "executor.intent_decode_vs_pydantic_us",
            coyote_us,
            "us",
            f"pydantic {pydantic.VERSION} model_validate_json, same shape and checks",
            pydantic_us,
        ),
    ]
    if args.no_record:
        for entry in entries:
            print(entry)
    else:
        record(entries)


if __name__ == "__main__":
    main()
