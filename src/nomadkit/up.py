"""`nomadkit up --local` / `nomadkit down`: the whole tour on this machine, one command.

Phases, each with its own progress lines and timing:
  1. cloud     the local cloud (moto, relay, webhook, CDN edge) from the captured Pulumi plan
  2. lab       one QEMU kit per kit of the stop, uplinks through the lab's own network
  3. deploy    the kit deploy (pyinfra) of the tour as played by lab kits
  4. settle    the kits' agents (restarted by the deploy) report ready
  5. preflight every check for the stop, ending in the signed GO / NO-GO report

The lab kits run the same tour with `hardware: lab` (test sources instead of a capture card, a
dummy UPS, ethernet instead of modems); that tour, the SSH overrides and the endpoints as the kits
see them are written to ~/.cache/nomadkit/up/<tour>/ so `pyinfra inventories/tour.py …` and
`nomadkit preflight` can be run by hand on the same lab afterwards (the summary prints how).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from nomadkit import paths
from nomadkit.cloud import local
from nomadkit.deploy.runner import deploy
from nomadkit.endpoints import CloudEndpoints
from nomadkit.errors import UserError
from nomadkit.lab.lab import KitSpec, Lab
from nomadkit.lab.net import CLOUD_ADDRESS
from nomadkit.lab.played import lab_note, play_in_lab
from nomadkit.lab.progress import Progress
from nomadkit.preflight.checks import ALL_CHECKS, build_context, sign_report
from nomadkit.preflight.network_checks import AGENT_SETTLE_S, agent_status
from nomadkit.preflight.report import Report, write
from nomadkit.preflight.runner import Context, Failed, run_all
from nomadkit.remote import Unreachable
from nomadkit.tour import Tour, load_tour


def state_dir(tour: Tour) -> Path:
    return paths.cache_root() / "up" / tour.name


def lab_tour_file(tour: Tour, folder: Path, accel: str) -> Path:
    """The tour as lab kits play it (see `nomadkit.lab.played`)."""
    data = tour.model_dump(mode="json", exclude_none=True)
    for kit in data["kits"]:
        play_in_lab(kit, accel)
    path = folder / "tour.yaml"
    path.write_text("# The tour as the lab's kits play it (written by `nomadkit up`; do not edit):\n"
                    f"# {lab_note(accel)}.\n" + yaml.safe_dump(data, sort_keys=False))
    return path


class Phases:
    """Prints each phase's start and end with its duration; keeps durations and results."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self.results: dict[str, Any] = {}

    def run(self, name: str, what: str, action: Callable[[], Any]) -> Any:
        self.progress(f"== {name}: {what}")
        start = time.monotonic()
        result = self.results[name] = action()
        self.seconds[name] = round(time.monotonic() - start, 1)
        self.progress(f"== {name}: done in {self.seconds[name]:.0f} s")
        return result


def bring_up(tour_file: Path, stop: str | None, report_dir: Path | None,
             progress: Progress) -> tuple[Report, dict[str, Path], Phases]:
    """Cloud, lab, deploy, preflight for one stop; returns the report and where it is."""
    tour = load_tour(tour_file)
    stop = stop or tour.stops[0].name
    kits = tour.stop(stop).kits if stop in [s.name for s in tour.stops] else None
    if kits is None:
        raise UserError(f"{tour_file}: no stop named '{stop}' — choose one of "
                        f"{', '.join(s.name for s in tour.stops)}")
    folder = state_dir(tour)
    folder.mkdir(parents=True, exist_ok=True)
    phases = Phases(progress)
    endpoints = phases.run("cloud", "local cloud from the Pulumi plan", lambda: cloud_up(
        tour, tour_file, progress))
    lab = Lab(progress)
    phases.run("lab", f"QEMU kits for {stop}", lambda: lab_up(lab, tour, kits))
    played = lab_tour_file(tour, folder, lab.state()["accel"])
    kit_endpoints = folder / "endpoints-kits.json"
    kit_endpoints.write_text(endpoints.seen_from(CLOUD_ADDRESS).model_dump_json(indent=2))
    results = phases.run("deploy", f"kit deploy of {', '.join(kits)}", lambda: deploy(
        played, stop=stop, connect_file=lab.connect_file, endpoints_file=kit_endpoints,
        progress=progress))
    failed = [r.kit for r in results if r.status != "ok"]
    if failed:
        progress(f"deploy failed on {', '.join(failed)}: the preflight will say what is missing")
    lab_tour = load_tour(played)
    report = Report(lab_tour.name, stop)
    ctx = build_context(lab_tour, stop)
    phases.run("settle", "the kits' agents ready after the deploy", lambda: settle(ctx, progress))
    phases.run("preflight", f"{len(ALL_CHECKS)} checks on {stop}", lambda: run_all(
        ALL_CHECKS, ctx, report, progress=lambda r: progress(
            f"preflight {r.verdict.upper():<4} {r.id} {r.kit or 'cloud'} ({r.duration_s:.1f} s)"
            + (f": {r.hint}" if r.hint else ""))))
    target = report_dir or folder / "report"
    files = write(report, target, sign_report(lab_tour, report))
    (folder / "up.json").write_text(json.dumps({"stop": stop, "phases": phases.seconds,
                                                "tour_file": str(played)}, indent=2))
    return report, files, phases


def settle(ctx: Context, progress: Progress) -> None:
    """Wait for every kit's agent to be ready: a deploy restarts them, and a check that met a
    starting agent would fail for a reason the night will not have. A kit that never settles is
    left to its checks, which say why."""
    for kit in ctx.kits:
        try:
            status = agent_status(ctx, kit, wait_s=AGENT_SETTLE_S)
            progress(f"{kit.name}: agent ready, traffic on {status.get('active') or 'no uplink'}")
        except (Failed, Unreachable) as why:
            progress(f"{kit.name}: agent not ready ({why}); the preflight goes on")


def cloud_up(tour: Tour, tour_file: Path, progress: Progress) -> CloudEndpoints:
    """The local cloud, or the one already running for this tour (a second `up` is quick)."""
    if all(local.status(tour, None).values()):
        progress("the tour's local cloud is already up: reusing it")
        return CloudEndpoints.read(paths.endpoints_file(tour.name))
    return local.up(tour, tour_file, None, lambda name, detail: progress(f"cloud {name}: {detail}"))


def lab_up(lab: Lab, tour: Tour, kits: list[str]) -> None:
    """Lab kits for the stop, or the running lab when it already has them."""
    if lab.state_file.exists():
        running = lab.state()["kits"]
        if all(name in running for name in kits):
            lab.progress(f"the lab already runs {', '.join(kits)}: reusing it")
            return
        raise UserError(f"a lab is up with other kits ({', '.join(running)}) — "
                        "`nomadkit lab down` first")
    lab.up([KitSpec(k.name, tuple((u.name, u.mac) for u in k.uplinks))
            for k in tour.kits if k.name in kits])


def take_down(tour_file: Path, progress: Progress) -> None:
    """Stop the lab and the local cloud; leave nothing running."""
    tour = load_tour(tour_file)
    Lab(progress).down()
    stopped = local.down(tour, None, lambda name, detail: progress(f"cloud {name}: {detail}"))
    progress(f"cloud down: stopped {', '.join(stopped) or 'nothing'}")


def cmd_up(args: argparse.Namespace) -> int:
    """Bring the tour up on this machine and end with its preflight report (0 = GO)."""
    if not args.local:
        raise UserError("only --local is built in: for AWS run `pulumi up` in stacks/tour (see "
                        "docs/cloud.md), then `nomadkit deploy` and `nomadkit preflight`")
    progress = Progress()
    report, files, phases = bring_up(args.file, args.stop, args.report, progress)
    folder = files["json"].parent
    if args.json:
        print(json.dumps({"verdict": "GO" if report.go else "NO-GO", "phases": phases.seconds,
                          "report": {k: str(v) for k, v in files.items()}}, indent=2))
        return 0 if report.go else 1
    counts = report.counts()
    up_dir = state_dir(load_tour(args.file))
    print(f"\n{'GO' if report.go else 'NO-GO'} for {report.tour} / {report.stop}: "
          f"{counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed, "
          f"{counts['skip']} skipped\n"
          f"phases: {', '.join(f'{k} {v:.0f} s' for k, v in phases.seconds.items())}\n"
          f"report: {files['markdown']} (JSON and signature beside it in {folder})\n\n"
          f"The tour stays up. By hand (the export points nomadkit and pyinfra at the lab's kits):\n"
          f"  export NOMADKIT_CONNECT={Lab().connect_file}\n"
          f"  NOMADKIT_TOUR={up_dir}/tour.yaml NOMADKIT_ENDPOINTS={up_dir}/endpoints-kits.json \\\n"
          f"    pyinfra inventories/tour.py deploys/kit.py\n"
          f"  nomadkit preflight {up_dir}/tour.yaml --stop {report.stop}\n"
          f"  nomadkit lab link kit-a wwan0 down; nomadkit status {up_dir}/tour.yaml\n"
          f"  nomadkit down {args.file}")
    return 0 if report.go else 1


def cmd_down(args: argparse.Namespace) -> int:
    """Stop everything `nomadkit up` started."""
    take_down(args.file, Progress())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="the whole tour on this machine: cloud, kits, deploy, preflight",
                        description=cmd_up.__doc__, epilog=__doc__.split("\n\n")[1],
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    up.add_argument("file", type=Path, help="the tour file")
    up.add_argument("--local", action="store_true", default=True,
                    help="local cloud and lab kits (the default, and the only built-in target)")
    up.add_argument("--stop", help="the stop to bring up (default: the first)")
    up.add_argument("--report", type=Path, help="folder for the preflight report")
    up.add_argument("--json", action="store_true", help="print the outcome as JSON")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop everything `nomadkit up` started",
                          description=cmd_down.__doc__)
    down.add_argument("file", type=Path, help="the tour file")
    down.set_defaults(func=cmd_down)
