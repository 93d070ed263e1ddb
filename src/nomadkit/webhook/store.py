"""The webhook's state in AWS: the ledger, the members table, the CRM queue, its secrets.

Each accepted event is written in ONE DynamoDB transaction together with its effect (the
ticket, the revocation, the membership), guarded by a conditional put on the event id: a
replayed event changes nothing, and a half-applied event cannot exist. The CRM message is
stored on the event row and marked sent after SQS accepts it, so a replay of an event
whose message was lost re-sends it (an outbox, without a second moving part).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from nomadkit.webhook.config import WebhookConfig
from nomadkit.webhook.events import Decision, Event, Membership

REVOCATIONS_KEY = "revocations"
SECRET_CACHE_SECONDS = 300  # a rotated secret is picked up within five minutes

_serialize = TypeSerializer().serialize
_deserialize = TypeDeserializer().deserialize


class Duplicate(Exception):
    """The event id is already in the ledger."""


class Conflict(Exception):
    """Another writer changed the state this event was decided on; the sender should retry."""


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {key: _serialize(value) for key, value in values.items() if value is not None}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _deserialize(value) for key, value in item.items()}


class Store:
    """Reads and writes of one tour's webhook, through boto3 clients made by the caller.

    + config: the tour's webhook config (table, queue and secret names)
    + dynamodb, sqs, secretsmanager: boto3 clients (thread-safe, shared by requests)
    """

    def __init__(self, config: WebhookConfig, dynamodb: Any, sqs: Any, secretsmanager: Any):
        self.config = config
        self.dynamodb = dynamodb
        self.sqs = sqs
        self.secretsmanager = secretsmanager
        self._secrets: dict[str, tuple[float, str]] = {}

    def secret(self, secret_id: str) -> str:
        """A secret's value, cached briefly so each request does not pay a round trip."""
        cached = self._secrets.get(secret_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        value = self.secretsmanager.get_secret_value(SecretId=secret_id)["SecretString"]
        self._secrets[secret_id] = (time.monotonic() + SECRET_CACHE_SECONDS, value)
        return value

    def signing_secrets(self) -> list[str]:
        """Every accepted endpoint secret: during a roll, store them space-separated."""
        return self.secret(self.config.webhook_secret_id).replace(",", " ").split()

    def member(self, customer: object) -> dict[str, Any] | None:
        """The member row of a customer, if a subscription event ever named them."""
        if not isinstance(customer, str) or not customer:
            return None
        found = self.dynamodb.get_item(
            TableName=self.config.members_table,
            Key={"customer": {"S": customer}},
            ConsistentRead=True,
        ).get("Item")
        return _plain(found) if found else None

    def ticket_for_payment(self, payment_intent: str) -> str | None:
        found = self.dynamodb.get_item(
            TableName=self.config.ledger_table,
            Key={"pk": {"S": f"payment#{payment_intent}"}},
            ConsistentRead=True,
        ).get("Item")
        return _plain(found)["ticket_id"] if found else None

    def event_row(self, event_id: str) -> dict[str, Any] | None:
        found = self.dynamodb.get_item(
            TableName=self.config.ledger_table,
            Key={"pk": {"S": f"event#{event_id}"}},
            ConsistentRead=True,
        ).get("Item")
        return _plain(found) if found else None

    def record(self, event: Event, decision: Decision, token: str | None, crm_message: str) -> None:
        """Write the event and its effect atomically; raise ``Duplicate`` or ``Conflict``."""
        table = self.config.ledger_table
        event_row = {
            "pk": f"event#{event.id}",
            "kind": "event",
            "event_id": event.id,
            "type": event.type,
            "created": event.created,
            "received_at": int(time.time()),
            "outcome": decision.outcome,
            "reason": decision.reason,
            "ticket_id": decision.ticket.tid if decision.ticket else None,
            "crm_message": crm_message,
            "crm_queued": False,
        }
        writes: list[dict[str, Any]] = [{
            "Put": {
                "TableName": table,
                "Item": _item(event_row),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }]
        writes += self._effects(event, decision, token)
        try:
            self.dynamodb.transact_write_items(TransactItems=writes)
        except self.dynamodb.exceptions.TransactionCanceledException as error:
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise Duplicate(event.id) from None
            raise Conflict(f"ledger write cancelled: {reasons}") from None

    def _effects(self, event: Event, decision: Decision, token: str | None) -> list[dict[str, Any]]:
        table = self.config.ledger_table
        if decision.ticket is not None:
            order = decision.ticket
            ticket_row = {
                "pk": f"ticket#{order.tid}",
                "kind": "ticket",
                "ticket_id": order.tid,
                "status": "valid",
                "token": token,
                "event_id": event.id,
                **{k: v for k, v in asdict(order).items() if k != "tid"},
            }
            writes = [{"Put": {"TableName": table, "Item": _item(ticket_row)}}]
            if order.payment_intent:
                link = {"pk": f"payment#{order.payment_intent}", "kind": "payment",
                        "ticket_id": order.tid}
                writes.append({"Put": {"TableName": table, "Item": _item(link)}})
            return writes
        if decision.revoke is not None:
            tid = decision.revoke
            return [
                {"Update": {
                    "TableName": table,
                    "Key": {"pk": {"S": f"ticket#{tid}"}},
                    "UpdateExpression": "SET #s = :revoked, revoked_by = :event",
                    "ConditionExpression": "attribute_exists(pk)",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":revoked": {"S": "revoked"},
                                                  ":event": {"S": event.id}},
                }},
                {"Update": {
                    "TableName": table,
                    "Key": {"pk": {"S": REVOCATIONS_KEY}},
                    "UpdateExpression": "SET kind = :kind ADD ticket_ids :tid",
                    "ExpressionAttributeValues": {":tid": {"SS": [tid]},
                                                  ":kind": {"S": "revocations"}},
                }},
            ]
        if decision.membership is not None:
            return [self._membership_write(event, decision.membership)]
        return []

    def _membership_write(self, event: Event, membership: Membership) -> dict[str, Any]:
        """Put the member row unless a newer subscription event already wrote it."""
        row = {**asdict(membership), "updated_at": event.created, "event_id": event.id}
        return {"Put": {
            "TableName": self.config.members_table,
            "Item": _item(row),
            "ConditionExpression": "attribute_not_exists(customer) OR updated_at <= :created",
            "ExpressionAttributeValues": {":created": {"N": str(event.created)}},
        }}

    def queue_crm(self, event_id: str, crm_message: str) -> None:
        """Send the event's CRM message, then mark it sent on the event row."""
        self.sqs.send_message(QueueUrl=self.config.crm_queue_url, MessageBody=crm_message)
        self.dynamodb.update_item(
            TableName=self.config.ledger_table,
            Key={"pk": {"S": f"event#{event_id}"}},
            UpdateExpression="SET crm_queued = :yes",
            ExpressionAttributeValues={":yes": {"BOOL": True}},
        )

    def revoked_tickets(self) -> list[str]:
        """Ticket ids revoked by refunds: what kits sync to refuse them offline."""
        found = self.dynamodb.get_item(
            TableName=self.config.ledger_table,
            Key={"pk": {"S": REVOCATIONS_KEY}},
            ConsistentRead=True,
        ).get("Item")
        return sorted(_plain(found).get("ticket_ids", ())) if found else []


def crm_message(config: WebhookConfig, event: Event, decision: Decision, token: str | None) -> str:
    """The CRM sync message: what happened, and the ticket to send the buyer."""
    ticket = None
    if decision.ticket is not None:
        ticket = {**asdict(decision.ticket), "token": token}
    return json.dumps({
        "tour": config.tour,
        "event_id": event.id,
        "type": event.type,
        "outcome": decision.outcome,
        "reason": decision.reason,
        "ticket": ticket,
        "membership": asdict(decision.membership) if decision.membership else None,
    }, sort_keys=True)
