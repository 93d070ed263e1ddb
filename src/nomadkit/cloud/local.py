"""The local cloud: the tour's captured plan realized on this machine.

``up`` starts, in order, each a detached process with a pid file under the tour's state
dir: a moto server (the plan's buckets, tables, queue, secrets and kit users are created
in it), the relay (one ffmpeg SRT listener per stream -> HLS, served by its own nginx),
the webhook (the Lambda's handler behind a Function URL adapter) and the CDN edge (nginx
with the plan's origin-group failover rules). It writes ``endpoints.json`` for the kits.
``down`` stops exactly the processes it started (by pid, checked) and removes the state.
Everything binds to one address, loopback unless the lab asks for its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from nomadkit import paths
from nomadkit import secrets as tour_secrets
from nomadkit.cloud.plan import Plan, capture
from nomadkit.cloud.realize import LocalAws, Realizer
from nomadkit.endpoints import CloudEndpoints
from nomadkit.errors import UserError
from nomadkit.render import render
from nomadkit.roles import agent, relay
from nomadkit.tickets import generate_ticket_key, public_key_of
from nomadkit.tour import LocalPorts, Tour

STACK = "local"
COMPONENTS = ("moto", "relay-nginx", "relay-ingest", "webhook", "edge")
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "nomadkit-local", "AWS_SECRET_ACCESS_KEY": "nomadkit-local"}
READY_TIMEOUT_S = 30.0

Progress = Callable[[str, str], None]


@dataclass(frozen=True)
class LocalCloud:
    """Where one tour's local cloud lives and listens.

    + tour: the tour
    + host: the one address every service binds to
    + state: the state dir (pid files, logs, HLS, nginx configs, endpoints.json)
    """

    tour: Tour
    host: str
    state: Path

    @classmethod
    def for_tour(cls, tour: Tour, host: str | None = None) -> LocalCloud:
        address = host or tour.cloud.local_host
        if address in ("0.0.0.0", "::", ""):
            raise UserError(f"local cloud: bind to one address kits can reach, not '{address}' — "
                            "e.g. 127.0.0.1, or the lab's gateway address")
        return cls(tour, address, paths.cloud_state(tour.name))

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    @property
    def ports(self) -> LocalPorts:
        return self.tour.cloud.ports

    def pid_file(self, name: str) -> Path:
        return self.state / "pids" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.state / "logs" / f"{name}.log"

    @property
    def hls(self) -> Path:
        """The relay's HLS output: the ingest writes it, the relay's nginx serves it."""
        return self.state / "relay" / "hls"


# --- processes -------------------------------------------------------------------------------


def _stat(path: Path) -> list[str]:
    """A /proc/PID/stat's fields after the command name (state first), [] if the process is gone."""
    try:
        return path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _started_at(pid: int) -> str | None:
    """The kernel's start time of a process (field 22 of /proc/PID/stat), None if gone."""
    fields = _stat(Path(f"/proc/{pid}/stat"))
    return fields[19] if len(fields) > 19 else None


def running_pid(cloud: LocalCloud, name: str) -> int | None:
    """The pid of a component we started, if that very process still runs (pid reuse safe)."""
    try:
        record = json.loads(cloud.pid_file(name).read_text())
    except (OSError, ValueError):
        return None
    pid = record["pid"]
    return pid if alive(pid) and _started_at(pid) == record["started_at"] else None


def start(cloud: LocalCloud, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start a component detached (own session, so stopping it takes its children too)."""
    cloud.log_file(name).parent.mkdir(parents=True, exist_ok=True)
    cloud.pid_file(name).parent.mkdir(parents=True, exist_ok=True)
    with cloud.log_file(name).open("ab") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, **(env or {})}, cwd=cloud.state)
    record = {"pid": process.pid, "started_at": _started_at(process.pid), "argv": argv}
    cloud.pid_file(name).write_text(json.dumps(record))
    return process.pid


def stop(cloud: LocalCloud, name: str, grace_s: float = 5.0) -> bool:
    """Stop one component (its whole process group); True if it was running."""
    pid = running_pid(cloud, name)
    cloud.pid_file(name).unlink(missing_ok=True)
    if pid is None:
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if group_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return True


def group_alive(pgid: int) -> bool:
    """Any process of the group still running: a component's children (the ingest's ffmpeg,
    finishing its last segment) can outlive its leader, and a stop is done when they are."""
    alive(pgid)  # reaps the leader when it is our own child
    return any(fields[0] != "Z" and fields[2] == str(pgid)
               for fields in map(_stat, Path("/proc").glob("[0-9]*/stat")) if fields)


def alive(pid: int) -> bool:
    """Running, not a zombie; reaps it when it is our own child (tests start components too)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    fields = _stat(Path(f"/proc/{pid}/stat"))
    return bool(fields) and fields[0] != "Z"


def wait_ready(cloud: LocalCloud, name: str, check: Callable[[], bool]) -> None:
    """Wait until ``check`` passes; say what failed and where the log is otherwise."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if running_pid(cloud, name) is None:
            break
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    tail = cloud.log_file(name).read_text(errors="replace")[-800:] if cloud.log_file(name).exists() else ""
    raise UserError(f"local cloud: {name} did not become ready — see {cloud.log_file(name)}\n{tail}")


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    return check


def listening(host: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.create_connection((host, port), timeout=1):
            return True
    return check


def port_free(host: str, port: int, what: str) -> None:
    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            raise UserError(
                f"local cloud: {host}:{port} ({what}) is already in use — stop what holds it, or "
                f"set cloud.ports in the tour file")


# --- components ------------------------------------------------------------------------------


def local_secret(ref: str, generate: Callable[[], str]) -> str:
    """The tour's secret if it exists; for a ``secret:`` reference, one generated and stored
    (mode 0600) the first time. Values are never printed."""
    try:
        return tour_secrets.resolve(ref)
    except UserError:
        if not ref.startswith("secret:"):
            raise
    value = generate()
    tour_secrets.store(ref, value)
    return value


def start_moto(cloud: LocalCloud) -> None:
    port = cloud.ports.moto
    start(cloud, "moto", [sys.executable, "-m", "moto.server", "-H", cloud.host, "-p", str(port)])
    wait_ready(cloud, "moto", http_ok(f"{cloud.url(port)}/moto-api/data.json"))


def aws_client_factory(cloud: LocalCloud) -> Callable[[str], Any]:
    endpoint = cloud.url(cloud.ports.moto)
    session = boto3.session.Session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=cloud.tour.cloud.region)
    return lambda service: session.client(service, endpoint_url=endpoint)


def realize_aws(cloud: LocalCloud, plan: Plan) -> LocalAws:
    commerce = cloud.tour.commerce
    values = {
        "webhook_secret": lambda: local_secret(commerce.webhook_secret,
                                               lambda: f"whsec_{secrets.token_urlsafe(32)}"),
        "ticket_key": lambda: local_secret(commerce.ticket_key, generate_ticket_key),
    }
    return Realizer(plan, aws_client_factory(cloud), lambda role: values[role]()).realize()


def nginx_conf(cloud: LocalCloud, name: str, site: str) -> Path:
    """A complete nginx.conf for one local instance around ``site`` (a server block)."""
    folder = cloud.state / name
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (folder / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    (folder / "site.conf").write_text(site)
    conf = folder / "nginx.conf"
    conf.write_text(render("cloud/nginx.conf.j2", name=name, dir=folder, site=folder / "site.conf",
                           user="root" if os.geteuid() == 0 else None))
    result = subprocess.run(["nginx", "-t", "-q", "-c", str(conf), "-e", str(folder / "error.log")],
                            capture_output=True, text=True)
    if result.returncode:
        raise UserError(f"local cloud: nginx rejects {conf}:\n{result.stderr.strip()}")
    return conf


def start_nginx(cloud: LocalCloud, name: str, site: str, port: int) -> None:
    conf = nginx_conf(cloud, name, site)
    start(cloud, name, ["nginx", "-c", str(conf), "-e", str(conf.parent / "error.log"),
                        "-g", "daemon off;"])
    wait_ready(cloud, name, listening(cloud.host, port))


def start_origin(cloud: LocalCloud) -> None:
    """The relay's HLS origin (nginx): what the edge tries first. The preflight's CDN drill
    stops it (`stop(cloud, "relay-nginx")`) and starts it again with this."""
    cloud.hls.mkdir(parents=True, exist_ok=True)
    start_nginx(cloud, "relay-nginx", relay.nginx_site(cloud.tour, str(cloud.hls), cloud.host),
                cloud.ports.relay_http)


def start_relay(cloud: LocalCloud) -> None:
    start_origin(cloud)
    start_ingest(cloud)


def start_ingest(cloud: LocalCloud) -> None:
    """The relay's SRT listeners, one per stream (what the kits' encoders send to)."""
    script = cloud.state / "relay" / "ingest.sh"
    script.write_text(relay.ingest_script(cloud.tour, str(cloud.hls), cloud.host))
    script.chmod(0o755)
    # One supervisor shell runs every stream's listener; stopping it stops them all.
    runner = " & ".join(f"{script} {stream.name}" for stream in relay.streams(cloud.tour))
    start(cloud, "relay-ingest", ["/bin/sh", "-c", f"{runner} & wait"])


def start_webhook(cloud: LocalCloud, aws: LocalAws) -> None:
    port = cloud.ports.webhook
    env = {**LOCAL_CREDENTIALS, "AWS_DEFAULT_REGION": cloud.tour.cloud.region,
           "NOMADKIT_WEBHOOK": aws.webhook.to_json()}
    start(cloud, "webhook", [sys.executable, "-m", "nomadkit.webhook.local", "--host", cloud.host,
                             "--port", str(port), "--endpoint-url", cloud.url(cloud.ports.moto)],
          env=env)
    wait_ready(cloud, "webhook", http_ok(f"{cloud.url(port)}/healthz"))


def edge_site(cloud: LocalCloud, plan: Plan, assets_bucket: str) -> str:
    """The plan's distribution as an nginx server block: same origins, same failover rules."""
    [distribution] = plan.of_type("aws:cloudfront/distribution:Distribution")
    inputs = distribution.inputs
    [group] = inputs["originGroups"]
    origins = {o["originId"]: o for o in inputs["origins"]}
    live = origins[group["members"][0]["originId"]]
    return render(
        "cloud/edge.conf.j2",
        bind=cloud.host, port=cloud.ports.edge,
        relay=f"{cloud.host}:{cloud.ports.relay_http}",
        s3=cloud.url(cloud.ports.moto),
        assets_bucket=assets_bucket,
        failover_codes=group["failoverCriteria"]["statusCodes"],
        connect_timeout_s=live["connectionTimeout"],
        attempts=live["connectionAttempts"],
        read_timeout_s=live["customOriginConfig"]["originReadTimeout"],
    )


def up(tour: Tour, tour_file: Path, host: str | None, progress: Progress) -> CloudEndpoints:
    """Bring the tour's local cloud up; return the endpoints it wrote."""
    cloud = LocalCloud.for_tour(tour, host)
    alive = [name for name in COMPONENTS if running_pid(cloud, name)]
    if alive:
        raise UserError(f"local cloud of '{tour.name}' is already up ({', '.join(alive)}) — "
                        "run `nomadkit cloud down` first")
    ports = cloud.ports
    for port, what in ((ports.moto, "moto"), (ports.relay_http, "relay"), (ports.webhook, "webhook"),
                       (ports.edge, "edge")):
        port_free(cloud.host, port, what)
    cloud.state.mkdir(parents=True, exist_ok=True)
    try:
        started = time.monotonic()
        plan = capture(tour_file, STACK, tour.cloud.region)
        progress("plan", f"{len(plan.resources)} resources captured under Pulumi mocks "
                         f"({time.monotonic() - started:.1f} s)")
        _timed(progress, "moto", lambda: start_moto(cloud),
               f"S3, DynamoDB, Secrets Manager, SQS, IAM at {cloud.url(ports.moto)}")
        aws = realize_aws(cloud, plan)
        progress("aws", f"{len(aws.created)} resources created in moto; "
                        f"{len(aws.elsewhere)} realized as local processes")
        store_kit_credentials(tour, aws.kit_credentials)
        _timed(progress, "relay", lambda: start_relay(cloud),
               ", ".join(f"{s.name} srt://{cloud.host}:{s.port}" for s in relay.streams(tour))
               + f" -> HLS at {cloud.url(ports.relay_http)}/live/")
        _timed(progress, "webhook", lambda: start_webhook(cloud, aws),
               f"{cloud.url(ports.webhook)}/ (same handler as the Lambda)")
        outputs = plan.outputs["endpoints"]
        _timed(progress, "edge",
               lambda: start_nginx(cloud, "edge", edge_site(cloud, plan, outputs["assets_bucket"]),
                                   ports.edge),
               f"{cloud.url(ports.edge)}/live/<stream>/index.m3u8, slate on failover")
    except BaseException:
        down(tour, host, lambda _c, _m: None)
        raise
    endpoints = local_endpoints(cloud, plan, aws)
    target = paths.endpoints_file(tour.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(endpoints.model_dump_json(indent=2))
    progress("endpoints", str(target))
    return endpoints


def store_kit_credentials(tour: Tour, credentials: dict[str, dict[str, str]]) -> None:
    """Each kit's upload identity, where the agent role's secret references point."""
    for kit in tour.kits:
        key_id_ref, secret_ref = agent.credential_refs(tour, kit)
        tour_secrets.store(key_id_ref, credentials[kit.name]["access_key_id"])
        tour_secrets.store(secret_ref, credentials[kit.name]["secret_access_key"])


def _timed(progress: Progress, name: str, action: Callable[[], None], detail: str) -> None:
    started = time.monotonic()
    action()
    progress(name, f"{detail} ({time.monotonic() - started:.1f} s)")


def local_endpoints(cloud: LocalCloud, plan: Plan, aws: LocalAws) -> CloudEndpoints:
    """The plan's endpoints output, with every address pointing at this machine."""
    planned = plan.outputs["endpoints"]
    ticket_key = tour_secrets.resolve(cloud.tour.commerce.ticket_key)
    return CloudEndpoints(
        stack=STACK,
        region=planned["region"],
        assets_bucket=planned["assets_bucket"],
        recordings_bucket=planned["recordings_bucket"],
        cdn_url=cloud.url(cloud.ports.edge),
        relay_srt_urls={s.name: f"srt://{cloud.host}:{s.port}" for s in relay.streams(cloud.tour)},
        webhook_url=f"{cloud.url(cloud.ports.webhook)}/",
        ledger_table=aws.webhook.ledger_table,
        members_table=aws.webhook.members_table,
        crm_queue_url=aws.webhook.crm_queue_url,
        ticket_public_key=public_key_of(ticket_key),
        s3_endpoint=cloud.url(cloud.ports.moto),
    )


def down(tour: Tour, host: str | None, progress: Progress) -> list[str]:
    """Stop every component this tour's local cloud started; remove its state."""
    cloud = LocalCloud.for_tour(tour, host)
    stopped = []
    for name in reversed(COMPONENTS):
        if stop(cloud, name):
            stopped.append(name)
            progress(name, "stopped")
    endpoints = paths.endpoints_file(tour.name)
    endpoints.unlink(missing_ok=True)
    if cloud.state.exists():
        shutil.rmtree(cloud.state)
    return stopped


def test_pattern(srt_url: str, seconds: int) -> subprocess.Popen:
    """Send ``seconds`` of a lavfi test pattern to a relay SRT URL (checks, tests, benchmarks):
    what a kit's encoder sends, bounded in time."""
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
         "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=25:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "50",
         "-b:v", "600k", "-c:a", "aac", "-f", "mpegts",
         f"{srt_url}?mode=caller&latency=200000&pkt_size=1316"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def status(tour: Tour, host: str | None) -> dict[str, int | None]:
    """Each component's pid, or None when it is not running."""
    cloud = LocalCloud.for_tour(tour, host)
    return {name: running_pid(cloud, name) for name in COMPONENTS}
