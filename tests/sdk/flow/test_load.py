"""Reading flows: good flows load; each bad flow fails with a message naming the line, the
column and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from coyote_sdk.flow import Flow, FlowError, load_flow, load_flow_text
from tests.sdk.flow.conftest import DEMO, FLOWS, REPO

pytestmark = pytest.mark.unit

GOOD = """\
apiVersion: coyote.dev/v1
kind: Flow
metadata: {name: small, organization: acme}
mode: dev
connections: {kafka: installed, redis: installed, database: installed, vault: installed}
accounts:
  - {name: paper, broker: paper, venue: demo, capital: 1000}
modules:
  - name: main
    units:
      - {kind: executor, name: executor}
      - {kind: bot, name: sma, bot: sma, account: paper, capital: 500}
"""


def _load(text: str, tmp_path: Path) -> Flow:
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent(text))
    return load_flow(path)


def _problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(FlowError) as caught:
        _load(text, tmp_path)
    return [str(p).removeprefix(str(tmp_path / "flow.yaml") + ":") for p in caught.value.problems]


def test_the_demo_flow_and_the_test_flows_are_valid() -> None:
    demo = load_flow(DEMO)
    external = load_flow(FLOWS / "external.yaml")

    assert (demo.name, demo.organization, demo.mode) == ("coyote-demo", "demo", "dev")
    assert [u["name"] for u in demo.units("bot")] == ["mean-reversion", "market-maker"]
    assert demo.units("agent") == []  # its module is disabled
    assert demo.resolve("../mean_reversion.py") == REPO / "examples" / "mean_reversion.py"
    assert external.account_id("paper") == "acme.paper"


def test_a_small_flow_loads_with_its_values_as_written(tmp_path: Path) -> None:
    flow = _load(GOOD, tmp_path)

    assert flow.accounts == [{"name": "paper", "broker": "paper", "venue": "demo", "capital": 1000}]
    assert [u["kind"] for u in flow.units()] == ["executor", "bot"]
    assert flow.marks[("accounts", 0, "capital")] == (7, 56)


def test_dates_stay_strings_and_anchors_are_followed(tmp_path: Path) -> None:
    text = GOOD.replace(
        "accounts:\n",
        "x-limits: &limits {max_position: 5}\naccounts:\n",
    )
    with pytest.raises(FlowError, match="'x-limits' is not allowed here"):
        _load(text, tmp_path)
    flow = load_flow_text(
        GOOD.replace("metadata: {name: small,", "metadata: {description: 2024-01-02, name: small,")
    )
    assert flow.data["metadata"]["description"] == "2024-01-02"


BAD = [
    pytest.param(
        GOOD.replace("coyote.dev/v1", "coyote.dev/v2"),
        "1:13: apiVersion: 'coyote.dev/v2' is not supported: write apiVersion: coyote.dev/v1",
        id="api-version",
    ),
    pytest.param(
        GOOD.replace("mode: dev", "mode: staging"),
        "4:7: mode: 'staging' is not one of ['dev', 'paper', 'live']",
        id="mode",
    ),
    pytest.param(
        GOOD.replace("mode: dev\n", ""),
        "1:1: 'mode' is required",
        id="mode-missing",
    ),
    pytest.param(
        GOOD.replace("name: small", "name: Small_Flow"),
        "3:18: metadata.name: 'Small_Flow' is not a valid name: lower-case letters, digits and "
        "'-', starting and ending with a letter or digit, at most 39 characters",
        id="name-pattern",
    ),
    pytest.param(
        GOOD.replace("kafka: installed", "kafka: instaled"),
        "5:22: connections.kafka: 'instaled' is not allowed: write `installed` (the deployment "
        "runs it) or give its address",
        id="connection-typo",
    ),
    pytest.param(
        GOOD.replace(
            "database: installed", 'database: {url: "postgresql+psycopg://coyote:hunter2@db/c"}'
        ),
        "5:67: connections.database.url: a password in a URL is refused: give it as "
        "passwordFrom: {secretRef: {name: ..., key: ...}}",
        id="password-in-url",
    ),
    pytest.param(
        GOOD.replace("redis: installed", "redis: {url: redis://r:6379/0, password: hunter2}"),
        "5:64: connections.redis.password: 'password' is not allowed here; expected one of "
        "['passwordFrom', 'url']",
        id="inline-password",
    ),
    pytest.param(
        GOOD.replace("capital: 1000", "capital: lots"),
        "7:56: accounts.0.capital: 'lots' is not a non-negative decimal such as 2500 or \"0.5\"",
        id="capital",
    ),
    pytest.param(
        GOOD.replace("{kind: executor, name: executor}", "{kind: gadget, name: g}"),
        "11:16: modules.0.units.0.kind: 'gadget' is not a unit kind: bot, executor, feed or agent",
        id="unit-kind",
    ),
    pytest.param(
        GOOD.replace("account: paper, capital: 500", "capital: 500"),
        "12:9: modules.0.units.1: 'account' is required",
        id="bot-without-account",
    ),
    pytest.param(
        GOOD + "      - {kind: feed, name: f, source: random-walk, venue: v, files: [a.csv]}\n",
        "13:9: modules.0.units.2: 'symbols' is required",
        id="feed-source-arguments",
    ),
    pytest.param(
        GOOD + "      - {kind: feed, name: f, source: binance, venue: v, symbols: [X], seed: 1}\n",
        "13:72: modules.0.units.2.seed: not a setting of a binance feed",
        id="feed-foreign-argument",
    ),
    pytest.param(
        GOOD.replace("venue: demo, capital", "venue: demo, venue: other, capital"),
        "7:47: accounts.0.venue: duplicate key",
        id="duplicate-key",
    ),
    # Semantic checks, after the schema passed.
    pytest.param(
        GOOD.replace("account: paper, capital: 500", "account: live, capital: 500"),
        "12:51: modules.0.units.1.account: no account named 'live' in accounts (the flow's "
        "accounts: ['paper'])",
        id="unknown-account",
    ),
    pytest.param(
        GOOD.replace("{kind: executor, name: executor}", "{kind: executor, name: sma}"),
        "12:27: modules.0.units.1.name: another unit is named 'sma' (at modules.0.units.0.name); "
        "names must be unique",
        id="duplicate-unit",
    ),
    pytest.param(
        GOOD.replace("{kind: executor, name: executor}", "{kind: executor, name: e, replicas: 20}"),
        "11:45: modules.0.units.0.replicas: 20 replicas but the intents topic has 12 partitions: "
        "at most 12 executors can share it",
        id="replicas-over-partitions",
    ),
    pytest.param(
        GOOD.replace("capital: 500", "capital: 1500"),
        "7:56: accounts.0.capital: its bots are allocated 1500 in total, over the account's "
        "capital of 1000",
        id="over-allocated",
    ),
    pytest.param(
        GOOD.replace("mode: dev", "mode: live").replace(
            "broker: paper, venue: demo,",
            "broker: alpaca, venue: demo, credentials: {vault: coyote/accounts/a},",
        ),
        "7:5: accounts.0: mode is live but account 'paper' trades alpaca's sandbox: set "
        "options.environment: live, or use mode: paper",
        id="live-mode-sandbox-account",
    ),
    pytest.param(
        GOOD.replace(
            "broker: paper, venue: demo,",
            "broker: oanda, venue: demo, credentials: {vault: a}, options: {environment: live, "
            "oanda_account_id: '1'},",
        ),
        "7:95: accounts.0.options.environment: account 'paper' trades real money (environment: "
        "live) but mode is dev: live trading needs mode: live",
        id="real-money-outside-live-mode",
    ),
    pytest.param(
        GOOD.replace(
            "broker: paper, venue: demo,",
            "broker: oanda, venue: demo, credentials: {vault: a}, "
            "options: {oanda_account_id: '101-4'},",
        ),
        "7:100: accounts.0.options.oanda_account_id: '101-4' does not match "
        "'[0-9]{1,12}(-[0-9]{1,12}){3}'; expected e.g. '101-004-1435156-001'",
        id="oanda-account-id-of-another-form",
    ),
    pytest.param(
        GOOD.replace("broker: paper, venue: demo,", "broker: alpaca, venue: demo,"),
        "7:27: accounts.0.broker: an alpaca account needs credentials: {vault: <path>} (its "
        "broker keys in Vault)",
        id="real-broker-without-credentials",
    ),
    pytest.param(
        GOOD.replace("capital: 1000}", "capital: 1000, risk: {account: {order_burst: 0}}}"),
        "7:92: accounts.0.risk.account.order_burst: 0 is less than the minimum of 1",
        id="risk-limit",
    ),
    pytest.param(
        GOOD.replace("account: paper, capital: 500}", "account: paper, path: nothing.py}"),
        "12:64: modules.0.units.1.path: no such file",
        id="missing-bot-file",
    ),
    pytest.param(
        GOOD.replace("account: paper, capital: 500}", "account: paper, release: 2, version: 1}"),
        "12:79: modules.0.units.1.version: a release fixes the bot's version, parameters and "
        "risk profile; give release or version, not both",
        id="release-and-version",
    ),
    pytest.param(
        GOOD
        + "      - kind: agent\n        name: llm\n        image: a:1\n"
        + "        topics: {read: [coyote.intents.v1]}\n"
        + "        env: [{name: OPENAI_API_KEY, value: sk-live-123}]\n",
        "17:45: modules.0.units.2.env.0.value: OPENAI_API_KEY looks like a secret: secrets are "
        "never written in the flow; use valueFrom: {secretRef: {name: ..., key: ...}}",
        id="agent-secret-inline",
    ),
    pytest.param(
        GOOD
        + "      - kind: agent\n        name: llm\n        image: a:1\n"
        + "        topics: {read: [coyote.intents.v1]}\n"
        + "        env: [{name: KEY, valueFrom: {secretRef: {name: llm, key: key}}}]\n",
        "17:14: modules.0.units.2.env: an agent with secrets needs its command",
        id="agent-secret-without-command",
    ),
    pytest.param(
        GOOD.replace("{kind: executor, name: executor}", "{kind: executor, name: redis}"),
        "11:32: modules.0.units.0.name: 'redis' is the name of a service of the deployment",
        id="reserved-name",
    ),
    pytest.param(
        "apiVersion: coyote.dev/v1\nkind: Flow\nmetadata: {name: x\n",
        "4:1: not valid YAML: while parsing a flow mapping expected ',' or '}', but got "
        "'<stream end>'",
        id="yaml-syntax",
    ),
    pytest.param("", "1:1: the file is empty: a flow starts with apiVersion", id="empty"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_a_bad_flow_is_refused_naming_line_column_field_and_what_is_wrong(
    text: str, expected: str, tmp_path: Path
) -> None:
    problems = _problems(text, tmp_path)

    assert any(p.startswith(expected) for p in problems), problems


def test_every_schema_problem_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    text = GOOD.replace("mode: dev", "mode: staging").replace("capital: 1000", "capital: lots")

    problems = _problems(text, tmp_path)

    assert [p.split(":")[0] for p in problems] == ["4", "7"]


def test_semantic_checks_wait_for_a_schema_valid_file(tmp_path: Path) -> None:
    # An unknown account would be reported, but the schema error comes first and alone.
    text = GOOD.replace("mode: dev", "mode: staging").replace("account: paper", "account: x")

    assert len(_problems(text, tmp_path)) == 1


def test_an_unreadable_file_is_a_flow_error(tmp_path: Path) -> None:
    with pytest.raises(FlowError, match="cannot read the file"):
        load_flow(tmp_path / "missing.yaml")
