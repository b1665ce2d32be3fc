"""The reports over 10 million fills on the stack's PostgreSQL, against bare SQL in the same run.

Data: the executor's tables (``Store.create_schema``, so the executor model's indexes) in their
own schema, ``bench_reports``, filled server-side with ``INSERT ... SELECT ... FROM
generate_series`` (no Python row loop): 10,000,000 fills over one year (2025-11-01 to
2026-11-01 UTC) for 20 organisations of one account and 10 bots each, 3-5 symbols per
organisation, bots active unevenly (an organisation's busiest bot fills ~3.7x as often as its
quietest: ~118,000 fills a year against ~32,000), orders of two fills each, NUMERIC quantities
and prices of few decimals, fees of 4 bp and realised PnL on most sells; timestamps rise with
the row, as an executor appends, so a bot's fills are spread over the whole table. And
1,000,000 intents, 6 % rejected under eight risk reason codes. The state the executor derives
from fills as it writes them (positions, balances, the hourly rollup ``fill_hours`` the reports
read) is derived by ``Store.create_schema``, as for any database whose fills predate it. Then
VACUUM ANALYZE. The schema is kept and reused by the next run while it holds the same data
(``--rebuild`` reloads it); a reused schema is brought to the model's tables and indexes first.

Measures, each p50/p95 over two timed passes (warm cache: every request is made once before)
over distinct bots or organisations and months, against a bare SQL statement over the very
same rows taken in the same passes (the baseline):

- headline: ``Reports.pnl`` of one bot over 30 days from a month's start, hourly buckets
  (720 points), over 100 (bot, month) pairs (100 different bots); baseline ``count(*),
  sum(quantity * price), sum(fee)`` of that bot's fills in the range. Target: p95 < 100 ms.
- ``Reports.pnl`` of one organisation over 30 days, daily buckets, and ``Reports.metrics`` of
  one organisation over 30 days (each bot's figures, daily equity), over 40 (organisation,
  month) pairs; baseline the same aggregate over the organisation's fills in the range.
- ``Reports.fills``: the first page (100, newest first) of one bot; baseline the same rows.
- ``Reports.rejections`` of one organisation over 30 days; baseline the grouped count.

Run: .venv/bin/python bench/reports.py [--rebuild] [--only MEASURE] [--no-record]
(the stack must be up: make up; the first run loads the data, ~5 GiB, in a few minutes)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
from _common import measurement, record

from coyote_executor.models import TABLES
from coyote_executor.store import Store
from coyote_reports import Reports, Scope, make_engine
from coyote_sdk.config import StackSettings
from coyote_sdk.protocol import Timeframe

SCHEMA = "bench_reports"
ANALYZED = ("fills", "intents", "fill_hours", "positions", "balances")
FILLS = 10_000_000
INTENTS = 1_000_000
CHUNK = 1_000_000
ORGS = 20
BOTS = 10
"""Per organisation."""
T0 = int(dt.datetime(2025, 11, 1, tzinfo=dt.UTC).timestamp() * 1000)
DAY_MS = 86_400_000
YEAR_MS = 365 * DAY_MS
MONTHS = [
    int(dt.datetime(2025 + (10 + m) // 12, (10 + m) % 12 + 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
    for m in range(12)
]
"""The starts of the twelve months of data; a report covers 30 days from one."""
SPEC = f"coyote bench v1: {FILLS} fills, {INTENTS} intents, {ORGS} orgs x {BOTS} bots, t0={T0}"
"""Stored as the fills table's comment: the data a schema holds, to know it can be reused."""
SYMBOLS = [
    # symbol, base price, price decimals, quantity scale, quantity decimals
    ("BTCUSDT", 60000, 2, 0.05, 4),
    ("ETHUSDT", 3000, 2, 1, 3),
    ("SOLUSDT", 150, 3, 20, 2),
    ("EURUSD", 1.08, 5, 10000, 0),
    ("AAPL", 190, 2, 50, 0),
]
REJECT_CODES = [
    "risk.max_order_notional",
    "risk.price_collar",
    "risk.max_position",
    "risk.stale_price",
    "risk.off_tick",
    "risk.max_daily_loss",
    "risk.capital_allocation",
    "risk.halted",
]
PAIRS = 100
"""(bot, month) pairs of the headline; (organisation, month) pairs are 2 per organisation."""


def org_slug(n: int) -> str:
    return f"org{n:02d}"


def _u(x: str, k: int) -> str:
    """A deterministic uniform number in [0, 1) from the integer expression ``x``."""
    return f"(abs(hashint8extended({x}, {k}) % 1000003)::float8 / 1000003)"


_SYMBOLS_SQL = ", ".join(
    f"({i}, '{s}', {base}::float8, {pdec}, {qscale}::float8, {qdec})"
    for i, (s, base, pdec, qscale, qdec) in enumerate(SYMBOLS)
)

# Fill g belongs to order g / 2 (two fills per order); the order decides the organisation, the
# bot (skewed towards the organisation's first bots), the symbol (two of the organisation's
# 3-5 per bot) and the side; the fill its own price and quantity. Timestamps rise with g, as
# an executor appends, so one bot's fills are spread over the whole table.
FILLS_SQL = f"""
INSERT INTO fills (account_id, fill_id, ts_ms, order_id, bot_id, symbol, side, quantity, price,
                   fee, fee_currency, realized_pnl)
WITH sym(idx, symbol, base, pdec, qscale, qdec) AS (VALUES {_SYMBOLS_SQL})
SELECT 'org' || lpad(b.org::text, 2, '0') || '.main',
       md5('o' || a.o)::uuid::text || '-' || a.n,
       a.ts_ms,
       md5('o' || a.o)::uuid::text,
       'org' || lpad(b.org::text, 2, '0') || '.bot' || lpad(b.bot::text, 2, '0'),
       s.symbol,
       CASE WHEN b.buy THEN 'buy' ELSE 'sell' END,
       p.quantity,
       p.price,
       round(p.quantity * p.price * 0.0004, 4),
       'USD',
       CASE WHEN NOT b.buy AND {_u("a.g", 7)} < 0.8
            THEN round(p.quantity * p.price * ({_u("a.g", 8)}::numeric - 0.47) * 0.02, 2)
            ELSE 0 END
FROM (
    SELECT g, g / 2 AS o, g % 2 AS n, {T0}::bigint + g * {YEAR_MS}::bigint / {FILLS} AS ts_ms
    FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint) - 1) AS g
) a
CROSS JOIN LATERAL (
    SELECT a.o % {ORGS} AS org,
           least({BOTS - 1}, floor({BOTS} * power({_u("a.o", 1)}, 1.6)))::int AS bot,
           {_u("a.o", 2)} < 0.5 AS alt,
           {_u("a.o", 3)} < 0.5 AS buy
) b
JOIN sym s ON s.idx = (b.org + (b.bot + b.alt::int) % (3 + b.org % 3)) % {len(SYMBOLS)}
CROSS JOIN LATERAL (
    SELECT round((s.base * (1 + 0.15 * sin(2 * pi() * a.ts_ms / (90.0 * {DAY_MS}) + s.idx)
                          + 0.05 * sin(2 * pi() * a.ts_ms / (7.0 * {DAY_MS}) + 2 * s.idx))
                  * (1 + ({_u("a.g", 4)} - 0.5) * 0.002))::numeric, s.pdec) AS price,
           greatest(round((s.qscale * (0.1 + 2 * {_u("a.g", 5)}))::numeric, s.qdec),
                    power(10::numeric, -s.qdec)) AS quantity
) p
"""

_CODES_SQL = "ARRAY[" + ", ".join(f"'{c}'" for c in REJECT_CODES) + "]"

INTENTS_SQL = f"""
INSERT INTO intents (intent_id, account_id, bot_id, action, order_id, accepted, reject_code,
                     reject_reason, received_ms, body, source_partition, source_offset)
SELECT a.intent_id, a.account_id, a.bot_id, 'new',
       CASE WHEN a.code IS NULL THEN md5('io' || a.i)::uuid::text END,
       a.code IS NULL, a.code,
       CASE WHEN a.code IS NOT NULL
            THEN a.code || ': limit exceeded by ' || round(({_u("a.i", 13)} * 100)::numeric, 1)
                 || ' %' END,
       a.ts_ms,
       json_build_object('action', 'new', 'v', 1, 'intent_id', a.intent_id,
                         'ts_ms', a.ts_ms, 'account_id', a.account_id, 'bot_id', a.bot_id,
                         'symbol', 'BTCUSDT', 'side', 'buy', 'quantity', '0.01',
                         'order_type', 'market', 'time_in_force', 'gtc')::text,
       a.i % 12, a.i / 12
FROM (
    SELECT i,
           md5('i' || i)::uuid::text AS intent_id,
           {T0}::bigint + i * {YEAR_MS}::bigint / {INTENTS} + 17 AS ts_ms,
           'org' || lpad((i % {ORGS})::text, 2, '0') || '.main' AS account_id,
           'org' || lpad((i % {ORGS})::text, 2, '0') || '.bot'
               || lpad(least({BOTS - 1}, floor({BOTS} * power({_u("i", 1)}, 1.6)))::text, 2, '0')
               AS bot_id,
           CASE WHEN {_u("i", 11)} < 0.06
                THEN ({_CODES_SQL})[1 + floor(power({_u("i", 12)}, 2) * {len(REJECT_CODES)})::int]
           END AS code
    FROM generate_series(0, {INTENTS - 1}) AS i
) a
"""


# -- DATA ------------------------------------------------------------------------------------


def _loaded(admin: sa.Engine) -> bool:
    with admin.connect() as conn:
        comment = conn.execute(
            sa.text("SELECT obj_description(to_regclass(:t), 'pg_class')"),
            {"t": f"{SCHEMA}.fills"},
        ).scalar()
    return comment == SPEC


def _drop_indexes(conn: sa.Connection, table: str) -> list[str]:
    """Drops ``table``'s indexes and primary key for a fast load; returns the DDL that makes
    them again, exactly as they were."""
    rows = conn.execute(
        sa.text(
            "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "WHERE c.conrelid = to_regclass(:t) AND c.contype = 'p'"
        ),
        {"t": f"{SCHEMA}.{table}"},
    ).all()
    ddl = [f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}" for name, definition in rows]
    for name, _ in rows:
        conn.execute(sa.text(f"ALTER TABLE {table} DROP CONSTRAINT {name}"))
    indexes = conn.execute(
        sa.text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :s AND tablename = :t"
        ),
        {"s": SCHEMA, "t": table},
    ).all()
    for name, definition in indexes:
        conn.execute(sa.text(f"DROP INDEX {name}"))
        ddl.append(definition)
    return ddl


def build(url: str) -> float:
    """Loads the schema from scratch; returns the seconds it took."""
    started = time.perf_counter()
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
    admin.dispose()
    store = _store(url)
    store.create_schema()
    engine = store.engine
    with engine.begin() as conn:
        recreate = _drop_indexes(conn, "fills") + _drop_indexes(conn, "intents")
    for lo in range(0, FILLS, CHUNK):
        hi = min(lo + CHUNK, FILLS)
        with engine.begin() as conn:
            conn.execute(sa.text(FILLS_SQL), {"lo": lo, "hi": hi})
        print(f"  fills {hi:>10,} / {FILLS:,}  ({time.perf_counter() - started:6.1f} s)")
    with engine.begin() as conn:
        conn.execute(sa.text(INTENTS_SQL))
    print(f"  intents {INTENTS:,}  ({time.perf_counter() - started:6.1f} s)")
    with engine.begin() as conn:
        for ddl in recreate:
            conn.execute(sa.text(ddl))
            print(f"  {ddl[:90]}  ({time.perf_counter() - started:6.1f} s)")
    store.create_schema()  # idempotent: proves the schema is the model's
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ANALYZED:
            conn.execute(sa.text(f"VACUUM (ANALYZE) {table}"))
        conn.execute(sa.text(f"COMMENT ON TABLE fills IS '{SPEC}'"))
    store.close()
    return time.perf_counter() - started


def _store(url: str) -> Store:
    # The executor's own Store on the schema; index builds get more memory than the default.
    return Store(
        url, connect_args={"options": f"-csearch_path={SCHEMA} -cmaintenance_work_mem=1GB"}
    )


def prepare(url: str, rebuild: bool) -> float | None:
    """The schema ready to read: loaded (returns the seconds it took) or reused (None). A
    reused schema gets the executor model's indexes as they are now: new ones are made,
    changed ones remade, others dropped."""
    admin = sa.create_engine(url)
    reuse = not rebuild and _loaded(admin)
    admin.dispose()
    if not reuse:
        print(f"loading {FILLS:,} fills and {INTENTS:,} intents into schema {SCHEMA} ...")
        return build(url)
    print(f"reusing schema {SCHEMA} ({SPEC})")
    store = _store(url)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        stale = _stale_indexes(conn)
        for name in stale:
            print(f"  dropping index {name} (not the model's)")
            conn.execute(sa.text(f"DROP INDEX {name}"))
        before = _indexes(conn)
        derived = conn.execute(sa.text("SELECT to_regclass('fill_hours') IS NOT NULL")).scalar()
        store.create_schema()  # derives the hourly rollup if the schema predates it
        added = set(_indexes(conn)) - set(before)
        if added or stale or not derived:
            print(f"  made indexes {sorted(added)}: VACUUM ANALYZE")
            for table in ANALYZED:
                conn.execute(sa.text(f"VACUUM (ANALYZE) {table}"))
    store.close()
    return None


def _indexes(conn: sa.Connection) -> dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """The schema's indexes but primary keys: name -> (table, key columns, included)."""
    rows = conn.execute(
        sa.text(
            "SELECT i.relname, t.relname, x.indnkeyatts, "
            "array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(n, o) "
            "      JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n "
            "      ORDER BY k.o) "
            "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace s ON s.oid = t.relnamespace "
            "WHERE s.nspname = :s AND NOT x.indisprimary"
        ),
        {"s": SCHEMA},
    )
    return {
        name: (table, tuple(cols[:keys]), tuple(cols[keys:])) for name, table, keys, cols in rows
    }


def _stale_indexes(conn: sa.Connection) -> list[str]:
    """The schema's indexes the executor's model does not define as they are."""
    model = {}
    for table in TABLES:
        for index in table.__table__.indexes:  # type: ignore[attr-defined]
            include = index.dialect_options["postgresql"].get("include") or ()
            model[index.name] = (
                table.__tablename__,
                tuple(c.name for c in index.columns),
                tuple(str(c) for c in include),
            )
    return sorted(name for name, shape in _indexes(conn).items() if model.get(name) != shape)


def sizes(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        counts = {
            t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("fills", "intents")
        }
        bytes_ = {
            t: conn.execute(sa.text(f"SELECT pg_total_relation_size('{t}')")).scalar_one()
            for t in ("fills", "intents")
        }
        rejected = conn.execute(
            sa.text("SELECT count(*) FROM intents WHERE NOT accepted")
        ).scalar_one()
    return {"rows": counts, "bytes": bytes_, "rejected": rejected}


# -- TIMING ----------------------------------------------------------------------------------


def percentiles(timings: Sequence[float]) -> tuple[float, float]:
    """p50 and p95 of ``timings`` (seconds), in milliseconds."""
    cuts = statistics.quantiles(timings, n=100, method="inclusive")
    return statistics.median(timings) * 1000, cuts[94] * 1000


def timed(
    cases: Sequence[Any],
    coyote: Callable[[Any], Any],
    baseline: Callable[[Any], Any],
    passes: int = 2,
) -> tuple[list[float], list[float]]:
    """Each case through both (once to warm up), then ``passes`` timed passes, interleaved."""
    for case in cases:
        coyote(case)
        baseline(case)
    ours: list[float] = []
    bare: list[float] = []
    for _ in range(passes):
        for case in cases:
            started = time.perf_counter()
            coyote(case)
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            baseline(case)
            bare.append(time.perf_counter() - started)
    return ours, bare


MEASURES = (
    "pnl_bot_month_1h",
    "pnl_org_month_1d",
    "metrics_org_month",
    "fills_bot_first_page",
    "rejections_org_month",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rebuild", action="store_true", help="reload the data")
    parser.add_argument("--only", choices=MEASURES, action="append", help="measure only these")
    parser.add_argument("--no-record", action="store_true", help="print, do not record")
    args = parser.parse_args()
    url = StackSettings().endpoints().database_url
    load_s = prepare(url, args.rebuild)

    engine = make_engine(url, schema=SCHEMA)
    reports = Reports(engine)
    print(f"load average {os.getloadavg()[0]:.2f} before timing (other work skews timings)")
    counts = sizes(engine)
    print(
        f"rows: {counts['rows']['fills']:,} fills "
        f"({counts['bytes']['fills'] / 2**30:.2f} GiB with indexes), "
        f"{counts['rows']['intents']:,} intents ({counts['rejected']:,} rejected, "
        f"{counts['bytes']['intents'] / 2**30:.2f} GiB)"
    )

    rng = random.Random(7)
    all_bots = [(org_slug(o), f"bot{b:02d}") for o in range(ORGS) for b in range(BOTS)]
    rng.shuffle(all_bots)
    bot_cases = [(org, bot, rng.choice(MONTHS)) for org, bot in all_bots[:PAIRS]]
    org_cases = [(org_slug(o), m) for o in range(ORGS) for m in rng.sample(MONTHS, 2)]
    month = 30 * DAY_MS

    def bare(query: str, **params: Any) -> list[Any]:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(query), params))

    # The baselines: one plain statement each over the very rows the report covers. An
    # organisation has one account here, so its rows are the account's (``account_id =``).
    aggregate = "SELECT count(*), sum(quantity * price), sum(fee) FROM fills WHERE "
    in_range = " AND ts_ms >= :s AND ts_ms < :e"

    def org_bare(case: tuple[str, int]) -> Any:
        org, start = case
        return bare(
            aggregate + "account_id = :a" + in_range, a=f"{org}.main", s=start, e=start + month
        )

    per_bot = "the bot's fills in the range: count, sum(quantity * price), sum(fee)"
    per_org = "the organisation's fills in the range: count, sum(quantity * price), sum(fee)"
    work: dict[str, tuple[str, Sequence[Any], Callable[[Any], Any], Callable[[Any], Any]]] = {
        "pnl_bot_month_1h": (
            per_bot,
            bot_cases,
            lambda c: reports.pnl(
                Scope(c[0], bot=c[1]), start_ms=c[2], end_ms=c[2] + month, bucket=Timeframe.H1
            ),
            lambda c: bare(
                aggregate + "bot_id = :b" + in_range, b=f"{c[0]}.{c[1]}", s=c[2], e=c[2] + month
            ),
        ),
        "pnl_org_month_1d": (
            per_org,
            org_cases,
            lambda c: reports.pnl(
                Scope(c[0]), start_ms=c[1], end_ms=c[1] + month, bucket=Timeframe.D1
            ),
            org_bare,
        ),
        "metrics_org_month": (
            per_org,
            org_cases,
            lambda c: reports.metrics(Scope(c[0]), start_ms=c[1], end_ms=c[1] + month),
            org_bare,
        ),
        "fills_bot_first_page": (
            "the same 101 rows selected",
            bot_cases,
            lambda c: reports.fills(Scope(c[0], bot=c[1])),
            lambda c: bare(
                "SELECT * FROM fills WHERE bot_id = :b "
                "ORDER BY ts_ms DESC, account_id DESC, fill_id DESC LIMIT 101",
                b=f"{c[0]}.{c[1]}",
            ),
        ),
        "rejections_org_month": (
            "the organisation's rejected intents in the range counted by reason",
            org_cases,
            lambda c: reports.rejections(Scope(c[0]), start_ms=c[1], end_ms=c[1] + month),
            lambda c: bare(
                "SELECT reject_code, count(*), max(received_ms) FROM intents "
                "WHERE account_id = :a AND accepted IS false "
                "AND received_ms >= :s AND received_ms < :e GROUP BY reject_code",
                a=f"{c[0]}.main",
                s=c[1],
                e=c[1] + month,
            ),
        ),
    }
    entries = []
    for name in args.only or MEASURES:
        baseline, cases, ours, theirs = work[name]
        started = time.perf_counter()
        coyote_s, bare_s = timed(cases, ours, theirs)
        (p50, p95), (b50, b95) = percentiles(coyote_s), percentiles(bare_s)
        print(
            f"{name:21} p50 {p50:8.1f} ms  p95 {p95:8.1f} ms  | bare p50 {b50:7.2f} ms  "
            f"p95 {b95:7.2f} ms  ({len(coyote_s)} timings, {time.perf_counter() - started:.0f} s)"
        )
        entries.append(
            measurement(f"reports.{name}_p95_ms", round(p95, 2), "ms", baseline, round(b95, 3))
        )
        entries.append(
            measurement(f"reports.{name}_p50_ms", round(p50, 2), "ms", baseline, round(b50, 3))
        )
    if load_s is not None:
        entries.append(measurement("reports.load_10m_fills_s", round(load_s, 1), "s"))
    print(f"load average {os.getloadavg()[0]:.2f}")
    if not args.no_record:
        record(entries)


if __name__ == "__main__":
    main()
