"""The accounts file: parsing, clear errors, and the brokers built from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from coyote_executor.accounts import accounts_from_mapping, load_accounts
from coyote_executor.brokers import AlpacaBroker, OandaBroker, PaperBroker, build_brokers

pytestmark = pytest.mark.unit

RISK = {"instruments": {"EURUSD": {"tick_size": "0.00001"}}}


def test_the_example_accounts_file_loads() -> None:
    accounts = load_accounts(Path(__file__).parents[2] / "examples" / "accounts.toml")

    demo = accounts["demo.paper"]
    assert demo.broker == "paper" and demo.venue == "demo-fx"
    assert demo.paper is not None and str(demo.paper.fee_bps) == "0.2"
    assert "EURUSD" in demo.risk.instruments


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"broker": "ib", "venue": "x"}, "accounts.a.broker: 'ib' is not one of"),
        ({"broker": "paper"}, "accounts.a.venue is required"),
        ({"broker": "alpaca", "venue": "x"}, "accounts.a.credentials is required"),
        ({"venue": "x", "colour": "red"}, "accounts.a.colour is not a setting"),
        ({"venue": "x", "paper": {"fee_bps": "lots"}}, "accounts.a.paper.fee_bps: 'lots'"),
        ({"venue": "x", "risk": {"account": {"max_position": "-1"}}}, "accounts.a.risk:"),
    ],
)
def test_bad_account_names_the_field(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        accounts_from_mapping({"accounts": {"a": spec}})


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text("[accounts.a\n")
    with pytest.raises(ValueError, match=r"accounts\.toml is not valid TOML"):
        load_accounts(path)


def test_brokers_are_built_per_kind_and_environment() -> None:
    accounts = accounts_from_mapping(
        {
            "accounts": {
                "p1": {"venue": "x", "risk": RISK},
                "p2": {"venue": "x", "risk": RISK},
                "al": {"broker": "alpaca", "venue": "us", "credentials": "coyote/al"},
                "oa": {
                    "broker": "oanda",
                    "venue": "fx",
                    "credentials": "coyote/oa",
                    "options": {"oanda_account_id": "101-004-1-001", "environment": "live"},
                },
            }
        }
    )
    brokers = build_brokers(accounts, redis=aioredis.Redis(), vault=object())

    assert isinstance(brokers["p1"], PaperBroker) and brokers["p1"] is brokers["p2"]
    assert isinstance(brokers["al"], AlpacaBroker)
    assert isinstance(brokers["oa"], OandaBroker)


def test_oanda_account_without_its_v20_id_is_refused() -> None:
    accounts = accounts_from_mapping(
        {"accounts": {"oa": {"broker": "oanda", "venue": "fx", "credentials": "coyote/oa"}}}
    )
    with pytest.raises(ValueError, match="oanda_account_id is required"):
        build_brokers(accounts, redis=aioredis.Redis(), vault=object())
