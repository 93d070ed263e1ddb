"""`pyinfra inventories/tour.py …` sees one host per kit and one group per stop."""

from __future__ import annotations

import subprocess
import sys

from pyinfra.api import State
from pyinfra.context import ctx_state
from pyinfra_cli.inventory import make_inventory

from nomadkit import ROOT
from nomadkit.inventory import kit_context


def test_pyinfra_loads_the_demo_tour_inventory(monkeypatch) -> None:
    monkeypatch.setenv("NOMADKIT_TOUR", str(ROOT / "tours" / "demo.yaml"))
    monkeypatch.setenv("NOMADKIT_ENDPOINTS", "/nonexistent/endpoints.json")
    with ctx_state.use(State()):
        inventory = make_inventory(str(ROOT / "inventories" / "tour.py"))
    assert sorted(h.name for h in inventory) == ["kit-a", "kit-b"]
    for stop in ("alfama", "mouraria", "graca", "marvila", "belem"):
        assert sorted(h.name for h in inventory.get_group(stop)) == ["kit-a", "kit-b"]
    host = inventory.get_host("kit-a")
    assert host.data.ssh_hostname == "kit-a.nightshift.internal"
    tour, kit, endpoints = kit_context(host.data)
    assert kit.name == "kit-a" and tour.name == "night-shift" and endpoints is None


def test_pyinfra_cli_lists_the_kits_with_connection_overrides(tmp_path) -> None:
    """The lab points the same inventory at its VMs through NOMADKIT_CONNECT."""
    connect = tmp_path / "connect.json"
    connect.write_text('{"kit-b": {"ssh_hostname": "127.0.0.1", "ssh_port": 2299}}')
    done = subprocess.run(
        [sys.executable, "-m", "pyinfra", "inventories/tour.py", "debug-inventory"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "NOMADKIT_CONNECT": str(connect),
             "NOMADKIT_ENDPOINTS": str(tmp_path / "none.json")},
    )
    assert done.returncode == 0, done.stderr
    shown = done.stdout + done.stderr  # pyinfra logs to stderr
    assert "kit-a" in shown and "kit-b" in shown and "2299" in shown and "alfama" in shown
