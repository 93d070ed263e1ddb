"""`encoder.warm` judges the newest *complete* recording segment: the one being written has no
readable header for its first moments (stop 14's CI met exactly that and the check 'could not
run'). Real ffmpeg makes the segment; the kit's shell is this machine's, its units answered."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from nomadkit import ROOT
from nomadkit.preflight.kit_checks import encoders_warm
from nomadkit.preflight.runner import Failed
from nomadkit.tour import load_tour

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="needs ffmpeg and ffprobe (make setup)")


class ThisMachine:
    """A kit's shell that is this machine's, with every systemd unit `active`."""

    def run(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        if command.startswith("systemctl is-active"):
            units = command.split()[2:]
            return subprocess.CompletedProcess(command, 0, "\n".join("active" for _ in units), "")
        return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=timeout)

    def output(self, command: str, timeout: float = 60) -> str:
        done = self.run(command, timeout)
        assert done.returncode == 0, done.stderr
        return done.stdout


def context(tmp_path: Path) -> tuple[SimpleNamespace, object]:
    tour = load_tour(ROOT / "tours" / "demo.yaml")
    kit = tour.kits[0].model_copy(update={"recordings_dir": str(tmp_path),
                                          "streams": tour.kits[0].streams[:1]})
    return SimpleNamespace(remotes={kit.name: ThisMachine()}), kit


def encode(path: Path, resolution: str, kbps: int) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={resolution}:rate=15",
                    "-t", "4", "-c:v", "libx264", "-b:v", f"{kbps}k", "-f", "mpegts", str(path)],
                   check=True)


def test_a_segment_being_written_is_not_probed_the_complete_one_before_it_is(tmp_path: Path) -> None:
    ctx, kit = context(tmp_path)
    stream = kit.streams[0]
    folder = tmp_path / stream.name
    folder.mkdir()
    encode(folder / f"{stream.name}-1.ts", stream.resolution, stream.bitrates_kbps[0])
    time.sleep(1.1)  # ls -t orders by mtime, to the second on some filesystems
    (folder / f"{stream.name}-2.ts").write_bytes(b"\x47")  # just opened by the segment muxer

    evidence = encoders_warm(ctx, kit)

    assert evidence[stream.name]["resolution"] == stream.resolution
    assert evidence[stream.name]["segment_age_s"] <= 2, "freshness is the newest file's"


def test_an_encoder_with_only_a_half_written_segment_fails_saying_it_just_started(tmp_path: Path) -> None:
    ctx, kit = context(tmp_path)
    stream = kit.streams[0]
    (tmp_path / stream.name).mkdir()
    (tmp_path / stream.name / f"{stream.name}-1.ts").write_bytes(b"\x47")

    with pytest.raises(Failed, match="just started"):
        encoders_warm(ctx, kit)
