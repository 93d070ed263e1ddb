"""`nomadkit status` for kits SSH cannot reach: their last heartbeat, read back from the tour's
ledger (moto over HTTP, as the local cloud serves it), written there by the cloud's own
`/kits/heartbeat` handler; a kit with neither SSH nor a heartbeat is said to have neither."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import socket
import time
from pathlib import Path

import pytest

from nomadkit import ROOT
from nomadkit.endpoints import CloudEndpoints
from nomadkit.kitsync import Fleet
from nomadkit.status.cli import cmd_status, line
from tests.unit.agent_cloud import REGION, client, moto_server

TABLE = "night-shift-ledger"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def heartbeat(fleet: Fleet, kit: str, status: dict) -> None:
    request = {"rawPath": "/kits/heartbeat", "requestContext": {"http": {"method": "POST"}},
               "body": json.dumps({"kit": kit, "status": status})}
    assert fleet.handle(request)["statusCode"] == 200


def test_a_kit_ssh_cannot_reach_shows_its_last_heartbeat(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    status = {"kit": "kit-a", "at": time.time() - 20, "active": "wwan1",
              "uplinks": {"wwan0": {"state": "dead"}, "wwan1": {"state": "healthy", "rtt_ms": 41.0}},
              "uploads": {}, "battery": {"charge_pct": 80}, "disk": {}, "clock": {},
              "encoder": {"profile": "live"}, "door": {"admitted": 12}, "alerts": {},
              "pull": {"state": "refused", "applied_version": 3, "reason": "tampered"}}
    with moto_server() as endpoint:
        dynamodb = client("dynamodb", endpoint)
        dynamodb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        heartbeat(Fleet(dynamodb, TABLE, "night-shift", lambda: []), "kit-a", status)
        endpoints = {name: f"x-{name}" for name, f in CloudEndpoints.model_fields.items() if f.is_required()}
        endpoints |= {"region": REGION, "ledger_table": TABLE, "s3_endpoint": endpoint, "relay_srt_urls": {}}
        (tmp_path / "endpoints.json").write_text(json.dumps(endpoints))
        connect = {kit: {"ssh_hostname": "127.0.0.1", "ssh_port": closed_port(), "ssh_user": "root"}
                   for kit in ("kit-a", "kit-b")}
        (tmp_path / "connect.json").write_text(json.dumps(connect))
        monkeypatch.setenv("NOMADKIT_ENDPOINTS", str(tmp_path / "endpoints.json"))
        monkeypatch.setenv("NOMADKIT_CONNECT", str(tmp_path / "connect.json"))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cmd_status(argparse.Namespace(file=ROOT / "tours" / "demo.yaml", kit=None, json=True))
    kit_a, kit_b = json.loads(out.getvalue())
    assert code == 1  # kit-b has neither SSH nor a heartbeat
    assert (kit_a["via"], kit_a["active"], kit_a["pull"]["state"]) == ("heartbeat", "wwan1", "refused")
    assert "ssh" in kit_a["ssh_error"].lower() or "connect" in kit_a["ssh_error"].lower(), kit_a["ssh_error"]
    assert time.time() - kit_a["received_at"] < 60
    shown = line(kit_a)
    assert "from its heartbeat, received" in shown and "pull refused (applied version 3): tampered" in shown
    assert kit_b["heartbeat_error"] == "no heartbeat from this kit in the tour's ledger" and "error" in kit_b
    assert "no heartbeat either" in line(kit_b)
