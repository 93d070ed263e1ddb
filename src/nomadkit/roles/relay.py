"""relay: the tour's ingest relay — SRT in from the kits, HLS out to the CDN.

The same files run on the relay instance the stack creates and in the local cloud: one
``ffmpeg`` SRT listener per stream (a port each, from ``cloud.ports.relay_srt`` up, in
stream-name order) writing HLS, and an nginx site serving it, answering 503 for a stream
that is not live so the CDN shows the fallback slate.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import server
from pyinfra.operations.files import directory, link

from nomadkit.render import render
from nomadkit.roles.ops import Perm, changed, packages_present, put_all, service
from nomadkit.tour import Tour

PACKAGES = ("ffmpeg", "nginx")

HLS_DIR = "/var/lib/nomadkit/relay/hls"
SCRIPT = "/usr/local/lib/nomadkit/relay-ingest"
UNIT = "/etc/systemd/system/nomadkit-relay@.service"
SITE = "/etc/nginx/conf.d/nomadkit-relay.conf"

SEGMENT_S = 2
PLAYLIST_SEGMENTS = 6
PLAYLIST_TTL_S = 1
SEGMENT_TTL_S = 86400
# A kit that goes silent (it moved to another uplink: its new SRT session comes from a new
# address) is let go after this, so its new session is taken at once; SRT's own default is 5 s.
IDLE_S = 2
# Probe the incoming stream this long (one keyframe interval is enough); ffmpeg's default 5 s
# would delay the first HLS segment after every reconnect.
ANALYZE_S = 2.5


@dataclass(frozen=True)
class RelayStream:
    """One stream the relay takes in: its name, its SRT port, its SRT latency."""

    name: str
    port: int
    latency_ms: int


def streams(tour: Tour) -> list[RelayStream]:
    """Every stream of the tour with its relay port (``relay_srt`` + its index by name)."""
    latency: dict[str, int] = {}
    for kit in tour.kits:
        for stream in kit.streams:
            latency[stream.name] = max(latency.get(stream.name, 0), stream.latency_ms)
    base = tour.cloud.ports.relay_srt
    return [RelayStream(name, base + i, latency[name]) for i, name in enumerate(sorted(latency))]


def ingest_script(tour: Tour, hls_dir: str, bind: str) -> str:
    return render("relay/ingest.sh.j2", streams=streams(tour), hls_dir=hls_dir, bind=bind,
                  segment_s=SEGMENT_S, playlist_segments=PLAYLIST_SEGMENTS,
                  idle_us=IDLE_S * 1_000_000, analyze_us=int(ANALYZE_S * 1_000_000))


def nginx_site(tour: Tour, hls_dir: str, bind: str) -> str:
    return render("relay/nginx.conf.j2", bind=bind, port=tour.cloud.ports.relay_http,
                  hls_dir=hls_dir, playlist_ttl_s=PLAYLIST_TTL_S, segment_ttl_s=SEGMENT_TTL_S)


def files(tour: Tour) -> dict[str, str]:
    """The relay instance's files: ingest script and unit, nginx site."""
    return {
        SCRIPT: ingest_script(tour, HLS_DIR, "0.0.0.0"),
        UNIT: render("relay/ingest.service.j2", script=SCRIPT),
        SITE: nginx_site(tour, HLS_DIR, "0.0.0.0"),
    }


def _tour() -> Tour:
    return Tour.model_validate(host.data.nomadkit_tour)


@deploy("relay: install")
def install() -> None:
    packages_present(name="relay packages", packages=PACKAGES)
    directory(name="HLS output", path=HLS_DIR, mode="755")


@deploy("relay: configure")
def configure() -> dict[str, OperationMeta]:
    ops = put_all(files(_tour()), lambda path: Perm(mode="755") if path == SCRIPT else Perm())
    ops["default-site"] = link(name="nginx: no Debian default site",
                               path="/etc/nginx/sites-enabled/default", present=False)
    return ops


@deploy("relay: activate")
def activate(ops: dict[str, OperationMeta]) -> None:
    """nginx reloaded and ingest units restarted only when their files changed."""
    service("nginx", changed(ops, SITE, "default-site"), reload=True)
    server.shell(name="systemd: reload units (relay unit changed)",
                 commands=["systemctl daemon-reload"], _if=changed(ops, UNIT))
    for stream in streams(_tour()):
        service(f"nomadkit-relay@{stream.name}", changed(ops, SCRIPT, UNIT))
