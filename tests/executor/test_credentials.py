"""Broker credentials from Vault KV v2: cached, rotated, never shown."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import hvac
import hvac.exceptions
import pytest
import respx

from coyote_executor.brokers.alpaca import PAPER_URL, AlpacaBroker
from coyote_executor.brokers.base import BrokerAuthError, BrokerOrder, BrokerUnavailable
from coyote_executor.credentials import (
    Credentials,
    CredentialsError,
    CredentialsUnavailable,
    StaticCredentials,
    VaultCredentials,
    require,
)
from coyote_sdk.protocol import OrderStatus, Side

FIRST = {"api_key_id": "PKFIRST00000000000", "api_secret_key": "first-secret-value-1"}
SECOND = {"api_key_id": "PKSECOND0000000000", "api_secret_key": "second-secret-value-2"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def write(client: hvac.Client, path: str, secret: dict[str, str]) -> None:
    client.secrets.kv.v2.create_or_update_secret(path=path, secret=secret, mount_point="secret")


# -- AGAINST VAULT ---------------------------------------------------------------------------


@pytest.mark.integration
async def test_secret_is_cached_until_its_ttl_runs_out(
    vault: tuple[hvac.Client, str], clock: Clock
) -> None:
    client, prefix = vault
    path = f"{prefix}/alpaca-paper"
    write(client, path, FIRST)
    credentials = VaultCredentials(client, path, ttl_s=60, clock=clock)

    first = await credentials.get()
    write(client, path, SECOND)
    clock.now += 59
    cached = await credentials.get()
    clock.now += 2
    rotated = await credentials.get()

    assert dict(first) == FIRST
    assert dict(cached) == FIRST
    assert dict(rotated) == SECOND


@pytest.mark.integration
async def test_invalidate_reads_a_rotated_secret_at_once(
    vault: tuple[hvac.Client, str], clock: Clock
) -> None:
    client, prefix = vault
    path = f"{prefix}/alpaca-paper"
    write(client, path, FIRST)
    credentials = VaultCredentials(client, path, ttl_s=60, clock=clock)
    await credentials.get()
    write(client, path, SECOND)

    credentials.invalidate()

    assert dict(await credentials.get()) == SECOND


@pytest.mark.integration
async def test_missing_key_error_names_the_path_and_key_but_no_value(
    vault: tuple[hvac.Client, str],
) -> None:
    client, prefix = vault
    path = f"{prefix}/alpaca-paper"
    write(client, path, {"api_key_id": FIRST["api_key_id"]})
    credentials = VaultCredentials(client, path, required_keys=("api_key_id", "api_secret_key"))

    with pytest.raises(CredentialsError) as caught:
        await credentials.get()

    message = str(caught.value)
    assert f"secret/{path}" in message
    assert "'api_secret_key'" in message
    assert FIRST["api_key_id"] not in message
    assert caught.value.code == "broker.credentials"


@pytest.mark.integration
async def test_missing_secret_error_names_the_path(vault: tuple[hvac.Client, str]) -> None:
    client, prefix = vault

    with pytest.raises(CredentialsError, match=f"no secret at secret/{prefix}/nowhere"):
        await VaultCredentials(client, f"{prefix}/nowhere").get()


@pytest.mark.integration
async def test_reprs_redact_the_secret(vault: tuple[hvac.Client, str]) -> None:
    client, prefix = vault
    path = f"{prefix}/alpaca-paper"
    write(client, path, FIRST)
    credentials = VaultCredentials(client, path)

    secret = await credentials.get()

    for text in (repr(credentials), str(credentials), repr(secret), str(secret), f"{secret}"):
        assert FIRST["api_secret_key"] not in text
        assert FIRST["api_key_id"] not in text
    assert "api_secret_key" in repr(secret)  # the key names are fine to show
    assert f"secret/{path}" in repr(credentials)


@pytest.mark.integration
async def test_account_secrets_live_under_coyote_accounts(
    vault: tuple[hvac.Client, str], unique: str
) -> None:
    client, _ = vault
    account = f"test-{unique}"
    write(client, f"coyote/accounts/{account}", {"token": "oanda-token-value"})
    try:
        credentials = VaultCredentials.for_account(client, account, required_keys=("token",))

        secret = await credentials.get()
    finally:
        client.secrets.kv.v2.delete_metadata_and_all_versions(path=f"coyote/accounts/{account}")

    assert credentials.location == f"secret/coyote/accounts/{account}"
    assert require(secret, "token") == "oanda-token-value"


@pytest.mark.integration
async def test_adapter_picks_up_a_key_rotated_in_vault_after_a_401(
    vault: tuple[hvac.Client, str],
) -> None:
    client, prefix = vault
    path = f"{prefix}/alpaca-paper"
    write(client, path, FIRST)
    credentials = VaultCredentials(client, path, ttl_s=3600)
    await credentials.get()  # the executor has been running with the first key
    write(client, path, SECOND)  # an operator rotates it; Alpaca revokes the old one
    broker = AlpacaBroker({"alpaca-paper": credentials})
    order = BrokerOrder(
        client_order_id="0190c7a2-5a9e-7c1e-8f3b-6d2f4a1b9e01",
        account_id="alpaca-paper",
        symbol="AAPL",
        side=Side.BUY,
        quantity=Decimal("1"),
    )

    with respx.mock(base_url=PAPER_URL) as api:
        route = api.post("/v2/orders").mock(
            side_effect=lambda request: (
                httpx.Response(200, json=_accepted(json.loads(request.content)))
                if request.headers["APCA-API-KEY-ID"] == SECOND["api_key_id"]
                else httpx.Response(
                    401, json={"code": 40110000, "message": "request is not authorized"}
                )
            )
        )
        state = await broker.submit(order)
    await broker.close()

    assert state.status is OrderStatus.NEW
    assert [c.request.headers["APCA-API-KEY-ID"] for c in route.calls] == [
        FIRST["api_key_id"],
        SECOND["api_key_id"],
    ]


def _accepted(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "61e69015-8549-4bfd-b9c3-01e75843f47d",
        "client_order_id": body["client_order_id"],
        "created_at": "2021-03-16T18:38:01.942282Z",
        "updated_at": "2021-03-16T18:38:01.942282Z",
        "submitted_at": "2021-03-16T18:38:01.937734Z",
        "symbol": body["symbol"],
        "asset_class": "us_equity",
        "qty": body["qty"],
        "filled_qty": "0",
        "filled_avg_price": None,
        "type": body["type"],
        "side": body["side"],
        "time_in_force": body["time_in_force"],
        "limit_price": None,
        "stop_price": None,
        "status": "accepted",
        "replaced_by": None,
        "replaces": None,
    }


# -- WITHOUT VAULT ---------------------------------------------------------------------------


class FlakyVault:
    """Just enough of an hvac client: answers a secret, or fails as told."""

    def __init__(self) -> None:
        self.secret: dict[str, str] = dict(FIRST)
        self.error: Exception | None = None
        self.reads = 0
        kv2 = type("KV2", (), {"read_secret_version": self.read_secret_version})
        kv = type("KV", (), {"v2": kv2})
        self.secrets = type("Secrets", (), {"kv": kv})

    def read_secret_version(self, **_: Any) -> dict[str, Any]:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return {"data": {"data": dict(self.secret), "metadata": {"version": self.reads}}}


@pytest.fixture
def flaky() -> FlakyVault:
    return FlakyVault()


@pytest.mark.unit
async def test_vault_outage_keeps_the_cached_secret_after_the_ttl(
    flaky: FlakyVault, clock: Clock
) -> None:
    credentials = VaultCredentials(flaky, "coyote/accounts/x", ttl_s=60, clock=clock)
    await credentials.get()
    flaky.error = hvac.exceptions.VaultDown("sealed")
    clock.now += 61

    stale = await credentials.get()
    again = await credentials.get()  # within the pause after a failure: Vault is not asked

    assert dict(stale) == FIRST
    assert dict(again) == FIRST
    assert flaky.reads == 2


@pytest.mark.unit
async def test_vault_outage_after_invalidate_is_an_unavailable_error(
    flaky: FlakyVault, clock: Clock
) -> None:
    credentials = VaultCredentials(flaky, "coyote/accounts/x", clock=clock)
    await credentials.get()
    flaky.error = ConnectionError("connection refused")

    credentials.invalidate()
    with pytest.raises(CredentialsUnavailable) as caught:
        await credentials.get()

    assert isinstance(caught.value, BrokerUnavailable)
    assert "secret/coyote/accounts/x" in str(caught.value)


@pytest.mark.unit
async def test_non_string_values_are_refused_without_showing_them(flaky: FlakyVault) -> None:
    flaky.secret = {"token": 12345}  # type: ignore[dict-item]

    with pytest.raises(CredentialsError) as caught:
        await VaultCredentials(flaky, "coyote/accounts/x").get()

    assert "'token'" in str(caught.value)
    assert "12345" not in str(caught.value)


@pytest.mark.unit
async def test_static_credentials_require_names_the_missing_key() -> None:
    secret = await StaticCredentials({"token": "abc"}, source="the test secret").get()

    with pytest.raises(CredentialsError, match="the test secret has no key 'api_key_id'"):
        require(secret, "api_key_id")
    assert isinstance(CredentialsError("x"), BrokerAuthError)
    assert "abc" not in repr(secret)


@pytest.mark.unit
def test_credentials_behave_as_a_read_only_mapping() -> None:
    secret = Credentials({"a": "1", "b": "2"}, source="s")

    assert dict(secret) == {"a": "1", "b": "2"}
    assert len(secret) == 2
    assert secret == {"a": "1", "b": "2"}
    writable: Any = secret  # a Mapping has no item assignment; prove it at run time
    with pytest.raises(TypeError):
        writable["a"] = "3"
