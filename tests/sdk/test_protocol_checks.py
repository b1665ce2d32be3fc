"""The intents' checks that run in ``__post_init__`` rather than in msgspec: the id and symbol
patterns (behind a bounded cache of strings already matched) and the hand-inlined decimal and
order-type rules of NewOrder and ExecutionReport. Each must refuse exactly what msgspec's pattern
and the plain rules refuse, whether the cache has seen the value or not."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coyote_sdk import protocol
from coyote_sdk.protocol import ProtocolError, _MatchCache
from tests.sdk.test_protocol import _new_order

pytestmark = pytest.mark.unit

IDENTIFIER_PATTERN = typing.get_args(protocol.Identifier)[1].pattern
SYMBOL_PATTERN = typing.get_args(protocol.Symbol)[1].pattern
CACHES = (protocol._identifiers, protocol._symbols)


@pytest.fixture(autouse=True)
def cold_caches() -> Iterator[None]:
    """Each test starts with caches that have seen nothing, whatever ran before it."""
    for cache in CACHES:
        cache.matched.clear()
    yield
    for cache in CACHES:
        cache.matched.clear()


def _refusal(payload: dict[str, Any]) -> ProtocolError | None:
    try:
        protocol.decode_intent(json.dumps(payload))
    except ProtocolError as exc:
        return exc
    return None


def _msgspec_refusal(value: str, alias: Any) -> str | None:
    """What msgspec's own pattern check says of ``value``: the reference the cache must match."""
    try:
        msgspec.json.decode(msgspec.json.encode(value), type=alias)
    except msgspec.ValidationError as exc:
        return str(exc)
    return None


# -- THE ID AND SYMBOL CACHE ---------------------------------------------------------------


def test_a_bad_id_is_refused_after_good_ids_have_filled_the_cache() -> None:
    capacity = protocol._MATCH_CACHE_CAPACITY
    for i in range(capacity):
        assert _refusal(_new_order(account_id=f"acct-{i}", bot_id="sma-cross")) is None

    refused = _refusal(_new_order(account_id="acct 1"))

    assert refused is not None
    assert refused.code == "invalid"
    assert str(refused) == (
        f"Expected `str` matching regex {IDENTIFIER_PATTERN!r} - at `$.account_id`"
    )


def test_a_flood_of_distinct_ids_never_grows_the_caches_past_their_capacity() -> None:
    capacity = protocol._MATCH_CACHE_CAPACITY

    for i in range(2 * capacity + 10):
        assert _refusal(_new_order(account_id=f"a{i}", bot_id=f"b{i}", symbol=f"S{i}")) is None

    assert all(0 < len(cache.matched) <= capacity for cache in CACHES)
    assert _refusal(_new_order(bot_id="-starts-with-a-dash")) is not None
    assert _refusal(_new_order(symbol="lower")) is not None


def test_a_full_cache_is_emptied_and_keeps_only_what_matched() -> None:
    cache = _MatchCache(r"^[a-z]+$", capacity=3)

    for value in ("a", "b", "c"):
        cache.require_match(value, "field")
    with pytest.raises(ValueError, match=r"at `\$\.field`"):
        cache.require_match("NOT", "field")
    cache.require_match("d", "field")

    assert cache.matched == {"d"}


def test_an_id_matched_as_an_identifier_is_not_taken_for_a_symbol() -> None:
    # "eurusd" is a valid account id but not a canonical symbol: the two caches must not mix.
    assert _refusal(_new_order(account_id="eurusd", symbol="EURUSD")) is None

    refused = _refusal(_new_order(account_id="eurusd", symbol="eurusd"))

    assert refused is not None
    assert str(refused) == f"Expected `str` matching regex {SYMBOL_PATTERN!r} - at `$.symbol`"


@pytest.mark.parametrize("action", ["cancel", "cancel_all", "replace"])
def test_every_intent_checks_its_ids(action: str) -> None:
    payload = {
        "action": action,
        "intent_id": str(protocol.new_intent_id()),
        "ts_ms": 1,
        "account_id": "paper-1",
        "bot_id": "bad bot",
        "order_id": str(protocol.new_intent_id()),
        "quantity": "1",
    }
    if action == "cancel":
        del payload["quantity"]
    if action == "cancel_all":
        del payload["order_id"], payload["quantity"]
        payload["symbol"] = "GOOG"

    refused = _refusal(payload)
    refused_symbol = _refusal({**payload, "bot_id": "b", "symbol": "goog"})

    assert refused is not None and "`$.bot_id`" in str(refused)
    if action == "cancel_all":
        assert refused_symbol is not None and "`$.symbol`" in str(refused_symbol)


def test_an_intent_built_in_python_with_a_bad_id_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match=r"at `\$\.bot_id`"):
        protocol.CancelAll(
            intent_id=protocol.new_intent_id(), ts_ms=1, account_id="paper-1", bot_id="my bot"
        )


IDS = st.from_regex(IDENTIFIER_PATTERN) | st.text(max_size=70)
SYMBOLS = st.from_regex(SYMBOL_PATTERN) | st.text(alphabet="ABCXYZabc019./_-\n ", max_size=40)


@settings(max_examples=400, deadline=None)
@given(field=st.sampled_from(["account_id", "bot_id", "symbol"]), data=st.data())
def test_a_cached_and_an_uncached_value_are_judged_alike_and_as_msgspec_judges_them(
    field: str, data: st.DataObject
) -> None:
    alias = protocol.Symbol if field == "symbol" else protocol.Identifier
    value = data.draw(SYMBOLS if field == "symbol" else IDS)
    for cache in CACHES:
        cache.matched.clear()
    expected = _msgspec_refusal(value, alias)

    cold = _refusal(_new_order(**{field: value}))
    warm = _refusal(_new_order(**{field: value}))

    if expected is None:
        assert cold is None and warm is None
    else:
        assert cold is not None and warm is not None
        assert (cold.code, str(cold)) == (warm.code, str(warm))
        assert cold.code == "invalid"
        assert str(cold) == f"{expected} - at `$.{field}`"


def test_the_intents_ids_have_the_identifier_and_symbol_json_schema() -> None:
    schema = protocol.json_schema()["$defs"]

    assert schema["NewOrder"]["properties"]["account_id"] == msgspec.json.schema(
        protocol.Identifier
    )
    assert schema["NewOrder"]["properties"]["symbol"] == msgspec.json.schema(protocol.Symbol)


# -- THE INLINED RULES ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"quantity": "0"}, "`quantity` must be a positive finite decimal, got '0'"),
        ({"quantity": "Infinity"}, "`quantity` must be a positive finite decimal"),
        ({"limit_price": "-1"}, "`limit_price` must be a positive finite decimal, got '-1'"),
        ({"limit_price": "sNaN"}, "`limit_price` must be a positive finite decimal"),
        ({"stop_price": "0", "order_type": "stop_limit"}, "`stop_price` must be a positive"),
        ({"order_type": "stop_limit"}, "`stop_price` is required for a stop_limit order"),
        ({"order_type": "stop", "stop_price": "1"}, "`limit_price` is not allowed for a stop"),
        ({"order_type": "market", "limit_price": None, "stop_price": "1"}, "`stop_price` is not"),
    ],
)
def test_a_new_order_breaking_a_rule_is_refused_for_it(
    overrides: dict[str, Any], message: str
) -> None:
    refused = _refusal(_new_order(**overrides))

    assert refused is not None and refused.code == "invalid"
    assert message in str(refused)


@pytest.mark.parametrize(
    ("order_type", "prices"),
    [
        ("market", {}),
        ("limit", {"limit_price": "1"}),
        ("stop", {"stop_price": "1"}),
        ("stop_limit", {"limit_price": "1", "stop_price": "2"}),
    ],
)
def test_each_order_type_passes_with_the_prices_it_needs(
    order_type: str, prices: dict[str, str]
) -> None:
    fields = _new_order(order_type=order_type, **prices)
    if "limit_price" not in prices:
        del fields["limit_price"]

    assert _refusal(fields) is None


def _report(**overrides: Any) -> protocol.ExecutionReport:
    intent_id = protocol.new_intent_id()
    fields: dict[str, Any] = {
        "report_id": intent_id,
        "intent_id": intent_id,
        "order_id": intent_id,
        "ts_ms": 1,
        "account_id": "paper-1",
        "bot_id": "b",
        "symbol": "GOOG",
        "side": protocol.Side.BUY,
        "exec_type": protocol.ExecType.ACCEPTED,
        "order_status": protocol.OrderStatus.NEW,
        "quantity": Decimal(10),
    }
    return protocol.ExecutionReport(**(fields | overrides))


@pytest.mark.parametrize("field", ["quantity", "filled_quantity", "leaves_quantity"])
@pytest.mark.parametrize("value", ["-1", "NaN", "-Infinity", "Infinity"])
def test_a_report_with_a_negative_or_non_finite_quantity_is_refused(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"`{field}` must be a non-negative finite decimal"):
        _report(**{field: Decimal(value)})


def test_only_a_rejection_may_leave_symbol_and_side_empty() -> None:
    rejected = protocol.ExecType.REJECTED

    _report(exec_type=rejected, symbol=None, side=None, reject_code="decode.malformed")
    with pytest.raises(ValueError, match="a rejection needs a `reject_code`"):
        _report(exec_type=rejected, reject_code="")
    with pytest.raises(ValueError, match="only a rejection may leave"):
        _report(side=None)
    with pytest.raises(ValueError, match="a trade report needs"):
        _report(exec_type=protocol.ExecType.TRADE, last_quantity=Decimal(1))
