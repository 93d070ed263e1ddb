"""Recording uploads under a live stream: what the agent's upload ceiling leaves the stream.

One kit network in namespaces (`nomadkit.netkit.NetKit`, uplink wwan0) whose uplink is shaped to
CAPACITY_KBPS by a token-bucket qdisc (tbf, 300 ms of queue): a busy venue's 5G uplink. A live
stream stand-in (1316-byte datagrams, MPEG-TS over SRT's packet size, at the demo stream's video
plus audio bitrate) goes from the kit to a receiver at the edge, where moto's S3 server also
runs. In the same run, three cases on the same link: the stream alone; the stream while the
agent's own upload code (`nomadkit.agent.uploads.Uploader` and its `Throttle`) sends a recording
segment at the tour's `upload_max_kbps`; the same upload with no ceiling, as a plain
`aws s3 cp` would send it. Measured: the upload's throughput and share of the uplink, and what the
receiver saw of the stream while the upload ran: datagrams lost and one-way delay (the namespaces
share one clock).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import Result, Table, described, percentile
from nomadkit import ROOT
from nomadkit.netkit import EDGE, NetKit, python
from nomadkit.tour import Kit, load_tour

TITLE = "Recording uploads under a live stream"
CAPACITY_KBPS = 4000
SEGMENT_BYTES = 4 * 1024 * 1024  # one multipart part; ~17 s at the demo's 2000 kbps ceiling
LEAD_S = 3.0  # the stream runs alone this long before the upload starts
STREAM_PORT, S3_PORT = 5000, 4566
PAYLOAD = 1316

RECEIVER = """
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(float(sys.argv[3]))
out = open(sys.argv[4], "w")
try:
    while True:
        data = s.recv(2048)
        seq, sent = struct.unpack_from("!Qd", data)
        out.write(f"{seq} {sent:.6f} {time.time():.6f}\\n")
except socket.timeout:
    pass
out.close()
"""

# Datagrams at a steady rate: each carries its number and when it was sent.
STREAMER = """
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[5])
kbps, seconds = float(sys.argv[3]), float(sys.argv[4])
every = size * 8 / (kbps * 1000)
start = time.monotonic()
seq = 0
while seq * every < seconds:
    delay = start + seq * every - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    try:
        s.sendto(struct.pack("!Qd", seq, time.time()).ljust(size, b"\\0"), (host, port))
    except OSError:
        pass
    seq += 1
print(seq)
"""

MOTO = """
import sys, threading
from moto.server import ThreadedMotoServer
ThreadedMotoServer(ip_address=sys.argv[1], port=int(sys.argv[2]), verbose=False).start()
threading.Event().wait()
"""

# The agent's upload code, driven directly: queue the segment, upload it, report.
UPLOAD = """
import json, sys, time
from pathlib import Path
from nomadkit.agent.config import S3Conf
from nomadkit.agent.uploads import IDLE_S, Throttle, Uploader, s3_client
folder, endpoint, kbps = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
conf = S3Conf(bucket="recordings", prefix="kit-a/", region="eu-west-1", endpoint_url=endpoint)
client = s3_client(conf)
where = {"LocationConstraint": conf.region}
for attempt in range(100):
    try:
        client.create_bucket(Bucket=conf.bucket, CreateBucketConfiguration=where)
        break
    except client.exceptions.BucketAlreadyOwnedByYou:
        break
    except Exception:
        time.sleep(0.2)
rate = kbps * 1000 / 8 if kbps else 1e12
uploader = Uploader(folder / "uploads.db", folder / "recordings", conf, Throttle(rate, lambda: True), client)
uploader.scan(now=time.time() + IDLE_S + 1)
start, started_at = time.monotonic(), time.time()
uploader.run_once()
seconds = time.monotonic() - start
state = uploader.db.execute("SELECT state FROM segments").fetchone()[0]
print(json.dumps({"seconds": seconds, "started_at": started_at, "state": state}))
"""


def stream_kbps(kit: Kit) -> int:
    """The kit's first stream: top of the ladder plus audio (what the live profile sends)."""
    stream = kit.streams[0]
    return stream.bitrates_kbps[0] + stream.audio_kbps


def case(netkit: NetKit, folder: Path, kbps: int, ceiling_kbps: float | None, run_s: float) -> dict[str, Any]:
    """Stream for run_s; upload the segment after LEAD_S (unless ceiling_kbps is None: no upload)."""
    received = folder / "received.txt"
    receiver = subprocess.Popen(netkit.in_net(python(RECEIVER, EDGE, str(STREAM_PORT), "3", str(received))))
    time.sleep(0.5)
    streamer = subprocess.Popen(netkit.in_kit(python(STREAMER, EDGE, str(STREAM_PORT), str(kbps),
                                                     str(run_s), str(PAYLOAD))),
                                stdout=subprocess.PIPE, text=True)
    time.sleep(LEAD_S)
    upload: dict[str, Any] = {"started_at": time.time(), "seconds": run_s - LEAD_S}
    if ceiling_kbps is not None:
        done = subprocess.run(netkit.in_kit(python(UPLOAD, str(folder), f"http://{EDGE}:{S3_PORT}",
                                                   str(ceiling_kbps))),
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "AWS_ACCESS_KEY_ID": "bench",
                                   "AWS_SECRET_ACCESS_KEY": "bench"})
        if done.returncode:
            raise RuntimeError(f"upload failed: {done.stderr[-2000:]}")
        upload = json.loads(done.stdout.strip().splitlines()[-1])
        if upload["state"] != "done":
            raise RuntimeError(f"upload ended {upload['state']}")
    sent = int(streamer.communicate(timeout=run_s + 60)[0])
    receiver.wait(timeout=30)
    window = (upload["started_at"], upload["started_at"] + upload["seconds"])
    rows = [line.split() for line in received.read_text().splitlines()]
    arrived = {int(seq): float(at) - float(t0) for seq, t0, at in rows}
    every = PAYLOAD * 8 / (kbps * 1000)
    first = rows[0] if rows else None
    base = float(first[1]) - int(first[0]) * every if first else 0.0  # send time of datagram 0
    during = [seq for seq in range(sent) if window[0] <= base + seq * every <= window[1]]
    delays = [arrived[s] * 1000 for s in during if s in arrived]
    return {"upload_kbps": None if ceiling_kbps is None else SEGMENT_BYTES * 8 / 1000 / upload["seconds"],
            "upload_s": upload["seconds"], "sent_during": len(during),
            "lost_pct": 100 * (1 - len(delays) / len(during)) if during else None,
            "delay_p50_ms": statistics.median(delays) if delays else None,
            "delay_p99_ms": percentile(delays, 99) if delays else None,
            "delay_max_ms": max(delays) if delays else None}


def run(quick: bool) -> Result:
    with tempfile.TemporaryDirectory(prefix="nomadkit-bench-uploads-") as scratch, \
            NetKit(("wwan0",), prefix="nkbup") as netkit:
        folder = Path(scratch)
        subprocess.run(netkit.in_kit(["tc", "qdisc", "replace", "dev", "wwan0", "root", "tbf", "rate",
                                      f"{CAPACITY_KBPS}kbit", "burst", "32k", "latency", "300ms"]),
                       check=True, capture_output=True)
        moto = subprocess.Popen(netkit.in_net(python(MOTO, EDGE, str(S3_PORT))),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            kit = load_tour(ROOT / "tours" / "demo.yaml").kits[0]
            ceiling, kbps = kit.agent.upload_max_kbps, stream_kbps(kit)
            (folder / "recordings" / "stage").mkdir(parents=True)
            segment = folder / "recordings" / "stage" / "stage-bench.ts"
            cases: dict[str, dict[str, Any]] = {}
            runs = {"stream alone": None, f"with nomadkit's upload ({ceiling} kbps ceiling)": float(ceiling),
                    "with an unthrottled upload": 0.0}
            for name, limit in runs.items():
                (folder / "uploads.db").unlink(missing_ok=True)
                segment.write_bytes(bytes(range(256)) * (SEGMENT_BYTES // 256))
                run_s = LEAD_S + SEGMENT_BYTES * 8 / 1000 / ceiling + 8
                cases[name] = case(netkit, folder, kbps, limit, run_s)
        finally:
            moto.terminate()
            moto.wait(timeout=10)
    table = Table(f"wwan0 shaped to {CAPACITY_KBPS} kbps; stream {kbps} kbps; "
                  f"segment {SEGMENT_BYTES >> 20} MiB; stream figures while the upload ran",
                  ["case", "upload kbps", "share of uplink", "stream lost %", "delay p50 ms",
                   "p99 ms", "max ms"])
    for name, c in cases.items():
        kbps = c["upload_kbps"]
        table.rows.append([name, "" if kbps is None else f"{kbps:.0f}",
                           "" if kbps is None else f"{100 * kbps / CAPACITY_KBPS:.0f} %",
                           *(f"{c[k]:.1f}" if c[k] is not None else "n/a"
                             for k in ("lost_pct", "delay_p50_ms", "delay_p99_ms", "delay_max_ms"))])
    ours, raw = list(cases.values())[1:]
    return Result(
        title=TITLE, measured=described(__doc__), on="network namespaces on this host; tbf-shaped veth",
        summary=(f"with the agent's {ceiling} kbps ceiling the upload takes {ours['upload_kbps']:.0f} kbps "
                 f"({100 * ours['upload_kbps'] / CAPACITY_KBPS:.0f} % of a {CAPACITY_KBPS} kbps uplink) and "
                 f"the stream loses {ours['lost_pct']:.1f} % (p99 delay {ours['delay_p99_ms']:.0f} ms); "
                 f"unthrottled, {raw['upload_kbps']:.0f} kbps and the stream loses {raw['lost_pct']:.1f} % "
                 f"(p99 {raw['delay_p99_ms']:.0f} ms)"),
        tables=[table], figures=cases)
