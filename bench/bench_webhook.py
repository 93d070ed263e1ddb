"""Webhook throughput and latency: valid payment events, then a replay storm of duplicates.

The demo tour's plan is realized in a moto server on loopback (tables, queue, secrets), and the
payment webhook runs as the local cloud runs it (`python -m nomadkit.webhook.local`, a separate
process, each request a Function URL event for the same handler the Lambda runs). A bounded
number of Stripe-signed `checkout.session.completed` events (signed by the official `stripe`
library) is posted by one keep-alive client; then one already-recorded event is
replayed many times (Stripe retries, or an attacker replaying a captured request). Every answer
is checked: a valid event must be ticketed, a replay must be answered as a duplicate.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import stripe

from bench.report import Result, Table, described, percentile
from nomadkit import ROOT
from nomadkit.cloud.plan import capture
from nomadkit.cloud.realize import Realizer
from nomadkit.tickets import generate_ticket_key

TITLE = "Payment webhook: throughput and latency"
REGION = "eu-west-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_DEFAULT_REGION": REGION}
# One client at a time: moto's DynamoDB answers 500 to concurrent TransactWriteItems (seen
# here with 4 clients), which would measure moto rather than the webhook.
CLIENTS = 1
TIME_LIMIT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(port: int, path: str, proc: subprocess.Popen) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port}{path}")


def checkout_event() -> bytes:
    session = f"cs_bench_{secrets.token_hex(8)}"
    return json.dumps({
        "id": f"evt_{secrets.token_hex(10)}", "object": "event", "type": "checkout.session.completed",
        "created": int(time.time()),
        "data": {"object": {
            "id": session, "object": "checkout.session", "payment_status": "paid",
            "payment_intent": f"pi_{session[9:]}", "customer": f"cus_{secrets.token_hex(4)}",
            "customer_details": {"email": "bench@example.org"},
            "metadata": {"stop": "alfama", "tier": "general", "quantity": "1"}}},
    }).encode()


def load(port: int, bodies: list[bytes], whsec: str, check: Callable[[int, dict], bool]) -> dict:
    """POST every body (signed now) from CLIENTS keep-alive threads; latency per request."""
    latencies: list[float] = []
    wrong: list[str] = []
    lock = threading.Lock()
    queue = list(enumerate(bodies))
    deadline = time.monotonic() + TIME_LIMIT_S

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < deadline:
            with lock:
                if not queue:
                    return
                _, body = queue.pop()
            header = stripe.WebhookSignature.generate_signature_header(body.decode(), whsec)
            started = time.monotonic()
            conn.request("POST", "/", body=body, headers={"Content-Type": "application/json",
                                                          "Stripe-Signature": header})
            response = conn.getresponse()
            answer = json.loads(response.read())
            took = time.monotonic() - started
            with lock:
                latencies.append(took)
                if not check(response.status, answer):
                    wrong.append(f"{response.status} {answer}")

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    if wrong:
        raise RuntimeError(f"{len(wrong)} wrong answers, e.g. {wrong[0][:300]}")
    return {"requests": len(latencies), "wall_s": wall, "rps": len(latencies) / wall,
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "max_ms": max(latencies) * 1000}


def run(quick: bool) -> Result:
    valid_n, storm_n = (60, 120) if quick else (300, 600)
    whsec = f"whsec_{secrets.token_urlsafe(24)}"
    values = {"webhook_secret": whsec, "ticket_key": generate_ticket_key()}
    env = {**os.environ, **CREDENTIALS}
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(name, None)
    moto_port, webhook_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="nomadkit-bench-webhook-") as scratch:
        logs = Path(scratch)
        try:
            procs.append(subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                           str(moto_port)], env=env, stdout=(logs / "moto.log").open("w"),
                                          stderr=subprocess.STDOUT))
            wait_http(moto_port, "/moto-api/data.json", procs[0])
            session = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench",
                                            region_name=REGION)
            plan = capture(ROOT / "tours" / "demo.yaml", "bench", REGION)
            aws = Realizer(plan, lambda service: session.client(service, endpoint_url=endpoint),
                           values.__getitem__).realize()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "nomadkit.webhook.local", "--host", "127.0.0.1", "--port",
                 str(webhook_port), "--endpoint-url", endpoint],
                env={**env, "NOMADKIT_WEBHOOK": aws.webhook.to_json()},
                stdout=(logs / "webhook.log").open("w"), stderr=subprocess.STDOUT))
            wait_http(webhook_port, "/healthz", procs[1])
            valid = load(webhook_port, [checkout_event() for _ in range(valid_n)], whsec,
                         lambda status, a: status == 200 and a.get("outcome") == "ticketed")
            replayed = checkout_event()
            load(webhook_port, [replayed], whsec, lambda status, a: status == 200)
            storm = load(webhook_port, [replayed] * storm_n, whsec,
                         lambda status, a: status == 200 and a.get("duplicate") is True)
            ledger = session.client("dynamodb", endpoint_url=endpoint).scan(
                TableName=aws.webhook.ledger_table, Select="COUNT")["Count"]
        except RuntimeError as error:
            tail = (logs / "webhook.log").read_text()[-1500:]
            raise RuntimeError(f"{error}\nwebhook log (tail):\n{tail}") from None
        finally:
            for proc in procs:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
    table = Table(f"{CLIENTS} keep-alive client(s) on loopback; every answer checked",
                  ["load", "requests", "wall s", "requests/s", "p50 ms", "p99 ms", "max ms"])
    for name, figures in (("valid events (each ticketed)", valid), ("replay storm (all duplicates)", storm)):
        table.rows.append([name, str(figures["requests"]), f"{figures['wall_s']:.1f}",
                           f"{figures['rps']:.0f}", f"{figures['p50_ms']:.1f}", f"{figures['p99_ms']:.1f}",
                           f"{figures['max_ms']:.1f}"])
    return Result(
        title=TITLE,
        measured=described(__doc__),
        on=(f"loopback: moto server, webhook server and load client as separate processes on this "
            f"{os.cpu_count()}-core machine (they share the cores); ledger rows after the run: {ledger}"),
        summary=(f"{valid['rps']:.0f} valid events/s (p99 {valid['p99_ms']:.0f} ms); a replay storm is "
                 f"answered at {storm['rps']:.0f} req/s (p99 {storm['p99_ms']:.0f} ms), "
                 f"×{storm['rps'] / valid['rps']:.1f} the valid rate, recording nothing new"),
        tables=[table], figures={"valid": valid, "storm": storm, "ledger_rows": ledger})
