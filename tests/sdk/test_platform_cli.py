"""The platform commands of the CLI (login, push, deploy, status, logs...) against a real control
plane served over HTTP, and the client's handling of answers that are not the API's."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy
from click.testing import Result
from typer.testing import CliRunner

from coyote_control_plane.supervisor import RuntimeBackend
from coyote_control_plane.supervisor.backends import (
    BackendError,
    LogChunk,
    Observation,
    RuntimeSpec,
)
from coyote_sdk.cli import app
from coyote_sdk.client import ApiError, ControlPlaneClient, NotLoggedInError
from tests.control_plane.conftest import (
    BOT_SOURCE,
    ControlPlaneUnderTest,
    add_account,
    control_plane,
)
from tests.ports import free_ports

# -- A CONTROL PLANE OVER HTTP ---------------------------------------------------------------
# tests/control_plane's fixture serves it with uvicorn; the CLI talks to its URL.


@dataclasses.dataclass
class Cli:
    """The CLI as a user runs it against the served control plane, with its own config dir."""

    cp: ControlPlaneUnderTest
    url: str
    config_dir: Path
    runner: CliRunner = dataclasses.field(default_factory=CliRunner)

    @property
    def credentials(self) -> Path:
        return self.config_dir / "credentials.json"

    def key(self, role: str, org: str = "acme") -> str:
        client = getattr(self.cp, org).clients[role]
        return str(client.headers["authorization"]).removeprefix("Bearer ")

    def run(self, *args: str, input: str | None = None) -> Result:
        # COYOTE_API_* of the developer's shell must not stand in for the saved login.
        env = {
            "COYOTE_CONFIG_DIR": str(self.config_dir),
            "COYOTE_API_URL": None,
            "COYOTE_API_KEY": None,
            "COLUMNS": "160",
        }
        return self.runner.invoke(app, list(args), input=input, env=env)

    def login(self, role: str = "trader") -> None:
        result = self.run("login", "--url", self.url, "--api-key", self.key(role))
        assert result.exit_code == 0, result.output

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def cli(postgres: sqlalchemy.Engine, unique: str, tmp_path: Path) -> Iterator[Cli]:
    """The control plane without a supervisor (the API alone), served."""
    with contextlib.contextmanager(control_plane)(postgres, unique) as cp:
        yield Cli(cp, cp.url, tmp_path / "config")


class ScriptedLogs(RuntimeBackend):
    """Launches nothing; every runtime's log has three lines, and one more each time it is
    asked for what came after (the API asks four times a second while following)."""

    name = "scripted"

    def launch(self, spec: RuntimeSpec) -> str:
        raise BackendError("this backend launches nothing")

    def observe(self, runtime_id: str) -> Observation:
        return Observation(alive=False)

    def terminate(self, runtime_id: str, *, force: bool = False) -> None:
        pass

    def remove(self, runtime_id: str) -> None:
        pass

    def logs(
        self, runtime_id: str, *, tail: int = 200, since_offset: int | None = None
    ) -> LogChunk:
        if since_offset is None:
            return LogChunk([f"line {n}" for n in range(1, 4)][-tail:], next_offset=3)
        return LogChunk([f"line {since_offset + 1}"], next_offset=since_offset + 1)


@pytest.fixture
def cli_with_logs(postgres: sqlalchemy.Engine, unique: str, tmp_path: Path) -> Iterator[Cli]:
    """The control plane with a supervisor whose backend serves scripted logs."""
    with contextlib.contextmanager(control_plane)(postgres, unique, backend=ScriptedLogs()) as cp:
        yield Cli(cp, cp.url, tmp_path / "config")


def bot_file(tmp_path: Path, source: str = BOT_SOURCE, name: str = "buyer") -> Path:
    folder = tmp_path / "bots"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(source)
    return path


@pytest.fixture
def deployed(cli: Cli, tmp_path: Path) -> Cli:
    """Logged in as acme's trader, who pushed ``buyer`` and deployed it as ``buy`` (stopped)."""
    add_account(cli.cp.acme.admin, capital="10000")
    cli.login()
    assert cli.run("push", str(bot_file(tmp_path)), "--name", "buyer").exit_code == 0
    result = cli.run("deploy", "buy", "--bot", "buyer", "--account", "paper")
    assert result.exit_code == 0, result.output
    return cli


# -- LOGIN -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_login_checks_the_key_saves_it_for_the_owner_only_and_logout_removes_it(
    cli: Cli,
) -> None:
    key = cli.key("trader")

    # The key from the hidden prompt, as a user would paste it.
    result = cli.run("login", "--url", cli.url + "/", input=key + "\n")

    assert result.exit_code == 0, result.output
    assert f"trader@{cli.cp.acme.slug}.example" in result.stdout
    assert cli.cp.acme.slug in result.stdout and "role trader" in result.stdout
    assert key not in result.stdout
    assert stat.S_IMODE(cli.credentials.stat().st_mode) == 0o600
    assert json.loads(cli.credentials.read_text()) == {"url": cli.url, "api_key": key}
    assert cli.json("bots", "list") == []

    result = cli.run("logout")
    assert result.exit_code == 0 and "logged out" in result.stdout
    assert not cli.credentials.exists()
    result = cli.run("status")
    assert result.exit_code == 2
    assert "not logged in" in result.stderr and "coyote-sdk login" in result.stderr


@pytest.mark.integration
def test_login_with_a_bad_key_is_refused_and_saves_nothing(cli: Cli) -> None:
    bad = "cyk_" + "0" * 12 + "_" + "x" * 43

    result = cli.run("login", "--url", cli.url, "--api-key", bad)

    assert result.exit_code == 1
    assert "error:" in result.stderr and "(auth.unauthenticated)" in result.stderr
    assert not cli.credentials.exists()


@pytest.mark.integration
def test_login_json_answers_who_and_where(cli: Cli) -> None:
    result = cli.run("login", "--url", cli.url, "--api-key", cli.key("admin"), "--json")

    assert result.exit_code == 0, result.output
    me = json.loads(result.stdout)
    assert (me["url"], me["role"]) == (cli.url, "admin")
    assert me["organization"]["slug"] == cli.cp.acme.slug
    assert me["credentials"] == str(cli.credentials)


# -- PUSH ------------------------------------------------------------------------------------


@pytest.mark.integration
def test_push_uploads_a_new_version_then_says_unchanged_for_the_same_code(
    cli: Cli, tmp_path: Path
) -> None:
    cli.login()
    path = bot_file(tmp_path)

    first = cli.run("push", str(path), "--name", "buyer")
    again = cli.run("push", str(path), "--name", "buyer", "--json")

    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("pushed buyer version 1 (sha256:")
    assert again.exit_code == 0, again.output
    version = json.loads(again.stdout)
    assert (version["bot"], version["number"], version["created"]) == ("buyer", 1, False)
    assert version["digest"] in first.stdout
    assert cli.run("push", str(path), "--name", "buyer").stdout.startswith(
        "unchanged: buyer version 1"
    )
    path.write_text(BOT_SOURCE + "\n# changed\n")
    assert cli.run("push", str(path), "--name", "buyer").stdout.startswith("pushed buyer version 2")
    [bot] = cli.json("bots", "list")
    assert (bot["name"], bot["latest_version"], bot["versions"]) == ("buyer", 2, 2)
    assert "buyer" in cli.run("bots", "list").stdout


@pytest.mark.integration
def test_a_broken_bot_file_exits_2_and_uploads_nothing(cli: Cli, tmp_path: Path) -> None:
    cli.login()
    path = bot_file(tmp_path, BOT_SOURCE.replace("def on_bar(self, bar):", "def on_bar(self, bar)"))

    result = cli.run("push", str(path), "--name", "buyer")

    assert result.exit_code == 2
    assert "syntax error" in result.stderr and "buyer.py" in result.stderr
    assert cli.cp.acme.trader.get("/v1/bots").json() == []


@pytest.mark.integration
def test_a_viewer_is_told_clearly_that_it_may_not_push(cli: Cli, tmp_path: Path) -> None:
    cli.login("viewer")

    result = cli.run("push", str(bot_file(tmp_path)), "--name", "buyer")

    assert result.exit_code == 1
    assert "the viewer role may not do this" in result.stderr
    assert "(auth.forbidden)" in result.stderr
    assert cli.cp.acme.trader.get("/v1/bots").json() == []


# -- DEPLOYMENTS -----------------------------------------------------------------------------


@pytest.mark.integration
def test_deploy_with_params_then_status_as_a_table_as_json_and_in_detail(
    cli: Cli, tmp_path: Path
) -> None:
    add_account(cli.cp.acme.admin, capital="10000")
    cli.login()
    assert cli.run("push", str(bot_file(tmp_path)), "--name", "buyer").exit_code == 0

    result = cli.run(
        "deploy",
        "buy",
        "--bot",
        "buyer",
        "--account",
        "paper",
        "-p",
        "quantity=2",
        "--param",
        "crash=false",
        "--capital",
        "2500",
    )

    assert result.exit_code == 0, result.output
    assert "deployed buy: buyer release 1 (version 1) on paper" in result.stdout
    table = cli.run("status")
    assert table.exit_code == 0, table.output
    rows = [
        [cell.strip() for cell in line.strip("│┃").split(line[0])]
        for line in table.stdout.splitlines()
        if line.startswith(("│", "┃"))
    ]
    assert rows == [
        ["name", "bot", "account", "release", "desired", "status", "restarts", "detail"],
        ["buy", "buyer", "paper", "1", "stopped", "stopped", "0", ""],
    ]
    [listed] = cli.json("status")
    assert (listed["name"], listed["params"], listed["capital"], listed["desired"]) == (
        "buy",
        {"quantity": 2, "crash": False},
        "2500",
        "stopped",
    )
    detail = cli.run("status", "buy")
    assert detail.exit_code == 0, detail.output
    assert f"{cli.cp.acme.slug}.paper" in detail.stdout
    assert '{"quantity": 2, "crash": false}' in detail.stdout
    assert "heartbeat" in detail.stdout and "none" in detail.stdout
    assert cli.json("status", "buy")["heartbeat"] is None


@pytest.mark.integration
def test_deploy_refuses_a_release_with_params_and_a_malformed_param_locally(cli: Cli) -> None:
    cli.login()

    both = cli.run("deploy", "x", "--bot", "b", "--account", "a", "--release", "1", "-p", "q=1")
    malformed = cli.run("deploy", "x", "--bot", "b", "--account", "a", "-p", "quantity")
    bad_capital = cli.run("deploy", "x", "--bot", "b", "--account", "a", "--capital", "lots")

    assert (both.exit_code, malformed.exit_code, bad_capital.exit_code) == (2, 2, 2)
    assert "either --release or --version/--param" in both.stderr
    assert "NAME=VALUE" in malformed.stderr
    assert "--capital" in bad_capital.stderr


@pytest.mark.integration
def test_start_pause_resume_stop_change_what_is_desired(deployed: Cli) -> None:
    started = deployed.run("start", "buy", "--reason", "go")
    assert started.exit_code == 0, started.output
    assert started.stdout.startswith("started buy: desired running")
    for action, desired in [("pause", "paused"), ("resume", "running"), ("stop", "stopped")]:
        answer = deployed.json(action, "buy")
        assert answer["desired"] == desired, action
        assert deployed.json("status", "buy")["desired"] == desired

    refused = deployed.run("pause", "buy")
    assert refused.exit_code == 1
    assert "cannot pause deployment 'buy': it is stopped" in refused.stderr
    assert "(deployment.invalid_transition)" in refused.stderr


@pytest.mark.integration
def test_rollback_after_a_promote_goes_back_to_the_first_release(deployed: Cli) -> None:
    trader = deployed.cp.acme.trader
    made = trader.post("/v1/bots/buyer/releases", json={"params": {"quantity": 5}})
    assert made.status_code == 201, made.text
    assert made.json()["number"] == 2
    promoted = trader.post("/v1/deployments/buy/promote", json={"release": 2})
    assert promoted.status_code == 200, promoted.text
    assert deployed.json("status", "buy")["release"] == 2

    result = deployed.run("rollback", "buy")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("rolled back buy to release 1 (version 1)")
    assert deployed.json("status", "buy")["release"] == 1
    assert deployed.json("rollback", "buy", "--to", "2")["release"] == 2


@pytest.mark.integration
def test_canary_start_status_stop_then_promote(deployed: Cli, tmp_path: Path) -> None:
    assert deployed.json("start", "buy")["desired"] == "running"
    source = BOT_SOURCE + "\n# v2\n"
    assert deployed.run("push", str(bot_file(tmp_path, source)), "--name", "buyer").exit_code == 0

    started = deployed.run("canary", "start", "buy", "-p", "quantity=4", "--capital", "500")
    assert started.exit_code == 0, started.output
    assert started.stdout.startswith(
        "started canary 1 of buy: release 2 (version 2) beside release 1, on paper account "
        "paper-shadow, capital 500, as buy.canary-1"
    )
    again = deployed.run("canary", "start", "buy")
    assert again.exit_code == 1 and "(canary.exists)" in again.stderr

    table = deployed.run("canary", "status", "buy")
    assert table.exit_code == 0, table.output
    assert "canary 1 of buy: active" in table.stdout
    assert "live (buy)" in table.stdout and "canary (buy.canary-1)" in table.stdout
    assert "paper-shadow" in table.stdout and "orders placed" in table.stdout
    compared = deployed.json("canary", "status", "buy")
    assert (compared["live"]["release"], compared["shadow"]["release"]) == (1, 2)
    assert compared["shadow"]["orders"]["placed"] == 0 and compared["notes"]

    stopped = deployed.run("canary", "stop", "buy", "--reason", "enough")
    assert stopped.exit_code == 0, stopped.output
    assert stopped.stdout.startswith("discarded canary 1 of buy: desired stopped")
    assert deployed.json("canary", "status", "buy", "--number", "1")["canary"]["state"] == (
        "discarded"
    )
    assert deployed.json("canary", "start", "buy", "--release", "2")["name"] == "buy.canary-2"

    promoted = deployed.run("canary", "promote", "buy")

    assert promoted.exit_code == 0, promoted.output
    assert promoted.stdout.startswith("promoted the canary of buy: it moves to release 2")
    assert deployed.json("status", "buy")["release"] == 2
    missing = deployed.run("canary", "stop", "buy")
    assert missing.exit_code == 1 and "(canary.not_found)" in missing.stderr
    bad = deployed.run("canary", "start", "buy", "--release", "1", "--version", "1")
    assert bad.exit_code == 2 and "either --release or --version" in bad.stderr


@pytest.mark.integration
def test_logs_say_that_no_supervisor_serves_them(deployed: Cli) -> None:
    # The fixture's control plane runs no supervisor: the API answers 503 logs.unavailable.
    for args in (["logs", "buy"], ["logs", "buy", "-f", "--tail", "10"]):
        result = deployed.run(*args)

        assert result.exit_code == 1, args
        assert "no supervisor runs in this control plane (logs.unavailable)" in result.stderr


@pytest.mark.integration
def test_logs_print_the_tail_and_follow_until_ctrl_c(
    cli_with_logs: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = cli_with_logs
    add_account(cli.cp.acme.admin)
    cli.login()
    assert cli.run("push", str(bot_file(tmp_path)), "--name", "buyer").exit_code == 0
    assert cli.run("deploy", "buy", "--bot", "buyer", "--account", "paper").exit_code == 0

    tail = cli.run("logs", "buy", "--tail", "2")
    assert tail.exit_code == 0, tail.output
    assert tail.stdout == "line 2\nline 3\n"
    assert cli.json("logs", "buy") == {"deployment": "buy", "lines": ["line 1", "line 2", "line 3"]}

    # Ctrl-C lands while the command waits for the next line: after the fifth, here.
    follow = ControlPlaneClient.follow_logs

    def interrupted(self: ControlPlaneClient, name: str, tail: int = 200) -> Iterator[str]:
        lines = follow(self, name, tail)
        try:
            for count, line in enumerate(lines, 1):
                yield line
                if count == 5:
                    raise KeyboardInterrupt
        finally:
            lines.close()

    monkeypatch.setattr(ControlPlaneClient, "follow_logs", interrupted)
    followed = cli.run("logs", "buy", "-f", "--tail", "2")
    assert followed.exit_code == 0, followed.output
    assert followed.stdout == "".join(f"line {n}\n" for n in range(2, 7))
    assert "Aborted" not in followed.output
    as_json = cli.run("logs", "buy", "--follow", "--json")
    assert as_json.exit_code == 0, as_json.output
    assert [json.loads(line)["line"] for line in as_json.stdout.splitlines()] == [
        f"line {n}" for n in range(1, 6)
    ]


@pytest.mark.integration
def test_an_unknown_deployment_exits_1_with_its_code(deployed: Cli) -> None:
    for args in (["status", "nope"], ["start", "nope"], ["rollback", "nope"], ["logs", "nope"]):
        result = deployed.run(*args)

        assert result.exit_code == 1, args
        assert "no deployment named 'nope' (deployment.not_found)" in result.stderr, args


@pytest.mark.integration
def test_another_organisations_deployment_is_not_found(deployed: Cli) -> None:
    globex = deployed.key("trader", org="globex")
    result = deployed.run("login", "--url", deployed.url, "--api-key", globex)
    assert result.exit_code == 0, result.output

    assert deployed.json("status") == []
    assert "(deployment.not_found)" in deployed.run("stop", "buy").stderr


# -- WITHOUT A SERVER ------------------------------------------------------------------------


def _client(handler: Any) -> ControlPlaneClient:
    return ControlPlaneClient(
        "http://cp.test", "cyk_test_secret", transport=httpx.MockTransport(handler)
    )


@pytest.mark.unit
def test_an_answer_that_is_not_the_api_error_shape_gives_its_status_and_body() -> None:
    def proxy(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html><body>\n  upstream\n  down </body></html>")

    with pytest.raises(ApiError) as raised:
        _client(proxy).deployments()

    error = raised.value
    assert (error.status, error.code, error.field) == (502, "http.502", None)
    assert error.message == "502 Bad Gateway: <html><body> upstream down </body></html>"


@pytest.mark.unit
def test_json_that_is_not_the_error_shape_falls_back_too() -> None:
    def odd(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "Not Found"})

    with pytest.raises(ApiError) as raised:
        _client(odd).me()

    assert (raised.value.status, raised.value.code) == (404, "http.404")
    assert raised.value.message.startswith("404 Not Found")


@pytest.mark.unit
def test_a_follow_that_is_refused_raises_the_same_fallback() -> None:
    def gateway(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(504, text="")

    with pytest.raises(ApiError) as raised:
        next(_client(gateway).follow_logs("buy"))

    assert (raised.value.status, raised.value.code, raised.value.message) == (
        504,
        "http.504",
        "504 Gateway Timeout",
    )


@pytest.mark.unit
def test_a_server_that_cannot_be_reached_gives_connection_failed() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with pytest.raises(ApiError) as raised:
        _client(refuse).bots()
    with pytest.raises(ApiError) as following:
        next(_client(refuse).follow_logs("buy"))

    for error in (raised.value, following.value):
        assert (error.status, error.code) == (0, "connection.failed")
        assert error.message == "cannot reach http://cp.test: [Errno 111] Connection refused"


@pytest.mark.unit
def test_the_cli_reports_an_unreachable_control_plane_and_exits_1(tmp_path: Path) -> None:
    [port] = free_ports(1)
    env = {"COYOTE_CONFIG_DIR": str(tmp_path), "COYOTE_API_KEY": "cyk_x_y"}

    result = CliRunner().invoke(
        app, ["bots", "list"], env={**env, "COYOTE_API_URL": f"http://127.0.0.1:{port}"}
    )

    assert result.exit_code == 1
    assert f"cannot reach http://127.0.0.1:{port}" in result.stderr
    assert "(connection.failed)" in result.stderr


@pytest.mark.unit
def test_from_config_prefers_the_environment_and_refuses_without_a_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COYOTE_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("COYOTE_API_URL", raising=False)
    monkeypatch.delenv("COYOTE_API_KEY", raising=False)
    with pytest.raises(NotLoggedInError, match="coyote-sdk login"):
        ControlPlaneClient.from_config()

    (tmp_path / "credentials.json").write_text('{"url": "http://saved", "api_key": "cyk_a_b"}')
    assert ControlPlaneClient.from_config().url == "http://saved"
    monkeypatch.setenv("COYOTE_API_URL", "http://from-env/")
    assert ControlPlaneClient.from_config().url == "http://from-env"

    (tmp_path / "credentials.json").write_text("not json")
    with pytest.raises(NotLoggedInError, match="run `coyote-sdk login` again"):
        ControlPlaneClient.from_config()


@pytest.mark.unit
def test_every_platform_command_has_help_with_an_example() -> None:
    commands = [
        ["login"],
        ["logout"],
        ["push"],
        ["bots", "list"],
        ["deploy"],
        ["status"],
        ["start"],
        ["pause"],
        ["resume"],
        ["stop"],
        ["rollback"],
        ["logs"],
        ["canary", "start"],
        ["canary", "status"],
        ["canary", "promote"],
        ["canary", "stop"],
    ]
    for command in commands:
        result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "120"})

        assert result.exit_code == 0, command
        assert "Example" in result.stdout and "--json" in result.stdout, command
