"""encoder: ffmpeg per stream as systemd template units, in three profiles (the agent switches),
and an SRT sender per stream that carries the encoder's output to the relay.

- `nomadkit-encoder@S` (live): one encode at the top of the ladder, teed to local recording
  segments and, as MPEG-TS over loopback UDP, to the stream's sender;
- `nomadkit-encoder-fallback@S`: the same recording, plus an audio-only stream to the sender;
- `nomadkit-encoder-prewarm@S`: capture and encode at the live settings, output discarded;
- `nomadkit-sender@S`: `srt-live-transmit` from the loopback handoff to the relay, reconnecting
  on its own. An SRT session is tied to the address it started from, so when the agent moves
  the traffic to another uplink it restarts the sender only: a new session in a fraction of a
  second, while the encoder (tens of seconds to start on a slow CPU) and the recording go on.
Real kits capture from V4L2 + ALSA; lab kits from lavfi test sources, in real time.
Finished segments are listed in `<recordings_dir>/<stream>/segments.csv` (ffmpeg's segment
list, rewritten when the encoder starts); the file being written is always the newest.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import StringCommand, deploy, operation
from pyinfra.facts.systemd import SystemdStatus
from pyinfra.operations import systemd
from pyinfra.operations.files import directory

from nomadkit.endpoints import CloudEndpoints
from nomadkit.inventory import kit_context
from nomadkit.render import render
from nomadkit.roles import Secret, redacted
from nomadkit.roles.base import SERVICE_USER
from nomadkit.roles.ops import Perm, Puts, apply, changed, packages_present, put_all
from nomadkit.tour import Kit, Stream, Tour

PACKAGES = ("ffmpeg", "srt-tools")

SCRIPT = "/usr/local/bin/nomadkit-encoder"
UNITS = "/etc/systemd/system/"
PROFILES = {
    "live": ("nomadkit-encoder", "recording + the stream to its sender"),
    "fallback": ("nomadkit-encoder-fallback", "recording + audio only to the sender (rollback)"),
    "prewarm": ("nomadkit-encoder-prewarm", "capture and encode, output discarded"),
}
SENDER = "nomadkit-sender"
CONNECT_TIMEOUT_MS = 1000  # a sender retries this often while the relay lets go of an old session


def unit(profile: str, stream: str = "") -> str:
    """`nomadkit-encoder@stage.service`; without a stream, the template's own name."""
    return f"{PROFILES[profile][0]}@{stream}.service"


def inputs(kit: Kit, stream: Stream) -> list[str]:
    """Capture device + ALSA on real kits; real-time lavfi test picture and tone in the lab."""
    if kit.hardware == "lab":
        return ["-re", "-f", "lavfi", "-i", f"testsrc2=size={stream.resolution}:rate={stream.fps}",
                "-re", "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={stream.audio_rate}"]
    return ["-thread_queue_size", "512", "-f", "v4l2", "-framerate", str(stream.fps),
            "-video_size", stream.resolution, "-i", stream.device,
            "-thread_queue_size", "512", "-f", "alsa", "-ac", "2", "-ar", "48000",
            "-i", stream.audio_device]


def video(stream: Stream) -> list[str]:
    """H.264 at the top of the ladder, constant-ish bitrate, a keyframe every keyframe_seconds."""
    kbps, gop = stream.bitrates_kbps[0], stream.fps * stream.keyframe_seconds
    return ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
            "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{kbps}k",
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"]


def audio(stream: Stream, kbps: int) -> list[str]:
    return ["-c:a", "aac", "-aac_coder", stream.audio_coder, "-b:a", f"{kbps}k",
            "-ar", str(stream.audio_rate), "-ac", str(stream.audio_channels)]


def sender_unit(stream: str = "") -> str:
    """`nomadkit-sender@stage.service`; without a stream, the template's own name."""
    return f"{SENDER}@{stream}.service"


def handoff(kit: Kit, stream: Stream) -> str:
    """Where the encoder hands the stream to its sender: loopback UDP, a port per stream."""
    port = kit.handoff_port + [s.name for s in kit.streams].index(stream.name)
    return f"udp://127.0.0.1:{port}"


def srt_url(kit: Kit, stream: Stream, endpoints: CloudEndpoints) -> str:
    """The relay's SRT URL as srt-live-transmit takes it: this stream's id, latency in ms."""
    base = endpoints.relay_srt_urls[stream.name]
    sep = "&" if "?" in base else "?"
    return (f"{base}{sep}mode=caller&streamid={kit.name}/{stream.name}&latency={stream.latency_ms}"
            f"&conntimeo={CONNECT_TIMEOUT_MS}")


def sender_args(kit: Kit, stream: Stream, endpoints: CloudEndpoints) -> list[str]:
    """srt-live-transmit from the handoff to the relay; it reconnects by itself (-a:yes)."""
    return ["srt-live-transmit", "-a:yes", "-ll:warn", handoff(kit, stream), srt_url(kit, stream, endpoints)]


def segments(kit: Kit, stream: Stream) -> tuple[str, str]:
    """(segment muxer options, file pattern) for the local recording."""
    folder = f"{kit.recordings_dir}/{stream.name}"
    options = (f"segment_time={stream.segment_seconds}:segment_format=mpegts:strftime=1"
               f":reset_timestamps=1:segment_list={folder}/segments.csv:segment_list_type=csv")
    return options, f"{folder}/{stream.name}-%Y%m%dT%H%M%S.ts"


def ffmpeg_args(kit: Kit, stream: Stream, profile: str) -> list[str]:
    """The full ffmpeg command line of one stream in one profile."""
    head = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning", "-stats_period", "2",
            "-progress", f"/run/nomadkit-encoder/{stream.name}/progress", *inputs(kit, stream)]
    encode = ["-map", "0:v", "-map", "1:a", *video(stream), *audio(stream, stream.audio_kbps)]
    options, pattern = segments(kit, stream)
    out = f"{handoff(kit, stream)}?pkt_size=1316"  # 7 TS packets: one SRT payload
    if profile == "prewarm":
        return [*head, *encode, "-f", "null", "-"]
    if profile == "live":
        return [*head, *encode, "-f", "tee", "-use_fifo", "1",
                f"[f=segment:{options}]{pattern}|[f=mpegts:onfail=ignore]{out}"]
    return [*head, *encode, "-f", "segment", *_as_flags(options), pattern,
            "-map", "1:a", *audio(stream, stream.audio_only_kbps), "-f", "mpegts", out]


def _as_flags(options: str) -> list[str]:
    """`a=1:b=2` (tee slave options) -> ['-a', '1', '-b', '2'] (output options)."""
    return [part for opt in options.split(":") for part in ("-" + opt.split("=", 1)[0], opt.split("=", 1)[1])]


def files(tour: Tour, kit: Kit, endpoints: CloudEndpoints | None,
          secret: Secret = redacted) -> dict[str, str]:
    """The encoder script (every stream, every profile, and the sender when the relay is
    known), the three encoder template units and the sender's."""
    commands = {s.name: {p: shlex.join(ffmpeg_args(kit, s, p)) for p in PROFILES} for s in kit.streams}
    if endpoints:
        for s in kit.streams:
            commands[s.name]["send"] = shlex.join(sender_args(kit, s, endpoints))
    out = {SCRIPT: render("encoder/encoder.sh.j2", kit=kit, commands=commands)}
    for profile, (name, description) in PROFILES.items():
        out[f"{UNITS}{name}@.service"] = render(
            "encoder/encoder.service.j2", profile=profile, description=description,
            others=[n for p, (n, _) in PROFILES.items() if p != profile], user=SERVICE_USER,
            install=profile == "live")
    out[f"{UNITS}{sender_unit()}"] = render("encoder/sender.service.j2", user=SERVICE_USER)
    return out


@deploy("encoder: install")
def install() -> None:
    """ffmpeg and a recordings folder per stream, owned by the service user."""
    _, kit, _ = kit_context(host.data)
    packages_present(name="encoder packages", packages=PACKAGES)
    for stream in kit.streams:
        directory(name=f"Recordings of {stream.name}", path=f"{kit.recordings_dir}/{stream.name}",
                  mode="750", user=SERVICE_USER, group=SERVICE_USER)


@deploy("encoder: configure")
def configure() -> Puts:
    tour, kit, endpoints = kit_context(host.data)
    return put_all(files(tour, kit, endpoints), lambda path: Perm(mode="755" if path == SCRIPT else "644"))


@deploy("encoder: activate")
def activate(ops: Puts) -> None:
    """Live profile enabled at boot; started unless some profile already runs (the agent's
    choice is kept); the running profile restarted when its script or units changed. The
    sender runs whenever the relay is known."""
    _, kit, endpoints = kit_context(host.data)
    apply("systemd: units reloaded (encoder)", "units-encoder", changed(ops, UNITS),
          ["systemctl daemon-reload"])
    for stream in kit.streams:
        systemd.service(name=f"Encoder {stream.name}: live profile enabled at boot",
                        service=unit("live", stream.name), running=None, enabled=True)
        one_profile_running(name=f"Encoder {stream.name}: one profile running", stream=stream.name)
        apply(f"Encoder {stream.name}: running profile restarted with the new script and units",
              f"encoder-{stream.name}", changed(ops, SCRIPT, UNITS),
              [f"systemctl try-restart {' '.join(unit(p, stream.name) for p in PROFILES)}"])
        systemd.service(name=f"Sender {stream.name}: SRT to the relay", service=sender_unit(stream.name),
                        running=endpoints is not None, enabled=endpoints is not None)
        apply(f"Sender {stream.name}: restarted with the new script and unit", f"sender-{stream.name}",
              changed(ops, SCRIPT, UNITS), [f"systemctl try-restart {sender_unit(stream.name)}"])


@operation()
def one_profile_running(stream: str):
    """
    The stream's encoder runs in some profile; the live one is started if none is running.

    A profile the agent chose (fallback during an outage, prewarm before doors) is kept: a
    deploy never switches the stream by itself.

    + stream: stream name (the template units' instance)
    """
    units = [unit(p, stream) for p in PROFILES]
    status = host.get_fact(SystemdStatus, services=units)
    if any(status.get(u) for u in units):
        host.noop(f"encoder {stream} is running")
    else:
        yield StringCommand("systemctl", "start", unit("live", stream))
