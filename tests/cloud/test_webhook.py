"""The payment webhook against the plan's tables, queue and secrets in moto.

Signature headers come from the official ``stripe`` library, which proves the webhook
accepts exactly what Stripe sends. Every refusal is checked to have written nothing.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import boto3
import pytest
import stripe

from nomadkit import tickets
from nomadkit.cloud.realize import LocalAws
from nomadkit.webhook.handler import Webhook, build
from nomadkit.webhook.local import function_url_event

REGION = "eu-west-1"


def event(kind: str, obj: dict[str, Any], created: int | None = None) -> bytes:
    return json.dumps({
        "id": f"evt_{secrets.token_hex(8)}",
        "object": "event",
        "type": kind,
        "created": int(time.time()) if created is None else created,
        "data": {"object": obj},
    }).encode()


def checkout(stop: str = "alfama", tier: str = "general", customer: str = "cus_ana",
             session: str | None = None) -> dict[str, Any]:
    session = session or f"cs_test_{secrets.token_hex(6)}"
    return {
        "id": session,
        "object": "checkout.session",
        "payment_status": "paid",
        "payment_intent": f"pi_{session[8:]}",
        "customer": customer,
        "customer_details": {"email": "ana@example.org"},
        "metadata": {"stop": stop, "tier": tier, "quantity": "2"},
    }


def subscription(customer: str, status: str = "active") -> dict[str, Any]:
    return {"id": f"sub_{customer}", "object": "subscription", "customer": customer,
            "status": status, "current_period_end": int(time.time()) + 30 * 86400}


def signed(body: bytes, secret: str, at: int | None = None) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=int(time.time()) if at is None else at)
    return {"Content-Type": "application/json", "Stripe-Signature": header}


def post(webhook: Webhook, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    response = webhook(function_url_event("POST", "/", headers, body, "127.0.0.1"))
    return response["statusCode"], json.loads(response["body"])


def rows(table: str) -> list[dict[str, Any]]:
    return boto3.client("dynamodb", region_name=REGION).scan(TableName=table)["Items"]


def ledger(local: LocalAws, kind: str) -> list[dict[str, Any]]:
    return [r for r in rows(local.webhook.ledger_table) if r["kind"]["S"] == kind]


def crm_messages(local: LocalAws) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=REGION)
    found = sqs.receive_message(QueueUrl=local.webhook.crm_queue_url, MaxNumberOfMessages=10,
                                WaitTimeSeconds=0).get("Messages", [])
    return [json.loads(m["Body"]) for m in found]


@pytest.fixture
def webhook(local_aws: LocalAws) -> Webhook:
    return build(local_aws.webhook, region_name=REGION)


@pytest.fixture
def whsec(signing: dict[str, str]) -> str:
    return signing["webhook_secret"]


def assert_untouched(local: LocalAws) -> None:
    assert rows(local.webhook.ledger_table) == []
    assert rows(local.webhook.members_table) == []
    assert crm_messages(local) == []


def test_paid_checkout_issues_a_ticket_the_door_verifies_offline(
        webhook: Webhook, local_aws: LocalAws, whsec: str, signing: dict[str, str]) -> None:
    body = event("checkout.session.completed", checkout(stop="graca"))
    status, answer = post(webhook, body, signed(body, whsec))
    assert (status, answer["outcome"]) == (200, "ticketed")
    [ticket] = ledger(local_aws, "ticket")
    public = tickets.public_key_of(signing["ticket_key"])
    claims = tickets.verify_ticket(ticket["token"]["S"], [public], tour="night-shift", stop="graca")
    assert (claims.tier, claims.qty, claims.tid) == ("general", 2, ticket["ticket_id"]["S"])
    [message] = crm_messages(local_aws)
    assert message["ticket"]["token"] == ticket["token"]["S"]
    assert message["ticket"]["email"] == "ana@example.org"


def test_replayed_event_is_recorded_once_and_changes_nothing(
        webhook: Webhook, local_aws: LocalAws, whsec: str) -> None:
    body = event("checkout.session.completed", checkout())
    first = post(webhook, body, signed(body, whsec))
    second = post(webhook, body, signed(body, whsec))
    assert first[0] == second[0] == 200
    assert second[1]["duplicate"] is True
    assert len(ledger(local_aws, "event")) == 1
    assert len(ledger(local_aws, "ticket")) == 1
    assert len(crm_messages(local_aws)) == 1


def test_stale_signature_is_refused(webhook: Webhook, local_aws: LocalAws, whsec: str) -> None:
    body = event("checkout.session.completed", checkout())
    status, answer = post(webhook, body, signed(body, whsec, at=int(time.time()) - 301))
    assert status == 401 and "stale" in answer["error"]
    assert_untouched(local_aws)


def test_signature_from_the_future_is_refused(
        webhook: Webhook, local_aws: LocalAws, whsec: str) -> None:
    body = event("checkout.session.completed", checkout())
    status, answer = post(webhook, body, signed(body, whsec, at=int(time.time()) + 600))
    assert status == 401 and "future" in answer["error"]
    assert_untouched(local_aws)


def test_forged_signature_is_refused(webhook: Webhook, local_aws: LocalAws) -> None:
    body = event("checkout.session.completed", checkout())
    status, answer = post(webhook, body, signed(body, "whsec_attacker_guess"))
    assert status == 401 and "no v1 signature matches" in answer["error"]
    assert_untouched(local_aws)


def test_altered_body_is_refused(webhook: Webhook, local_aws: LocalAws, whsec: str) -> None:
    body = event("checkout.session.completed", checkout(tier="general"))
    headers = signed(body, whsec)
    status, _ = post(webhook, body.replace(b'"general"', b'"supporter"'), headers)
    assert status == 401
    assert_untouched(local_aws)


def test_rotated_secret_accepts_old_and_new(local_aws: LocalAws, whsec: str) -> None:
    new = f"whsec_{secrets.token_urlsafe(24)}"
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=local_aws.webhook.webhook_secret_id, SecretString=f"{new} {whsec}")
    webhook = build(local_aws.webhook, region_name=REGION)
    old_body = event("checkout.session.completed", checkout())
    assert post(webhook, old_body, signed(old_body, whsec))[0] == 200
    # While Stripe rolls a secret it sends one v1 per secret in the same header.
    body = event("checkout.session.completed", checkout())
    at = int(time.time())
    both = signed(body, "whsec_retired_elsewhere", at)
    both["Stripe-Signature"] += "," + signed(body, new, at)["Stripe-Signature"].split(",")[1]
    assert post(webhook, body, both)[0] == 200
    assert len(ledger(local_aws, "ticket")) == 2


def test_malformed_json_is_refused(webhook: Webhook, local_aws: LocalAws, whsec: str) -> None:
    body = b'{"id": "evt_1", "type": '
    status, answer = post(webhook, body, signed(body, whsec))
    assert status == 400 and "not valid JSON" in answer["error"]
    assert_untouched(local_aws)


def test_event_without_an_id_is_refused(webhook: Webhook, local_aws: LocalAws, whsec: str) -> None:
    body = json.dumps({"type": "checkout.session.completed", "created": 1,
                       "data": {"object": {}}}).encode()
    status, answer = post(webhook, body, signed(body, whsec))
    assert status == 400 and "id must be" in answer["error"]
    assert_untouched(local_aws)


def test_wrong_content_type_is_refused(webhook: Webhook, local_aws: LocalAws, whsec: str) -> None:
    body = event("checkout.session.completed", checkout())
    headers = {**signed(body, whsec), "Content-Type": "application/x-www-form-urlencoded"}
    status, answer = post(webhook, body, headers)
    assert status == 415 and "application/json" in answer["error"]
    assert_untouched(local_aws)


def test_missing_signature_header_is_refused(webhook: Webhook, local_aws: LocalAws) -> None:
    body = event("checkout.session.completed", checkout())
    status, answer = post(webhook, body, {"Content-Type": "application/json"})
    assert status == 400 and "missing Stripe-Signature" in answer["error"]
    assert_untouched(local_aws)


def test_unreadable_signature_header_is_refused(webhook: Webhook, local_aws: LocalAws) -> None:
    body = event("checkout.session.completed", checkout())
    headers = {"Content-Type": "application/json", "Stripe-Signature": "t=soon,v1=abc"}
    status, answer = post(webhook, body, headers)
    assert status == 400 and "t= timestamp" in answer["error"]
    assert_untouched(local_aws)


def test_oversized_body_is_refused(webhook: Webhook, local_aws: LocalAws, whsec: str) -> None:
    obj = {**checkout(), "padding": "x" * (local_aws.webhook.max_body_bytes + 1)}
    body = event("checkout.session.completed", obj)
    status, answer = post(webhook, body, signed(body, whsec))
    assert status == 413 and "exceeds" in answer["error"]
    assert_untouched(local_aws)


def test_members_tier_needs_a_member_inside_the_window(
        webhook: Webhook, local_aws: LocalAws, whsec: str) -> None:
    def buy(customer: str, created: int | None = None) -> str:
        body = event("checkout.session.completed", checkout(tier="members", customer=customer),
                     created=created)
        status, answer = post(webhook, body, signed(body, whsec))
        assert status == 200
        return answer["outcome"]

    assert buy("cus_stranger") == "flagged"
    body = event("customer.subscription.created", subscription("cus_member"))
    assert post(webhook, body, signed(body, whsec))[1]["outcome"] == "member"
    window = local_aws.webhook.members_window_opens
    assert window is not None
    assert buy("cus_member", created=window - 60) == "flagged"
    assert buy("cus_member") == "ticketed"
    assert len(ledger(local_aws, "ticket")) == 1
    flagged = [r for r in ledger(local_aws, "event") if r["outcome"]["S"] == "flagged"]
    assert {r["reason"]["S"] for r in flagged} == {
        "members-only tier 'members' bought by a non-member",
        "members-only tier 'members' bought before its window opened"}


def test_older_subscription_event_does_not_undo_a_newer_one(
        webhook: Webhook, local_aws: LocalAws, whsec: str) -> None:
    now = int(time.time())
    deleted = event("customer.subscription.deleted", subscription("cus_late", "canceled"), now)
    updated = event("customer.subscription.updated", subscription("cus_late"), now - 100)
    assert post(webhook, deleted, signed(deleted, whsec))[1]["outcome"] == "member"
    assert post(webhook, updated, signed(updated, whsec))[1]["outcome"] == "ignored"
    [member] = rows(local_aws.webhook.members_table)
    assert member["active"] == {"BOOL": False}


def test_refund_revokes_the_ticket_at_the_door(
        webhook: Webhook, local_aws: LocalAws, whsec: str, signing: dict[str, str]) -> None:
    session = checkout(session="cs_test_refundme")
    body = event("checkout.session.completed", session)
    post(webhook, body, signed(body, whsec))
    refund = event("charge.refunded", {"id": "ch_1", "object": "charge", "refunded": True,
                                       "payment_intent": session["payment_intent"]})
    status, answer = post(webhook, refund, signed(refund, whsec))
    assert (status, answer["outcome"]) == (200, "revoked")
    [ticket] = ledger(local_aws, "ticket")
    assert ticket["status"]["S"] == "revoked"
    listing = webhook(function_url_event("GET", "/revocations", {}, b"", "127.0.0.1"))
    revoked = json.loads(listing["body"])["revoked"]
    assert revoked == ["cs_test_refundme"]
    public = tickets.public_key_of(signing["ticket_key"])
    with pytest.raises(tickets.TicketRejected, match="refunded"):
        tickets.verify_ticket(ticket["token"]["S"], [public], tour="night-shift", revoked=revoked)


def test_unknown_stop_is_flagged_not_ticketed(
        webhook: Webhook, local_aws: LocalAws, whsec: str) -> None:
    body = event("checkout.session.completed", checkout(stop="atlantis"))
    status, answer = post(webhook, body, signed(body, whsec))
    assert (status, answer["outcome"]) == (200, "flagged")
    assert ledger(local_aws, "ticket") == []
    assert [m["outcome"] for m in crm_messages(local_aws)] == ["flagged"]
