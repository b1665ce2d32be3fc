"""The reject-rate breaker in the executor, on the real stack: a bot whose new orders keep being
rejected is halted for a while (the other bots trade on), with an alert when it trips and when
it is lifted."""

from __future__ import annotations

from pathlib import Path

import pytest

from coyote_risk import ACTIVE, HALTED
from coyote_sdk.config import Endpoints
from coyote_sdk.protocol import ExecType, OrderStatus
from tests.executor._harness import ExecutorHarness, risk_section, until

pytestmark = pytest.mark.integration

HALT_S = 3


async def test_a_bot_whose_orders_keep_being_rejected_is_halted_then_lifted(
    endpoints: Endpoints, unique: str, tmp_path: Path
) -> None:
    risk = risk_section()
    risk["bots"] = {
        "bot-a": {
            "max_order_quantity": "5000",
            "max_reject_rate": "0.5",
            "reject_rate_window": 4,
            "reject_halt_s": HALT_S,
        }
    }
    harness = ExecutorHarness(endpoints, unique, tmp_path, risk=risk)
    await harness.setup()
    harness.trade("EURUSD", "1.07500")
    try:
        executor = await harness.start_executor()
        account = executor._accounts[harness.account]
        first = [harness.order(), harness.order(quantity="9000"), harness.order()]
        await harness.send(*first)
        await harness.terminal_reports([o.intent_id for o in first])
        assert account.engine.slot_bot("bot-a").state == ACTIVE  # 1 of 3: no full window yet

        too_big = harness.order(quantity="9000")  # 2 of the last 4 rejected: 50 %
        await harness.send(too_big)
        await harness.terminal_reports([too_big.intent_id])
        await until(lambda: account.engine.slot_bot("bot-a").state == HALTED, "bot-a halted")
        await until(lambda: harness.alerts("risk.reject_rate") != [], "alerted")  # by a task
        (alert,) = harness.alerts("risk.reject_rate")
        assert alert.bot_id == "bot-a" and alert.severity == "critical"
        assert "2 of its last 4 new orders rejected (limit 50%)" in alert.message

        refused, other_bot = harness.order(), harness.order(bot_id="bot-b")
        await harness.send(refused, other_bot)
        reports = await harness.terminal_reports([refused.intent_id, other_bot.intent_id])
        (rejection,) = reports[refused.intent_id]
        assert rejection.exec_type is ExecType.REJECTED
        assert rejection.reject_code == "risk.halted"
        assert "halted for its reject rate" in (rejection.reject_reason or "")
        assert reports[other_bot.intent_id][-1].order_status is OrderStatus.FILLED
        assert account.engine.account.state == ACTIVE  # the account has no such limit

        await until(
            lambda: harness.alerts("risk.reject_rate_lifted") != [], "lifted", within=HALT_S + 10
        )
        assert account.engine.slot_bot("bot-a").state == ACTIVE
        again = harness.order()
        await harness.send(again)
        reports = await harness.terminal_reports([again.intent_id])
        assert reports[again.intent_id][-1].order_status is OrderStatus.FILLED
    finally:
        await harness.close()
