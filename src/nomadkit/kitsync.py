"""The cloud's side of the kits: door check-ins and heartbeats, kept in the tour's ledger.

Served beside the payment webhook (same Function URL, same local server): a kit POSTs
`/kits/checkins` and `/kits/heartbeat` as JSON. Each check-in is one ledger row keyed by its
ticket id (`checkin#<tid>`), written with a conditional put, so a batch re-sent after an
interrupted sync changes nothing and the ledger holds every admission exactly once. A
check-in is accepted only with a ticket token signed by the tour's key, so nobody can write
admissions for tickets that were never sold.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from typing import Any

from nomadkit.tickets import TicketRejected, verify_ticket

Response = dict[str, Any]
MAX_BATCH = 100


def _respond(status: int, **body: Any) -> Response:
    return {"statusCode": status, "headers": {"content-type": "application/json"},
            "body": json.dumps(body, sort_keys=True)}


def _json_body(request: dict[str, Any]) -> dict[str, Any]:
    body = request.get("body") or ""
    raw = base64.b64decode(body, validate=True) if request.get("isBase64Encoded") else body.encode()
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


class Fleet:
    """Records what kits send, in the ledger table.

    + dynamodb: a boto3 DynamoDB client
    + table: the tour's ledger table
    + tour: the tour name (tokens of other tours are refused)
    + public_keys: returns the tour's ticket public keys
    """

    def __init__(self, dynamodb: Any, table: str, tour: str, public_keys: Callable[[], list[str]]):
        self.dynamodb = dynamodb
        self.table = table
        self.tour = tour
        self.public_keys = public_keys

    def handle(self, request: dict[str, Any]) -> Response | None:
        """Answer a `/kits/...` request; None for any other path (not ours)."""
        path = request.get("rawPath", "/")
        if not path.startswith("/kits/"):
            return None
        method = request.get("requestContext", {}).get("http", {}).get("method", "")
        routes = {"/kits/checkins": self.checkins, "/kits/heartbeat": self.heartbeat}
        if path not in routes:
            return _respond(404, error=f"no such path {path!r}: kits POST /kits/checkins or /kits/heartbeat")
        if method != "POST":
            return _respond(405, error=f"method {method} not allowed: POST JSON")
        try:
            data = _json_body(request)
            kit = data["kit"]
            if not isinstance(kit, str) or not kit:
                raise ValueError("kit must be a kit name")
        except (binascii.Error, UnicodeDecodeError, ValueError, KeyError) as error:
            return _respond(400, error=f"malformed body: {error}")
        return routes[path](kit, data)

    def checkins(self, kit: str, data: dict[str, Any]) -> Response:
        """Record a batch of admissions; say which are now held (new or already) and which not."""
        items = data.get("checkins")
        if not isinstance(items, list) or len(items) > MAX_BATCH:
            return _respond(400, error=f"checkins must be a list of at most {MAX_BATCH}")
        recorded, duplicate, rejected = [], [], {}
        keys = self.public_keys()
        for item in items:
            tid = str(item.get("tid", "")) if isinstance(item, dict) else ""
            try:
                ticket = verify_ticket(str(item.get("token", "")), keys, tour=self.tour)
                if ticket.tid != tid:
                    raise TicketRejected("token belongs to another ticket id")
            except (TicketRejected, AttributeError) as error:
                rejected[tid or "?"] = str(error)
                continue
            row = {"pk": {"S": f"checkin#{tid}"}, "kind": {"S": "checkin"}, "ticket_id": {"S": tid},
                   "kit": {"S": kit}, "stop": {"S": ticket.stop}, "tier": {"S": ticket.tier},
                   "qty": {"N": str(ticket.qty)}, "door": {"S": str(item.get("door", ""))},
                   "scanned_at": {"N": str(float(item.get("scanned_at", 0)))},
                   "synced_at": {"N": str(int(time.time()))}}
            try:
                self.dynamodb.put_item(TableName=self.table, Item=row,
                                       ConditionExpression="attribute_not_exists(pk)")
                recorded.append(tid)
            except self.dynamodb.exceptions.ConditionalCheckFailedException:
                duplicate.append(tid)
        return _respond(200, recorded=recorded, duplicate=duplicate, rejected=rejected)

    def heartbeat(self, kit: str, data: dict[str, Any]) -> Response:
        """Keep the kit's latest status (one row per kit, overwritten)."""
        status = json.dumps(data.get("status", {}), sort_keys=True)
        self.dynamodb.put_item(TableName=self.table, Item={
            "pk": {"S": f"kit#{kit}"}, "kind": {"S": "heartbeat"}, "kit": {"S": kit},
            "received_at": {"N": str(int(time.time()))}, "status": {"S": status}})
        return _respond(200, received=True)
