"""``coyote-executor verify``: positions recomputed from fills, for the accounts of the file or
of the control plane's account documents, as ``run`` would serve them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import redis
import sqlalchemy
from typer.testing import CliRunner

from coyote_executor.cli import app
from coyote_executor.models import Position
from coyote_executor.store import Store
from coyote_sdk import protocol
from coyote_sdk.config import Endpoints
from coyote_sdk.protocol import AccountDocument
from tests.control_plane.conftest import ControlPlaneUnderTest, add_account, control_plane

EXAMPLE_ACCOUNTS = Path(__file__).parents[2] / "examples" / "accounts.toml"


@pytest.fixture
def cp(postgres: sqlalchemy.Engine, unique: str) -> Iterator[ControlPlaneUnderTest]:
    yield from control_plane(postgres, unique)


def executor_db(tmp_path: Path, *drifted: str) -> str:
    """An executor database where each of ``drifted`` holds a position no fill explains."""
    url = f"sqlite:///{tmp_path / 'executor.db'}"
    store = Store(url)
    store.create_schema()
    with store.engine.begin() as conn:
        for account_id in drifted:
            conn.execute(
                sqlalchemy.insert(Position.__table__),  # type: ignore[attr-defined]
                {
                    "account_id": account_id,
                    "bot_id": "bot-a",
                    "symbol": "EURUSD",
                    "quantity": Decimal(5),
                    "average_price": Decimal("1.1"),
                },
            )
    store.close()
    return url


@pytest.mark.integration
@pytest.mark.parametrize("chosen_by", ["options", "environment"])
def test_verify_reads_the_accounts_from_the_control_planes_documents(
    cp: ControlPlaneUnderTest, tmp_path: Path, chosen_by: str
) -> None:
    slug = cp.acme.slug
    add_account(cp.acme.admin)
    add_account(
        cp.acme.admin,
        "fx",
        broker="oanda",
        credentials_path="acme/oanda",
        broker_options={"oanda_account_id": "101-004-1435156-001"},
    )
    env = {"COYOTE_EXECUTOR_DATABASE_URL": executor_db(tmp_path, f"{slug}.paper")}
    args = ["verify", "--json"]
    if chosen_by == "options":
        args += ["--accounts-source", "control-plane", "--accounts-match", f"{slug}.*"]
    else:  # as `run` is configured in a deployment
        env |= {
            "COYOTE_EXECUTOR_ACCOUNTS_SOURCE": "control-plane",
            "COYOTE_EXECUTOR_ACCOUNTS_MATCH": f"{slug}.*",
        }

    result = CliRunner().invoke(app, args, env=env)

    assert result.exit_code == 1, result.output  # one position does not add up
    assert json.loads(result.stdout) == {
        f"{slug}.fx": [],
        f"{slug}.paper": [f"{slug}.paper/bot-a/EURUSD: position 5 but fills sum to 0"],
    }


@pytest.mark.integration
def test_verify_checks_an_account_whose_document_is_invalid_and_says_so(
    endpoints: Endpoints, unique: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(endpoints.redis_url)
    good = AccountDocument(
        account_id=f"t{unique}.ok", revision=1, ts_ms=1, broker="paper", venue="x"
    )
    client.hset(
        protocol.ACCOUNTS_KEY,
        mapping={
            good.account_id: protocol.encode(good),
            f"t{unique}.bad": b'{"v": 1}',
        },
    )
    try:
        result = CliRunner().invoke(
            app,
            ["verify", "--accounts-source", "control-plane", "--accounts-match", f"t{unique}.*"],
            env={"COYOTE_EXECUTOR_DATABASE_URL": executor_db(tmp_path)},
        )
    finally:
        client.hdel(protocol.ACCOUNTS_KEY, good.account_id, f"t{unique}.bad")
        client.close()

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"t{unique}.bad: ok", f"t{unique}.ok: ok"]
    assert f"warning: account t{unique}.bad's document is invalid" in result.stderr


@pytest.mark.integration
def test_verify_without_a_document_of_its_accounts_fails_naming_the_glob(
    unique: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app,
        ["verify", "--accounts", str(EXAMPLE_ACCOUNTS)],
        env={
            "COYOTE_EXECUTOR_DATABASE_URL": executor_db(tmp_path),
            "COYOTE_EXECUTOR_ACCOUNTS_SOURCE": "control-plane",
            "COYOTE_EXECUTOR_ACCOUNTS_MATCH": f"nobody-{unique}.*",
        },
    )

    assert result.exit_code == 2
    assert f"no account document in Redis (hash coyote:accounts) matches 'nobody-{unique}.*'" in (
        result.stderr
    )
    assert "is not read: the accounts come from the control plane" in result.stderr


@pytest.mark.unit
def test_verify_reads_the_accounts_file_by_default(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["verify", "--accounts", str(EXAMPLE_ACCOUNTS)],
        env={"COYOTE_EXECUTOR_DATABASE_URL": executor_db(tmp_path, "demo.paper")},
    )

    assert result.exit_code == 1, result.output
    assert result.stdout == "demo.paper: demo.paper/bot-a/EURUSD: position 5 but fills sum to 0\n"


@pytest.mark.unit
def test_verify_with_a_bad_accounts_file_fails_naming_the_field(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.toml"
    accounts.write_text(
        '[accounts.us]\nbroker = "alpaca"\nvenue = "us"\ncredentials = "coyote/us"\n'
        '[accounts.us.options]\nenviroment = "live"\n'
    )

    result = CliRunner().invoke(
        app,
        ["verify", "--accounts", str(accounts)],
        env={"COYOTE_EXECUTOR_DATABASE_URL": executor_db(tmp_path)},
    )

    assert result.exit_code == 2
    assert "accounts.us.options.enviroment: not an option of alpaca accounts" in result.stderr


@pytest.mark.unit
def test_run_takes_the_accounts_file_given_on_the_command_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"

    result = CliRunner().invoke(
        app, ["run", "--accounts", str(missing), "--instance", "executor-7"]
    )

    # The file given is the one read (the settings are frozen: it is given when they are made).
    assert result.exit_code == 2
    assert f"accounts file {missing} does not exist" in result.stderr
