"""Door check-in: ticket tokens verified offline, each admitted once, synced to the cloud once.

Verification needs no network: tokens are Ed25519-signed by the cloud (`nomadkit.tickets`) and
the kit holds the public key. Every admission is one row in SQLite keyed by ticket id, so a
second scan of the same ticket is refused with when and where it was first admitted. Sync sends
unsynced rows in batches; the cloud records each ticket id at most once and answers which ids
it now holds, so a sync interrupted at any point is simply sent again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from nomadkit.agent.uploads import open_db
from nomadkit.tickets import TicketRejected, verify_ticket, warm_verifier

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkins (
    tid TEXT PRIMARY KEY, token TEXT NOT NULL, stop TEXT NOT NULL, tier TEXT NOT NULL,
    qty INTEGER NOT NULL, scanned_at REAL NOT NULL, door TEXT NOT NULL, synced_at REAL);
CREATE TABLE IF NOT EXISTS revoked (tid TEXT PRIMARY KEY);
"""
SYNC_BATCH = 50


class Door:
    """The kit's check-in store.

    + db_path: SQLite file (on the kit: /var/lib/nomadkit/agent/door.db)
    + tour: the tour this kit serves
    + public_keys: the tour's ticket public keys
    + stop: returns the stop being served now (None: accept any stop of the tour)
    """

    def __init__(self, db_path: Path, tour: str, public_keys: Iterable[str],
                 stop: Callable[[], str | None]) -> None:
        self.db = open_db(db_path, SCHEMA)
        self.tour = tour
        self.public_keys = list(public_keys)
        self.stop = stop
        self.lock = threading.Lock()  # the door phone, the sync and the status share the store
        warm_verifier(self.public_keys)

    def scan(self, token: str, door: str = "door") -> dict[str, Any]:
        """Admit a ticket or say why not: the answer the door phone shows."""
        if not self.public_keys:
            return {"ok": False, "reason": "this kit holds no ticket key — redeploy it with the "
                                           "cloud up (`nomadkit deploy`)"}
        with self.lock:
            revoked = {r[0] for r in self.db.execute("SELECT tid FROM revoked")}
        try:
            ticket = verify_ticket(token, self.public_keys, tour=self.tour, stop=self.stop(),
                                   revoked=revoked)
        except TicketRejected as error:
            return {"ok": False, "reason": str(error)}
        try:
            with self.lock, self.db:
                self.db.execute("INSERT INTO checkins VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                                (ticket.tid, token.strip(), ticket.stop, ticket.tier, ticket.qty,
                                 time.time(), door))
        except sqlite3.IntegrityError:
            with self.lock:
                first = self.db.execute("SELECT scanned_at, door FROM checkins WHERE tid = ?",
                                        (ticket.tid,)).fetchone()
            when = time.strftime("%H:%M:%S", time.localtime(first["scanned_at"]))
            return {"ok": False, "duplicate": True, "tid": ticket.tid,
                    "reason": f"already checked in at {when} at {first['door']} — do not admit again"}
        return {"ok": True, "tid": ticket.tid, "tier": ticket.tier, "qty": ticket.qty}

    def set_revoked(self, tids: Iterable[str]) -> None:
        """Replace the list of refunded tickets (pulled from the cloud when online)."""
        with self.lock, self.db:
            self.db.execute("DELETE FROM revoked")
            self.db.executemany("INSERT INTO revoked VALUES (?)", [(t,) for t in tids])

    def unsynced(self, limit: int = SYNC_BATCH) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute("SELECT tid, token, scanned_at, door FROM checkins "
                                   "WHERE synced_at IS NULL ORDER BY scanned_at LIMIT ?", (limit,)).fetchall()
        return [dict(r) for r in rows]

    def mark_synced(self, tids: Iterable[str]) -> None:
        with self.lock, self.db:
            self.db.executemany("UPDATE checkins SET synced_at = ? WHERE tid = ?",
                                [(time.time(), t) for t in tids])

    def counts(self) -> dict[str, int]:
        with self.lock:
            row = self.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(qty), 0), COUNT(synced_at) FROM checkins").fetchone()
        return {"tickets": row[0], "admitted": row[1], "synced": row[2], "unsynced": row[0] - row[2]}


def post_json(url: str, body: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def get_json(url: str, timeout: float = 10.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def sync(door: Door, cloud_url: str, kit: str) -> int:
    """Send every unsynced check-in to the cloud; return how many the cloud now holds.

    Raises OSError (or ValueError) when the cloud cannot be reached; what was confirmed before
    stays confirmed, the rest goes again next time.
    """
    confirmed = 0
    while batch := door.unsynced():
        answer = post_json(f"{cloud_url.rstrip('/')}/kits/checkins", {"kit": kit, "checkins": batch})
        held = [*answer.get("recorded", ()), *answer.get("duplicate", ())]
        door.mark_synced(held)
        confirmed += len(held)
        if len(held) < len(batch):
            raise ValueError(f"cloud refused {answer.get('rejected')}")
    return confirmed


def pull_revocations(door: Door, cloud_url: str) -> int:
    """Fetch refunded ticket ids so refunded tickets are refused offline too."""
    revoked = get_json(f"{cloud_url.rstrip('/')}/revocations").get("revoked", [])
    door.set_revoked(revoked)
    return len(revoked)
