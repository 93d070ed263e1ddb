"""Local cloud figures: CDN edge failover to the slate, and payment webhook throughput.

    .venv/bin/python -m bench.bench_cloud [--quick] [--json]

Brings the demo tour's local cloud up (own state dir, ports shifted by 300 so a developer's
cloud is untouched), then:
  1. failover: a test pattern streams to the relay; the origin then fails in one of three
     ways — relay process stopped (connection refused), relay unreachable (nftables drops
     its packets on loopback: the 1 s connect timeout), kit stops sending (SRT times out, the
     playlist goes, 503) — and the edge is polled every 20 ms until it serves the slate;
  2. webhook: a bounded number of distinct signed checkout events POSTed over loopback by
     4 threads; requests/s and latency percentiles.
All traffic is on 127.0.0.1. Needs root (nftables, nginx).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import stripe
import yaml

from bench.report import Result, Spread, Table, percentile
from nomadkit import ROOT, paths
from nomadkit import secrets as tour_secrets
from nomadkit.cloud import local
from nomadkit.endpoints import CloudEndpoints
from nomadkit.tour import Tour, load_tour

TITLE_CDN = "CDN edge failover to the slate (local cloud)"
TITLE_WEBHOOK = "Payment webhook throughput (local cloud)"
PORT_SHIFT = 300
POLL_S = 0.02
LIMIT_S = 60.0
THREADS = 4
NFT_TABLE = "nomadkit_bench_cloud"


def origin(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.headers.get("X-Nomadkit-Origin")
    except (urllib.error.URLError, OSError):
        return None


def wait_origin(url: str, wanted: str) -> float:
    """Seconds until the edge answers from ``wanted`` (bounded by LIMIT_S)."""
    start = time.monotonic()
    while origin(url) != wanted:
        if time.monotonic() - start > LIMIT_S:
            raise RuntimeError(f"{url} not served by {wanted} within {LIMIT_S} s")
        time.sleep(POLL_S)
    return time.monotonic() - start


def drop_packets(port: int) -> Callable[[], None]:
    """Make the relay unreachable (packets to 127.0.0.1:port dropped); returns the undo."""
    rules = (f"table inet {NFT_TABLE} {{\n chain output {{\n  type filter hook output priority 0;\n"
             f"  ip daddr 127.0.0.1 tcp dport {port} drop\n }}\n}}\n")
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
    return lambda: subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], check=True)


def failover_once(cloud: local.LocalCloud, endpoints: CloudEndpoints, how: str) -> float:
    playlist = f"{endpoints.cdn_url}/live/stage/index.m3u8"
    sender = local.test_pattern(endpoints.relay_srt_urls["stage"], seconds=90)
    undo: Callable[[], None] | None = None
    try:
        wait_origin(playlist, "live")
        if how == "relay stopped":
            local.stop(cloud, "relay-nginx")
            local.stop(cloud, "relay-ingest")
        elif how == "relay unreachable":
            undo = drop_packets(cloud.ports.relay_http)
        else:
            sender.kill()
        return wait_origin(playlist, "slate")
    finally:
        if undo:
            undo()
        sender.kill()
        sender.wait()
        if local.running_pid(cloud, "relay-nginx") is None:
            local.start_relay(cloud)


def webhook_load(tour: Tour, endpoints: CloudEndpoints, requests: int) -> dict[str, float]:
    secret = tour_secrets.resolve(tour.commerce.webhook_secret)

    def one(i: int) -> tuple[float, int]:
        body = json.dumps({
            "id": f"evt_bench_{secrets.token_hex(8)}", "type": "checkout.session.completed",
            "created": int(time.time()),
            "data": {"object": {"id": f"cs_bench_{i}_{secrets.token_hex(4)}",
                                "payment_status": "paid", "payment_intent": f"pi_bench_{i}",
                                "metadata": {"stop": "alfama", "tier": "general"}}}})
        header = stripe.WebhookSignature.generate_signature_header(body, secret)
        request = urllib.request.Request(
            endpoints.webhook_url, data=body.encode(), method="POST",
            headers={"Content-Type": "application/json", "Stripe-Signature": header})
        start = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        return time.monotonic() - start, status

    start = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(one, range(requests)))
    wall = time.monotonic() - start
    latencies = [latency for latency, _ in answers]
    return {"requests": requests, "threads": THREADS, "wall_s": round(wall, 2),
            "non_200": sum(status != 200 for _, status in answers),
            "requests_per_s": round(requests / wall, 1),
            "p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "max_ms": round(max(latencies) * 1000, 1)}


def measure(quick: bool) -> dict[str, object]:
    repeats = 2 if quick else 5
    with tempfile.TemporaryDirectory(prefix="nomadkit-bench-cloud-") as scratch:
        folder = Path(scratch)
        os.environ["NOMADKIT_CACHE"] = str(folder / "cache")
        os.environ["NOMADKIT_SECRETS"] = str(folder / "secrets")
        data = yaml.safe_load((ROOT / "tours" / "demo.yaml").read_text())
        data["assets_dir"] = str(ROOT / "tours" / "demo-assets")
        defaults = {"moto": 4566, "edge": 8080, "webhook": 8081, "relay_srt": 9000, "relay_http": 8082}
        data["cloud"]["ports"] = {k: v + PORT_SHIFT for k, v in defaults.items()}
        tour_file = folder / "demo.yaml"
        tour_file.write_text(yaml.safe_dump(data))
        tour = load_tour(tour_file)
        start = time.monotonic()
        endpoints = local.up(tour, tour_file, None, lambda _n, _m: None)
        figures: dict[str, object] = {"up_s": round(time.monotonic() - start, 1)}
        log = paths.cloud_state(tour.name) / "logs" / "webhook.log"
        try:
            cloud = local.LocalCloud.for_tour(tour)
            for how in ("relay stopped", "relay unreachable", "kit stops sending"):
                figures[how] = [round(failover_once(cloud, endpoints, how), 3)
                                for _ in range(repeats)]
            figures["webhook"] = webhook_load(tour, endpoints, 200 if quick else 1000)
        except Exception:
            print(log.read_text()[-3000:] if log.exists() else "no webhook log", file=sys.stderr)
            raise
        finally:
            start = time.monotonic()
            local.down(tour, None, lambda _n, _m: None)
            figures["down_s"] = round(time.monotonic() - start, 1)
    return figures


_cache: dict[bool, dict[str, object]] = {}


def figures_for(quick: bool) -> dict[str, object]:
    """One measurement run shared by the two results (the cloud comes up once)."""
    if quick not in _cache:
        _cache[quick] = measure(quick)
    return _cache[quick]


def run_cdn(quick: bool) -> Result:
    figures = figures_for(quick)
    table = Table("Origin failure -> first slate response through the edge (s)",
                  ["how the origin fails", "min", "median", "max", "n"])
    for how in ("relay stopped", "relay unreachable", "kit stops sending"):
        spread = Spread.of(figures[how])
        table.rows.append([how, *spread.cells(2), str(spread.n)])
    unreachable = Spread.of(figures["relay unreachable"])
    return Result(
        title=TITLE_CDN,
        measured="seconds from the origin failing to the first playlist the nginx edge serves "
                 "from the slate (polled every 20 ms); the edge applies the plan's origin group: "
                 "failover on 500/502/503/504, 1 connection attempt, 1 s connect timeout",
        on=f"loopback, local cloud of the demo tour (up in {figures['up_s']} s, "
           f"down in {figures['down_s']} s)",
        summary=f"viewers see the slate {unreachable.median:.1f} s after the relay becomes "
                "unreachable (median), at once when it refuses connections",
        tables=[table], figures={k: figures[k] for k in
                                 ("relay stopped", "relay unreachable", "kit stops sending")})


def run_webhook(quick: bool) -> Result:
    load = figures_for(quick)["webhook"]
    table = Table("Signed checkout events POSTed to the local webhook",
                  ["requests", "threads", "non-200", "requests/s", "p50 ms", "p99 ms", "max ms"])
    table.rows.append([str(load["requests"]), str(load["threads"]), str(load["non_200"]),
                       str(load["requests_per_s"]),
                       str(load["p50_ms"]), str(load["p99_ms"]), str(load["max_ms"])])
    return Result(
        title=TITLE_WEBHOOK,
        measured="distinct Stripe-signed checkout.session.completed events (each verified, "
                 "ticketed, written in one DynamoDB transaction, queued to SQS) over HTTP",
        on="loopback; the webhook's AWS is a moto server on the same 2 cores",
        summary=f"{load['requests_per_s']} requests/s, p99 {load['p99_ms']} ms (moto-bound)",
        tables=[table], figures=load)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and requests")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = [run_cdn(args.quick), run_webhook(args.quick)]
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for result in results:
            print(f"{result.title}: {result.summary}")
            for table in result.tables:
                print(f"  {table.title}: {table.columns}")
                for row in table.rows:
                    print(f"    {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
