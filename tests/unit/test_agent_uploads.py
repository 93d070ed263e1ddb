"""Recording uploads against S3 over HTTP (moto's server): multipart, resumable, sha256-checked."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_cloud import REGION, client, moto_server

from nomadkit.agent.config import S3Conf
from nomadkit.agent.uploads import PART_SIZE, Throttle, Uploader

BUCKET = "night-shift-test-recordings"

# The uploader in its own process, so the test can kill it like a power cut.
RUN_UPLOADER = """
import sys
from pathlib import Path
from nomadkit.agent.config import S3Conf
from nomadkit.agent.uploads import Throttle, Uploader
db, recordings, endpoint, rate = sys.argv[1:5]
s3 = S3Conf(bucket=sys.argv[5], prefix="kit-a/", region=sys.argv[6], endpoint_url=endpoint)
Uploader(Path(db), Path(recordings), s3, Throttle(float(rate), lambda: True)).run_once()
"""


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    with moto_server() as endpoint:
        client("s3", endpoint).create_bucket(Bucket=BUCKET,
                                              CreateBucketConfiguration={"LocationConstraint": REGION})
        yield endpoint


def segment(folder: Path, name: str, size: int, age_s: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(os.urandom(size))
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_only_finished_segments_are_queued(tmp_path: Path, s3_endpoint: str) -> None:
    stage = tmp_path / "rec" / "stage"
    segment(stage, "seg-0001.ts", 1000, age_s=30)
    segment(stage, "seg-0002.ts", 1000, age_s=0)  # being written
    segment(stage, "seg-0003.ts.part", 1000, age_s=90)
    s3 = S3Conf(BUCKET, "kit-a/", REGION, s3_endpoint)
    uploader = Uploader(tmp_path / "q.db", tmp_path / "rec", s3, Throttle(1e8, lambda: True))
    assert uploader.scan() == 1
    assert [Path(r["path"]).name for r in uploader.pending()] == ["seg-0001.ts"]
    assert uploader.scan() == 0


def test_upload_killed_mid_way_resumes_and_object_sha256_matches(tmp_path: Path, s3_endpoint: str) -> None:
    rec = tmp_path / "rec"
    local = segment(rec / "stage", "seg-0001.ts", 3 * PART_SIZE + 12345, age_s=120)
    db = tmp_path / "uploads.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [sys.executable, "-c", RUN_UPLOADER, str(db), str(rec), s3_endpoint, str(6 * 2**20),
            BUCKET, REGION]
    proc = subprocess.Popen(argv, env=env)
    deadline = time.monotonic() + 60
    parts_before = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                parts_before = con.execute("SELECT COUNT(*) FROM parts").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            pass
        if parts_before >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the power cut
    proc.wait()
    assert parts_before >= 1, "the upload never got a part in before the cut"
    with sqlite3.connect(db) as con:
        upload_id, state = con.execute("SELECT upload_id, state FROM segments").fetchone()
    assert state == "uploading" and upload_id

    s3 = S3Conf(BUCKET, "kit-a/", REGION, s3_endpoint)
    started = time.monotonic()
    uploader = Uploader(db, rec, s3, Throttle(1e9, lambda: True))
    assert uploader.run_once() == 1
    took = time.monotonic() - started
    row = uploader.db.execute("SELECT * FROM segments").fetchone()
    assert row["state"] == "done", row["error"]
    assert row["upload_id"] == upload_id  # resumed, not started over

    body = client("s3", s3_endpoint).get_object(Bucket=BUCKET, Key="kit-a/stage/seg-0001.ts")
    remote = hashlib.sha256(body["Body"].read()).hexdigest()
    assert remote == hashlib.sha256(local.read_bytes()).hexdigest() == body["Metadata"]["sha256"]
    print(f"\nFIGURE resume_after_kill_s={took:.2f} parts_kept={parts_before}")


def test_throttle_caps_the_upload_rate_and_pauses_while_the_stream_needs_the_uplink(
        tmp_path: Path, s3_endpoint: str) -> None:
    rec = tmp_path / "rec"
    size = PART_SIZE + 2**20
    segment(rec / "stage", "seg-0009.ts", size, age_s=120)
    gate = {"open": False}
    rate = 4 * 2**20  # bytes per second
    throttle = Throttle(rate, lambda: gate["open"])
    taken = []
    take = throttle.take
    throttle.take = lambda n: taken.append(n) or take(n)  # type: ignore[method-assign]
    uploader = Uploader(tmp_path / "q.db", rec, S3Conf(BUCKET, "kit-b/", REGION, s3_endpoint), throttle)
    assert uploader.status()["paused"] is True
    gate["open"] = True
    started = time.monotonic()
    uploader.run_once()
    took = time.monotonic() - started
    assert uploader.db.execute("SELECT state FROM segments").fetchone()[0] == "done"
    assert sum(taken) == size, (f"{sum(taken)} bytes went through the throttle for a {size}-byte "
                                "segment: the S3 client read the body more than once, so the real "
                                "rate is a fraction of the ceiling")
    print(f"\nFIGURE throttled_upload_mbit_s={size * 8 / took / 1e6:.1f} "
          f"(cap {rate * 8 / 1e6:.1f}) status={json.dumps(uploader.status()['segments'])}")


def test_warming_the_client_sends_nothing_and_leaves_it_sending(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent warms its S3 client before it says ready: that must not need the network (a
    kit may start with every uplink down), and real requests must go out afterwards."""
    from botocore.exceptions import EndpointConnectionError

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "warm")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "warm")
    s3 = S3Conf(bucket="recordings", prefix="kit-a/", region=REGION, endpoint_url="http://127.0.0.1:9")
    uploader = Uploader(tmp_path / "q.db", tmp_path, s3, Throttle(1e6, lambda: True))
    uploader.warm()  # nothing listens on port 9: a request that went out would raise here
    with pytest.raises(EndpointConnectionError):
        uploader.client.head_object(Bucket=s3.bucket, Key="kit-a/x")
