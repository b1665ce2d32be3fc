"""The checks of a flow that a JSON Schema cannot express: unique names, references between
accounts and units, files that must exist, and what each mode allows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from coyote_sdk import protocol

if TYPE_CHECKING:
    from coyote_sdk.flow._load import FieldPath, Flow

Problem = tuple["FieldPath", str]

SANDBOX = {
    broker: options["environment"].default
    for broker, options in protocol.BROKER_OPTIONS.items()
    if "environment" in options
}
"""The ``options.environment`` value of each real broker's sandbox (its default), as the
protocol's ``BROKER_OPTIONS`` defines it."""
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)
"""Environment variables whose value must come from a secret, never the file."""
PARTITIONS = protocol.INTENTS_TOPIC.partitions


def semantic_problems(flow: Flow) -> list[Problem]:
    """Every semantic problem of a schema-valid flow, as (field path, message)."""
    return [
        *_unique_names(flow),
        *_connections(flow),
        *_accounts(flow),
        *_units(flow),
    ]


def _unique_names(flow: Flow) -> Iterator[Problem]:
    data = flow.data
    yield from _duplicates(
        [(("accounts", i, "name"), a["name"]) for i, a in enumerate(data.get("accounts") or [])],
        "account",
    )
    modules = data.get("modules") or []
    yield from _duplicates(
        [(("modules", i, "name"), m["name"]) for i, m in enumerate(modules)], "module"
    )
    # Units of all modules, enabled or not: a name means one thing in the file.
    yield from _duplicates(
        [
            (("modules", m, "units", u, "name"), unit["name"])
            for m, module in enumerate(modules)
            for u, unit in enumerate(module.get("units") or [])
        ],
        "unit",
    )


def _duplicates(named: list[tuple[FieldPath, str]], what: str) -> Iterator[Problem]:
    first: dict[str, FieldPath] = {}
    for path, name in named:
        if name in first:
            line = ".".join(str(p) for p in first[name])
            yield path, f"another {what} is named {name!r} (at {line}); names must be unique"
        else:
            first[name] = path


def _connections(flow: Flow) -> Iterator[Problem]:
    database = flow.connections["database"]
    if isinstance(database, dict):
        if ("url" in database) == ("urlFrom" in database):
            yield (
                ("connections", "database"),
                "give url (without a password) or urlFrom: {secretRef: ...}, exactly one",
            )
        elif "urlFrom" in database and "passwordFrom" in database:
            yield (
                ("connections", "database", "passwordFrom"),
                "urlFrom holds the whole URL, password included: passwordFrom goes with url",
            )


def _accounts(flow: Flow) -> Iterator[Problem]:
    for i, account in enumerate(flow.accounts):
        where: FieldPath = ("accounts", i)
        broker = account["broker"]
        options = account.get("options") or {}
        if broker == "paper":
            if options:
                yield (
                    (*where, "options"),
                    "the paper broker takes no options (its fill model is paper:)",
                )
        else:
            if "paper" in account:
                yield (*where, "paper"), f"a fill model is for paper accounts, not {broker}"
            if "credentials" not in account:
                yield (
                    (*where, "broker"),
                    f"an {broker} account needs credentials: {{vault: <path>}} (its broker keys in "
                    "Vault)",
                )
            environment = options.get("environment", SANDBOX[broker])
            if environment not in (SANDBOX[broker], "live"):
                yield (
                    (*where, "options", "environment"),
                    f"{environment!r} is not a {broker} environment: {SANDBOX[broker]!r} "
                    "(its sandbox) or 'live'",
                )
            elif flow.mode == "live" and environment != "live":
                yield (
                    (*where, "options", "environment") if "environment" in options else where,
                    f"mode is live but account {account['name']!r} trades {broker}'s sandbox: set "
                    "options.environment: live, or use mode: paper",
                )
            elif flow.mode != "live" and environment == "live":
                yield (
                    (*where, "options", "environment"),
                    f"account {account['name']!r} trades real money (environment: live) but mode "
                    f"is {flow.mode}: live trading needs mode: live",
                )
            if broker == "oanda" and not options.get("oanda_account_id"):
                yield (*where, "options"), "an oanda account needs options.oanda_account_id"
            elif broker == "oanda":
                # The values the schema cannot check (the protocol's definition does).
                try:
                    protocol.check_broker_options(
                        broker, {"oanda_account_id": options["oanda_account_id"]}
                    )
                except ValueError as exc:
                    yield (*where, "options", "oanda_account_id"), str(exc).partition(": ")[2]
        if "risk" in account:
            message = _risk_problem(account["risk"], flow.account_id(account["name"]))
            if message:
                yield (*where, "risk"), message


def _risk_problem(document: dict[str, Any], account_id: str) -> str | None:
    """What the risk engine's own parser says of the document, when the engine is installed
    (it is optional for the SDK; the schema has checked the structure either way)."""
    try:
        from coyote_risk import risk_config_from_mapping
    except ImportError:
        return None
    try:
        risk_config_from_mapping(document, account_id=account_id)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


RESERVED = frozenset({"kafka", "kafka-topics", "redis", "postgres", "vault", "control-plane"})
"""Names the compilers give the services of the deployment itself."""


def _units(flow: Flow) -> Iterator[Problem]:
    accounts = {a["name"]: a for a in flow.accounts}
    executors: list[FieldPath] = []
    allocated: dict[str, Decimal] = {}
    for where, unit in flow.located_units():
        kind = unit["kind"]
        if kind != "bot" and unit["name"] in RESERVED:
            yield (*where, "name"), f"{unit['name']!r} is the name of a service of the deployment"
        if kind == "bot":
            yield from _bot(flow, where, unit, accounts)
            if unit["account"] in accounts:
                allocated[unit["account"]] = allocated.get(unit["account"], Decimal(0)) + Decimal(
                    str(unit.get("capital", 0))
                )
        elif kind == "executor":
            executors.append(where)
            replicas = unit.get("replicas", 1)
            if replicas > PARTITIONS:
                yield (
                    (*where, "replicas"),
                    f"{replicas} replicas but the intents topic has {PARTITIONS} partitions: "
                    f"at most {PARTITIONS} executors can share it",
                )
        elif kind == "feed":
            yield from _feed(flow, where, unit)
        elif kind == "agent":
            yield from _agent(where, unit)
    for where in executors[1:]:
        yield (
            where,
            "one executor unit per flow (give it replicas): executors share one consumer group "
            "and each serves every account, and an executor refuses the intents of accounts it "
            "does not serve",
        )
    for i, account in enumerate(flow.accounts):
        capital = account.get("capital")
        total = allocated.get(account["name"], Decimal(0))
        if capital is not None and total > Decimal(str(capital)):
            yield (
                ("accounts", i, "capital"),
                f"its bots are allocated {total} in total, over the account's capital of {capital}",
            )


def _bot(
    flow: Flow, where: FieldPath, unit: dict[str, Any], accounts: dict[str, Any]
) -> Iterator[Problem]:
    if unit["account"] not in accounts:
        known = sorted(accounts) or "none"
        yield (
            (*where, "account"),
            f"no account named {unit['account']!r} in accounts (the flow's accounts: {known})",
        )
    if "release" in unit:
        for other in ("version", "params", "risk", "path"):
            if other in unit:
                yield (
                    (*where, other),
                    f"a release fixes the bot's version, parameters and risk profile; give "
                    f"release or {other}, not both",
                )
    if "path" in unit:
        if "version" in unit:
            yield (
                (*where, "version"),
                "the version is the one path pushes; give path or version, not both",
            )
        if not flow.resolve(unit["path"]).is_file():
            yield (*where, "path"), f"no such file: {flow.resolve(unit['path'])}"


def _feed(flow: Flow, where: FieldPath, unit: dict[str, Any]) -> Iterator[Problem]:
    if unit["source"] == "replay":
        if "speed" in unit and "barsPerSecond" in unit:
            yield (*where, "barsPerSecond"), "give speed or barsPerSecond, not both"
        if "symbol" in unit and len(unit["files"]) != 1:
            yield (*where, "symbol"), "symbol names the symbol of a single file"
        for i, name in enumerate(unit["files"]):
            if not flow.resolve(name).is_file():
                yield (*where, "files", i), f"no such file: {flow.resolve(name)}"
    elif unit["source"] == "random-walk":
        for symbol, price in unit["symbols"].items():
            if Decimal(str(price)) <= 0:
                yield (*where, "symbols", symbol), "a start price must be above 0"


def _agent(where: FieldPath, unit: dict[str, Any]) -> Iterator[Problem]:
    seen: set[str] = set()
    for i, item in enumerate(unit.get("env") or []):
        path: FieldPath = (*where, "env", i)
        name = item["name"]
        if name in seen:
            yield (*path, "name"), f"{name} is set twice"
        seen.add(name)
        if ("value" in item) == ("valueFrom" in item):
            yield path, f"{name}: give value or valueFrom: {{secretRef: ...}}, exactly one"
        elif "value" in item and SECRET_NAME.search(name):
            yield (
                (*path, "value"),
                f"{name} looks like a secret: secrets are never written in the flow; use "
                "valueFrom: {secretRef: {name: ..., key: ...}}",
            )
        if name.startswith("COYOTE_"):
            yield (*path, "name"), f"{name}: COYOTE_* variables are set by the deployment"
    if any("valueFrom" in item for item in unit.get("env") or []) and not unit.get("command"):
        yield (
            (*where, "env"),
            "an agent with secrets needs its command: the secrets are read into its "
            "environment before the command starts (the image's own entry point is replaced)",
        )
    topics = unit["topics"]
    if not topics.get("read") and not topics.get("write"):
        yield (*where, "topics"), "name the topics it may read or write"
