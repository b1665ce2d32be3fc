"""Property tests of the intent decoder, the executor's first line: whatever arrives on the
intents topic either decodes to a valid intent or raises :class:`ProtocolError` with its code;
nothing else escapes, and a valid intent survives the round trip digit for digit."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coyote_sdk import protocol
from coyote_sdk.protocol import NewOrder, ProtocolError
from tests.sdk.test_protocol import _new_order

pytestmark = pytest.mark.unit

CODES = {"malformed", "unsupported_version", "invalid"}
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
"""Any JSON value."""


def _decode_or_protocol_error(data: bytes | str) -> protocol.OrderIntent | None:
    error: ProtocolError | None = None
    try:
        return protocol.decode_intent(data)
    except ProtocolError as exc:
        error = exc
    assert error is not None and error.code in CODES
    assert str(error)
    return None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_a_protocol_error(data: bytes) -> None:
    _decode_or_protocol_error(data)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json_value_decodes_or_raises_a_protocol_error(value: Any) -> None:
    _decode_or_protocol_error(json.dumps(value))


FIELDS = list(_new_order())


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=3),
    st.sets(st.sampled_from(FIELDS), max_size=2),
)
def test_a_valid_intent_with_fields_changed_or_removed_is_either_still_valid_or_refused(
    changed: dict[str, Any], removed: set[str]
) -> None:
    fields = _new_order(**changed)
    for name in removed:
        fields.pop(name, None)

    intent = _decode_or_protocol_error(json.dumps(fields))

    if intent is not None:
        # What passes holds the protocol's promises: positive quantity, a limit price for a
        # limit order, and it encodes back to what decodes the same.
        assert isinstance(intent, NewOrder)
        assert intent.quantity > 0
        if intent.order_type.value == "limit":
            assert intent.limit_price is not None and intent.limit_price > 0
        assert protocol.decode_intent(protocol.encode(intent)) == intent


DECIMALS = st.decimals(
    min_value=Decimal("1e-12"), max_value=Decimal("1e12"), allow_nan=False, places=12
).filter(lambda d: d > 0)


@settings(max_examples=300, deadline=None)
@given(quantity=DECIMALS, price=DECIMALS)
def test_quantities_and_prices_round_trip_exactly(quantity: Decimal, price: Decimal) -> None:
    fields = _new_order(quantity=str(quantity), limit_price=str(price))

    intent = protocol.decode_intent(json.dumps(fields))

    assert isinstance(intent, NewOrder)
    assert (intent.quantity, intent.limit_price) == (quantity, price)
    again = protocol.decode_intent(protocol.encode(intent))
    assert isinstance(again, NewOrder)
    assert (again.quantity, again.limit_price) == (quantity, price)
