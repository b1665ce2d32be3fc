"""Settings: environment and .env files, external services, redaction of secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from coyote_sdk.config import REDACTED, StackSettings, redact_url

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("KAFKA_BOOTSTRAP", "REDIS_URL", "DATABASE_URL", "VAULT_ADDR", "VAULT_TOKEN"):
        monkeypatch.delenv(f"COYOTE_{name}", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_unset_urls_mean_the_local_stack_on_its_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COYOTE_REDIS_PORT", "26379")

    settings = StackSettings()
    endpoints = settings.endpoints()

    assert not settings.is_external("redis")
    assert endpoints.redis_url == "redis://127.0.0.1:26379/0"
    assert endpoints.kafka_bootstrap == "127.0.0.1:19092"


def test_a_url_in_the_environment_makes_the_service_external(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COYOTE_KAFKA_BOOTSTRAP", "kafka-1.internal:9092")

    settings = StackSettings()

    assert settings.is_external("kafka")
    assert settings.endpoints().kafka_bootstrap == "kafka-1.internal:9092"


def test_settings_are_read_from_a_dotenv_file_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("COYOTE_REDIS_PORT=7000\nCOYOTE_POSTGRES_PORT=7001\n")
    monkeypatch.setenv("COYOTE_POSTGRES_PORT", "7002")

    settings = StackSettings()

    assert (settings.redis_port, settings.postgres_port) == (7000, 7002)


def test_an_external_vault_without_a_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COYOTE_VAULT_ADDR", "https://vault.internal:8200")

    with pytest.raises(ValueError, match="COYOTE_VAULT_TOKEN must be set"):
        StackSettings()


def test_effective_config_redacts_secrets_and_url_passwords(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COYOTE_DATABASE_URL", "postgresql+psycopg://app:hunter2@db:5432/coyote")
    monkeypatch.setenv("COYOTE_VAULT_ADDR", "https://vault.internal:8200")
    monkeypatch.setenv("COYOTE_VAULT_TOKEN", "s.very-secret")

    settings = StackSettings()
    effective = settings.effective()
    banner = settings.describe()

    assert effective["database_url"] == REDACTED
    assert effective["vault_token"] == REDACTED
    assert effective["vault_dev_root_token"] == REDACTED
    assert "hunter2" not in banner
    assert "very-secret" not in banner
    assert "vault_addr" in banner
    assert "https://vault.internal:8200" in banner


def test_redact_url_masks_only_the_password() -> None:
    assert redact_url("redis://:pw@host:6379/0") == f"redis://:{REDACTED}@host:6379/0"
    assert redact_url("postgresql://u:p@h/db") == f"postgresql://u:{REDACTED}@h/db"
    assert redact_url("http://127.0.0.1:8200") == "http://127.0.0.1:8200"
