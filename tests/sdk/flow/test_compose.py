"""The compose target: golden files, the repository's docker-compose.yml, and what every
compose file must hold (references that resolve, no secret in it, hardened Coyote services)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from coyote_executor.accounts import accounts_from_mapping
from coyote_sdk.flow import CompileError, compile_flow, load_flow, load_flow_text
from tests.sdk.flow.conftest import DEMO, FLOWS, GOLDEN, REPO, assert_golden

pytestmark = pytest.mark.unit

CASES = {
    "demo": (DEMO, "examples/flows/demo.yaml"),
    "external": (FLOWS / "external.yaml", "tests/sdk/flow/flows/external.yaml"),
}


def _compose(name: str, output_dir: Path | None = None) -> str:
    path, source = CASES[name]
    return compile_flow(load_flow(path), "compose", output_dir=output_dir, source=source)


@pytest.mark.parametrize("name", sorted(CASES))
def test_compose_output_matches_its_golden_file(name: str) -> None:
    assert_golden(
        GOLDEN / f"{name}.compose.yaml",
        _compose(name, output_dir=GOLDEN),
        regenerate="COYOTE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/sdk/flow",
    )


def test_the_repository_docker_compose_file_is_the_demo_flow_compiled() -> None:
    assert_golden(
        REPO / "docker-compose.yml",
        _compose("demo", output_dir=REPO),
        regenerate="coyote-sdk flow compile examples/flows/demo.yaml --target compose "
        "-o docker-compose.yml",
    )


@pytest.fixture(scope="module")
def compose_check() -> Path:
    """compose-go's loader (the one `docker compose` uses), built from composecheck/."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        pytest.skip("no Go toolchain to build the Compose Specification's loader")
    binary = REPO / ".coyote" / "tools" / "bin" / "coyote-compose-check"
    built = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=Path(__file__).parent / "composecheck",
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return binary


@pytest.mark.slow
def test_every_compose_file_is_valid_for_the_compose_specification(
    compose_check: Path, tmp_path: Path
) -> None:
    files = [REPO / "docker-compose.yml"]
    for name in sorted(CASES):
        files.append(tmp_path / f"{name}.yaml")
        files[-1].write_text(_compose(name, output_dir=REPO))

    result = subprocess.run(
        [str(compose_check), *map(str, files)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_reference_in_the_file_is_defined(name: str) -> None:
    document = yaml.safe_load(_compose(name, output_dir=REPO))
    services = document["services"]

    for service in services.values():
        for needed in service.get("depends_on", {}):
            assert needed in services
        for secret in service.get("secrets", []):
            assert secret in document["secrets"]
        for config in service.get("configs", []):
            assert config["source"] in document["configs"]
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                assert volume.split(":")[0] in document["volumes"]
            else:
                assert (REPO / volume["source"]).is_file()
        if "build" in service:
            context = (REPO / service["build"]["context"]).resolve()
            assert context == REPO
            assert (context / service["build"]["dockerfile"]).is_file()
    for secret in document.get("secrets", {}).values():
        assert secret["file"].startswith("./secrets/")


def test_coyote_services_run_non_root_read_only_without_capabilities() -> None:
    services = yaml.safe_load(_compose("external"))["services"]
    coyote = {n: s for n, s in services.items() if "/coyote-" in s["image"]}

    assert set(coyote) == {"control-plane", "executor-1", "executor-2", "btc-live", "synthetic"}
    for service in coyote.values():
        assert service["user"] == "10001:10001"
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
    for name in ("control-plane", "executor-1"):
        assert "/healthz" in " ".join(services[name]["healthcheck"]["test"])


def test_no_secret_value_is_in_the_file_only_where_to_read_it() -> None:
    text = _compose("external")
    document = yaml.safe_load(text)

    assert document["secrets"] == {
        "coyote-database.password": {"file": "./secrets/coyote-database/password"},
        "coyote-redis.password": {"file": "./secrets/coyote-redis/password"},
        "coyote-vault.token": {"file": "./secrets/coyote-vault/token"},
        "risk-watcher.api-key": {"file": "./secrets/risk-watcher/api-key"},
    }
    for service in document["services"].values():
        environment = service.get("environment", {})
        assert not {"COYOTE_VAULT_TOKEN", "COYOTE_REDIS_URL", "LLM_API_KEY"} & set(environment)


def test_the_entrypoint_reads_the_secrets_into_the_environment_and_starts_the_program(
    tmp_path: Path,
) -> None:
    service = yaml.safe_load(_compose("external"))["services"]["control-plane"]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "coyote-database.password").write_text("db-pass")
    (secrets / "coyote-redis.password").write_text("redis-pass")
    (secrets / "coyote-vault.token").write_text("vault-token")
    shell, flag, script, program = service["entrypoint"]
    # What Compose hands the container: `$$` is a literal `$`.
    script = script.replace("$$", "$").replace("/run/secrets", str(secrets))

    result = subprocess.run(
        [shell, flag, script, "env"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    )

    env = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert program == "coyote-control-plane"
    assert env["COYOTE_DATABASE_URL"] == (
        "postgresql+psycopg://coyote:db-pass@postgres:5432/coyote"
    )
    assert env["COYOTE_REDIS_URL"] == "rediss://:redis-pass@redis.acme.internal:6380/0"
    assert env["COYOTE_VAULT_TOKEN"] == "vault-token"


def test_a_missing_secret_file_stops_the_container_before_the_program(tmp_path: Path) -> None:
    service = yaml.safe_load(_compose("external"))["services"]["executor-1"]
    shell, flag, script, _ = service["entrypoint"]
    script = script.replace("$$", "$").replace("/run/secrets", str(tmp_path))

    result = subprocess.run(
        [shell, flag, script, "echo", "started"], capture_output=True, text=True, check=False
    )

    assert result.returncode != 0 and "started" not in result.stdout


def test_the_executors_accounts_file_is_what_the_executor_reads() -> None:
    document = yaml.safe_load(_compose("external"))
    text = document["configs"]["executor-accounts"]["content"]

    accounts = accounts_from_mapping(tomllib.loads(text))

    assert sorted(accounts) == ["acme.alpaca-sandbox", "acme.paper"]
    assert accounts["acme.alpaca-sandbox"].credentials == "coyote/accounts/alpaca-sandbox"
    assert accounts["acme.paper"].paper is not None
    assert str(accounts["acme.paper"].paper.fee_bps) == "0.5"
    assert str(accounts["acme.paper"].risk.account.max_order_notional) == "10000"


def test_the_demo_accounts_equal_examples_accounts_toml() -> None:
    document = yaml.safe_load(_compose("demo"))
    compiled = tomllib.loads(document["configs"]["executor-accounts"]["content"])
    example = tomllib.loads((REPO / "examples" / "accounts.toml").read_text())

    assert compiled == example


def test_feeds_get_their_command_line_and_replay_files_mounted_read_only() -> None:
    services = yaml.safe_load(_compose("demo", output_dir=REPO))["services"]
    replay = services["eurusd-replay"]
    walk = yaml.safe_load(_compose("external"))["services"]["synthetic"]

    assert replay["entrypoint"] == ["coyote-sdk"]
    assert replay["command"] == [
        "feed",
        "replay",
        "/data/eurusd-replay/EURUSD.csv",
        "--venue",
        "demo-fx",
        "--bars-per-second",
        "20",
        "--rebase",
    ]
    assert replay["volumes"][0]["source"] == "./examples/data/EURUSD.csv"
    assert replay["restart"] == "on-failure"  # a replay ends
    assert walk["command"][:4] == ["feed", "random-walk", "GOOG=170.5", "MSFT=410"]


def test_live_mode_refuses_the_in_memory_vault_of_compose() -> None:
    text = DEMO.read_text().replace("mode: dev", "mode: live")
    flow = load_flow_text(text, path=DEMO)

    with pytest.raises(CompileError, match="keeps its secrets in memory"):
        compile_flow(flow, "compose")


def test_unknown_target_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown target 'swarm'"):
        compile_flow(load_flow(DEMO), "swarm")
