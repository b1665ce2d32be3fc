"""`coyote-sdk run` and `coyote-sdk divergence`: bots live, and live against backtest."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from coyote_sdk.cli._common import (
    JsonOpt,
    app,
    console,
    format_day,
    local_stack,
    report_error,
)


@app.command("run")
def run(
    bot_file: Annotated[
        Path, typer.Argument(help="The Python file of the bot, or a bundle (.tar.gz).")
    ],
    account: Annotated[str, typer.Option(help="The trading account its intents name.")],
    bot_id: Annotated[
        str | None, typer.Option(help="The bot's id; by default the file's name.")
    ] = None,
    venue: Annotated[str, typer.Option(help="Market-data venue of its symbols.")] = "demo",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE; repeatable.")
    ] = None,
    cash: Annotated[str, typer.Option(help="Capital allocation of its portfolio.")] = "0",
    bot_name: Annotated[
        str | None, typer.Option("--bot", help="The bot class, if the file has several.")
    ] = None,
    init_flag: Annotated[
        bool,
        typer.Option(
            help="Set the control flag to running if the bot has none (local runs); the "
            "supervisor passes --no-init-flag and sets flags itself."
        ),
    ] = True,
    max_errors: Annotated[int, typer.Option(help="Handler errors before it stops.")] = 10,
    release: Annotated[str | None, typer.Option(help="Release id, for the heartbeat.")] = None,
    digest: Annotated[
        str | None,
        typer.Option(help="The bundle's expected digest (sha256:...); checked before loading."),
    ] = None,
    params_json: Annotated[
        str | None, typer.Option(help="Parameters as one JSON object (what the supervisor passes).")
    ] = None,
    signature: Annotated[
        str | None, typer.Option(help="The bundle's signature (ed25519:<key id>:<base64>).")
    ] = None,
    trusted_key: Annotated[
        list[str] | None,
        typer.Option(help="A public key the bundle's signature must be by; repeatable."),
    ] = None,
    require_signature: Annotated[
        bool, typer.Option(help="Refuse the bundle unless signed by a --trusted-key.")
    ] = False,
    limit_memory_mb: Annotated[
        int | None, typer.Option(help="Cap the process's address space (MiB) before loading.")
    ] = None,
    limit_open_files: Annotated[
        int | None, typer.Option(help="Cap its open files and sockets before loading.")
    ] = None,
    limit_cpu_seconds: Annotated[
        int | None, typer.Option(help="Cap its CPU time (seconds); the process ends beyond.")
    ] = None,
) -> None:
    """Run a bot live against the stack: bars from RedisTimeSeries, intents to Kafka.

    It obeys its control flag (`coyote:bot:ID:control`): paused sends nothing, stopped cancels
    its open orders, runs on_stop and exits. Ctrl-C stops it the same way.

    A bundle (made by `coyote-sdk push` or `build_bundle`) is verified, against `--digest`
    when given, before any of its code runs: this is how the supervisor launches deployments.

    Example: `coyote-sdk run examples/sma_cross.py --account paper --param fast=10`
    """
    import asyncio
    import re
    from decimal import Decimal, InvalidOperation

    import redis

    from coyote_sdk.bot import ParameterError
    from coyote_sdk.bundles import BundleError, load_bundle
    from coyote_sdk.control import read_control_flag, set_control_flag
    from coyote_sdk.loading import BotLoadError, load_bot_class, parse_params
    from coyote_sdk.logs import configure_logging
    from coyote_sdk.protocol import BotState
    from coyote_sdk.runtime import BotRuntime, ProcessLimits, RuntimeOptions, run_until_signalled
    from coyote_sdk.tracing import configure_tracing

    configure_logging()
    try:
        # First, before any bot code: the limits bind the bundle's module code too.
        ProcessLimits(limit_memory_mb, limit_open_files, limit_cpu_seconds).apply()
        if bot_file.name.endswith((".tar.gz", ".tgz")) or digest is not None:
            bot_class = load_bundle(
                bot_file.read_bytes(),
                expected_digest=digest,
                signature=signature,
                trusted_keys=trusted_key or (),
                require_signature=require_signature,
            )
        else:
            bot_class = load_bot_class(bot_file, bot_name)
        params: dict[str, object] = dict(parse_params(param or []))
        if params_json:
            loaded = json.loads(params_json)
            if not isinstance(loaded, dict):
                raise ValueError("--params-json takes a JSON object")
            params.update(loaded)
        bot = bot_class(**params)
        identifier = bot_id or re.sub(r"[^A-Za-z0-9._-]", "-", bot_file.stem)
        options = RuntimeOptions(
            bot_id=identifier,
            account_id=account,
            venue=venue,
            cash=Decimal(cash),
            max_handler_errors=max_errors,
            release=release,
        )
        # Spans are exported only when the OTEL_* variables ask (docs/runtime.md#traces).
        configure_tracing("coyote-bot", attributes={"coyote.bot.id": identifier})
    except (
        BotLoadError,
        BundleError,
        ParameterError,
        ValueError,
        InvalidOperation,
        OSError,
    ) as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    settings = local_stack().settings
    endpoints = settings.endpoints()
    if init_flag:
        client = redis.Redis.from_url(endpoints.redis_url)
        try:
            if read_control_flag(client, identifier) is None:
                set_control_flag(client, identifier, BotState.RUNNING, set_by="coyote-sdk run")
        except redis.RedisError as exc:
            report_error(f"Redis at {endpoints.redis_url}: {exc}")
            raise typer.Exit(1) from exc
        finally:
            client.close()
    outcome = asyncio.run(run_until_signalled(BotRuntime(bot, options, endpoints)))
    raise typer.Exit(outcome.code)


def _moment_ms(text: str) -> int:
    """Milliseconds since the epoch, from digits or an ISO date-time (UTC when unzoned)."""
    from datetime import UTC, datetime

    if text.isdigit():
        return int(text)
    moment = datetime.fromisoformat(text)
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


@app.command("divergence")
def divergence(
    bot_file: Annotated[Path, typer.Argument(help="The bot's file (the release that ran).")],
    bot_id: Annotated[str, typer.Option(help="The live bot's id.")],
    account: Annotated[str, typer.Option(help="The account it traded.")],
    start: Annotated[str, typer.Option(help="First bar: ISO date-time or epoch ms.")],
    end: Annotated[str, typer.Option(help="Last bar: ISO date-time or epoch ms.")],
    venue: Annotated[str, typer.Option(help="Market-data venue.")] = "demo",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE; as deployed.")
    ] = None,
    bot_name: Annotated[str | None, typer.Option("--bot", help="The bot class.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay a live session through the backtester and show where the orders differ.

    Exits 0 when live and backtest agree, 1 when they diverge.

    Example: `coyote-sdk divergence examples/sma_cross.py --bot-id sma --account paper
    --start 2026-11-23T09:00 --end 2026-11-23T17:00`
    """
    import asyncio

    from coyote_sdk.bot import ParameterError
    from coyote_sdk.divergence import compare, record_session
    from coyote_sdk.loading import BotLoadError, load_bot_class, parse_params
    from coyote_sdk.protocol import Timeframe

    try:
        bot_class = load_bot_class(bot_file, bot_name)
        bot = bot_class(**parse_params(param or []))
        start_ms, end_ms = _moment_ms(start), _moment_ms(end)
    except (BotLoadError, ParameterError, ValueError) as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    session = asyncio.run(
        record_session(
            local_stack().settings.endpoints(),
            bot_id=bot_id,
            account_id=account,
            venue=venue,
            symbols=list(bot_class.symbols),
            timeframe=Timeframe(bot_class.timeframe),
            start_ms=start_ms,
            end_ms=end_ms,
        )
    )
    report = compare(bot, session)
    if as_json:
        print(json.dumps(dataclasses.asdict(report), indent=2, default=str))
    else:
        console.print(
            f"{len(session.bars)} bars · live orders {report.live_orders} · backtest orders "
            f"{report.backtest_orders} · matched {report.matched}",
            highlight=False,
        )
        table = Table("bar", "kind", "order", "detail", title="divergences")
        for item in report.divergences:
            table.add_row(
                format_day(item.bar_ts_ms) if item.bar_ts_ms else "",
                item.kind,
                item.order,
                item.detail,
            )
        console.print(table if report.divergences else "live and backtest agree")
    raise typer.Exit(0 if report.identical else 1)
