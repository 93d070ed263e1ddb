"""CDN fallback: how long viewers wait for the slate when the live origin fails.

The local cloud's nginx edge is rendered twice by the same code (`nomadkit.cloud.local.edge_site`)
from the demo tour's captured plan: once with nomadkit's origin-group settings as planned, once
with CloudFront's defaults put into the same plan (3 connection attempts x 10 s connect timeout,
30 s response timeout). Each edge runs in a network namespace of its own with a slate origin on
its loopback; the live origin fails three ways: blackholed (SYNs dropped by nftables: the
relay host is gone), refused (no listener: the relay process died), 503 (relay up, stream not
live). A request for the live playlist is timed until the edge answers with the slate.
(bench/bench_cloud.py measures the whole local cloud's edge, including a kit that stops sending.)
"""

from __future__ import annotations

import copy
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.report import Result, Spread, Table, ratio
from nomadkit import ROOT
from nomadkit.cloud.local import LocalCloud, edge_site, nginx_conf
from nomadkit.cloud.plan import Plan, capture
from nomadkit.tour import load_tour

TITLE = "CDN fallback: origin failure to slate at the edge"
DISTRIBUTION = "aws:cloudfront/distribution:Distribution"
CLOUDFRONT_DEFAULTS = {"connectionAttempts": 3, "connectionTimeout": 10, "originReadTimeout": 30}
BUCKET = "bench-assets"
SCENARIOS = ("blackholed", "refused", "503")

# The relay when it is up but the stream is not live: every request answers 503.
RELAY_503 = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def with_defaults(plan: Plan) -> Plan:
    """The same plan with CloudFront's default origin timeouts on the live origin."""
    plan = copy.deepcopy(plan)
    [distribution] = plan.of_type(DISTRIBUTION)
    [group] = distribution.inputs["originGroups"]
    live_id = group["members"][0]["originId"]
    live = next(o for o in distribution.inputs["origins"] if o["originId"] == live_id)
    live["connectionAttempts"] = CLOUDFRONT_DEFAULTS["connectionAttempts"]
    live["connectionTimeout"] = CLOUDFRONT_DEFAULTS["connectionTimeout"]
    live["customOriginConfig"]["originReadTimeout"] = CLOUDFRONT_DEFAULTS["originReadTimeout"]
    return plan


def origin_settings(plan: Plan) -> str:
    [distribution] = plan.of_type(DISTRIBUTION)
    live = distribution.inputs["origins"][0]
    return (f"{live['connectionAttempts']} attempt(s) × {live['connectionTimeout']} s connect, "
            f"{live['customOriginConfig']['originReadTimeout']} s response timeout")


def sh(*argv: str, stdin: str | None = None) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, input=stdin)


class Edge:
    """One edge config in its own namespace: nginx edge, slate origin, a failing live origin."""

    def __init__(self, name: str, plan: Plan, folder: Path, index: int) -> None:
        self.ns = f"nkb-cdn-{index}"
        self.name = name
        tour = load_tour(ROOT / "tours" / "demo.yaml")
        self.cloud = LocalCloud(tour, "127.0.0.1", folder)
        self.site = edge_site(self.cloud, plan, BUCKET)
        self.stream = tour.kits[0].streams[0].name
        self.relay: subprocess.Popen | None = None

    def exec(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    @contextmanager
    def running(self) -> Iterator[Edge]:
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        sh("ip", "netns", "add", self.ns)
        procs: list[subprocess.Popen] = []
        try:
            sh("ip", "-n", self.ns, "link", "set", "lo", "up")
            slate = self.cloud.state / "slate-origin"
            playlist = slate / BUCKET / "slate" / "live" / self.stream / "index.m3u8"
            playlist.parent.mkdir(parents=True)
            playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nslate.ts\n")
            procs.append(subprocess.Popen(self.exec([
                sys.executable, "-m", "http.server", "-b", "127.0.0.1", "-d", str(slate),
                str(self.cloud.ports.moto)]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            conf = nginx_conf(self.cloud, "edge", self.site)
            procs.append(subprocess.Popen(self.exec(["nginx", "-c", str(conf), "-e",
                                                     str(conf.parent / "error.log"), "-g", "daemon off;"])))
            self.wait_listening(self.cloud.ports.edge)
            self.wait_listening(self.cloud.ports.moto)
            yield self
        finally:
            self.fail_with(None)
            for proc in procs:
                proc.terminate()
                proc.wait(10)
            subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)

    def wait_listening(self, port: int) -> None:
        for _ in range(100):
            probe = subprocess.run(self.exec(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"]))
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: nothing listening on 127.0.0.1:{port} in {self.ns}")

    def fail_with(self, scenario: str | None) -> None:
        """Make the live origin fail this way (None: clean up the previous failure)."""
        if self.relay:
            self.relay.terminate()
            self.relay.wait(10)
            self.relay = None
        sh(*self.exec(["nft", "-f", "-"]), stdin="table inet nkbench\ndelete table inet nkbench\n")
        port = self.cloud.ports.relay_http
        if scenario == "blackholed":
            sh(*self.exec(["nft", "-f", "-"]), stdin=(
                "table inet nkbench {\n chain out {\n  type filter hook output priority 0;\n"
                f"  tcp dport {port} drop\n }}\n}}\n"))
        elif scenario == "503":
            self.relay = subprocess.Popen(self.exec([sys.executable, "-c", RELAY_503, str(port)]))
            self.wait_listening(port)

    def request(self) -> tuple[float, str]:
        """Time one viewer request for the live playlist; return (seconds, origin that answered)."""
        out = subprocess.run(self.exec([
            "curl", "-s", "-o", "/dev/null", "-D", "-", "-m", "120",
            "-w", "TIME %{time_total} %{http_code}\n",
            f"http://127.0.0.1:{self.cloud.ports.edge}/live/{self.stream}/index.m3u8"]),
            capture_output=True, text=True).stdout
        origin = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                       if line.lower().startswith("x-nomadkit-origin:")), "none")
        _, seconds, code = next(line for line in out.splitlines() if line.startswith("TIME")).split()
        return float(seconds), f"{origin} ({code})"


def run(quick: bool) -> Result:
    repeats = 1 if quick else 3
    plan = capture(ROOT / "tours" / "demo.yaml", "bench", "eu-west-1")
    plans = {"nomadkit": plan, "CloudFront defaults": with_defaults(plan)}
    times: dict[tuple[str, str], list[float]] = {}
    answers: dict[tuple[str, str], set[str]] = {}
    with tempfile.TemporaryDirectory(prefix="nomadkit-bench-cdn-") as scratch, ExitStack() as stack:
        edges = [stack.enter_context(Edge(n, p, Path(scratch) / str(i), i).running())
                 for i, (n, p) in enumerate(plans.items())]
        for scenario in SCENARIOS:
            for edge in edges:
                edge.fail_with(scenario)
            for _ in range(repeats):
                # both edges asked at the same moment: same machine load for both
                with ThreadPoolExecutor(len(edges)) as pool:
                    found = dict(zip([e.name for e in edges], pool.map(Edge.request, edges), strict=True))
                for name, (seconds, origin) in found.items():
                    times.setdefault((scenario, name), []).append(seconds)
                    answers.setdefault((scenario, name), set()).add(origin)
    table = Table("Seconds from request to slate (live origin failing)",
                  ["live origin", "edge settings", "min", "median", "max", "N", "answered by",
                   "ratio default / nomadkit (median)"])
    figures: dict[str, object] = {}
    for scenario in SCENARIOS:
        ours = Spread.of(times[(scenario, "nomadkit")])
        for name in plans:
            spread = Spread.of(times[(scenario, name)])
            figures[f"{scenario}/{name}"] = spread.__dict__
            table.rows.append([scenario, f"{name}: {origin_settings(plans[name])}", *spread.cells(3),
                               str(spread.n), ", ".join(sorted(answers[(scenario, name)])),
                               ratio(spread.median, ours.median) if name != "nomadkit" else ""])
    black = {n: Spread.of(times[("blackholed", n)]).median for n in plans}
    return Result(
        title=TITLE,
        measured=("time from a viewer's playlist request to the slate answer at the edge, "
                  "with the live relay blackholed / refusing / answering 503. Both edge configs are "
                  "rendered by the local cloud's own `edge_site` from the captured plan (the second "
                  "with CloudFront's defaults put into the plan) and asked at the same moment."),
        on=("nginx edges in private network namespaces (loopback only), slate origin on the same "
            "loopback; attempts are upstream entries with `proxy_next_upstream error timeout`"),
        summary=(f"relay host gone (blackholed): slate after {black['nomadkit']:.1f} s with nomadkit's "
                 f"origin group vs {black['CloudFront defaults']:.1f} s with CloudFront's defaults "
                 f"({ratio(black['CloudFront defaults'], black['nomadkit'])}); refused and 503 "
                 "fail over at once with both"),
        tables=[table], figures=figures)
