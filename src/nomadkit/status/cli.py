"""`nomadkit status FILE [--json]`: each kit's agent status, over SSH (as pyinfra reaches kits),
else from its last heartbeat in the cloud.

The agent rewrites /run/nomadkit/status.json every second; reading it over SSH works through
the firewall (SSH is the one port open on management) and through the lab's port forwards.
Connection overrides come from NOMADKIT_CONNECT, exactly as for the pyinfra inventory. A kit
behind carrier NAT, or one whose SSH is down, still posts the same status to the cloud every
`heartbeat_s`; the tour's ledger keeps the latest per kit, and that is shown instead, with its age.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nomadkit.agent.daemon import ROLLBACK_NAME
from nomadkit.endpoints import CloudEndpoints
from nomadkit.errors import UserError
from nomadkit.inventory import read_connect
from nomadkit.paths import endpoints_file
from nomadkit.remote import Remote, Unreachable
from nomadkit.tour import Kit, Tour, load_tour

STATUS_FILE = "/run/nomadkit/status.json"


def read_status(kit: Kit, connect: dict[str, Any]) -> dict[str, Any]:
    """One kit's status, or {"error": ...} saying why it could not be read."""
    try:
        done = Remote.for_kit(kit, connect).run(f"cat {STATUS_FILE}", timeout=20)
    except Unreachable as exc:
        return {"kit": kit.name, "error": str(exc)}
    if done.returncode:
        why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        return {"kit": kit.name, "error": f"cannot read {STATUS_FILE}: {why}"}
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"kit": kit.name, "error": f"{STATUS_FILE} is not JSON — is nomadkit-agent running?"}


class Heartbeats:
    """The kits' latest heartbeats, read from the tour's ledger (one row per kit, `kit#<name>`).

    + endpoints: the tour's cloud (the local cloud's moto, or AWS with the operator's credentials)
    """

    def __init__(self, endpoints: CloudEndpoints) -> None:
        import boto3

        from nomadkit.cloud.local import LOCAL_CREDENTIALS

        local = {"endpoint_url": endpoints.s3_endpoint, "aws_access_key_id":
                 LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"], "aws_secret_access_key":
                 LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]} if endpoints.s3_endpoint else {}
        self.table = endpoints.ledger_table
        self.dynamodb = boto3.client("dynamodb", region_name=endpoints.region, **local)

    @classmethod
    def of(cls, tour: Tour) -> Heartbeats | None:
        """The tour's heartbeats, or None while it has no cloud endpoints."""
        path = endpoints_file(tour.name)
        return cls(CloudEndpoints.read(path)) if path.exists() else None

    def last(self, kit: str) -> tuple[dict[str, Any], float] | None:
        """The kit's last status and when the cloud received it (epoch s); None if never."""
        item = self.dynamodb.get_item(TableName=self.table, Key={"pk": {"S": f"kit#{kit}"}}).get("Item")
        if not item or item.get("kind", {}).get("S") != "heartbeat":
            return None
        return json.loads(item["status"]["S"]), float(item["received_at"]["N"])


def from_heartbeat(status: dict[str, Any], heartbeats: Heartbeats | None) -> dict[str, Any]:
    """The kit's last heartbeat in place of a status SSH could not read (the SSH error kept)."""
    if heartbeats is None:
        return status
    try:
        found = heartbeats.last(status["kit"])
    except Exception as error:  # the cloud down, no credentials: say so beside the SSH error
        return {**status, "heartbeat_error": f"{type(error).__name__}: {error}"}
    if found is None:
        return {**status, "heartbeat_error": "no heartbeat from this kit in the tour's ledger"}
    last, received_at = found
    return {**last, "via": "heartbeat", "received_at": received_at, "ssh_error": status["error"]}


def line(status: dict[str, Any]) -> str:
    """One kit in a few lines: path, uplinks, encoder, queue, power, disk, clock, pull, alerts."""
    if "error" in status:
        return (f"{status['kit']:<8} UNREACHABLE  {status['error']}"
                + (f"\n{'':<8} no heartbeat either: {status['heartbeat_error']}"
                   if status.get("heartbeat_error") else ""))
    age = time.time() - status["at"]
    uplinks = "  ".join(f"{name}:{u['state']}" + (f" {u['rtt_ms']:.0f}ms" if u.get("rtt_ms") else "")
                        + (f" {u['loss_pct']:.0f}%loss" if u.get("loss_pct") else "")
                        for name, u in status["uplinks"].items())
    up = status["uploads"]
    battery, disk, clock = status["battery"], status["disk"], status["clock"]
    out = [f"{status['kit']:<8} active {status['active'] or 'none'}  |  {uplinks}"
           + (f"  (status {age:.0f}s old)" if age > 5 else "")]
    if status.get("via") == "heartbeat":
        out.append(f"{'':<8} from its heartbeat, received {time.time() - status['received_at']:.0f}s ago "
                   f"(SSH: {status['ssh_error']})")
    out += [f"{'':<8} encoder {status['encoder']['profile'] or '-'}  uploads "
            f"{up.get('segments', {})} {up.get('bytes_waiting', 0) // 2**20} MiB waiting  door "
            f"{status['door'].get('admitted', 0)} admitted, {status['door'].get('unsynced', 0)} unsynced",
            f"{'':<8} battery {battery.get('charge_pct', '?')}% {battery.get('status', '')}  disk "
            f"{disk.get('free_mb', '?')} MB free  clock "
            + (f"{clock['offset_ms']} ms ({clock['leap']})" if clock.get("ok") is not None and
               "offset_ms" in clock else clock.get("error", "?"))]
    if pull := status.get("pull"):
        why = f": {pull['reason']}" if pull.get("reason") else ""
        out.append(f"{'':<8} pull {pull.get('state', '?')} (applied version "
                   f"{pull.get('applied_version', 0)}){why}")
    if status.get("doors_open_lock"):
        out.append(f"{'':<8} doors open for {status['doors_open_lock']['stop']}: deploys refused")
    out += [f"{'':<8} ALERT {name}: {text}" for name, text in status.get("alerts", {}).items()]
    return "\n".join(out)


def cmd_status(args: argparse.Namespace) -> int:
    """Show every kit of a tour at a glance: from each kit's agent over SSH, or, for a kit SSH
    cannot reach (carrier NAT, SSH down), from its last heartbeat in the tour's cloud, marked
    `"via": "heartbeat"` with when it was received. Exit 1 if some kit has neither."""
    tour = load_tour(args.file)
    kits = [tour.kit(args.kit)] if args.kit else list(tour.kits)
    connect = (read_connect() or {})
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda k: read_status(k, connect.get(k.name, {})), kits))
    if any("error" in s for s in statuses):
        heartbeats = Heartbeats.of(tour)
        statuses = [from_heartbeat(s, heartbeats) if "error" in s else s for s in statuses]
    if args.json:
        print(json.dumps(statuses, indent=2, sort_keys=True))
    else:
        print("\n".join(line(s) for s in statuses))
    return 1 if any("error" in s for s in statuses) else 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Force a kit's streams to the audio-only profile (or --clear to hand control back to
    the agent). The local recording never stops; it is uploaded when the uplinks allow."""
    tour = load_tour(args.file)
    kit = tour.kit(args.kit) if args.kit in [k.name for k in tour.kits] else None
    if kit is None:
        raise UserError(f"{args.file}: no kit named '{args.kit}' — kits: "
                        f"{', '.join(k.name for k in tour.kits)}")
    flag = f"/run/nomadkit/{ROLLBACK_NAME}"
    command = f"rm -f {flag}" if args.clear else f"mkdir -p /run/nomadkit && touch {flag}"
    done = Remote.for_kit(kit, (read_connect() or {}).get(kit.name)).run(command, timeout=30)
    if done.returncode:
        raise UserError(f"{kit.name}: could not reach the kit to {'clear' if args.clear else 'force'} "
                        f"the rollback: {done.stderr.strip() or done.returncode}")
    deadline = time.monotonic() + 10
    wanted = "live" if args.clear else "fallback"
    while time.monotonic() < deadline:
        status = read_status(kit, (read_connect() or {}).get(kit.name, {}))
        if status.get("encoder", {}).get("profile") == wanted or args.clear:
            break
        time.sleep(0.5)
    print(line(status))
    return 0 if status.get("encoder", {}).get("profile") == wanted or args.clear else 1


def register(subparsers: Any) -> None:
    rollback = subparsers.add_parser("rollback", help="force a kit to the audio-only profile",
                                     description=cmd_rollback.__doc__)
    rollback.add_argument("file", type=Path, help="the tour file (YAML)")
    rollback.add_argument("--kit", required=True, help="the kit")
    rollback.add_argument("--clear", action="store_true",
                          help="hand the profile back to the agent (live when an uplink can carry it)")
    rollback.set_defaults(func=cmd_rollback)
    parser = subparsers.add_parser("status", help="every kit of a tour at a glance",
                                   description=cmd_status.__doc__)
    parser.add_argument("file", type=Path, help="the tour file (YAML)")
    parser.add_argument("--kit", help="only this kit")
    parser.add_argument("--json", action="store_true", help="print each kit's full status as JSON")
    parser.set_defaults(func=cmd_status)
