"""Door check-in: 200 tickets offline, a duplicate and a forgery refused, synced exactly once.

The cloud side is the fleet endpoint behind the webhook's local HTTP adapter, writing to a
DynamoDB ledger table in moto's server. The sync is cut twice by a proxy that delivers the
request and then drops the connection before the answer: the kit retries, the ledger still
holds exactly 200 check-ins.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from agent_cloud import FleetApp, client, free_port, moto_server

from nomadkit import tickets
from nomadkit.agent.door import Door, sync
from nomadkit.kitsync import Fleet
from nomadkit.webhook.local import make_handler

TOUR, STOP, TABLE = "night-shift", "alfama", "night-shift-test-ledger"


@pytest.fixture(scope="module")
def key() -> str:
    return tickets.generate_ticket_key()


@pytest.fixture(scope="module")
def dynamodb() -> Iterator:
    with moto_server() as endpoint:
        ddb = client("dynamodb", endpoint)
        ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        yield ddb


@pytest.fixture
def cloud(dynamodb, key: str) -> Iterator[str]:
    fleet = Fleet(dynamodb, TABLE, TOUR, lambda: [tickets.public_key_of(key)])
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(FleetApp(fleet)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class DroppingProxy:
    """Forwards each request; for the first `drops` connections, hangs up instead of answering."""

    def __init__(self, upstream: str, drops: int) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.drops = drops
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self.listener.accept()
            with conn, socket.create_connection(self.upstream) as up:
                up.sendall(read_message(conn))
                answer = read_message(up)
                if self.drops > 0:
                    self.drops -= 1  # the cloud recorded the batch; the kit never hears so
                    continue
                conn.sendall(answer)


def read_message(sock: socket.socket) -> bytes:
    """One HTTP message (headers and a Content-Length body) from a socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def door_at(tmp_path: Path, key: str) -> Door:
    return Door(tmp_path / "door.db", TOUR, [tickets.public_key_of(key)], lambda: STOP)


def test_200_tickets_offline_duplicate_and_forgery_refused_synced_exactly_once(
        tmp_path: Path, key: str, cloud: str, dynamodb) -> None:
    door = door_at(tmp_path, key)
    tokens = [tickets.sign_ticket(key, tid=f"cs_{i:04d}", tour=TOUR, stop=STOP, tier="general")
              for i in range(200)]
    answers = [door.scan(t) for t in tokens]
    assert all(a["ok"] for a in answers), [a for a in answers if not a["ok"]][:3]

    again = door.scan(tokens[17])
    assert not again["ok"] and again["duplicate"] and "already checked in" in again["reason"]

    forger = tickets.generate_ticket_key()
    forged = tickets.sign_ticket(forger, tid="cs_9999", tour=TOUR, stop=STOP, tier="supporter")
    version, claims, signature = tokens[0].split(".")
    upgraded = json.loads(base64.urlsafe_b64decode(claims + "==")) | {"tid": "cs_9998", "qty": 5}
    tampered = ".".join([version, base64.urlsafe_b64encode(
        json.dumps(upgraded).encode()).decode().rstrip("="), signature])
    assert "unknown key" in door.scan(forged)["reason"]
    assert "forged or altered" in door.scan(tampered)["reason"]
    other_stop = tickets.sign_ticket(key, tid="cs_7777", tour=TOUR, stop="belem", tier="general")
    assert "not 'alfama'" in door.scan(other_stop)["reason"]
    assert door.counts() == {"tickets": 200, "admitted": 200, "synced": 0, "unsynced": 200}

    proxy = DroppingProxy(cloud, drops=2)
    for _ in range(2):
        with pytest.raises(OSError):
            sync(door, f"http://127.0.0.1:{proxy.port}", "kit-a")
    assert sync(door, f"http://127.0.0.1:{proxy.port}", "kit-a") > 0
    assert door.counts()["unsynced"] == 0
    assert sync(door, cloud, "kit-a") == 0  # nothing left to send

    rows = dynamodb.scan(TableName=TABLE, FilterExpression="kind = :c",
                         ExpressionAttributeValues={":c": {"S": "checkin"}}, Select="COUNT")
    assert rows["Count"] == 200


def test_cloud_refuses_checkins_without_a_genuine_token(cloud: str, key: str) -> None:
    from nomadkit.agent.door import post_json

    forged = tickets.sign_ticket(tickets.generate_ticket_key(), tid="cs_x", tour=TOUR, stop=STOP,
                                 tier="general")
    answer = post_json(f"{cloud}/kits/checkins", {"kit": "kit-a", "checkins": [
        {"tid": "cs_x", "token": forged, "scanned_at": 1}]})
    assert answer["recorded"] == [] and "cs_x" in answer["rejected"]
