"""What each payment event means for the tour: a decision, computed before anything is written.

Deciding is kept apart from storing so every rule (who gets a ticket, what a refund
revokes, who is a member) reads as plain code over the event and the current state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nomadkit.webhook.config import WebhookConfig

PAID = ("paid", "no_payment_required")
MEMBER_STATUSES = ("active", "trialing")
CHECKOUT_PAID = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
SUBSCRIPTION = (
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
)
REFUND = "charge.refunded"


class MalformedEvent(ValueError):
    """The signed body is not a usable event; ``str(error)`` says which part is missing."""


@dataclass(frozen=True)
class Event:
    """The parts of a payment event every path needs."""

    id: str
    type: str
    created: int
    obj: dict[str, Any]


@dataclass(frozen=True)
class TicketOrder:
    """A ticket to issue for a paid checkout."""

    tid: str
    stop: str
    tier: str
    qty: int
    payment_intent: str | None
    customer: str | None
    email: str | None


@dataclass(frozen=True)
class Membership:
    """A member's state after a subscription event."""

    customer: str
    subscription: str
    status: str
    active: bool
    current_period_end: int | None


@dataclass(frozen=True)
class Decision:
    """What to record for one event.

    + outcome: ``ticketed``, ``flagged``, ``revoked``, ``member`` or ``ignored``
    + reason: one line a person reads in the ledger
    + ticket, membership, revoke (a ticket id): at most one effect to apply with the event
    """

    outcome: str
    reason: str
    ticket: TicketOrder | None = None
    membership: Membership | None = None
    revoke: str | None = None


def parse_event(document: object) -> Event:
    """Check the event's envelope; raise ``MalformedEvent`` naming what is wrong."""
    if not isinstance(document, dict):
        raise MalformedEvent("body is not a JSON object")
    event_id, event_type = document.get("id"), document.get("type")
    created, data = document.get("created"), document.get("data")
    if not isinstance(event_id, str) or not event_id.startswith("evt_"):
        raise MalformedEvent("id must be a string starting with evt_")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEvent("type must be a non-empty string")
    if not isinstance(created, int):
        raise MalformedEvent("created must be an integer unix time")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise MalformedEvent("data.object must be an object")
    return Event(event_id, event_type, created, data["object"])


def decide_checkout(event: Event, config: WebhookConfig, is_member: bool) -> Decision:
    """Ticket a paid checkout, or flag it when its tier or stop does not allow it.

    + is_member: whether the paying customer holds an active membership now
    """
    session = event.obj
    metadata = session.get("metadata") or {}
    stop, tier = metadata.get("stop"), metadata.get("tier")
    if session.get("payment_status") not in PAID:
        return Decision("ignored", f"payment status is {session.get('payment_status')!r}")
    if stop not in config.stops:
        return Decision("flagged", f"checkout names unknown stop {stop!r}")
    if tier not in config.tiers:
        return Decision("flagged", f"checkout names unknown tier {tier!r}")
    if config.tiers[tier]:
        if not is_member:
            return Decision("flagged", f"members-only tier {tier!r} bought by a non-member")
        opens = config.members_window_opens
        if opens is not None and event.created < opens:
            return Decision("flagged", f"members-only tier {tier!r} bought before its window opened")
    try:
        qty = int(metadata.get("quantity", 1))
    except (TypeError, ValueError):
        qty = 0
    if qty < 1:
        return Decision("flagged", f"checkout quantity {metadata.get('quantity')!r} is not a count")
    details = session.get("customer_details") or {}
    order = TicketOrder(
        tid=str(session.get("id")),
        stop=stop,
        tier=tier,
        qty=qty,
        payment_intent=session.get("payment_intent"),
        customer=session.get("customer"),
        email=details.get("email"),
    )
    return Decision("ticketed", f"{qty} x {tier} for {stop}", ticket=order)


def decide_subscription(event: Event, stored_at: int | None) -> Decision:
    """Keep the members table in step with the customer's subscription.

    + stored_at: ``created`` of the event that last wrote this member, if any; events
      arrive out of order, and an older one must not undo a newer one
    """
    sub = event.obj
    customer, status = sub.get("customer"), sub.get("status")
    if not isinstance(customer, str) or not isinstance(status, str):
        raise MalformedEvent("a subscription event needs data.object.customer and .status")
    if stored_at is not None and stored_at > event.created:
        return Decision("ignored", f"older than the member state already recorded for {customer}")
    active = status in MEMBER_STATUSES and event.type != "customer.subscription.deleted"
    membership = Membership(
        customer=customer,
        subscription=str(sub.get("id")),
        status=status,
        active=active,
        current_period_end=sub.get("current_period_end"),
    )
    verb = "is" if active else "is no longer"
    return Decision("member", f"{customer} {verb} a member ({status})", membership=membership)


def decide_refund(event: Event, ticket_id: str | None) -> Decision:
    """Revoke the ticket of a fully refunded payment; partial refunds keep the ticket.

    + ticket_id: the ticket issued for the charge's payment intent, if any
    """
    charge = event.obj
    if not charge.get("refunded"):
        return Decision("ignored", "partial refund: the ticket stays valid")
    if ticket_id is None:
        return Decision("ignored", f"no ticket for payment {charge.get('payment_intent')!r}")
    return Decision("revoked", f"refund of {charge.get('payment_intent')}", revoke=ticket_id)
