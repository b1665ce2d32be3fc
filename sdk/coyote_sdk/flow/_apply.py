"""``flow apply``: make a control plane match a flow — its accounts and risk limits, the bots'
versions and the deployments — and nothing more.

:func:`plan` reads the control plane and answers what would change, field by field, without
changing anything; :func:`apply` carries a plan out. Applying the same flow twice changes
nothing the second time: pushes are content-addressed (the same code is the same version),
releases too (the same version, parameters and risk profile are the same release), and every
other field is compared before it is written. Objects the file does not name are left alone
unless ``prune`` is asked for.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal

from coyote_sdk.flow._load import Flow

if TYPE_CHECKING:
    from coyote_sdk.bundles import Bundle
    from coyote_sdk.client import ControlPlaneClient

Action = Literal["create", "update", "unchanged", "delete", "conflict", "untracked"]
SYMBOLS: Final = {
    "create": "+",
    "update": "~",
    "unchanged": "=",
    "delete": "-",
    "conflict": "!",
    "untracked": "?",
}

# The order steps run in, whatever object they belong to: capital is freed before it is
# taken, and accounts exist before deployments need them.
_ACCOUNTS, _PUSH, _FREE, _PRUNE_DEPLOYMENTS, _DEPLOY, _SHRINK, _PRUNE_ACCOUNTS = range(7)
_STOP_TIMEOUT_S: Final = 120.0


class PlanError(Exception):
    """The plan cannot be made: the flow is for another organisation, a bot or version it
    names does not exist, a bot file cannot be bundled."""


class ApplyError(Exception):
    """A step failed; ``done`` lists the steps carried out before it."""

    def __init__(self, message: str, done: list[str]) -> None:
        super().__init__(message)
        self.done = done


@dataclasses.dataclass(frozen=True)
class FieldChange:
    """One field of an object: its value on the control plane and in the file (None: absent)."""

    field: str
    before: Any
    after: Any

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "before": self.before, "after": self.after}


@dataclasses.dataclass
class Change:
    """What the plan does to one object.

    Attributes:
        kind: ``account``, ``bot`` or ``deployment``.
        name: Its name on the control plane.
        action: ``create``, ``update``, ``unchanged``, ``delete``; ``conflict`` when the
            control plane cannot be brought to the file without deleting the object; and
            ``untracked`` for an object the file does not name (kept unless pruned).
        fields: The fields that change (every field, for a create).
        note: For people: why a conflict, the version a push makes...
    """

    kind: str
    name: str
    action: Action
    fields: list[FieldChange] = dataclasses.field(default_factory=list)
    note: str = ""
    steps: list[tuple[int, str, Callable[[], None]]] = dataclasses.field(
        default_factory=list, repr=False, compare=False
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
            "fields": [f.to_dict() for f in self.fields],
            "note": self.note,
        }


@dataclasses.dataclass
class Plan:
    """Every object the flow names, and those it does not, with what applying does to each."""

    flow: str
    organization: str
    url: str
    changes: list[Change]
    prune: bool = False

    @property
    def changed(self) -> list[Change]:
        return [c for c in self.changes if c.action in ("create", "update", "delete")]

    @property
    def conflicts(self) -> list[Change]:
        return [c for c in self.changes if c.action == "conflict"]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(SYMBOLS, 0)
        for change in self.changes:
            counts[change.action] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "organization": self.organization,
            "url": self.url,
            "prune": self.prune,
            "changes": [c.to_dict() for c in self.changes],
            "summary": self.counts(),
        }

    def render(self) -> str:
        """The plan for people: one line per object, one more per changed field."""
        lines = [f"flow {self.flow} → organisation {self.organization} at {self.url}"]
        for change in self.changes:
            head = f"{SYMBOLS[change.action]} {change.kind} {change.name}"
            if change.action == "unchanged":
                head += " (unchanged)"
            elif change.action == "untracked":
                head += " (not in the file: kept; --prune deletes it)"
            elif change.action == "delete":
                head += " (deleted: --prune)"
            if change.note:
                head += f": {change.note}"
            lines.append(head)
            for item in change.fields:
                if change.action == "create":
                    lines.append(f"    {item.field}: {_show(item.after)}")
                else:
                    lines.append(f"    {item.field}: {_show(item.before)} → {_show(item.after)}")
        counts = self.counts()
        lines.append(
            f"{counts['create']} to create, {counts['update']} to update, "
            f"{counts['delete']} to delete, {counts['unchanged']} unchanged"
            + (f", {counts['conflict']} in conflict" if counts["conflict"] else "")
            + (f", {counts['untracked']} not in the file" if counts["untracked"] else "")
        )
        return "\n".join(lines)


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


# -- PLANNING ----------------------------------------------------------------------------------


def plan(flow: Flow, client: ControlPlaneClient, *, prune: bool = False) -> Plan:
    """What applying ``flow`` would change on the control plane; changes nothing.

    Args:
        flow: The flow.
        client: A client logged in to the flow's organisation (admin, or admin and risk
            keys' permissions together: accounts need admin, limits and capital risk).
        prune: Plan to delete the deployments and accounts the flow does not name.

    Raises:
        PlanError: The client's organisation is not the flow's; a bot file cannot be
            bundled; a bot or version the flow names without a path does not exist.
        ApiError: The control plane refused a read.
    """
    return _Planner(flow, client, prune=prune).plan()


def apply(
    flow: Flow,
    client: ControlPlaneClient,
    *,
    prune: bool = False,
    progress: Callable[[str], None] | None = None,
    planned: Plan | None = None,
) -> Plan:
    """Makes the control plane match ``flow``.

    Args:
        flow: The flow.
        client: As for :func:`plan`.
        prune: Also delete the deployments and accounts the flow does not name (deployments
            are stopped first).
        progress: Called with each step as it is carried out.
        planned: A plan made by :func:`plan` for this flow and client (made here if None).

    Returns:
        The plan that was carried out.

    Raises:
        PlanError: As :func:`plan`, and when the plan has conflicts (nothing is changed then).
        ApplyError: A step failed; the steps before it stay done and applying again continues
            from there.
    """
    made = planned if planned is not None else plan(flow, client, prune=prune)
    if made.conflicts:
        raise PlanError(
            "the control plane cannot be brought to the file without deleting: "
            + "; ".join(f"{c.kind} {c.name}: {c.note}" for c in made.conflicts)
        )
    steps = sorted(
        (step for change in made.changes for step in change.steps), key=lambda step: step[0]
    )
    done: list[str] = []
    from coyote_sdk.client import ApiError

    for _, description, run in steps:
        if progress is not None:
            progress(description)
        try:
            run()
        except ApiError as exc:
            raise ApplyError(f"{description}: {exc.message} ({exc.code})", done) from exc
        done.append(description)
    return made


class _Planner:
    def __init__(self, flow: Flow, client: ControlPlaneClient, *, prune: bool) -> None:
        self.flow = flow
        self.client = client
        self.prune = prune
        self.pushed: dict[tuple[str, str], int] = {}
        """(bot, digest) → version number: known, or made by a push step before it is needed."""
        self.bundles: dict[tuple[str, str], Bundle] = {}
        self.unit_bundles: dict[str, tuple[str, str]] = {}
        """Unit name → (bot, digest) of the bundle its path makes."""
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self.releases: dict[str, dict[int, dict[str, Any]]] = {}

    def plan(self) -> Plan:
        me = self.client.me()
        slug = me["organization"]["slug"]
        if slug != self.flow.organization:
            raise PlanError(
                f"the flow is for organisation {self.flow.organization!r} but the login is "
                f"for {slug!r}: log in to {self.flow.organization!r} with `coyote-sdk login`"
            )
        remote_deployments = {d["name"]: d for d in self.client.deployments()}
        changes = [
            *self.accounts(remote_deployments),
            *self.bots(),
            *self.deployments(remote_deployments),
        ]
        return Plan(self.flow.name, slug, self.client.url, changes, prune=self.prune)

    # -- accounts ------------------------------------------------------------------------

    def accounts(self, remote_deployments: Mapping[str, Any]) -> Iterator[Change]:
        remote = {a["name"]: a for a in self.client.accounts()}
        for account in self.flow.accounts:
            name = account["name"]
            fixed = {
                "broker": account["broker"],
                "venue": account["venue"],
                "currency": account.get("currency", "USD"),
                "credentials_path": (account.get("credentials") or {}).get("vault"),
            }
            capital = _decimal_text(account.get("capital"))
            limits = _plain(account.get("risk") or {})
            options = {str(k): str(v) for k, v in (account.get("options") or {}).items()}
            found = remote.get(name)
            if found is None:
                change = Change("account", name, "create")
                change.fields = [FieldChange(k, None, v) for k, v in fixed.items() if v]
                if capital is not None:
                    change.fields.append(FieldChange("capital", None, capital))
                change.fields += _diff("broker_options", None, options)
                change.fields += _diff("risk_limits", None, limits)
                change.steps.append(
                    (
                        _ACCOUNTS,
                        f"create account {name}",
                        _call(
                            self.client.create_account,
                            name,
                            capital=capital,
                            broker_options=options,
                            **fixed,
                        ),
                    )
                )
                if limits:
                    change.steps.append(
                        (
                            _ACCOUNTS,
                            f"set the risk limits of account {name}",
                            _call(self.client.set_risk_limits, name, limits),
                        )
                    )
                yield change
                continue
            change = Change("account", name, "unchanged")
            moved = [FieldChange(k, found.get(k), v) for k, v in fixed.items() if found.get(k) != v]
            if moved:
                change.action = "conflict"
                change.fields = moved
                change.note = (
                    f"{', '.join(m.field for m in moved)} of an account cannot be changed: "
                    "delete the account on the control plane (or rename it in the file) and "
                    "apply again"
                )
                yield change
                continue
            if capital is not None and not _same_amount(found.get("capital"), capital):
                change.fields.append(FieldChange("capital", found.get("capital"), capital))
                growing = found.get("capital") is None or Decimal(capital) > Decimal(
                    found["capital"]
                )
                change.steps.append(
                    (
                        _ACCOUNTS if growing else _SHRINK,
                        f"set the capital of account {name} to {capital}",
                        _call(self.client.set_account_capital, name, capital),
                    )
                )
            current_options = found.get("broker_options") or {}
            if current_options != options:
                change.fields += _diff("broker_options", current_options, options)
                change.steps.append(
                    (
                        _ACCOUNTS,
                        f"set the broker options of account {name}",
                        _call(self.client.set_broker_options, name, options),
                    )
                )
                change.note = (
                    "executors serving the account halt it until they are restarted: a broker's "
                    "options are not changed under its open orders"
                )
            current = _plain(found.get("risk_limits") or {})
            if current != limits:
                # Empty tables differ too ({"bots": {}} against {}): shown whole then.
                change.fields += _diff("risk_limits", current, limits) or [
                    FieldChange("risk_limits", current, limits)
                ]
                change.steps.append(
                    (
                        _ACCOUNTS,
                        f"set the risk limits of account {name}",
                        _call(self.client.set_risk_limits, name, limits),
                    )
                )
            if change.fields:
                change.action = "update"
            yield change
        named = {a["name"] for a in self.flow.accounts}
        for name in sorted(set(remote) - named):
            yield self._untracked_account(name, remote_deployments)

    def _untracked_account(self, name: str, remote_deployments: Mapping[str, Any]) -> Change:
        if not self.prune:
            return Change("account", name, "untracked")
        kept = self._kept_deployments(remote_deployments)
        users = sorted(n for n, d in remote_deployments.items() if d["account"] == name)
        if any(user in kept for user in users):
            return Change(
                "account",
                name,
                "conflict",
                note=f"--prune would delete it, but deployments of the file trade it ({users})",
            )
        change = Change("account", name, "delete")
        change.steps.append(
            (
                _PRUNE_ACCOUNTS,
                f"delete account {name}",
                _call(self.client.delete_account, name),
            )
        )
        return change

    def _kept_deployments(self, remote_deployments: Mapping[str, Any]) -> set[str]:
        return {u["name"] for u in self.flow.units("bot")} & set(remote_deployments)

    # -- bots ----------------------------------------------------------------------------

    def bots(self) -> Iterator[Change]:
        from coyote_sdk.bundles import BundleError, build_bundle
        from coyote_sdk.client import ApiError

        seen: set[tuple[str, str]] = set()
        for unit in self.flow.units("bot"):
            bot = unit["bot"]
            try:
                versions = self._versions(bot)
            except ApiError as exc:
                if exc.code != "bot.not_found":
                    raise
                versions = []
            if "path" not in unit:
                if not versions:
                    raise PlanError(
                        f"unit {unit['name']}: bot {bot!r} is not on the control plane: push "
                        "it first (`coyote-sdk push`), or give its file as path:"
                    )
                if "version" in unit and unit["version"] not in {v["number"] for v in versions}:
                    raise PlanError(
                        f"unit {unit['name']}: bot {bot!r} has no version {unit['version']}"
                    )
                continue
            try:
                bundle = build_bundle(self.flow.resolve(unit["path"]), name=bot)
            except BundleError as exc:
                raise PlanError(f"unit {unit['name']}: {exc}") from exc
            key = (bot, bundle.digest)
            self.bundles[key] = bundle
            self.unit_bundles[unit["name"]] = key
            if key in seen:
                continue
            seen.add(key)
            existing = next((v for v in versions if v["digest"] == bundle.digest), None)
            if existing is not None:
                self.pushed[key] = existing["number"]
                yield Change(
                    "bot", bot, "unchanged", note=f"version {existing['number']} is this code"
                )
                continue
            after = (max((v["number"] for v in versions), default=0)) + 1
            change = Change(
                "bot",
                bot,
                "create" if not versions else "update",
                [FieldChange("version", versions[-1]["number"] if versions else None, after)],
                note=f"push {unit['path']} ({bundle.digest[:19]}…)",
            )
            change.steps.append((_PUSH, f"push bot {bot} from {unit['path']}", self._push(key)))
            yield change

    def _versions(self, bot: str) -> list[dict[str, Any]]:
        if bot not in self.versions:
            self.versions[bot] = self.client.versions(bot)
        return self.versions[bot]

    def _releases(self, bot: str) -> dict[int, dict[str, Any]]:
        if bot not in self.releases:
            self.releases[bot] = {r["number"]: r for r in self.client.releases(bot)}
        return self.releases[bot]

    def _push(self, key: tuple[str, str]) -> Callable[[], None]:
        def run() -> None:
            version, _ = self.client.push(self.bundles[key])
            self.pushed[key] = int(version["number"])

        return run

    # -- deployments ---------------------------------------------------------------------

    def deployments(self, remote: Mapping[str, Any]) -> Iterator[Change]:
        for unit in self.flow.units("bot"):
            found = remote.get(unit["name"])
            yield self._create(unit) if found is None else self._update(unit, found)
        named = {u["name"] for u in self.flow.units("bot")}
        for name in sorted(set(remote) - named):
            if not self.prune:
                yield Change("deployment", name, "untracked")
                continue
            change = Change("deployment", name, "delete")
            change.steps.append(
                (
                    _PRUNE_DEPLOYMENTS,
                    f"stop and delete deployment {name}",
                    self._delete_deployment(name),
                )
            )
            yield change

    def _desired_version(self, unit: dict[str, Any]) -> tuple[int | None, str]:
        """The version the unit wants (None: the one its push will make), and how to say so."""
        if "path" in unit:
            key = self._bundle_key(unit)
            number = self.pushed.get(key)
            return number, f"{number}" if number is not None else "the pushed one"
        if "version" in unit:
            return int(unit["version"]), str(unit["version"])
        latest = max(v["number"] for v in self._versions(unit["bot"]))
        return latest, f"{latest} (latest)"

    def _bundle_key(self, unit: dict[str, Any]) -> tuple[str, str]:
        return self.unit_bundles[unit["name"]]

    def _resolved_version(self, unit: dict[str, Any]) -> Callable[[], int | None]:
        """The version at apply time: a push step may have made it since the plan."""
        if "path" not in unit:
            number, _ = self._desired_version(unit)
            return lambda: number
        key = self._bundle_key(unit)
        return lambda: self.pushed[key]

    def _create(self, unit: dict[str, Any]) -> Change:
        name = unit["name"]
        state = unit.get("state", "running")
        capital = _decimal_text(unit.get("capital", 0)) or "0"
        change = Change("deployment", name, "create")
        change.fields = [
            FieldChange("bot", None, unit["bot"]),
            FieldChange("account", None, unit["account"]),
        ]
        if "release" in unit:
            change.fields.append(FieldChange("release", None, unit["release"]))
        else:
            _, shown = self._desired_version(unit)
            change.fields.append(FieldChange("version", None, shown))
            change.fields += _diff("params", None, _plain(unit.get("params") or {}))
            change.fields += _diff("risk", None, _plain(unit.get("risk") or {}))
        change.fields += [FieldChange("capital", None, capital), FieldChange("state", None, state)]
        version = self._resolved_version(unit)

        def run() -> None:
            options: dict[str, Any] = {}
            if "release" in unit:
                options["release"] = unit["release"]
            else:
                options["version"] = version()
                options["params"] = _plain(unit.get("params") or {})
                options["risk_profile"] = _plain(unit.get("risk") or {})
            self.client.deploy(
                name,
                bot=unit["bot"],
                account=unit["account"],
                capital=capital,
                start=state != "stopped",
                **options,
            )
            if state == "paused":
                self.client.action(name, "pause", reason="flow apply")

        change.steps.append((_DEPLOY, f"deploy {name}", run))
        return change

    def _update(self, unit: dict[str, Any], found: dict[str, Any]) -> Change:
        name = unit["name"]
        change = Change("deployment", name, "unchanged")
        moved = [
            FieldChange(field, found[field], unit[field])
            for field in ("bot", "account")
            if found[field] != unit[field]
        ]
        if moved:
            change.action = "conflict"
            change.fields = moved
            change.note = (
                "a deployment's bot and account are fixed: stop and delete it on the control "
                "plane, or give the unit another name"
            )
            return change
        self._release_changes(unit, found, change)
        capital = _decimal_text(unit.get("capital", 0)) or "0"
        if not _same_amount(found["capital"], capital):
            change.fields.append(FieldChange("capital", found["capital"], capital))
            shrinking = Decimal(capital) < Decimal(found["capital"])
            change.steps.append(
                (
                    _FREE if shrinking else _DEPLOY,
                    f"set the capital of deployment {name} to {capital}",
                    _call(self.client.set_deployment_capital, name, capital),
                )
            )
        state = unit.get("state", "running")
        if found["desired"] != state:
            change.fields.append(FieldChange("state", found["desired"], state))
            for action in _transitions(found["desired"], state):
                change.steps.append(
                    (
                        _DEPLOY,
                        f"{action} deployment {name}",
                        _call(self.client.action, name, action, reason="flow apply"),
                    )
                )
        if change.fields:
            change.action = "update"
        return change

    def _release_changes(self, unit: dict[str, Any], found: dict[str, Any], change: Change) -> None:
        name = unit["name"]
        if "release" in unit:
            if found["release"] != unit["release"]:
                change.fields.append(FieldChange("release", found["release"], unit["release"]))
                change.steps.append(
                    (
                        _DEPLOY,
                        f"promote deployment {name} to release {unit['release']}",
                        _call(self.client.promote, name, unit["release"]),
                    )
                )
            return
        current = self._releases(unit["bot"]).get(found["release"], {})
        number, shown = self._desired_version(unit)
        params = _plain(unit.get("params") or {})
        risk = _plain(unit.get("risk") or {})
        fields: list[FieldChange] = []
        if number != found["version"]:
            fields.append(FieldChange("version", found["version"], shown))
        fields += _diff("params", _plain(current.get("params") or {}), params)
        fields += _diff("risk", _plain(current.get("risk_profile") or {}), risk)
        if not fields:
            return
        change.fields += fields
        version = self._resolved_version(unit)

        def run() -> None:
            release, _ = self.client.create_release(
                unit["bot"], version=version(), params=params, risk_profile=risk
            )
            if release["number"] != found["release"]:
                self.client.promote(name, int(release["number"]))

        change.steps.append((_DEPLOY, f"move deployment {name} to a new release", run))

    def _delete_deployment(self, name: str) -> Callable[[], None]:
        def run() -> None:
            deployment = self.client.deployment(name)
            if deployment["desired"] != "stopped":
                self.client.action(name, "stop", reason="flow apply --prune")
            deadline = time.monotonic() + _STOP_TIMEOUT_S
            while self.client.deployment(name)["status"] not in ("stopped", "failed"):
                if time.monotonic() > deadline:
                    from coyote_sdk.client import ApiError

                    raise ApiError(
                        409,
                        "deployment.not_stopped",
                        f"deployment {name} did not stop within {_STOP_TIMEOUT_S:.0f} s",
                    )
                time.sleep(0.5)
            self.client.delete_deployment(name)

        return run


def _transitions(before: str, after: str) -> list[str]:
    """The actions that take a deployment's desired state from ``before`` to ``after``."""
    return {
        ("stopped", "running"): ["start"],
        ("stopped", "paused"): ["start", "pause"],
        ("running", "paused"): ["pause"],
        ("running", "stopped"): ["stop"],
        ("paused", "running"): ["resume"],
        ("paused", "stopped"): ["stop"],
    }[(before, after)]


def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], None]:
    def run() -> None:
        function(*args, **kwargs)

    return run


def _plain(value: Any) -> Any:
    """JSON-compatible data as the control plane stores and answers it."""
    return json.loads(json.dumps(value))


def _decimal_text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value) if not isinstance(value, float) else repr(value)


def _same_amount(before: Any, after: str) -> bool:
    return before is not None and Decimal(str(before)) == Decimal(after)


def _diff(prefix: str, before: Any, after: Any) -> list[FieldChange]:
    """Field-level differences of two JSON documents, named by dotted path (a missing table
    counts as an empty one, so a new document shows each of its fields)."""
    if isinstance(before, dict) or isinstance(after, dict):
        before = before if isinstance(before, dict) else {} if before is None else before
        after = after if isinstance(after, dict) else {} if after is None else after
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[FieldChange] = []
        for key in sorted(set(before) | set(after), key=str):
            changes += _diff(f"{prefix}.{key}", before.get(key), after.get(key))
        return changes
    return [] if before == after else [FieldChange(prefix, before, after)]
