"""The ``compose`` target: a Docker Compose file that runs a flow on one machine.

Installed services (Kafka in KRaft mode, Redis Stack, PostgreSQL with TimescaleDB, OpenBao), a
one-shot job that creates the protocol's topics, the control plane (its local supervisor runs
the bots, which ``flow apply`` deploys), the executors, the feeds and the agents. Coyote
containers run as a non-root user on a read-only root filesystem with every capability dropped.

Secrets never appear in the file: a ``secretRef`` ``{name, key}`` becomes the Compose secret
``<name>.<key>`` read from ``secrets/<name>/<key>`` beside the compose file, mounted at
``/run/secrets/<name>.<key>``; the container's entry point exports it into the variable the
service reads before it starts the service. In dev mode the installed services use the local
stack's development defaults instead (PostgreSQL trusts the private network, OpenBao's dev
root token), so the demo needs no setup.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import shlex
from pathlib import Path
from typing import Any, Final

from coyote_sdk import protocol
from coyote_sdk.flow._common import (
    ACCOUNTS_PATH,
    CONTROL_PLANE_PORT,
    COYOTE_IMAGES,
    DATABASE_NAME,
    DATABASE_USER,
    DEV_VAULT_TOKEN,
    INFRASTRUCTURE_IMAGES,
    INSTALLED_SECRETS,
    executor_accounts,
    image,
    to_toml,
    to_yaml,
)
from coyote_sdk.flow._compile import CompileError
from coyote_sdk.flow._load import Flow

APP_USER: Final = "10001:10001"
"""The numeric non-root user Coyote containers run as (bot runtimes need a numeric one too)."""
WORK_DIR: Final = "/var/lib/coyote"
EXECUTOR_HEALTH_PORT: Final = 8410
"""Where an executor serves ``/healthz`` (``COYOTE_EXECUTOR_HEALTH_PORT``)."""


def _healthz(port: int) -> str:
    """A healthcheck in the image's own Python: no curl or wget in a slim image."""
    return (
        "import urllib.request; "
        f"urllib.request.urlopen('http://127.0.0.1:{port}/healthz', timeout=3)"
    )


@dataclasses.dataclass
class _Env:
    """A service's environment: plain values, and values made from secret files at start."""

    plain: dict[str, str] = dataclasses.field(default_factory=dict)
    from_secrets: dict[str, str] = dataclasses.field(default_factory=dict)
    """Variable → shell word building it, e.g. ``"$(cat /run/secrets/coyote-redis.url)"``."""
    secrets: list[str] = dataclasses.field(default_factory=list)

    def merged(self, other: _Env) -> _Env:
        return _Env(
            {**self.plain, **other.plain},
            {**self.from_secrets, **other.from_secrets},
            sorted({*self.secrets, *other.secrets}),
        )


class _Compose:
    def __init__(self, flow: Flow, output_dir: Path) -> None:
        self.flow = flow
        self.output_dir = output_dir
        self.dev = flow.mode == "dev"
        self.connections = flow.connections
        self.secret_files: dict[str, str] = {}
        self.services: dict[str, Any] = {}
        self.volumes: dict[str, Any] = {}

    # -- paths and secrets ---------------------------------------------------------------

    def relative(self, path: Path) -> str:
        """A path of the flow as the compose file beside ``output_dir`` must write it."""
        text = os.path.relpath(path, self.output_dir)
        return text if text.startswith(".") else f"./{text}"

    def secret(self, name: str, key: str) -> str:
        """Declares the secret ``name``/``key``; answers the shell word that reads it."""
        compose_name = f"{name}.{key}"
        self.secret_files[compose_name] = f"./secrets/{name}/{key}"
        return f'"$(cat /run/secrets/{compose_name})"'

    def secret_env(self, variable: str, ref: dict[str, Any], template: str = "{}") -> _Env:
        word = self.secret(ref["secretRef"]["name"], ref["secretRef"]["key"])
        inner = word[1:-1]  # without its quotes, to sit inside the template's
        return _Env(
            from_secrets={variable: '"' + template.format(inner) + '"'},
            secrets=[f"{ref['secretRef']['name']}.{ref['secretRef']['key']}"],
        )

    # -- connections ---------------------------------------------------------------------

    def kafka_bootstrap(self) -> str:
        kafka = self.connections["kafka"]
        return "kafka:9092" if kafka == "installed" else str(kafka["bootstrap"])

    def redis_env(self) -> _Env:
        redis = self.connections["redis"]
        if redis == "installed":
            return _Env({"COYOTE_REDIS_URL": "redis://redis:6379/0"})
        return self.url_env("COYOTE_REDIS_URL", redis)

    def url_env(self, variable: str, connection: dict[str, Any]) -> _Env:
        """A URL, with the password of ``passwordFrom`` put in at start, or ``urlFrom``."""
        if "urlFrom" in connection:
            return self.secret_env(variable, connection["urlFrom"])
        if "passwordFrom" not in connection:
            return _Env({variable: connection["url"]})
        scheme, rest = connection["url"].split("://", 1)
        user, _, host = rest.rpartition("@")
        template = f"{_literal(scheme)}://{_literal(user)}:{{}}@{_literal(host)}"
        return self.secret_env(variable, connection["passwordFrom"], template)

    def database_env(self, *variables: str) -> _Env:
        database = self.connections["database"]
        host = f"postgres:5432/{DATABASE_NAME}"
        env = _Env()
        for variable in variables:
            if database == "installed" and self.dev:
                env.plain[variable] = f"postgresql+psycopg://{DATABASE_USER}@{host}"
            elif database == "installed":
                name, key = INSTALLED_SECRETS["database"]
                env = env.merged(
                    self.secret_env(
                        variable,
                        {"secretRef": {"name": name, "key": key}},
                        f"postgresql+psycopg://{DATABASE_USER}:{{}}@{host}",
                    )
                )
            else:
                env = env.merged(self.url_env(variable, database))
        return env

    def vault_env(self) -> _Env:
        vault = self.connections["vault"]
        if vault == "installed":
            env = _Env({"COYOTE_VAULT_ADDR": "http://vault:8200"})
            if self.dev:
                env.plain["COYOTE_VAULT_TOKEN"] = DEV_VAULT_TOKEN
                return env
            name, key = INSTALLED_SECRETS["vault"]
            return env.merged(
                self.secret_env("COYOTE_VAULT_TOKEN", {"secretRef": {"name": name, "key": key}})
            )
        if "tokenFrom" not in vault:
            raise CompileError(
                "connections.vault: Docker Compose needs tokenFrom: {secretRef: ...} (logging in "
                "with a service account is for Kubernetes)"
            )
        return _Env({"COYOTE_VAULT_ADDR": vault["addr"]}).merged(
            self.secret_env("COYOTE_VAULT_TOKEN", vault["tokenFrom"])
        )

    def stack_env(self) -> _Env:
        """Where the shared services are, as every Coyote process reads it (StackSettings)."""
        return (
            _Env({"COYOTE_KAFKA_BOOTSTRAP": self.kafka_bootstrap()})
            .merged(self.redis_env())
            .merged(self.database_env("COYOTE_DATABASE_URL"))
            .merged(self.vault_env())
        )

    def depends(self, *needs: str) -> dict[str, Any]:
        """``depends_on`` the installed services among ``needs`` (and the topics job)."""
        conditions: dict[str, Any] = {}
        for need in needs:
            if need == "kafka-topics":
                conditions[need] = {"condition": "service_completed_successfully"}
            elif self.connections[need] == "installed":
                service = "postgres" if need == "database" else need
                conditions[service] = {"condition": "service_healthy"}
        return conditions

    # -- services ------------------------------------------------------------------------

    def coyote_service(
        self, component: str, program: list[str], env: _Env, **extra: Any
    ) -> dict[str, Any]:
        """A container of a Coyote image: non-root, read-only, no capabilities."""
        service: dict[str, Any] = {"image": image(self.flow, component)}
        build = (self.flow.data.get("images") or {}).get("build")
        if build:
            service["build"] = {
                "context": self.relative(self.flow.resolve(build["context"])),
                "dockerfile": COYOTE_IMAGES[component][1],
            }
        service.update(self.entrypoint(program, env))
        if env.plain:
            service["environment"] = dict(sorted(env.plain.items()))
        if env.secrets:
            service["secrets"] = list(env.secrets)
        service.update(
            {
                "user": APP_USER,
                "read_only": True,
                "tmpfs": ["/tmp"],
                "cap_drop": ["ALL"],
                "security_opt": ["no-new-privileges:true"],
            }
        )
        service.update({key: value for key, value in extra.items() if value})
        return service

    @staticmethod
    def entrypoint(program: list[str], env: _Env) -> dict[str, Any]:
        if not env.from_secrets:
            return {"entrypoint": program[:1], "command": program[1:]}
        # The secrets are read into the environment by a shell that then becomes the program
        # ("$0" "$@"), so no value is ever written into the file or the container's config.
        # An assignment fails with its `cat` under `set -e`; an `export` would hide that.
        lines = ["set -e"]
        for name, word in sorted(env.from_secrets.items()):
            lines += [f"{name}={word}", f"export {name}"]
        lines.append('exec "$0" "$@"')
        script = "\n".join(lines).replace("$", "$$")
        return {"entrypoint": ["/bin/sh", "-c", script, program[0]], "command": program[1:]}

    def add_infrastructure(self) -> None:
        c = self.connections
        if c["kafka"] == "installed":
            self.services["kafka"] = _kafka(self.flow.name)
            self.volumes["kafka-data"] = {}
        self.services["kafka-topics"] = _kafka_topics(self.kafka_bootstrap(), self.depends("kafka"))
        if c["redis"] == "installed":
            self.services["redis"] = {
                "image": INFRASTRUCTURE_IMAGES["redis"],
                "volumes": ["redis-data:/data"],
                "healthcheck": _health(["CMD", "redis-cli", "ping"]),
                "restart": "unless-stopped",
            }
            self.volumes["redis-data"] = {}
        if c["database"] == "installed":
            self.services["postgres"] = self.postgres()
            self.volumes["postgres-data"] = {}
        if c["vault"] == "installed":
            if self.flow.mode == "live":
                raise CompileError(
                    "connections.vault: with Docker Compose an installed vault is an OpenBao dev "
                    "server that keeps its secrets in memory; in live mode give your Vault: "
                    "{addr: ..., tokenFrom: {secretRef: ...}}"
                )
            self.services["vault"] = self.openbao()

    def postgres(self) -> dict[str, Any]:
        env = {"POSTGRES_USER": DATABASE_USER, "POSTGRES_DB": DATABASE_NAME}
        service: dict[str, Any] = {"image": INFRASTRUCTURE_IMAGES["database"]}
        if self.dev:
            # Dev mode: no password on the compose project's private network.
            env["POSTGRES_HOST_AUTH_METHOD"] = "trust"
        else:
            name, key = INSTALLED_SECRETS["database"]
            self.secret(name, key)
            env["POSTGRES_PASSWORD_FILE"] = f"/run/secrets/{name}.{key}"
            service["secrets"] = [f"{name}.{key}"]
        service.update(
            {
                "environment": env,
                "volumes": ["postgres-data:/var/lib/postgresql/data"],
                "healthcheck": _health(
                    ["CMD", "pg_isready", "-U", DATABASE_USER, "-d", DATABASE_NAME]
                ),
                "restart": "unless-stopped",
            }
        )
        return service

    def openbao(self) -> dict[str, Any]:
        # A dev server: in memory, unsealed, KV v2 at secret/ (refused in live mode). The
        # image's entry point runs it as its own non-root user.
        service: dict[str, Any] = {
            "image": INFRASTRUCTURE_IMAGES["vault"],
            "command": ["server", "-dev", "-dev-listen-address=0.0.0.0:8200"],
        }
        env = {"SKIP_SETCAP": "true", "BAO_ADDR": "http://127.0.0.1:8200"}
        if self.dev:
            service["command"].append(f"-dev-root-token-id={DEV_VAULT_TOKEN}")
        else:
            name, key = INSTALLED_SECRETS["vault"]
            self.secret(name, key)
            script = (
                f'BAO_DEV_ROOT_TOKEN_ID="$(cat /run/secrets/{name}.{key})" && '
                'export BAO_DEV_ROOT_TOKEN_ID && exec docker-entrypoint.sh "$@"'
            )
            service["entrypoint"] = ["/bin/sh", "-c", script.replace("$", "$$"), "openbao"]
            service["secrets"] = [f"{name}.{key}"]
        service.update(
            {
                "environment": env,
                "healthcheck": _health(["CMD", "bao", "status"]),
                "restart": "unless-stopped",
            }
        )
        return service

    def add_control_plane(self) -> None:
        settings = self.flow.data.get("controlPlane") or {}
        port = settings.get("port", CONTROL_PLANE_PORT)
        env = self.stack_env().merged(
            self.database_env(
                "COYOTE_CONTROL_PLANE_DATABASE_URL", "COYOTE_CONTROL_PLANE_REPORTS__DATABASE_URL"
            )
        )
        env.plain["COYOTE_CONTROL_PLANE_SUPERVISOR__BACKEND"] = "local"
        if self.flow.mode == "live":
            env.plain["COYOTE_CONTROL_PLANE_COOKIE_SECURE"] = "true"
        self.services["control-plane"] = self.coyote_service(
            "control-plane",
            [
                "coyote-control-plane",
                "serve",
                "--host",
                "0.0.0.0",
                "--port",
                str(CONTROL_PLANE_PORT),
            ],
            env,
            working_dir=WORK_DIR,
            volumes=[f"control-plane-data:{WORK_DIR}"],
            ports=[f"127.0.0.1:{port}:{CONTROL_PLANE_PORT}"],
            healthcheck=_health(
                ["CMD", "python", "-c", _healthz(CONTROL_PLANE_PORT)], start_period="30s"
            ),
            depends_on=self.depends("database", "redis", "kafka-topics", "vault"),
            restart="unless-stopped",
        )
        self.volumes["control-plane-data"] = {}

    def add_executors(self, configs: dict[str, Any]) -> None:
        for unit in self.flow.units("executor"):
            replicas = unit.get("replicas", 1)
            for i in range(1, replicas + 1):
                name = unit["name"] if replicas == 1 else f"{unit['name']}-{i}"
                env = self.stack_env().merged(self.database_env("COYOTE_EXECUTOR_DATABASE_URL"))
                # A stable instance id per replica: a restart fences its own predecessor's
                # Kafka transactions instead of starting a new producer beside them.
                env.plain["COYOTE_EXECUTOR_INSTANCE_ID"] = name
                env.plain["COYOTE_EXECUTOR_HEALTH_PORT"] = str(EXECUTOR_HEALTH_PORT)
                self.services[name] = self.coyote_service(
                    "executor",
                    ["coyote-executor", "run", "--accounts", ACCOUNTS_PATH],
                    env,
                    configs=[{"source": "executor-accounts", "target": ACCOUNTS_PATH}],
                    healthcheck=_health(
                        ["CMD", "python", "-c", _healthz(EXECUTOR_HEALTH_PORT)],
                        start_period="60s",
                    ),
                    depends_on=self.depends("database", "redis", "kafka-topics", "vault"),
                    restart="unless-stopped",
                )
            configs["executor-accounts"] = {"content": to_toml(executor_accounts(self.flow))}

    def add_feeds(self) -> None:
        for unit in self.flow.units("feed"):
            args, mounts = feed_arguments(unit)
            volumes = [
                {
                    "type": "bind",
                    "source": self.relative(self.flow.resolve(source)),
                    "target": target,
                    "read_only": True,
                }
                for source, target in mounts
            ]
            ends = unit["source"] == "replay" or "seconds" in unit
            extra: dict[str, Any] = {"depends_on": self.depends("redis")}
            if volumes:
                extra["volumes"] = volumes
            extra["restart"] = "on-failure" if ends else "unless-stopped"
            self.services[unit["name"]] = self.coyote_service(
                "bot", ["coyote-sdk", "feed", *args], self.redis_env(), **extra
            )

    def add_agents(self) -> None:
        for unit in self.flow.units("agent"):
            topics = unit["topics"]
            env = _Env(
                {
                    "COYOTE_AGENT_NAME": unit["name"],
                    "COYOTE_AGENT_READ_TOPICS": ",".join(topics.get("read", [])),
                    "COYOTE_AGENT_WRITE_TOPICS": ",".join(topics.get("write", [])),
                    "COYOTE_KAFKA_BOOTSTRAP": self.kafka_bootstrap(),
                }
            ).merged(self.redis_env())
            for item in unit.get("env") or []:
                if "value" in item:
                    env.plain[item["name"]] = item["value"]
                else:
                    env = env.merged(self.secret_env(item["name"], item["valueFrom"]))
            service: dict[str, Any] = {"image": unit["image"]}
            if env.from_secrets:
                command = unit.get("command") or []
                if not command:
                    raise CompileError(
                        f"agent {unit['name']}: secrets need a command to start after them"
                    )
                service.update(self.entrypoint(command, env))
            elif unit.get("command"):
                service["command"] = list(unit["command"])
            service["environment"] = dict(sorted(env.plain.items()))
            if env.secrets:
                service["secrets"] = env.secrets
            service.update(
                {
                    "read_only": True,
                    "tmpfs": ["/tmp"],
                    "cap_drop": ["ALL"],
                    "security_opt": ["no-new-privileges:true"],
                    "depends_on": self.depends("redis", "kafka-topics"),
                    "restart": "unless-stopped",
                }
            )
            if unit.get("replicas", 1) != 1:
                service["deploy"] = {"replicas": unit.get("replicas", 1)}
            self.services[unit["name"]] = service

    def document(self) -> dict[str, Any]:
        configs: dict[str, Any] = {}
        self.add_infrastructure()
        self.add_control_plane()
        self.add_executors(configs)
        self.add_feeds()
        self.add_agents()
        document: dict[str, Any] = {"name": self.flow.name, "services": self.services}
        if self.volumes:
            document["volumes"] = self.volumes
        if configs:
            document["configs"] = configs
        if self.secret_files:
            document["secrets"] = {
                name: {"file": path} for name, path in sorted(self.secret_files.items())
            }
        return document


def _literal(text: str) -> str:
    """Text for a ``str.format`` template inside a double-quoted shell word."""
    for special in ("\\", '"', "$", "`"):
        text = text.replace(special, "\\" + special)
    return text.replace("{", "{{").replace("}", "}}")


def _health(test: list[str], *, start_period: str = "10s") -> dict[str, Any]:
    return {
        "test": test,
        "interval": "10s",
        "timeout": "5s",
        "retries": 6,
        "start_period": start_period,
    }


def _kafka(flow_name: str) -> dict[str, Any]:
    # A KRaft cluster id is 16 bytes in URL-safe base64; derived from the flow's name so the
    # file is the same each time it is compiled.
    digest = hashlib.sha256(f"coyote-flow:{flow_name}".encode()).digest()[:16]
    cluster_id = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return {
        "image": INFRASTRUCTURE_IMAGES["kafka"],
        "environment": {
            "CLUSTER_ID": cluster_id,
            "KAFKA_NODE_ID": "1",
            "KAFKA_PROCESS_ROLES": "broker,controller",
            "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
            "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://kafka:9092",
            "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@kafka:9093",
            "KAFKA_LOG_DIRS": "/var/lib/kafka/data",
            # Topics are created on purpose (the kafka-topics job), never by a typo.
            "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
            "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        },
        "volumes": ["kafka-data:/var/lib/kafka/data"],
        "healthcheck": _health(
            [
                "CMD",
                "/opt/kafka/bin/kafka-broker-api-versions.sh",
                "--bootstrap-server",
                "localhost:9092",
            ],
            start_period="30s",
        ),
        "restart": "unless-stopped",
    }


def _kafka_topics(bootstrap: str, depends_on: dict[str, Any]) -> dict[str, Any]:
    """A one-shot job creating the protocol's topics (coyote_sdk.protocol.TOPICS)."""
    commands = []
    for topic in protocol.TOPICS:
        words = [
            "/opt/kafka/bin/kafka-topics.sh",
            "--bootstrap-server",
            bootstrap,
            "--create",
            "--if-not-exists",
            "--topic",
            topic.name,
            "--partitions",
            str(topic.partitions),
        ]
        for key, value in topic.config.items():
            words += ["--config", f"{key}={value}"]
        commands.append(shlex.join(words))
    service: dict[str, Any] = {
        "image": INFRASTRUCTURE_IMAGES["kafka"],
        "entrypoint": ["/bin/sh", "-c", "set -e\n" + "\n".join(commands)],
        "restart": "on-failure",
    }
    if depends_on:
        service["depends_on"] = depends_on
    return service


def feed_arguments(unit: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
    """The ``coyote-sdk feed`` arguments of a feed unit, and the files it needs mounted
    (flow path, container path)."""
    source = unit["source"]
    args = [source]
    mounts: list[tuple[str, str]] = []
    if source == "replay":
        for file in unit["files"]:
            target = f"/data/{unit['name']}/{Path(file).name}"
            mounts.append((file, target))
            args.append(target)
    elif source == "random-walk":
        args += [f"{symbol}={price}" for symbol, price in unit["symbols"].items()]
    else:
        args += list(unit["symbols"])
    args += ["--venue", unit["venue"]]
    options = {
        "symbol": "--symbol",
        "timeframe": "--timeframe",
        "speed": "--speed",
        "barsPerSecond": "--bars-per-second",
        "tradesPerSecond": "--trades-per-second",
        "volatility": "--volatility",
        "seed": "--seed",
        "seconds": "--seconds",
        "url": "--url",
    }
    for key, option in options.items():
        if key in unit:
            args += [option, str(unit[key])]
    if unit.get("rebase"):
        args.append("--rebase")
    return args, mounts


def compile_compose(flow: Flow, *, output_dir: Path | None = None, source: str = "") -> str:
    """The Docker Compose file of a flow.

    Args:
        flow: The flow.
        output_dir: The folder the compose file will be in: the build context, replay files
            and secret files are written relative to it. The flow's folder by default.
        source: How to name the flow in the header comment (its path as the user gave it).
    """
    output_dir = (output_dir or flow.base_dir).resolve()
    document = _Compose(flow, output_dir).document()
    header = (
        f"Generated by `coyote-sdk flow compile {source or flow.path.name} --target compose`:\n"
        "edit the flow, not this file. Bots are not services here: `coyote-sdk flow apply`\n"
        "deploys them to the control plane, whose supervisor runs them (docs/coyoteflow.md)."
    )
    return to_yaml(document, header=header)
