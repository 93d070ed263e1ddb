"""The payment webhook: one code path for the Lambda Function URL and the local server.

Requests arrive as Function URL (payload 2.0) events. Everything that can be refused is
refused before anything is read or written: wrong method or path, content type, size,
missing or malformed signature header, bad or stale signature, malformed JSON. Each
refusal is a 4xx with a reason a person can act on. Accepted events are recorded once.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from typing import Any

import boto3

from nomadkit import tickets
from nomadkit.kitsync import Fleet
from nomadkit.webhook import events, signature
from nomadkit.webhook.config import WebhookConfig
from nomadkit.webhook.events import Decision, Event, MalformedEvent
from nomadkit.webhook.store import Conflict, Duplicate, Store, crm_message

log = logging.getLogger("nomadkit.webhook")

Response = dict[str, Any]


def respond(status: int, **body: Any) -> Response:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body, sort_keys=True),
    }


def refuse(status: int, reason: str) -> Response:
    log.info("refused %d: %s", status, reason)
    return respond(status, error=reason)


def _raw_body(request: dict[str, Any]) -> bytes:
    body = request.get("body") or ""
    if request.get("isBase64Encoded"):
        return base64.b64decode(body, validate=True)
    return body.encode("utf-8")


class Webhook:
    """One tour's webhook: the checks, the decisions, the writes.

    + store: where events, tickets and members live (see ``Store``)
    """

    def __init__(self, store: Store):
        self.store = store
        self.config = store.config
        self.kits = Fleet(store.dynamodb, self.config.ledger_table, self.config.tour,
                          lambda: [tickets.public_key_of(store.secret(self.config.ticket_key_id))])

    def __call__(self, request: dict[str, Any]) -> Response:
        """Answer one Function URL event."""
        http = request.get("requestContext", {}).get("http", {})
        method, path = http.get("method", ""), request.get("rawPath", "/")
        if method == "GET" and path == "/healthz":
            return respond(200, ok=True, tour=self.config.tour)
        if method == "GET" and path == "/revocations":
            return respond(200, tour=self.config.tour, revoked=self.store.revoked_tickets())
        kits = self.kits.handle(request)  # the kits' check-ins and heartbeats
        if kits is not None:
            return kits
        if path != "/":
            return refuse(404, f"no such path {path!r}: payment events go to POST /")
        if method != "POST":
            return refuse(405, f"method {method} not allowed: payment events are POSTed")
        return self.receive(request)

    def receive(self, request: dict[str, Any]) -> Response:
        """Check, decide and record one payment event."""
        headers = {k.lower(): v for k, v in (request.get("headers") or {}).items()}
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return refuse(415, f"content type {content_type or 'missing'!r}: send application/json")
        try:
            body = _raw_body(request)
        except (binascii.Error, ValueError):
            return refuse(400, "body is not valid base64")
        if len(body) > self.config.max_body_bytes:
            return refuse(413, f"body of {len(body)} bytes exceeds {self.config.max_body_bytes}")
        header = headers.get("stripe-signature")
        if not header:
            return refuse(400, "missing Stripe-Signature header")
        try:
            signature.verify(header, body, self.store.signing_secrets(), time.time())
        except signature.MalformedHeader as error:
            return refuse(400, f"signature refused: {error}")
        except signature.SignatureError as error:
            return refuse(401, f"signature refused: {error}")
        try:
            event = events.parse_event(json.loads(body))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return refuse(400, "body is not valid JSON")
        except MalformedEvent as error:
            return refuse(400, f"malformed event: {error}")
        return self.accept(event)

    def decide(self, event: Event) -> Decision:
        if event.type in events.CHECKOUT_PAID:
            member = self.store.member(event.obj.get("customer")) or {}
            return events.decide_checkout(event, self.config, bool(member.get("active")))
        if event.type in events.SUBSCRIPTION:
            member = self.store.member(event.obj.get("customer")) or {}
            stored_at = member.get("updated_at")
            return events.decide_subscription(event, None if stored_at is None else int(stored_at))
        if event.type == events.REFUND:
            payment = event.obj.get("payment_intent")
            ticket_id = self.store.ticket_for_payment(payment) if isinstance(payment, str) else None
            return events.decide_refund(event, ticket_id)
        return Decision("ignored", f"event type {event.type} needs no action")

    def accept(self, event: Event) -> Response:
        """Record a verified event once, apply its effect, queue it for the CRM."""
        try:
            decision = self.decide(event)
        except MalformedEvent as error:
            return refuse(400, f"malformed event: {error}")
        token = None
        if decision.ticket is not None:
            order = decision.ticket
            token = tickets.sign_ticket(
                self.store.secret(self.config.ticket_key_id),
                tid=order.tid, tour=self.config.tour, stop=order.stop, tier=order.tier,
                qty=order.qty, iat=event.created,
            )
        message = crm_message(self.config, event, decision, token)
        try:
            self.store.record(event, decision, token, message)
        except Duplicate:
            return self.replay(event.id)
        except Conflict as error:
            log.warning("event %s: %s", event.id, error)
            return refuse(409, "state changed while recording the event: send it again")
        self.store.queue_crm(event.id, message)
        log.info("event %s %s: %s", event.id, decision.outcome, decision.reason)
        return respond(200, received=True, outcome=decision.outcome, reason=decision.reason)

    def replay(self, event_id: str) -> Response:
        """A replay changes nothing; it only re-sends a CRM message that never left."""
        row = self.store.event_row(event_id) or {}
        if row and not row.get("crm_queued"):
            self.store.queue_crm(event_id, row["crm_message"])
        log.info("event %s already recorded", event_id)
        return respond(200, received=True, duplicate=True, outcome=row.get("outcome"))


def build(config: WebhookConfig, **client_args: Any) -> Webhook:
    """A webhook over boto3 clients (``client_args`` such as ``endpoint_url`` go to each)."""
    store = Store(
        config,
        dynamodb=boto3.client("dynamodb", **client_args),
        sqs=boto3.client("sqs", **client_args),
        secretsmanager=boto3.client("secretsmanager", **client_args),
    )
    return Webhook(store)


_lambda_webhook: Webhook | None = None


def handler(event: dict[str, Any], context: object) -> Response:
    """The Lambda entry point (``nomadkit.webhook.handler.handler``)."""
    global _lambda_webhook
    if _lambda_webhook is None:
        logging.getLogger().setLevel(logging.INFO)
        _lambda_webhook = build(WebhookConfig.from_env())
    return _lambda_webhook(event)
