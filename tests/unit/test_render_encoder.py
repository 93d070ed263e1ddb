"""The rendered encoder script, run for real on this machine (the lab repeats it in a kit VM).

Lab-hardware profile (lavfi test sources, real time), 2-second segments into a temporary
recordings folder; the stream handed over loopback UDP to the rendered sender, and by it over
SRT to a listener on loopback. ffprobe reads what came out.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nomadkit import ROOT
from nomadkit.deploy import write_tree
from nomadkit.tour import Kit, Tour, load_tour
from tests.unit.test_render import endpoints_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or any(shutil.which(t) is None for t in ("ffmpeg", "ffprobe", "srt-live-transmit")),
    reason="needs root (private /run), ffmpeg, ffprobe and srt-live-transmit (make setup)")

RUN_S = 9


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe(path: Path, *entries: str) -> dict:
    shown = entries or ("-show_streams", "-show_format")
    cmd = ["ffprobe", "-v", "error", *shown, "-of", "json", str(path)]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def video_kbps(path: Path) -> float:
    """Video bitrate from the packets themselves (sizes over the time they span)."""
    packets = probe(path, "-select_streams", "v:0", "-show_entries", "packet=size,pts_time")["packets"]
    times = sorted(float(p["pts_time"]) for p in packets)
    return sum(int(p["size"]) for p in packets) * 8 / (times[-1] - times[0]) / 1000


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An SRT listener on loopback writing what it receives to a file."""
    port, capture = free_udp_port(), tmp_path / "srt-capture.ts"
    with capture.open("wb") as sink:
        proc = subprocess.Popen(["srt-live-transmit", "-q", f"srt://127.0.0.1:{port}?mode=listener",
                                 "file://con"], stdout=sink, stderr=subprocess.DEVNULL)
        try:
            yield port, capture
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def encode(tour: Tour, kit: Kit, port: int, profile: str, tmp_path: Path) -> Path:
    """Render the kit, run `nomadkit-encoder PROFILE STREAM` for RUN_S seconds, return the recordings."""
    endpoints = endpoints_for(tour, relay="srt://127.0.0.1")
    endpoints = endpoints.model_copy(update={"relay_srt_urls": {kit.streams[0].name: f"srt://127.0.0.1:{port}"}})
    out = tmp_path / "tree"
    write_tree(tour, kit, endpoints, out)
    stream = kit.streams[0].name
    (Path(kit.recordings_dir) / stream).mkdir(parents=True)
    run = f"sh {out}/usr/local/bin/nomadkit-encoder"
    script = (f"mount -t tmpfs tmpfs /run && mkdir -p /run/nomadkit-encoder/{stream} && "
              f"{{ timeout -s INT {RUN_S + 1} {run} send {stream} & }} && "
              f"exec timeout -s INT {RUN_S} {run} {profile} {stream}")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                          capture_output=True, text=True)
    assert proc.returncode in (0, 124, 255), proc.stderr
    return Path(kit.recordings_dir) / stream


@pytest.fixture
def lab_kit(tmp_path: Path) -> tuple[Tour, Kit]:
    tour = load_tour(ROOT / "tours" / "demo.yaml")
    kit = tour.kits[0]
    stream = kit.streams[0].model_copy(update={"segment_seconds": 2})
    return tour, kit.model_copy(update={"hardware": "lab", "recordings_dir": str(tmp_path / "rec"),
                                        "streams": [stream], "handoff_port": free_udp_port()})


def finished_segments(folder: Path) -> list[Path]:
    return [folder / line.split(",")[0] for line in (folder / "segments.csv").read_text().split()]


def test_live_profile_records_segments_at_the_configured_size_and_bitrate_and_sends_srt(
        lab_kit: tuple[Tour, Kit], listener: tuple[int, Path], tmp_path: Path) -> None:
    tour, kit = lab_kit
    port, capture = listener
    folder = encode(tour, kit, port, "live", tmp_path)
    stream = kit.streams[0]
    segments = finished_segments(folder)
    assert len(segments) >= 3
    width, height = (int(n) for n in stream.resolution.split("x"))
    rates = []
    for segment in segments[1:-1]:  # the first fills the encoder's buffer, the last is cut short
        info = probe(segment)
        video = next(s for s in info["streams"] if s["codec_type"] == "video")
        assert (video["codec_name"], video["width"], video["height"]) == ("h264", width, height)
        assert any(s["codec_type"] == "audio" for s in info["streams"])
        rates.append(video_kbps(segment))
    print(f"live: {len(segments)} segments, video kbps {[round(r) for r in rates]} "
          f"(configured {stream.bitrates_kbps[0]}), SRT bytes {capture.stat().st_size}")
    assert all(0.75 * stream.bitrates_kbps[0] < r < 1.25 * stream.bitrates_kbps[0] for r in rates)
    sent = probe(capture)
    assert {s["codec_type"] for s in sent["streams"]} == {"video", "audio"}


def test_fallback_profile_keeps_recording_video_and_sends_audio_only(
        lab_kit: tuple[Tour, Kit], listener: tuple[int, Path], tmp_path: Path) -> None:
    tour, kit = lab_kit
    port, capture = listener
    folder = encode(tour, kit, port, "fallback", tmp_path)
    segments = finished_segments(folder)
    assert len(segments) >= 3
    assert any(s["codec_type"] == "video" for s in probe(segments[1])["streams"])
    sent = probe(capture)
    assert [s["codec_type"] for s in sent["streams"]] == ["audio"]
    kbps = int(sent["streams"][0].get("bit_rate") or sent["format"]["bit_rate"]) / 1000
    print(f"fallback: audio-only SRT at {kbps:.0f} kbps (configured {kit.streams[0].audio_only_kbps})")
    assert kbps < 2 * kit.streams[0].audio_only_kbps
