"""`coyote-sdk login`, `push`, `deploy`, `status`, `logs`...: the control plane, over its API.

Every command here talks to the control plane with :class:`coyote_sdk.client.ControlPlaneClient`
and the login that `coyote-sdk login` saved (or `COYOTE_API_URL`/`COYOTE_API_KEY`). Exit codes:
0 done, 1 the control plane refused or could not be reached, 2 bad local input (a broken bot
file, a malformed option, not logged in), so nothing was sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from coyote_sdk.cli._common import JsonOpt, app, console, report_error

if TYPE_CHECKING:
    from coyote_sdk.client import ApiError, ControlPlaneClient

bots_app = typer.Typer(help="Bots pushed to the control plane.", no_args_is_help=True)
app.add_typer(bots_app, name="bots")
signing_app = typer.Typer(
    help="Bundle signing keys: once registered, every push must be signed.", no_args_is_help=True
)
app.add_typer(signing_app, name="signing")
canary_app = typer.Typer(
    help="Canaries: a new release run as a paper shadow beside a deployment, compared with it "
    "before it is promoted.",
    no_args_is_help=True,
)
app.add_typer(canary_app, name="canary")

DeploymentArg = Annotated[str, typer.Argument(help="The deployment's name.")]
ReasonOpt = Annotated[str | None, typer.Option(help="Why; kept in the audit log.")]

_STATUS_STYLES = {
    "running": "green",
    "paused": "yellow",
    "pending": "cyan",
    "starting": "cyan",
    "stopping": "cyan",
    "stopped": "dim",
    "stale": "red",
    "crashed": "red",
    "failed": "bold red",
}


# -- SHARED ----------------------------------------------------------------------------------


def _print_json(data: object) -> None:
    # Plain print, not rich: scripts parse this, so no wrapping or highlighting.
    print(json.dumps(data, indent=2))


def _report_api_error(exc: ApiError, *, hint_login: bool = True) -> None:
    text = f"{exc.message} ({exc.code})"
    if exc.status == 401 and hint_login:
        text += "; log in again with `coyote-sdk login`"
    report_error(text)


@contextlib.contextmanager
def _api() -> Iterator[ControlPlaneClient]:
    """The client of the saved login; exits 2 when there is none, 1 on any API error."""
    from coyote_sdk.client import ApiError, ControlPlaneClient, NotLoggedInError

    try:
        client = ControlPlaneClient.from_config()
    except NotLoggedInError as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    try:
        with client:
            yield client
    except ApiError as exc:
        _report_api_error(exc)
        raise typer.Exit(1) from exc


def _styled(state: str | None) -> str:
    if not state:
        return ""
    style = _STATUS_STYLES.get(state)
    return f"[{style}]{escape(state)}[/{style}]" if style else escape(state)


def _when(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(ms: int | None) -> str:
    if not ms:
        return "never"
    seconds = max(0.0, time.time() - ms / 1000)
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f}h ago"
    return _when(ms)


def _parse_params(items: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs; a value is JSON when it parses as JSON (10, 0.5, true, [1, 2]),
    else the string as typed, so ``symbol=GOOG`` needs no quotes."""
    params: dict[str, Any] = {}
    for item in items:
        key, separator, text = item.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"--param takes NAME=VALUE, not {item!r}")
        try:
            params[key.strip()] = json.loads(text)
        except ValueError:
            params[key.strip()] = text
    return params


# -- LOGIN -----------------------------------------------------------------------------------


@app.command("login")
def login(
    url: Annotated[
        str | None,
        typer.Option(
            help="The control plane's address, e.g. https://coyote.example.com; by default the "
            "one of the saved login.",
            envvar="COYOTE_API_URL",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="An API key (cyk_...). Omit it to be asked without echo: a key on the command "
            "line stays in the shell's history.",
            envvar="COYOTE_API_KEY",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Log in to a control plane with an API key: checked, then saved for the other commands.

    The login is saved to `$COYOTE_CONFIG_DIR/credentials.json` (default `~/.config/coyote/`),
    readable by you only. `COYOTE_API_URL` and `COYOTE_API_KEY` override it in every command.

    Example: `coyote-sdk login --url https://coyote.example.com` (then paste the key)
    """
    from coyote_sdk.client import (
        ApiError,
        ControlPlaneClient,
        NotLoggedInError,
        load_credentials,
        save_credentials,
    )

    if url is None:
        with contextlib.suppress(NotLoggedInError):
            url = (load_credentials() or {}).get("url")
    if not url:
        report_error("give the control plane's address with --url")
        raise typer.Exit(2)
    url = url.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        report_error(f"{url!r} is not an http:// or https:// address")
        raise typer.Exit(2)
    if api_key is None:
        # Asked only once the address is known good, so a typo there costs no pasted key.
        api_key = typer.prompt("API key", hide_input=True, default="", show_default=False)
    api_key = api_key.strip()
    if not api_key:
        report_error("give an API key (cyk_...); make one in the dashboard under API keys")
        raise typer.Exit(2)
    try:
        with ControlPlaneClient(url, api_key) as client:
            me = client.me()
    except ApiError as exc:
        # A refused key is not saved: the previous login, if any, stays as it was.
        _report_api_error(exc, hint_login=False)
        raise typer.Exit(1) from exc
    path = save_credentials(url, api_key)
    if as_json:
        _print_json({"url": url, "credentials": str(path), **me})
        return
    user, org = me["user"], me["organization"]
    console.print(
        f"logged in to {escape(url)} as [bold]{escape(user['email'])}[/bold] "
        f"({escape(org['name'])} [dim]{escape(org['slug'])}[/dim], role {escape(me['role'])})",
        highlight=False,
    )
    console.print(f"[dim]saved to {escape(str(path))}[/dim]", highlight=False)


@app.command("logout")
def logout(as_json: JsonOpt = False) -> None:
    """Forget the saved login. The API key stays valid until it is revoked in the dashboard.

    Example: `coyote-sdk logout`
    """
    from coyote_sdk.client import credentials_path, forget_credentials

    path = credentials_path()
    removed = forget_credentials()
    if as_json:
        _print_json({"logged_out": removed, "credentials": str(path)})
        return
    console.print(
        f"logged out: removed {escape(str(path))}" if removed else "not logged in",
        highlight=False,
    )
    if os.environ.get("COYOTE_API_KEY"):
        console.print("[yellow]COYOTE_API_KEY is still set: commands keep using it[/yellow]")


# -- BOTS ------------------------------------------------------------------------------------


@app.command("push")
def push(
    bot_file: Annotated[
        Path,
        typer.Argument(help="The bot's Python file, or a bundle made by `coyote-sdk bundle`."),
    ],
    name: Annotated[
        str | None,
        typer.Option(
            help="The bot's name on the platform; by default the file's (its folder's "
            "for a bot.py)."
        ),
    ] = None,
    bot_name: Annotated[
        str | None, typer.Option("--bot", help="The bot class, if the file has several.")
    ] = None,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            envvar="COYOTE_SIGNING_KEY",
            help="Sign the bundle with this private key (made by `coyote-sdk signing new`).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Bundle a bot and upload it as its next version.

    The bot is checked before anything is sent: a syntax error or a missing bot class exits 2.
    Pushing the same code again changes nothing and says so.

    Example: `coyote-sdk push bots/sma_cross.py --name sma --sign-key ~/.coyote/signing.pem`
    """
    from coyote_sdk.bundles import BundleError
    from coyote_sdk.signing import SignatureError

    try:
        key = sign_key.read_bytes() if sign_key is not None else None
    except OSError as exc:
        report_error(f"cannot read the signing key: {exc}")
        raise typer.Exit(2) from exc
    with _api() as api:
        try:
            version, created = api.push(bot_file, name=name, bot_class=bot_name, signing_key=key)
        except (BundleError, SignatureError) as exc:
            report_error(exc)
            raise typer.Exit(2) from exc
    if as_json:
        _print_json(version)
        return
    what = f"{escape(version['bot'])} version {version['number']}"
    console.print(
        f"[green]pushed[/green] {what} [dim]({escape(version['digest'])})[/dim]"
        if created
        else f"unchanged: {what} [dim]({escape(version['digest'])})[/dim]",
        highlight=False,
    )


@signing_app.command("new")
def signing_new(
    out: Annotated[Path, typer.Option(help="Where to write the private key (PEM, mode 600).")],
) -> None:
    """Make a signing key pair: the private key into a file, the public key printed.

    Register the public key with `coyote-sdk signing register` (admin); then push with
    `--sign-key FILE`. Keep the file secret: whoever has it can sign bots for your organisation.

    Example: `coyote-sdk signing new --out ~/.coyote/signing.pem`
    """
    import os

    from coyote_sdk.signing import new_private_key, public_key_of

    if out.exists():
        report_error(f"{out} exists; not overwriting a key")
        raise typer.Exit(2)
    pem = new_private_key()
    out.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    print(public_key_of(pem))


@signing_app.command("register")
def signing_register(
    public_key: Annotated[str, typer.Argument(help="The public key, ed25519:<base64>.")],
    name: Annotated[str, typer.Option(help="Whose key it is, e.g. ci or alice.")],
    as_json: JsonOpt = False,
) -> None:
    """Register a public key with the control plane (admin): from now on, pushes are signed.

    Example: `coyote-sdk signing register ed25519:q1... --name ci`
    """
    with _api() as api:
        key = api.add_signing_key(public_key, name=name)
    if as_json:
        _print_json(key)
        return
    console.print(f"registered key {escape(key['key_id'])} ({escape(key['name'])})")


@signing_app.command("list")
def signing_list(as_json: JsonOpt = False) -> None:
    """The organisation's signing keys.

    Example: `coyote-sdk signing list`
    """
    with _api() as api:
        keys = api.signing_keys()
    if as_json:
        _print_json(keys)
        return
    if not keys:
        console.print("no signing keys: bundles need no signature")
        return
    table = Table("id", "name", "created by", "revoked")
    for key in keys:
        table.add_row(
            key["key_id"], key["name"], key["created_by"], "yes" if key["revoked_ms"] else ""
        )
    console.print(table)


@signing_app.command("revoke")
def signing_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (16 hex digits).")],
) -> None:
    """Revoke a signing key (admin): bundles signed only by it no longer push or launch.

    Example: `coyote-sdk signing revoke 3f2a9c0d11e4b7a5`
    """
    with _api() as api:
        api.revoke_signing_key(key_id)
    console.print(f"revoked key {escape(key_id)}")


@bots_app.command("list")
def bots_list(as_json: JsonOpt = False) -> None:
    """The organisation's bots and their latest versions.

    Example: `coyote-sdk bots list`
    """
    with _api() as api:
        bots = api.bots()
    if as_json:
        _print_json(bots)
        return
    if not bots:
        console.print("no bots yet: upload one with `coyote-sdk push BOT_FILE`")
        return
    table = Table("name", "latest", "versions", "created by", "created")
    for bot in bots:
        latest = bot.get("latest_version")
        table.add_row(
            escape(bot["name"]),
            "" if latest is None else str(latest),
            str(bot.get("versions", "")),
            escape(str(bot.get("created_by", ""))),
            _when(bot.get("created_ms")),
        )
    console.print(table)


# -- DEPLOYMENTS -----------------------------------------------------------------------------


@app.command("deploy")
def deploy(
    name: Annotated[str, typer.Argument(help="The new deployment's name.")],
    bot: Annotated[str, typer.Option(help="The bot to deploy.")],
    account: Annotated[str, typer.Option(help="The trading account it trades.")],
    release: Annotated[
        int | None,
        typer.Option(min=1, help="An existing release of the bot (its version and parameters)."),
    ] = None,
    version: Annotated[
        int | None, typer.Option(min=1, help="The bot version; the latest by default.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="NAME=VALUE, repeatable; VALUE is JSON when it parses as JSON."
        ),
    ] = None,
    capital: Annotated[
        str | None, typer.Option(help="Its capital allocation on the account, e.g. 2500.")
    ] = None,
    start: Annotated[bool, typer.Option("--start", help="Start it right away.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Deploy a bot to an account: a release (version and parameters) that runs there.

    It is stopped until `coyote-sdk start NAME`, unless `--start` is given.

    Example: `coyote-sdk deploy sma-paper --bot sma --account paper -p fast=10 -p slow=30
    --capital 2500 --start`
    """
    try:
        if release is not None and (version is not None or param):
            raise ValueError(
                "--release already fixes the version and parameters; "
                "give either --release or --version/--param"
            )
        params = _parse_params(param or []) if param else None
        if capital is not None and not re.fullmatch(r"\d+(\.\d+)?", capital):
            raise ValueError(f"--capital takes a decimal number such as 2500, not {capital!r}")
    except ValueError as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    with _api() as api:
        deployment = api.deploy(
            name,
            bot=bot,
            account=account,
            release=release,
            version=version,
            params=params,
            capital=capital,
            start=start,
        )
    if as_json:
        _print_json(deployment)
        return
    console.print(
        f"[green]deployed[/green] {escape(deployment['name'])}: {escape(deployment['bot'])} "
        f"release {deployment['release']} (version {deployment['version']}) on "
        f"{escape(deployment['account'])}, capital {escape(deployment['capital'])}, "
        f"desired {_styled(deployment['desired'])}",
        highlight=False,
    )
    if not start:
        console.print(f"[dim]start it with `coyote-sdk start {escape(deployment['name'])}`[/dim]")


@app.command("status")
def status(
    name: Annotated[
        str | None, typer.Argument(help="One deployment, in detail; all of them by default.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The deployments: what each should be doing (desired) and what it does (status).

    Example: `coyote-sdk status` or, with its heartbeat, `coyote-sdk status sma-paper`
    """
    with _api() as api:
        found: dict[str, Any] | list[dict[str, Any]] = (
            api.deployment(name) if name else api.deployments()
        )
    if as_json:
        _print_json(found)
        return
    if isinstance(found, dict):
        _print_deployment(found)
        return
    if not found:
        console.print("no deployments yet: make one with `coyote-sdk deploy`")
        return
    table = Table("name", "bot", "account", "release", "desired", "status", "restarts", "detail")
    for item in found:
        table.add_row(
            escape(item["name"]),
            escape(item["bot"]),
            escape(item["account"]),
            str(item["release"]),
            _styled(item["desired"]),
            _styled(item["status"]),
            str(item["restarts"]),
            escape(item.get("status_detail") or ""),
        )
    console.print(table)


def _print_deployment(item: dict[str, Any]) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("name", escape(item["name"])),
        ("bot", escape(item["bot"])),
        ("account", escape(item.get("account_id") or item["account"])),
        (
            "release",
            f"{item['release']} (version {item['version']}, {escape(item.get('digest', ''))})",
        ),
        ("params", escape(json.dumps(item.get("params") or {}))),
        ("capital", escape(str(item.get("capital", "")))),
        ("desired", _styled(item["desired"])),
        ("status", f"{_styled(item['status'])} [dim]since {_ago(item.get('status_ms'))}[/dim]"),
        ("restarts", str(item.get("restarts", 0))),
    ]
    if item.get("status_detail"):
        rows.append(("detail", escape(item["status_detail"])))
    rows.append(("created", f"{_when(item.get('created_ms'))} by {escape(item['created_by'])}"))
    beat = item.get("heartbeat")
    if beat:
        rows += [
            ("heartbeat", f"{_styled(beat.get('state'))} [dim]{_ago(beat.get('ts_ms'))}[/dim]"),
            (
                "counters",
                f"bars {beat.get('bars', 0)} · intents {beat.get('intents', 0)} · "
                f"errors {beat.get('errors', 0)}",
            ),
            ("last bar", _ago(beat.get("last_bar_ms"))),
            ("process", escape(f"pid {beat.get('pid')} on {beat.get('host')}")),
        ]
        if beat.get("detail"):
            rows.append(("runtime says", escape(str(beat["detail"]))))
    else:
        rows.append(("heartbeat", "[dim]none: the runtime is not running[/dim]"))
    for label, value in rows:
        table.add_row(label, value)
    console.print(table, highlight=False)


def _act(action: str, name: str, reason: str | None, as_json: bool) -> None:
    with _api() as api:
        deployment = api.action(name, action, reason=reason)
    if as_json:
        _print_json(deployment)
        return
    done = {"start": "started", "pause": "paused", "resume": "resumed", "stop": "stopping"}
    console.print(
        f"{done[action]} {escape(deployment['name'])}: desired {_styled(deployment['desired'])}, "
        f"status {_styled(deployment['status'])}",
        highlight=False,
    )


@app.command("start")
def start_command(name: DeploymentArg, reason: ReasonOpt = None, as_json: JsonOpt = False) -> None:
    """Start a deployment: the supervisor launches its runtime.

    Example: `coyote-sdk start sma-paper`
    """
    _act("start", name, reason, as_json)


@app.command("pause")
def pause_command(name: DeploymentArg, reason: ReasonOpt = None, as_json: JsonOpt = False) -> None:
    """Pause a running deployment: it keeps following its orders but sends no new one.

    Example: `coyote-sdk pause sma-paper --reason "earnings call"`
    """
    _act("pause", name, reason, as_json)


@app.command("resume")
def resume_command(name: DeploymentArg, reason: ReasonOpt = None, as_json: JsonOpt = False) -> None:
    """Resume a paused deployment.

    Example: `coyote-sdk resume sma-paper`
    """
    _act("resume", name, reason, as_json)


@app.command("stop")
def stop_command(name: DeploymentArg, reason: ReasonOpt = None, as_json: JsonOpt = False) -> None:
    """Stop a deployment: its runtime cancels its open orders, runs on_stop and exits.

    Example: `coyote-sdk stop sma-paper --reason "end of test"`
    """
    _act("stop", name, reason, as_json)


@app.command("rollback")
def rollback(
    name: DeploymentArg,
    to: Annotated[
        int | None,
        typer.Option("--to", min=1, help="The release; by default the one it ran before."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Put a deployment back on an earlier release; a running runtime restarts on it.

    Example: `coyote-sdk rollback sma-paper` or `coyote-sdk rollback sma-paper --to 3`
    """
    with _api() as api:
        deployment = api.rollback(name, to)
    if as_json:
        _print_json(deployment)
        return
    console.print(
        f"rolled back {escape(deployment['name'])} to release {deployment['release']} "
        f"(version {deployment['version']})",
        highlight=False,
    )


# -- CANARIES --------------------------------------------------------------------------------


@canary_app.command("start")
def canary_start(
    name: DeploymentArg,
    release: Annotated[
        int | None,
        typer.Option(min=1, help="The release to try; -p overrides its parameters."),
    ] = None,
    version: Annotated[
        int | None,
        typer.Option(min=1, help="Or the bot version to try (the latest by default)."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="NAME=VALUE, repeatable: a parameter to change from the live deployment's "
            "(or the release's).",
        ),
    ] = None,
    account: Annotated[
        str | None,
        typer.Option(help="A paper account to trade; by default <live account>-shadow."),
    ] = None,
    capital: Annotated[
        str | None, typer.Option(help="Its capital allocation; the live deployment's by default.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a canary: another release of the deployment's bot, run beside it on the same
    market data as a paper shadow, with the live parameters unless -p changes them.

    Compare them with `coyote-sdk canary status NAME`; then `canary promote` or `canary stop`.

    Example: `coyote-sdk canary start sma-live --release 4` or
    `coyote-sdk canary start sma-live -p fast=12 --capital 5000`
    """
    try:
        if release is not None and version is not None:
            raise ValueError("give either --release or --version")
        params = _parse_params(param or [])
        if capital is not None and not re.fullmatch(r"\d+(\.\d+)?", capital):
            raise ValueError(f"--capital takes a decimal number such as 2500, not {capital!r}")
    except ValueError as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    with _api() as api:
        canary = api.start_canary(
            name,
            release=release,
            version=version,
            params=params,
            account=account,
            capital=capital,
        )
    if as_json:
        _print_json(canary)
        return
    console.print(
        f"[green]started[/green] canary {canary['number']} of {escape(canary['deployment'])}: "
        f"release {canary['release']} (version {canary['version']}) beside release "
        f"{canary['live_release']}, on paper account {escape(canary['account'])}, capital "
        f"{escape(canary['capital'])}, as {escape(canary['name'])}",
        highlight=False,
    )
    console.print(f"[dim]compare with `coyote-sdk canary status {escape(name)}`[/dim]")


_CANARY_ROWS: list[tuple[str, str]] = [
    ("release", "release"),
    ("account", "account"),
    ("broker", "broker"),
    ("capital", "capital"),
    ("orders placed", "orders.placed"),
    ("  filled", "orders.filled"),
    ("  partially filled", "orders.partially_filled"),
    ("  open", "orders.open"),
    ("  cancelled", "orders.cancelled"),
    ("  rejected", "orders.rejected"),
    ("refused intents", "refused_intents"),
    ("fills", "fills"),
    ("traded notional", "traded_notional"),
    ("realised PnL", "realized"),
    ("unrealised PnL", "unrealized"),
    ("fees", "fees"),
    ("net PnL", "net"),
    ("return %", "return_pct"),
    ("max drawdown %", "max_drawdown_pct"),
]


def _field(side: dict[str, Any], path: str) -> str:
    value: Any = side
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


@canary_app.command("status")
def canary_status(
    name: DeploymentArg,
    number: Annotated[
        int | None, typer.Option(min=1, help="An earlier canary; the latest by default.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The deployment beside its canary since the canary started: orders, fills, PnL.

    Example: `coyote-sdk canary status sma-live` (or `--json` for scripts)
    """
    with _api() as api:
        found = api.canary(name, number)
    if as_json:
        _print_json(found)
        return
    canary, live, shadow = found["canary"], found["live"], found["shadow"]
    console.print(
        f"canary {canary['number']} of [bold]{escape(canary['deployment'])}[/bold]: "
        f"{_styled(canary['state'])}, runtime {_styled(canary['status'])}, "
        f"from {_when(found['start_ms'])} to {_when(found['end_ms'])}",
        highlight=False,
    )
    table = Table("", f"live ({escape(live['name'])})", f"canary ({escape(shadow['name'])})")
    for label, path in _CANARY_ROWS:
        table.add_row(label, escape(_field(live, path)), escape(_field(shadow, path)))
    console.print(table)
    symbols = sorted({s["symbol"] for side in (live, shadow) for s in side["symbols"]})
    if symbols:
        per = Table("symbol", "live orders", "live fills", "live realised", "canary orders")
        per.add_column("canary fills")
        per.add_column("canary realised")
        for symbol in symbols:
            cells = []
            for side in (live, shadow):
                row = next((s for s in side["symbols"] if s["symbol"] == symbol), None)
                cells += (
                    [str(row["orders"]), str(row["fills"]), str(row["realized"])]
                    if row
                    else ["0", "0", "0"]
                )
            per.add_row(escape(symbol), *cells)
        console.print(per)
    for note in found["notes"]:
        console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)


@canary_app.command("promote")
def canary_promote(name: DeploymentArg, reason: ReasonOpt = None, as_json: JsonOpt = False) -> None:
    """Promote the canary: the deployment moves to its release (a running runtime restarts on
    it; `coyote-sdk rollback NAME` goes back) and the canary stops.

    Example: `coyote-sdk canary promote sma-live --reason "better fills over a week"`
    """
    with _api() as api:
        deployment = api.promote_canary(name, reason=reason)
    if as_json:
        _print_json(deployment)
        return
    console.print(
        f"[green]promoted[/green] the canary of {escape(deployment['name'])}: it moves to "
        f"release {deployment['release']} (version {deployment['version']}); the canary stops",
        highlight=False,
    )


@canary_app.command("stop")
def canary_stop(name: DeploymentArg, reason: ReasonOpt = None, as_json: JsonOpt = False) -> None:
    """Discard the canary: its runtime stops and cancels its orders; its records stay.

    Example: `coyote-sdk canary stop sma-live --reason "worse than live"`
    """
    with _api() as api:
        canary = api.discard_canary(name, reason=reason)
    if as_json:
        _print_json(canary)
        return
    console.print(
        f"discarded canary {canary['number']} of {escape(canary['deployment'])}: "
        f"desired {_styled(canary['desired'])}, status {_styled(canary['status'])}",
        highlight=False,
    )


@app.command("logs")
def logs(
    name: DeploymentArg,
    tail: Annotated[int, typer.Option(min=1, max=10_000, help="How many of the last lines.")] = 200,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines; Ctrl-C ends it.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """A deployment's runtime log: its last lines, and with -f every new one.

    With `--json`, one JSON object per line: `{"line": "..."}`.

    Example: `coyote-sdk logs sma-paper -f --tail 50`
    """
    with _api() as api:
        if not follow:
            text = api.logs(name, tail=tail)
            if as_json:
                _print_json({"deployment": name, "lines": text.splitlines()})
            else:
                sys.stdout.write(text)
            return
        lines = api.follow_logs(name, tail=tail)
        try:
            for line in lines:
                # Plain writes, flushed per line: a log is neither markup nor to be rewrapped.
                sys.stdout.write((json.dumps({"line": line}) if as_json else line) + "\n")
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a follow ends: no traceback, no "Aborted!", exit 0
        finally:
            lines.close()
