"""A tour's kits on a fresh lab's VMs with a stand-in cloud on loopback, for the deploy benches
(the cloud is not what they measure; the lab tests use the real local cloud instead).

`standin_tour()` maps the demo tour's kits onto the running lab's kits (`hardware: lab`, the lab's SSH
ports and NIC MACs) and writes what a user's deploy reads: the tour file, the SSH overrides and
the cloud endpoints. `standin_cloud()` runs the two cloud services a kit deploy touches, on this
machine's loopback (the lab reaches them at its cloud address): the CDN (the tour's preview
assets over HTTP) and the relay (one SRT listener per stream, recording what it receives).
"""

from __future__ import annotations

import copy
import functools
import http.server
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nomadkit import ROOT
from nomadkit.endpoints import CloudEndpoints
from nomadkit.lab.lab import Lab, free_port
from nomadkit.lab.net import CLOUD_ADDRESS
from nomadkit.lab.played import play_in_lab
from nomadkit.lab.testing import LabTour
from nomadkit.roles import agent
from nomadkit.secrets import store
from nomadkit.tour import load_tour

DEMO = ROOT / "tours" / "demo.yaml"
ASSETS = ROOT / "tours" / "demo-assets"


@dataclass
class StandinCloud:
    cdn_port: int
    relay: dict[str, tuple[int, Path]]  # stream -> (SRT port, file of what arrived)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """The agent's TCP probes connect and hang up: not worth a traceback each."""


@contextmanager
def standin_cloud(folder: Path, streams: list[str]) -> Iterator[StandinCloud]:
    """The CDN and the SRT relay on loopback, stopped on exit."""
    server = _Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(ASSETS)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    listeners, procs = {}, []
    try:
        for name in streams:
            port, capture = free_port(), folder / f"{name}.ts"
            with capture.open("wb") as sink:
                procs.append(subprocess.Popen(
                    ["srt-live-transmit", "-q", f"srt://127.0.0.1:{port}?mode=listener", "file://con"],
                    stdout=sink, stderr=subprocess.DEVNULL))
            listeners[name] = (port, capture)
        yield StandinCloud(server.server_address[1], listeners)
    finally:
        server.shutdown()
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def lab_kits(demo: dict[str, Any], names: list[str]) -> dict[str, str]:
    """Lab kit name -> the demo kit it plays: in order, round the demo's kits again when the lab
    has more kits than the demo (a 4-kit fleet plays kit-a, kit-b, kit-a, kit-b)."""
    sources = [k["name"] for k in demo["kits"]]
    return {name: sources[i % len(sources)] for i, name in enumerate(names)}


def standin_tour(lab: Lab, folder: Path, cloud: StandinCloud) -> LabTour:
    """The demo tour on the running lab's kits (each plays a demo kit, renamed onto it), as the
    files a user's deploy reads, pointed at the stand-in cloud."""
    data = yaml.safe_load(DEMO.read_text())
    data["assets_dir"] = str(ASSETS)
    plays = lab_kits(data, list(lab.state()["kits"]))
    demo_kits = {k["name"]: k for k in data["kits"]}
    data["kits"] = [{**copy.deepcopy(demo_kits[source]), "name": name} for name, source in plays.items()]
    for kit in data["kits"]:
        name = kit["name"]
        state = lab.kit(name)
        play_in_lab(kit, lab.state()["accel"])
        kit["management"] = {"address": "127.0.0.1", "port": state["ssh_port"], "user": "root"}
        for uplink in kit["uplinks"]:
            uplink["mac"] = state["uplinks"][uplink["name"]]["mac"]
    for stop in data["stops"]:
        stop["kits"] = [name for name, source in plays.items() if source in stop["kits"]]
    tour_file = folder / "lab-tour.yaml"
    tour_file.write_text(yaml.safe_dump(data, sort_keys=False))
    tour = load_tour(tour_file)
    values: dict[str, Any] = {n: f"lab-{n}" for n, f in CloudEndpoints.model_fields.items()
                              if f.is_required()}
    values |= {"region": "eu-west-1", "cdn_url": f"http://{CLOUD_ADDRESS}:{cloud.cdn_port}",
               "relay_srt_urls": {s: f"srt://{CLOUD_ADDRESS}:{p}" for s, (p, _) in cloud.relay.items()}}
    endpoints_file = folder / "endpoints.json"
    endpoints_file.write_text(CloudEndpoints.model_validate(values).model_dump_json())
    for kit in tour.kits:  # what `nomadkit cloud up` stores for each kit's agent
        for ref in agent.credential_refs(tour, kit):
            store(ref, f"lab-test-{ref.rsplit('_', 1)[1]}")
    return LabTour(lab, tour_file, lab.connect_file, endpoints_file)
