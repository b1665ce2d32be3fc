"""Fixtures shared by the whole suite: the real local stack, started once, and per-test
isolation (a Kafka topic, a Redis key prefix, a PostgreSQL schema, a Vault path of its own).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import hvac
import pytest
import redis
import sqlalchemy
from aiokafka.admin import AIOKafkaAdminClient

from coyote_sdk import protocol
from coyote_sdk.config import Endpoints, StackSettings
from coyote_sdk.dev import Stack, ensure_topics

_timed_out: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Names a test pytest-timeout stopped, at once and again as the run's last words: its
    report is mostly the stacks of every thread, and a CI log is often read from its end."""
    if report.failed and "from pytest-timeout" in str(report.longrepr):
        _timed_out.append(f"{report.nodeid} (in its {report.when})")
        print(f"[tests] timed out: {_timed_out[-1]}", file=sys.__stderr__, flush=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    for test in _timed_out:
        print(f"[tests] timed out: {test}", file=sys.__stderr__, flush=True)


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """Undoes what a command run in-process did to logging: ``configure_logging`` points the
    root logger at the stderr of the moment (a test's captured stream, closed after it) and
    silences aiokafka — for every later test of the session otherwise."""
    root, aiokafka = logging.getLogger(), logging.getLogger("aiokafka")
    before, level, aiokafka_level = set(root.handlers), root.level, aiokafka.level
    yield
    # pytest's own capture handlers come and go with each phase: only a plain StreamHandler
    # added since the setup is ours to remove.
    for handler in root.handlers[:]:
        if type(handler) is logging.StreamHandler and handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)
    aiokafka.setLevel(aiokafka_level)


@pytest.fixture(scope="session")
def stack_settings() -> StackSettings:
    return StackSettings()


@pytest.fixture(scope="session")
def endpoints(stack_settings: StackSettings) -> Endpoints:
    """The shared services, started (or found running) once for the session."""
    Stack(stack_settings).up()
    return stack_settings.endpoints()


@pytest.fixture
def unique() -> str:
    """A short name no other test uses, for topics, keys, schemas and paths."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def redis_ts(endpoints: Endpoints, unique: str) -> Iterator[tuple[redis.Redis, str]]:
    """A Redis Stack client and a key prefix of the test's own; its keys are removed after."""
    client = redis.Redis.from_url(endpoints.redis_url)
    prefix = f"test:{unique}:"
    yield client, prefix
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
async def kafka_topic(endpoints: Endpoints, unique: str) -> AsyncIterator[str]:
    """A Kafka topic of three partitions for this test alone, deleted after."""
    name = f"test.{unique}"
    await ensure_topics(
        endpoints.kafka_bootstrap, [protocol.TopicSpec(name=name, partitions=3, key="test")]
    )
    yield name
    admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


@contextlib.contextmanager
def schema_engine(endpoints: Endpoints, unique: str) -> Iterator[sqlalchemy.Engine]:
    """An engine on the stack's PostgreSQL whose search path is a new schema, dropped after."""
    schema = f"test_{unique}"
    admin = sqlalchemy.create_engine(endpoints.database_url)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    engine = sqlalchemy.create_engine(
        endpoints.database_url, connect_args={"options": f"-csearch_path={schema}"}
    )
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def postgres(endpoints: Endpoints, unique: str) -> Iterator[sqlalchemy.Engine]:
    """An engine on the stack's PostgreSQL whose search path is a schema of the test's own."""
    with schema_engine(endpoints, unique) as engine:
        yield engine


@pytest.fixture
def vault(endpoints: Endpoints, unique: str) -> Iterator[tuple[hvac.Client, str]]:
    """A Vault client and a KV v2 path prefix of the test's own, destroyed after."""
    client = hvac.Client(url=endpoints.vault_addr, token=endpoints.vault_token)
    prefix = f"tests/{unique}"
    yield client, prefix
    try:
        keys = client.secrets.kv.v2.list_secrets(path=prefix)["data"]["keys"]
    except hvac.exceptions.InvalidPath:  # the test wrote nothing
        keys = []
    for key in keys:
        client.secrets.kv.v2.delete_metadata_and_all_versions(path=f"{prefix}/{key}")
