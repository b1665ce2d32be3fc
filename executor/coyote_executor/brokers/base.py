"""The one interface every broker adapter implements, and the errors it raises.

The executor speaks to a broker in terms of *order states*: it submits an order under a client
order id (the intent id), and whatever happens afterwards — an ack, fills, a cancel — it learns
by receiving a fresh :class:`BrokerOrderState` of that order, from the call's answer, from the
adapter's own updates, or from a lookup during reconciliation. The executor compares each state
with what it has recorded and derives the execution reports from the difference, so one code path
serves live answers, late fills and recovery after a crash alike.

Adapters must be idempotent on the client order id: submitting an id the broker already knows
never creates a second order (real brokers refuse a duplicate client order id; the adapter then
answers with the existing order's state).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Awaitable, Callable, Collection, Sequence
from decimal import Decimal

from coyote_sdk.protocol import OrderStatus, OrderType, Side, TimeInForce

ZERO = Decimal(0)


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerOrder:
    """An order as the executor sends it.

    Attributes:
        client_order_id: The intent id of the order, as a string: the idempotency key.
        symbol: Coyote's canonical symbol; adapters map it to the venue's instrument name.
    """

    client_order_id: str
    account_id: str
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerFill:
    """One execution at the broker. ``fill_id`` is unique per fill at that broker."""

    fill_id: str
    quantity: Decimal
    price: Decimal
    ts_ms: int
    fee: Decimal = ZERO
    fee_currency: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerOrderState:
    """What the broker says an order is, now.

    ``fills`` lists the order's executions when the broker reports them one by one; a broker
    that only reports cumulative quantities leaves it empty and the executor derives each fill
    from the change of ``filled_quantity`` and ``average_price``.
    """

    client_order_id: str
    status: OrderStatus
    quantity: Decimal
    filled_quantity: Decimal = ZERO
    average_price: Decimal | None = None
    broker_order_id: str | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    fills: tuple[BrokerFill, ...] = ()
    reject_code: str | None = None
    """For a rejected order: ``broker.<reason>``, machine-readable."""
    reject_reason: str | None = None
    ts_ms: int = 0


UpdateListener = Callable[[str, Sequence[BrokerOrderState]], Awaitable[None] | None]
"""Called with an account id and changed order states the broker produced by itself (a resting
order filled, a day order expired)."""


# -- ERRORS ----------------------------------------------------------------------------------


class BrokerError(Exception):
    """A broker call that did not succeed. ``code`` is machine-readable (``broker.*``)."""

    code = "broker.error"


class BrokerUnavailable(BrokerError):
    """The broker could not be reached or answered with a server error, after retries.

    Whether the order reached the broker is unknown: the executor keeps it in flight and
    reconciles it by its client order id later; it never submits a new order instead.
    """

    code = "broker.unavailable"


class BrokerRateLimited(BrokerUnavailable):
    """The broker asked us to slow down (HTTP 429) and retries ran out."""

    code = "broker.rate_limited"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BrokerAuthError(BrokerError):
    """The broker refused our credentials; retrying will not help until they change."""

    code = "broker.unauthorized"


class UnknownOrder(BrokerError):
    """The broker knows no order with the given client order id."""

    code = "broker.unknown_order"


class FencedAtVenue(Exception):
    """The venue refused a change: another executor has taken the account on there since this
    one began serving it (its fencing token, taken in :meth:`Broker.serve`, is newer).

    Deliberately not a :class:`BrokerError`: it is neither an outage to reconcile later nor a
    refusal to report to the bot. This executor is a zombie, and must stop without recording or
    sending anything more; the account's new owner has it.
    """


# -- INTERFACE -------------------------------------------------------------------------------


class Broker(abc.ABC):
    """A trading venue as the executor sees it, for the accounts it trades.

    Order refusals by the venue are *states* (status ``rejected`` with a ``reject_code``), not
    exceptions; exceptions mean the call itself failed.
    """

    name: str = "broker"

    async def start(self, listener: UpdateListener) -> None:  # noqa: B027 - optional hook
        """Begins producing updates of its own (fills of resting orders), if it has any."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Releases connections and background tasks."""

    async def serve(self, account_ids: Collection[str]) -> None:  # noqa: B027 - optional hook
        """The accounts this executor owns now (after each rebalance, before it sends anything
        for them). A venue that can fence (the paper venue) takes each newly served account
        from its previous server, whose later changes it refuses (:class:`FencedAtVenue`); a
        venue simulated in the executor's process also works only their orders, so that two
        executors never both fill one account's orders. A real broker needs nothing (and offers
        no fence: its idempotency on the client order id is the last line)."""

    @abc.abstractmethod
    async def submit(self, order: BrokerOrder) -> BrokerOrderState:
        """Places ``order``, or returns the existing order if its client order id is known."""

    async def submit_many(self, orders: Sequence[BrokerOrder]) -> list[BrokerOrderState]:
        """Submits several orders; adapters with a batch path override it.

        Raises:
            BrokerError: if the call failed for all of them (their outcome is unknown).
        """
        return [await self.submit(order) for order in orders]

    @abc.abstractmethod
    async def cancel(self, account_id: str, client_order_id: str) -> BrokerOrderState:
        """Cancels an open order; answers its state (which may already be filled)."""

    @abc.abstractmethod
    async def replace(
        self,
        account_id: str,
        client_order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> BrokerOrderState:
        """Changes an open order in place; the client order id stays the same."""

    @abc.abstractmethod
    async def lookup(self, account_id: str, client_order_id: str) -> BrokerOrderState | None:
        """The order's current state, or None if the broker never saw that client order id."""

    @abc.abstractmethod
    async def open_orders(self, account_id: str) -> list[BrokerOrderState]:
        """Every open order of the account, for reconciliation."""

    @abc.abstractmethod
    async def positions(self, account_id: str) -> dict[str, Decimal]:
        """The account's net position per symbol, for reconciliation."""
