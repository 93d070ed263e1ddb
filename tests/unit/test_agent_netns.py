"""The agent on a real kernel: two network namespaces, veth uplinks, real cuts and netem.

Each test starts the agent (`python -m nomadkit.agent`) inside the kit namespace with the
config the agent role renders for the demo tour's kit-a, pointed at the namespace edge. A UDP
"stream" goes out through whatever rule 1000 says; the lab-side listener records which uplink
(source address) each datagram came over. Figures (detection, interruption) are printed, not
asserted: bench/agent_failover.py records them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nomadkit import ROOT
from nomadkit.netkit import EDGE, LISTENER, SENDER, NetKit, longest_gap, python
from nomadkit.roles.agent import agent_config
from nomadkit.status.cli import line
from nomadkit.tour import load_tour

UPLINKS = ("wwan0", "wwan1", "sat0")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"),
    reason="network namespaces need root, iproute2 and nftables")


FAKE_SYSTEMCTL = """#!/bin/sh
# Stands in for systemd in the namespace tier: records what the agent asks for.
echo "$@" >> "$(dirname "$0")/systemctl.log"
case "$1" in is-active) echo inactive; echo inactive; exit 3;; esac
exit 0
"""


class RunningAgent:
    """The agent process in the kit namespace, and ways to read what it reports."""

    def __init__(self, netkit: NetKit, workdir: Path, overrides: dict[str, Any]) -> None:
        tour = load_tour(ROOT / "tours" / "demo.yaml")
        config = agent_config(tour, tour.kit("kit-a"), None)
        systemctl = workdir / "systemctl"
        systemctl.write_text(FAKE_SYSTEMCTL)
        systemctl.chmod(0o755)
        config |= {"probe_host": EDGE, "probe_port": 80, "state_dir": str(workdir / "state"),
                   "run_dir": str(workdir / "run"), "http_bind": "127.0.0.1",
                   "recordings_dir": str(workdir), "systemctl": [str(systemctl)],
                   "windows": [], "ups": "none@localhost"} | overrides
        (workdir / "agent.json").write_text(json.dumps(config))
        self.workdir = workdir
        self.log = (workdir / "agent.log").open("w")
        self.proc = subprocess.Popen(
            netkit.in_kit([sys.executable, "-m", "nomadkit.agent", "--config", str(workdir / "agent.json")]),
            stdout=self.log, stderr=subprocess.STDOUT)

    def status(self) -> dict[str, Any]:
        path = self.workdir / "run" / "status.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def wait(self, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc.poll() is None, f"agent exited: {(self.workdir / 'agent.log').read_text()}"
            status = self.status()
            if status and check(status):
                return status
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; last status: {json.dumps(self.status())[:2000]}"
                             f"\nlog: {(self.workdir / 'agent.log').read_text()[-3000:]}")

    def switches(self) -> list[dict[str, Any]]:
        lines = (self.workdir / "agent.log").read_text().splitlines()
        return [json.loads(line.split(" switch ", 1)[1]) for line in lines if " INFO switch " in line]

    def systemctl_calls(self) -> list[str]:
        path = self.workdir / "systemctl.log"
        return [c for c in path.read_text().splitlines() if not c.startswith("is-active")] \
            if path.exists() else []

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def netkit() -> Iterator[NetKit]:
    with NetKit(UPLINKS) as nk:
        yield nk


@pytest.fixture
def start_agent(netkit: NetKit, tmp_path: Path) -> Iterator[Callable[..., RunningAgent]]:
    agents: list[RunningAgent] = []

    def start(**overrides: Any) -> RunningAgent:
        agent = RunningAgent(netkit, tmp_path, {"recover_after_s": 3.0} | overrides)
        agents.append(agent)
        agent.wait("all uplinks healthy", lambda s: s["active"] == "wwan0" and all(
            u["state"] == "healthy" and u["rtt_ms"] is not None for u in s["uplinks"].values()))
        return agent

    yield start
    for agent in agents:
        agent.stop()


class Stream:
    """A stand-in stream from the kit to the edge, and the listener that records its path."""

    def __init__(self, netkit: NetKit, workdir: Path, seconds: float) -> None:
        self.out = workdir / "listener.txt"
        self.netkit = netkit
        self.listener = subprocess.Popen(netkit.in_net(python(LISTENER, EDGE, "3", str(self.out))))
        time.sleep(0.3)
        self.sender = subprocess.Popen(netkit.in_kit(python(SENDER, EDGE, str(seconds))))

    def finish(self) -> list[tuple[float, int, str]]:
        self.sender.wait(60)
        self.listener.wait(10)
        rows = [line.split() for line in self.out.read_text().splitlines()]
        return [(float(t), int(seq), src) for t, seq, src in rows]


def uplink_of(netkit: NetKit, src: str) -> str:
    return next(u for u in UPLINKS if netkit.address(u) == src)


def interruption(rows: list[tuple[float, int, str]], after: float) -> float:
    """Longest gap between datagrams arriving after `after` - 0.05 s (the outage as seen at the edge)."""
    return longest_gap(t for t, _, _ in rows if t >= after - 0.05)


def test_cutting_wwan0_moves_stream_to_wwan1(netkit: NetKit, start_agent, tmp_path: Path) -> None:
    agent = start_agent()
    stream = Stream(netkit, tmp_path, seconds=5)
    time.sleep(1.5)
    cut_at = time.time()
    netkit.cut("wwan0")
    status = agent.wait("traffic on wwan1", lambda s: s["active"] == "wwan1")
    rows = stream.finish()
    assert status["uplinks"]["wwan0"]["state"] == "dead"
    assert "lookup 102" in netkit.active_rule()
    assert "active wwan1" in line(status) and "wwan0:dead" in line(status)
    before = [uplink_of(netkit, src) for t, _, src in rows if t < cut_at]
    after = [uplink_of(netkit, src) for t, _, src in rows if t > cut_at + 2]
    assert set(before) == {"wwan0"} and after and set(after) == {"wwan1"}
    switch = agent.switches()[-1]
    switched_at = next(e["at"] for e in reversed(status["events"]) if e["event"] == "switch")
    deadline = time.monotonic() + 5  # the agent reconnects in the background after the move
    while not (calls := [c for c in agent.systemctl_calls() if "restart" in c]):
        assert time.monotonic() < deadline, "no reconnect after the move"
        time.sleep(0.1)
    assert calls and set(calls) == {"restart --no-block nomadkit-sender@stage.service"}, (
        f"a move reconnects the sender, and never restarts an encoder (the recording): {calls}")
    print(f"\nFIGURE detection_s={switched_at - cut_at:.3f} interruption_s={interruption(rows, cut_at):.3f} "
          f"rule_swap_ms={switch['took_ms']}")


def test_blackholed_wwan0_with_carrier_is_left_by_probes(netkit: NetKit, start_agent) -> None:
    agent = start_agent()
    cut_at = time.time()
    netkit.impair("wwan0", loss_pct=100)
    status = agent.wait("traffic off wwan0, found dead by probes alone", lambda s: s["active"] == "wwan1"
                        and s["uplinks"]["wwan0"]["state"] == "dead")
    assert status["uplinks"]["wwan0"]["carrier"] is True
    switched_at = next(e["at"] for e in reversed(status["events"]) if e["event"] == "switch")
    print(f"\nFIGURE blackhole_detection_s={switched_at - cut_at:.3f}")


def test_cutting_both_modems_moves_to_satellite_and_back(netkit: NetKit, start_agent) -> None:
    agent = start_agent()
    netkit.cut("wwan0")
    netkit.cut("wwan1")
    agent.wait("traffic on the satellite", lambda s: s["active"] == "sat0")
    assert "lookup 103" in netkit.active_rule()
    netkit.restore("wwan1")
    agent.wait("back on a modem", lambda s: s["active"] == "wwan1")
    netkit.restore("wwan0")
    agent.wait("back on the primary", lambda s: s["active"] == "wwan0")
    moves = [s["to"] for s in agent.switches()]
    # between the two cuts the agent may already have moved to wwan1 (it reacts in milliseconds)
    assert moves in (["sat0", "wwan1", "wwan0"], ["wwan1", "sat0", "wwan1", "wwan0"])


def test_lossy_wwan0_is_left_before_it_dies_and_regained_without_flapping(
        netkit: NetKit, start_agent) -> None:
    agent = start_agent()
    impaired_at = time.time()
    netkit.impair("wwan0", loss_pct=30)
    status = agent.wait("off the lossy uplink", lambda s: s["active"] == "wwan1", timeout=20)
    left = next(e["at"] for e in reversed(status["events"]) if e["event"] == "switch")
    moved = agent.switches()[-1]
    assert moved["why"] == "degraded", f"left wwan0 only when it was {moved['why']}"
    assert status["uplinks"]["wwan0"]["state"] != "healthy"
    netkit.clear("wwan0")
    restored_at = time.time()
    status = agent.wait("back on wwan0", lambda s: s["active"] == "wwan0", timeout=30)
    back = next(e["at"] for e in reversed(status["events"]) if e["event"] == "switch")
    assert back - restored_at >= 3.0, "returned before the hysteresis elapsed"
    time.sleep(5)  # watch for flapping
    assert [s["to"] for s in agent.switches()] == ["wwan1", "wwan0"]
    print(f"\nFIGURE loss30_left_after_s={left - impaired_at:.2f} "
          f"return_after_restore_s={back - restored_at:.2f}")


def test_no_healthy_uplink_rolls_the_encoder_back_to_audio_only(netkit: NetKit, start_agent) -> None:
    agent = start_agent()
    agent.wait("live profile selected", lambda s: s["encoder"]["profile"] == "live")
    for uplink in UPLINKS:
        netkit.impair(uplink, loss_pct=40)
    status = agent.wait("fallback profile", lambda s: s["encoder"]["profile"] == "fallback")
    assert "rollback" in status["alerts"]
    assert "start --no-block nomadkit-encoder-fallback@stage.service" in agent.systemctl_calls()
    for uplink in UPLINKS:
        netkit.clear(uplink)
    status = agent.wait("live again", lambda s: s["encoder"]["profile"] == "live")
    assert "rollback" not in status["alerts"]
    calls = agent.systemctl_calls()  # the live unit started after the fallback (a reconnect on the
    after = calls[calls.index("start --no-block nomadkit-encoder-fallback@stage.service") + 1:]
    assert "start --no-block nomadkit-encoder@stage.service" in after  # way back may follow it)


def test_operator_rollback_holds_audio_only_until_cleared(netkit: NetKit, start_agent,
                                                          tmp_path: Path) -> None:
    """`nomadkit rollback` drops a flag in the agent's run dir: audio only although every
    uplink is healthy, until the flag goes."""
    agent = start_agent()
    agent.wait("live profile selected", lambda s: s["encoder"]["profile"] == "live")
    flag = tmp_path / "run" / "rollback"
    flag.touch()
    status = agent.wait("forced fallback", lambda s: s["encoder"]["profile"] == "fallback")
    assert "forced by the operator" in status["alerts"]["rollback"]
    assert status["active"] == "wwan0"  # the uplinks are fine; only the profile changed
    flag.unlink()
    status = agent.wait("live again", lambda s: s["encoder"]["profile"] == "live")
    assert "rollback" not in status["alerts"]
