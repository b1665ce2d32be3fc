"""The wire protocol: exact decimals, strict decoding, clear errors, a documented schema."""

from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from coyote_sdk import protocol
from coyote_sdk.protocol import ProtocolError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _new_order(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "v": 1,
        "action": "new",
        "intent_id": "019aa5f0-7c1e-7d3a-9a41-3f7e2c1b0a11",
        "ts_ms": 1_763_900_000_000,
        "account_id": "paper-1",
        "bot_id": "sma-cross",
        "symbol": "EURUSD",
        "side": "buy",
        "quantity": "10000",
        "order_type": "limit",
        "limit_price": "1.07219",
        "time_in_force": "day",
    }
    fields.update(overrides)
    return fields


def test_new_order_round_trips_with_exact_decimals() -> None:
    intent = protocol.decode_intent(json.dumps(_new_order(quantity="0.1")))

    again = protocol.decode_intent(protocol.encode(intent))

    assert isinstance(intent, protocol.NewOrder)
    assert again == intent
    assert intent.quantity + Decimal("0.2") == Decimal("0.3")
    assert json.loads(protocol.encode(intent))["limit_price"] == "1.07219"


def test_a_json_number_quantity_is_read_exactly_not_through_a_float() -> None:
    intent = protocol.decode_intent(json.dumps(_new_order()).replace('"10000"', "0.1"))

    assert intent.quantity == Decimal("0.1")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        (b"{not json", "malformed", "malformed"),
        (b"[1, 2]", "invalid", "Expected `object`"),
        (json.dumps(_new_order(v=2)), "unsupported_version", "version 2 is not supported"),
        (json.dumps(_new_order(qty="1")), "invalid", "unknown field `qty`"),
        (json.dumps(_new_order(action="teleport")), "invalid", "Invalid value 'teleport'"),
        (json.dumps(_new_order(quantity="-1")), "invalid", "`quantity` must be a positive"),
        (json.dumps(_new_order(quantity="NaN")), "invalid", "`quantity` must be a positive"),
        (json.dumps(_new_order(limit_price=None)), "invalid", "`limit_price` is required"),
        (
            json.dumps(_new_order(order_type="market")),
            "invalid",
            "`limit_price` is not allowed for a market order",
        ),
        (json.dumps(_new_order(symbol="goog")), "invalid", "`$.symbol`"),
        (json.dumps(_new_order(intent_id="not-a-uuid")), "invalid", "Invalid UUID"),
        (json.dumps(_new_order(side="hold")), "invalid", "`$.side`"),
    ],
)
def test_bad_intents_are_rejected_with_a_code_and_a_message_naming_the_problem(
    payload: bytes | str, code: str, message: str
) -> None:
    with pytest.raises(ProtocolError) as raised:
        protocol.decode_intent(payload)

    assert raised.value.code == code
    assert message in str(raised.value)


def test_intent_actions_decode_to_their_own_types() -> None:
    common = {k: _new_order()[k] for k in ("intent_id", "ts_ms", "account_id", "bot_id")}
    target = str(protocol.new_intent_id())

    cancel = protocol.decode_intent(json.dumps({**common, "action": "cancel", "order_id": target}))
    cancel_all = protocol.decode_intent(json.dumps({**common, "action": "cancel_all"}))
    replace = protocol.decode_intent(
        json.dumps({**common, "action": "replace", "order_id": target, "limit_price": "1.1"})
    )

    assert isinstance(cancel, protocol.CancelOrder)
    assert cancel.order_id == uuid.UUID(target)
    assert isinstance(cancel_all, protocol.CancelAll)
    assert cancel_all.symbol is None
    assert isinstance(replace, protocol.ReplaceOrder)


def test_a_replace_that_changes_nothing_is_invalid() -> None:
    common = {k: _new_order()[k] for k in ("intent_id", "ts_ms", "account_id", "bot_id")}
    payload = {**common, "action": "replace", "order_id": str(protocol.new_intent_id())}

    with pytest.raises(ProtocolError, match="must change"):
        protocol.decode_intent(json.dumps(payload))


def test_intent_ids_are_uuid7_and_ordered_by_creation_time() -> None:
    ids = [protocol.new_intent_id() for _ in range(1000)]

    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_bars_must_be_consistent() -> None:
    bar = {
        "symbol": "GOOG",
        "venue": "nasdaq",
        "timeframe": "1d",
        "ts_ms": 0,
        "open": "100",
        "high": "104.06",
        "low": "95.96",
        "close": "100.34",
        "volume": "22351900",
    }

    decoded = protocol.decode(json.dumps(bar), protocol.Bar)
    with pytest.raises(ProtocolError, match="inconsistent"):
        protocol.decode(json.dumps({**bar, "high": "99"}), protocol.Bar)

    assert decoded.timeframe is protocol.Timeframe.D1
    assert decoded.timeframe.milliseconds == 86_400_000


def test_a_trade_report_needs_its_fill_and_a_rejection_its_code() -> None:
    intent_id = protocol.new_intent_id()
    common = dict(
        report_id=protocol.new_intent_id(),
        intent_id=intent_id,
        order_id=intent_id,
        ts_ms=1,
        account_id="paper-1",
        bot_id="b",
        symbol="GOOG",
        side=protocol.Side.BUY,
        quantity=Decimal(10),
    )

    filled = protocol.ExecutionReport(
        **common,
        exec_type=protocol.ExecType.TRADE,
        order_status=protocol.OrderStatus.FILLED,
        filled_quantity=Decimal(10),
        last_quantity=Decimal(10),
        last_price=Decimal("101.5"),
    )
    decoded = protocol.decode(protocol.encode(filled), protocol.ExecutionReport)
    bad_trade = {**json.loads(protocol.encode(filled)), "last_price": None}
    bad_reject = {
        **json.loads(protocol.encode(filled)),
        "exec_type": "rejected",
        "order_status": "rejected",
    }

    assert decoded == filled
    assert decoded.order_status.is_terminal
    with pytest.raises(ProtocolError, match="last_quantity"):
        protocol.decode(json.dumps(bad_trade), protocol.ExecutionReport)
    with pytest.raises(ProtocolError, match="reject_code"):
        protocol.decode(json.dumps(bad_reject), protocol.ExecutionReport)


def test_control_flag_round_trip() -> None:
    flag = protocol.ControlFlag(
        bot_id="sma-cross", desired=protocol.BotState.PAUSED, generation=3, ts_ms=5, set_by="ops"
    )

    assert protocol.decode(protocol.encode(flag), protocol.ControlFlag) == flag
    assert protocol.control_flag_key("sma-cross") == "coyote:bot:sma-cross:control"


def test_the_published_json_schema_matches_the_code() -> None:
    published = json.loads((ROOT / "docs" / "schemas" / "protocol-v1.json").read_text())

    assert published == protocol.json_schema(), (
        "docs/schemas/protocol-v1.json is stale: regenerate it with "
        "`coyote-sdk protocol schema > docs/schemas/protocol-v1.json`"
    )


def test_every_json_example_in_the_protocol_doc_decodes_as_its_heading_says() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text()
    intents = {"NewOrder", "CancelOrder", "CancelAll", "ReplaceOrder"}
    types = {t.__name__: t for t in protocol.MESSAGE_TYPES}

    checked = []
    for section in doc.split("\n### ")[1:]:
        heading = section.split("\n", 1)[0].strip()
        for example in re.findall(r"```json\n(.*?)```", section, flags=re.DOTALL):
            target = protocol.OrderIntent if heading in intents else types[heading]
            message = protocol.decode(example, target)  # type: ignore[arg-type]
            assert type(message).__name__ == heading
            checked.append(heading)

    assert set(checked) == set(types)


def test_decimal_fields_are_strings_in_the_schema() -> None:
    schema = protocol.json_schema()["$defs"]["NewOrder"]["properties"]["quantity"]

    assert schema["type"] == "string"
    assert msgspec.json.decode(b'"1.5"', type=Decimal) == Decimal("1.5")
