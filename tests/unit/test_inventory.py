"""`pyinfra inventories/tour.py …` sees one host per kit and one group per stop."""

from __future__ import annotations

import json
import subprocess
import sys

from nomadkit import ROOT

# pyinfra_cli monkey-patches the whole process with gevent when imported, which breaks the
# subprocesses and threads of every later test: load it in a child process only.
LOAD = """
import json
from pyinfra.api import State
from pyinfra.context import ctx_state
from pyinfra_cli.inventory import make_inventory
from nomadkit.inventory import kit_context
with ctx_state.use(State()):
    inventory = make_inventory("inventories/tour.py")
host = inventory.get_host("kit-a")
tour, kit, endpoints = kit_context(host.data)
print(json.dumps({
    "hosts": sorted(h.name for h in inventory),
    "groups": {g: sorted(h.name for h in inventory.get_group(g))
               for g in ("alfama", "mouraria", "graca", "marvila", "belem")},
    "ssh_hostname": host.data.ssh_hostname, "kit": kit.name, "tour": tour.name,
    "endpoints": endpoints is not None}))
"""


def test_pyinfra_loads_the_demo_tour_inventory(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-c", LOAD], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin",
                                            "NOMADKIT_TOUR": str(ROOT / "tours" / "demo.yaml"),
                                            "NOMADKIT_ENDPOINTS": str(tmp_path / "none.json")})
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["hosts"] == ["kit-a", "kit-b"]
    assert all(kits == ["kit-a", "kit-b"] for kits in loaded["groups"].values())
    assert loaded["ssh_hostname"] == "kit-a.nightshift.internal"
    assert (loaded["kit"], loaded["tour"], loaded["endpoints"]) == ("kit-a", "night-shift", False)


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


def option(argv: list[str], name: str) -> str | None:
    found = [a.split("=", 1)[1] for a in argv if a.startswith(f"{name}=")]
    return found[-1] if found else None


def test_kit_commands_verify_host_keys_unless_the_host_data_says_otherwise() -> None:
    """nomadkit's own SSH (preflight, status) reads host keys as pyinfra does: a real kit is
    verified (trust on first use); only the lab's throwaway VMs opt out, in their connect data."""
    from nomadkit.lab.lab import Lab
    from nomadkit.remote import Remote

    real = Remote.from_host_data("kit-a", {"ssh_hostname": "kit-a.nightshift.internal"}).argv("true")
    assert option(real, "StrictHostKeyChecking") == "accept-new"
    assert option(real, "UserKnownHostsFile") is None
    state = {"ssh_key": "/k", "cloud_address": "198.18.0.1", "kits": {"kit-a": {"ssh_port": 2222}}}
    lab_data = Lab.connect_overrides(Lab.__new__(Lab), state)["kit-a"]
    lab = Remote.from_host_data("kit-a", lab_data).argv("true")
    assert (option(lab, "StrictHostKeyChecking"), option(lab, "UserKnownHostsFile")) == ("no", "/dev/null")
