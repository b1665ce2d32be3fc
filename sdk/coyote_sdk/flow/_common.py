"""What the compiler targets share: the images, the executor's accounts file, and YAML and
TOML output that reads well and is stable byte for byte (the golden tests compare it)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Final

import yaml

if TYPE_CHECKING:
    from coyote_sdk.flow._load import Flow

DEFAULT_REGISTRY: Final = "ghcr.io/coyote"
DEFAULT_TAG: Final = "latest"

COYOTE_IMAGES: Final = {
    "control-plane": ("coyote-control-plane", "control-plane/Dockerfile"),
    "executor": ("coyote-executor", "executor/Dockerfile"),
    "bot": ("coyote-bot", "sdk/Dockerfile"),
}
"""Each Coyote image: its name under the registry and its Dockerfile (the build context is the
repository root)."""

INFRASTRUCTURE_IMAGES: Final = {
    "kafka": "apache/kafka:4.1.1",
    "redis": "redis/redis-stack-server:7.4.0-v3",
    "database": "timescale/timescaledb:2.17.2-pg15",
    "vault": "openbao/openbao:2.7.2",
}
"""The services a flow runs itself when a connection is ``installed``: the versions of the
local stack (Kafka 4.1, Redis Stack 7.4, PostgreSQL 15 with TimescaleDB, OpenBao)."""

CONTROL_PLANE_PORT: Final = 8400
ACCOUNTS_PATH: Final = "/etc/coyote/accounts.toml"
"""Where the executor finds its accounts file in its container."""
DATABASE_USER: Final = "coyote"
DATABASE_NAME: Final = "coyote"
DEV_VAULT_TOKEN: Final = "coyote-dev-root"
"""The OpenBao dev server's root token in dev mode: the local stack's documented development
default (``COYOTE_VAULT_DEV_ROOT_TOKEN``), never used outside dev mode."""
INSTALLED_SECRETS: Final = {
    "database": ("coyote-database", "password"),
    "vault": ("coyote-vault", "token"),
}
"""The secret (name, key) an installed service's credential comes from outside dev mode."""


def image(flow: Flow, component: str) -> str:
    """The reference of a Coyote image (``control-plane``, ``executor``, ``bot``)."""
    images = flow.data.get("images") or {}
    registry = str(images.get("registry", DEFAULT_REGISTRY)).rstrip("/")
    return f"{registry}/{COYOTE_IMAGES[component][0]}:{images.get('tag', DEFAULT_TAG)}"


def executor_accounts(flow: Flow) -> dict[str, Any]:
    """The executor's accounts file (docs/executor.md) for every account of the flow."""
    accounts: dict[str, Any] = {}
    for account in flow.accounts:
        entry: dict[str, Any] = {
            "broker": account["broker"],
            "venue": account["venue"],
            "currency": account.get("currency", "USD"),
        }
        if "credentials" in account:
            entry["credentials"] = account["credentials"]["vault"]
        if account.get("paper"):
            entry["paper"] = _decimals_as_text(account["paper"])
        if account.get("options"):
            entry["options"] = dict(account["options"])
        entry["risk"] = _decimals_as_text(account.get("risk") or {})
        accounts[flow.account_id(account["name"])] = entry
    return {"accounts": accounts}


def _decimals_as_text(value: Any) -> Any:
    # Floats become exact decimal text ("0.5"), as docs/risk.md writes money and prices.
    if isinstance(value, dict):
        return {k: _decimals_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimals_as_text(v) for v in value]
    if isinstance(value, float):
        return repr(value)
    return value


# -- TOML ------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def to_toml(document: dict[str, Any]) -> str:
    """TOML for plain nested tables of strings, numbers, booleans and lists of those."""
    lines: list[str] = []
    _toml_table(document, [], lines)
    return "\n".join(lines).strip() + "\n"


def _toml_table(table: dict[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if path and (scalars or not tables):
        lines.append("")
        lines.append(f"[{'.'.join(_toml_key(p) for p in path)}]")
    for key, value in scalars.items():
        lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in tables.items():
        _toml_table(value, [*path, key], lines)


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


# -- YAML ------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style, keys in the order given, multi-line strings as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Lists indented under their key, as Kubernetes and Compose files are written.
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(data: Any, *, header: str = "") -> str:
    """YAML for people and golden files: stable, block style, 100 columns."""
    body = yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comment + body


def to_yaml_documents(documents: list[Any], *, header: str = "") -> str:
    """Several YAML documents separated by ``---``."""
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comment + "".join("---\n" + to_yaml(d) for d in documents)
