"""The agent role renders what the agent reads: agent.json parses into the agent's own config."""

from __future__ import annotations

import json
from pathlib import Path

from nomadkit import ROOT
from nomadkit.agent import system
from nomadkit.agent.config import parse
from nomadkit.endpoints import CloudEndpoints
from nomadkit.roles import agent
from nomadkit.status.cli import line
from nomadkit.tour import load_tour

ENDPOINTS = CloudEndpoints(
    stack="night-shift-dev", region="eu-west-1", assets_bucket="a", recordings_bucket="rec",
    cdn_url="http://10.0.2.2:8080", relay_srt_urls={"room": "srt://10.0.2.2:9000"}, webhook_url="http://10.0.2.2:8081/",
    ledger_table="l", members_table="m", crm_queue_url="q", ticket_public_key="k" * 43,
    s3_endpoint="http://10.0.2.2:4566")


def test_agent_json_is_the_agents_config_with_routing_tables_and_windows() -> None:
    tour = load_tour(ROOT / "tours" / "demo.yaml")
    rendered = agent.files(tour, tour.kit("kit-b"), ENDPOINTS)
    config = parse(json.loads(rendered[agent.CONFIG]))
    assert [(u.name, u.table) for u in config.uplinks] == [("wwan0", 101), ("wwan1", 102), ("sat0", 103)]
    assert (config.probe_host, config.probe_port) == ("10.0.2.2", 8080)
    assert config.s3 is not None and config.s3.prefix == "kit-b/"
    assert [w.stop for w in config.windows] == [s.name for s in tour.stops]
    assert "REDACTED-night_shift_kit_b_aws_secret_access_key" in rendered[agent.AWS_ENV]
    assert f"{agent.PREFIX}/nomadkit/tickets.py" in rendered


def test_without_endpoints_the_agent_still_fails_over_by_carrier() -> None:
    tour = load_tour(ROOT / "tours" / "demo.yaml")
    rendered = agent.files(tour, tour.kit("kit-a"), None)
    config = parse(json.loads(rendered[agent.CONFIG]))
    assert config.probe_host is None and config.s3 is None and config.ticket_public_keys == ()
    assert agent.AWS_ENV not in rendered


def test_doors_open_lock_is_ignored_once_expired() -> None:
    assert agent.doors_open(json.dumps({"stop": "alfama", "until": 200.0}), now=100.0)["stop"] == "alfama"
    assert agent.doors_open(json.dumps({"stop": "alfama", "until": 200.0}), now=300.0) is None
    assert agent.doors_open(None, now=1.0) is None


def test_status_line_names_an_unreachable_kit() -> None:
    assert "UNREACHABLE" in line({"kit": "kit-a", "error": "SSH timed out"})


def test_the_heartbeat_carries_pull_mode_only_on_kits_that_pull(tmp_path: Path) -> None:
    tour = load_tour(ROOT / "tours" / "demo.yaml")
    assert agent.agent_config(tour, tour.kits[0], None)["pull_status"] is None
    assert system.pull(None) is None
    status = tmp_path / "status.json"
    assert system.pull(str(status)) == {"state": "never-run"}
    status.write_text(json.dumps({"state": "refused", "reason": "tampered"}))
    assert system.pull(str(status))["reason"] == "tampered"
    status.write_text("{half")
    assert system.pull(str(status))["state"] == "unreadable"


def test_status_line_shows_a_refused_bundle() -> None:
    import time

    status = {"kit": "kit-b", "at": time.time(), "active": "wwan0",
              "uplinks": {"wwan0": {"state": "healthy"}}, "uploads": {}, "battery": {}, "disk": {},
              "clock": {}, "encoder": {"profile": "live"}, "door": {},
              "pull": {"state": "refused", "applied_version": 7, "reason": "tampered"}}
    assert "pull refused (applied version 7): tampered" in line(status)
    assert "pull" not in line({**status, "pull": None})
