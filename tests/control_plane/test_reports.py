"""The reports over HTTP: the control plane's auth and tenancy in front of coyote_reports, on
the hand-checked sequence of tests/reports (PostgreSQL)."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from coyote_executor.store import Store
from tests.control_plane.conftest import ControlPlaneUnderTest, add_account, error_code
from tests.reports.conftest import HOUR, T0, Ledger, known_sequence

pytestmark = pytest.mark.integration

RANGE = {"start": T0, "end": T0 + 3 * HOUR, "bucket": "1h"}


@pytest.fixture
def traded(cp: ControlPlaneUnderTest) -> ControlPlaneUnderTest:
    """acme's known sequence (and a globex trade) in the executor's tables of the test."""
    store = Store(
        cp.engine.url.render_as_string(hide_password=False),
        connect_args={"options": f"-csearch_path=test_{cp.unique}"},
    )
    known_sequence(Ledger(store), org=cp.acme.slug, other=cp.globex.slug)
    store.close()
    return cp


def test_a_viewer_reads_the_pnl_series(traded: ControlPlaneUnderTest) -> None:
    answer = traded.acme.viewer.get("/v1/reports/pnl", params=RANGE)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [
        tuple(Decimal(p[k]) for k in ("realized", "unrealized", "fees", "net"))
        for p in body["points"]
    ] == [
        (0, 2, Decimal("0.4"), Decimal("1.6")),
        (18, 0, Decimal("0.7"), Decimal("17.3")),
        (16, 20, Decimal("0.9"), Decimal("35.1")),
    ]


def test_equity_starts_from_the_deployments_capital(traded: ControlPlaneUnderTest) -> None:
    add_account(traded.acme.admin, capital="5000")

    answer = traded.acme.viewer.get("/v1/reports/equity", params={**RANGE, "account": "paper"})

    assert answer.status_code == 200, answer.text
    assert Decimal(answer.json()["capital"]) == 5000
    assert Decimal(answer.json()["points"][-1]["equity"]) == Decimal("5035.1")


def test_another_organisation_sees_none_of_it(traded: ControlPlaneUnderTest) -> None:
    fills = traded.globex.admin.get("/v1/reports/fills").json()["items"]
    pnl = traded.globex.admin.get("/v1/reports/pnl", params=RANGE).json()
    named = traded.globex.admin.get("/v1/reports/fills", params={"bot": "alpha"}).json()

    assert [f["symbol"] for f in fills] == ["BTCUSD"]  # its own trade only
    assert Decimal(pnl["total"]["net"]) == 0
    assert traded.acme.slug not in str(fills) + str(named)


def test_fills_export_as_csv(traded: ControlPlaneUnderTest) -> None:
    answer = traded.acme.viewer.get("/v1/reports/fills/export", params={"bot": "alpha"})

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == 5
    assert {r["bot"] for r in rows} == {"alpha"}
    assert sum(Decimal(r["fee"]) for r in rows) == Decimal("0.8")


def test_orders_export_as_json(traded: ControlPlaneUnderTest) -> None:
    answer = traded.acme.viewer.get("/v1/reports/orders/export", params={"format": "json"})

    assert answer.status_code == 200, answer.text
    assert len(answer.json()) == 5


def test_metrics_statement_and_rejections(traded: ControlPlaneUnderTest) -> None:
    viewer = traded.acme.viewer

    metrics = viewer.get("/v1/reports/metrics", params=RANGE).json()
    statement = viewer.get("/v1/reports/statement", params={"period": "month", "date": "2026-11"})
    rejections = viewer.get("/v1/reports/rejections", params=RANGE).json()

    assert [(b["bot"], b["trades"], b["win_rate_pct"]) for b in metrics["bots"]] == [
        ("alpha", 2, 50.0),
        ("beta", 0, None),
    ]
    assert statement.status_code == 200, statement.text
    assert Decimal(statement.json()["pnl"]["net"]) == Decimal("35.1")
    assert rejections["total"] == 3


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"bucket": "2m"}, "request.invalid", "query.bucket"),
        ({"start": 10, "end": 5}, "reports.bad_range", "end"),
        ({"bot": "Not A Name"}, "request.invalid", "query.bot"),
        ({"start": 0, "end": 10**12, "bucket": "1m"}, "reports.too_many_points", "bucket"),
    ],
)
def test_bad_requests_name_the_field(
    traded: ControlPlaneUnderTest, params: dict[str, object], code: str, field: str
) -> None:
    answer = traded.acme.viewer.get("/v1/reports/pnl", params=params)

    assert answer.status_code == 422, answer.text
    assert (error_code(answer), answer.json()["error"].get("field")) == (code, field)


def test_bad_cursor_and_bad_statement_date(traded: ControlPlaneUnderTest) -> None:
    viewer = traded.acme.viewer

    cursor = viewer.get("/v1/reports/fills", params={"cursor": "xyz"})
    date = viewer.get("/v1/reports/statement", params={"period": "day", "date": "2026-13-40"})

    assert (cursor.status_code, error_code(cursor)) == (422, "reports.bad_cursor")
    assert (date.status_code, error_code(date)) == (422, "reports.bad_date")
