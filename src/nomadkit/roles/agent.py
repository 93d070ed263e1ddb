"""agent: installs and runs nomadkit-agent, the daemon that keeps the event online.

- The agent runs with Debian's python3 and only stdlib + python3-boto3/python3-cryptography:
  its package (src/nomadkit/agent/ and nomadkit.tickets) is copied to /opt/nomadkit.
- Everything it needs is one JSON file, /etc/nomadkit/agent.json, built here from the Tour
  model and the cloud endpoints; with no endpoints yet it still fails over between uplinks
  (by carrier), rolls the encoder back and serves the door, and says what is missing.
- During a stop's doors-open window it holds /run/nomadkit/doors-open; `assert_deploy_allowed`
  is what deploys call first, so a kit is not reconfigured while the audience walks in.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import FileContents
from pyinfra.operations import files as file_ops
from pyinfra.operations import server

from nomadkit import ROOT
from nomadkit.endpoints import CloudEndpoints
from nomadkit.errors import UserError
from nomadkit.inventory import kit_context
from nomadkit.render import render
from nomadkit.roles import Secret, redacted
from nomadkit.roles.ops import Perm, changed, packages_present, put_all, service
from nomadkit.roles.pull import STATUS as PULL_STATUS
from nomadkit.roles.uplinks import tables
from nomadkit.secrets import resolve
from nomadkit.tour import Kit, Tour

PACKAGES = ("python3", "python3-boto3", "python3-cryptography", "iproute2", "nut-client", "chrony")

PREFIX = "/opt/nomadkit"
CONFIG = "/etc/nomadkit/agent.json"
AWS_ENV = "/etc/nomadkit/aws.env"
UNIT = "/etc/systemd/system/nomadkit-agent.service"
STATE_DIR = "/var/lib/nomadkit/agent"
RUN_DIR = "/run/nomadkit"
LOCK = f"{RUN_DIR}/doors-open"
SOURCES = ROOT / "src"
# What the kit runs: the agent package, the offline ticket verifier and the package marker.
SHIPPED = ("nomadkit/__init__.py", "nomadkit/tickets.py", "nomadkit/agent/*.py")


def doors_open_windows(tour: Tour, kit: Kit) -> list[dict[str, Any]]:
    """Every stop this kit serves, from lock_before_doors_min before doors to the end (epoch s)."""
    out = []
    for stop in tour.stops:
        if kit.name not in stop.kits:
            continue
        doors = datetime.combine(stop.date, stop.doors_open, ZoneInfo(stop.timezone))
        start = doors - timedelta(minutes=kit.agent.lock_before_doors_min)
        end = doors + timedelta(hours=stop.duration_hours)
        out.append({"stop": stop.name, "start": start.timestamp(), "end": end.timestamp()})
    return out


def probe_target(endpoints: CloudEndpoints | None) -> tuple[str | None, int]:
    """The tour's edge (CDN) host and port: what every uplink is probed towards."""
    if endpoints is None:
        return None, 443
    url = urlsplit(endpoints.cdn_url)
    return url.hostname, url.port or (443 if url.scheme == "https" else 80)


def agent_config(tour: Tour, kit: Kit, endpoints: CloudEndpoints | None) -> dict[str, Any]:
    """The agent's whole configuration (see nomadkit.agent.config), from the Tour model."""
    s = kit.agent
    numbers = tables(kit)
    host_, port = probe_target(endpoints)
    return {
        "tour": tour.name, "kit": kit.name,
        "uplinks": [{"name": u.name, "kind": u.kind, "priority": u.priority, "table": numbers[u.name]}
                    for u in sorted(kit.uplinks, key=lambda u: u.priority)],
        "probe_host": host_, "probe_port": port,
        "probe_interval_ms": s.probe_interval_ms, "probe_timeout_ms": s.probe_timeout_ms,
        "dead_after_lost": s.dead_after_lost, "window": s.window,
        "degraded_loss_pct": s.degraded_loss_pct, "degraded_rtt_ms": s.degraded_rtt_ms,
        "recover_after_s": s.recover_after_s,
        "streams": [{"name": st.name, "bitrate_kbps": st.bitrates_kbps[0] + st.audio_kbps,
                     "audio_only_kbps": st.audio_only_kbps} for st in kit.streams],
        "recordings_dir": kit.recordings_dir, "state_dir": STATE_DIR, "run_dir": RUN_DIR,
        "http_bind": "0.0.0.0", "http_port": s.http_port, "heartbeat_s": s.heartbeat_s,
        "upload_max_kbps": s.upload_max_kbps, "ups": s.ups,
        "windows": doors_open_windows(tour, kit),
        "s3": None if endpoints is None else {
            "bucket": endpoints.recordings_bucket, "prefix": f"{kit.name}/",
            "region": endpoints.region, "endpoint_url": endpoints.s3_endpoint},
        "cloud_url": endpoints.webhook_url if endpoints else None,
        "ticket_public_keys": [endpoints.ticket_public_key] if endpoints else [],
        "pull_status": PULL_STATUS if tour.pull else None,
    }


def credential_refs(tour: Tour, kit: Kit) -> tuple[str, str]:
    """Secret references of the kit's cloud identity (stored by `nomadkit cloud up`)."""
    base = f"{tour.name}_{kit.name}".replace("-", "_")
    return f"secret:{base}_aws_access_key_id", f"secret:{base}_aws_secret_access_key"


def sources() -> dict[str, str]:
    """The agent's Python files, remote path -> content, copied verbatim."""
    return {f"{PREFIX}/{path.relative_to(SOURCES)}": path.read_text()
            for pattern in SHIPPED for path in sorted(SOURCES.glob(pattern))}


def files(tour: Tour, kit: Kit, endpoints: CloudEndpoints | None,
          secret: Secret = redacted) -> dict[str, str]:
    """agent.json, the unit, the kit's cloud credentials (with endpoints) and the agent's code."""
    out = {
        CONFIG: render("agent/agent.json.j2", config=agent_config(tour, kit, endpoints)),
        UNIT: render("agent/nomadkit-agent.service.j2", tour=tour, kit=kit, prefix=PREFIX,
                     aws_env=AWS_ENV, config_path=CONFIG),
    }
    if endpoints is not None:
        key_id, secret_key = credential_refs(tour, kit)
        out[AWS_ENV] = render("agent/aws.env.j2", access_key_id=secret(key_id),
                              secret_access_key=secret(secret_key), region=endpoints.region)
    return out | sources()


def perm(path: str) -> Perm:
    return Perm(mode="600", secret=True) if path == AWS_ENV else Perm()


@deploy("agent: install")
def install() -> None:
    packages_present(name="agent packages", packages=PACKAGES)
    for path in (f"{PREFIX}/nomadkit/agent", STATE_DIR, "/etc/nomadkit"):
        file_ops.directory(name=f"Directory {path}", path=path, mode="755")


@deploy("agent: configure")
def configure() -> dict[str, OperationMeta]:
    """Put agent.json, the unit, the code; the kit's cloud key is resolved here, at deploy time."""
    tour, kit, endpoints = kit_context(host.data)
    return put_all(files(tour, kit, endpoints, secret=resolve), perm)


@deploy("agent: activate")
def activate(ops: dict[str, OperationMeta]) -> None:
    """Enable and start the agent; restart it only when its config, code or unit changed."""
    server.shell(name="systemd: reload units (agent unit changed)",
                 commands=["systemctl daemon-reload"], _if=changed(ops, UNIT))
    service("nomadkit-agent", changed(ops, CONFIG, AWS_ENV, UNIT, f"{PREFIX}/"))


def doors_open(lock_text: str | None, now: float) -> dict[str, Any] | None:
    """The lock's content while it is in force (an expired lock from a dead agent is ignored)."""
    if not lock_text:
        return None
    try:
        lock = json.loads(lock_text)
        return lock if float(lock["until"]) > now else None
    except (ValueError, KeyError, TypeError):
        return {"stop": "?", "until": now, "note": "unreadable lock file"}


def assert_deploy_allowed(force: bool = False) -> None:
    """Refuse to configure this kit while its doors are open (the agent's lock), unless forced.

    Call it first in a deploy file; it reads the lock over the host's connection.
    """
    lines = host.get_fact(FileContents, path=LOCK)
    lock = doors_open("\n".join(lines) if lines else None, datetime.now().timestamp())
    if lock and not force:
        until = datetime.fromtimestamp(float(lock["until"])).strftime("%H:%M")
        raise UserError(f"{host.name}: doors are open for stop {lock['stop']} until {until} "
                        f"(the agent holds {LOCK}) — deploy after that, or pass --force")

