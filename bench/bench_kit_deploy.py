"""Kit deploy: first apply and no-change re-runs, nomadkit (pyinfra) and the same work in Ansible.

    .venv/bin/python -m bench.bench_kit_deploy [--kits 1] [--reruns 1] [--json]

Each case starts from fresh lab kits (`nomadkit lab up`, resumed from golden snapshots) with the
demo tour mapped onto them and a stand-in CDN and relay on loopback (bench/standin.py):
a first apply, then no-change re-runs (which must change nothing). `run()` (what `python -m
bench` calls) then deploys the same kit again from a fresh snapshot with bench/ansible/kit.yml
through ansible-runner: the same files (rendered by the roles, with the modes and owners the
pyinfra deploy left), packages, users, directories and units; it checks that the Ansible kit
holds the same file contents. bench_fleet reuses `case()` for several kits at once. Needs root
and no lab running. Timings are wall seconds on this machine (TCG when KVM is not usable).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.report import Result, Spread, Table, described, ratio
from bench.standin import DEMO, standin_cloud, standin_tour
from nomadkit.errors import UserError
from nomadkit.fleet.ansible import PlaybookStopped, run_playbook
from nomadkit.fleet.hosts import load_fleet
from nomadkit.lab.lab import Lab, kits_from_count
from nomadkit.lab.progress import Progress
from nomadkit.lab.testing import LabTour
from nomadkit.lab.vm import detect_accel
from nomadkit.roles import agent, base, cache, kit_files, packages, power
from nomadkit.secrets import resolve
from nomadkit.tour import Kit, load_tour

TITLE = "Kit deploy: first apply vs no-change re-run, pyinfra vs Ansible"
NEEDS_LAB = True
PLAYBOOK = Path(__file__).parent / "ansible" / "kit.yml"
ANSIBLE_TIMEOUT_S = 1800  # one Ansible run; past it the first apply's figure is a lower bound


@contextmanager
def lab_tour(kits: int, folder: Path, progress: Progress) -> Iterator[LabTour]:
    """A fresh lab of `kits` kits with the demo tour on it; torn down on exit."""
    lab = Lab(progress)
    lab.up(kits_from_count(kits))
    try:
        streams = [s.name for k in load_tour(DEMO).kits for s in k.streams]
        with standin_cloud(folder, streams) as cloud:
            yield standin_tour(lab, folder, cloud)
    finally:
        lab.down(quiet=True)


def timed_runs(deploy: Callable[[], dict[str, dict[str, Any]]], reruns: int) -> list[dict[str, Any]]:
    """First apply, then `reruns` re-runs of `deploy`: wall seconds and per-kit outcome each."""
    runs = []
    for run in ["first_apply"] + ["no_change_rerun"] * reruns:
        start = time.monotonic()
        per_kit = deploy()
        runs.append({"run": run, "wall_s": time.monotonic() - start, "per_kit": per_kit})
    return runs


def pyinfra_deploy(tour: LabTour, progress: Progress) -> dict[str, dict[str, Any]]:
    return {k: {"s": r.seconds, "changed": r.changed, "operations": r.operations, "status": r.status}
            for k, r in tour.deploy(progress=progress).items()}


def case(kits: int, reruns: int, progress: Progress, folder: Path,
         after: Callable[[LabTour], Any] | None = None) -> dict[str, Any]:
    """Fresh lab of `kits` kits: pyinfra first apply and re-runs; then `after(tour)` on that lab."""
    with lab_tour(kits, folder, progress) as tour:
        figures: dict[str, Any] = {"kits": tour.names,
                                   "runs": timed_runs(lambda: pyinfra_deploy(tour, progress), reruns)}
        if after:
            figures["after"] = after(tour)
        return figures


def problems(runs: list[dict[str, Any]]) -> list[str]:
    """What keeps a run from being a clean figure: a failed deploy, or a re-run that changed something."""
    return [f"{run['run']} on {kit}: {result}" for run in runs for kit, result in run["per_kit"].items()
            if result["status"] != "ok" or (run["run"] != "first_apply" and result["changed"])]


def first_apply_ok(runs: list[dict[str, Any]]) -> bool:
    """Whether there is a first apply and it succeeded on every kit (its wall time is a figure)."""
    return bool(runs) and all(kit["status"] == "ok" for kit in runs[0]["per_kit"].values())


def check(runs: list[dict[str, Any]]) -> None:
    """nomadkit's own runs must all be clean: they are the figures every comparison is against."""
    if found := problems(runs):
        raise RuntimeError("; ".join(found))


def directories(kit: Kit, files: list[str]) -> list[str]:
    """The folders the roles' install stages make, and the parents pyinfra makes for each file."""
    made = ["/etc/nomadkit", "/var/lib/nomadkit", f"{base.admin_home(kit)}/.ssh", cache.STORE,
            "/var/cache/nginx/nomadkit", f"{agent.PREFIX}/nomadkit/agent", agent.STATE_DIR,
            *(f"{kit.recordings_dir}/{s.name}" for s in kit.streams)]
    return sorted({*made, *(str(Path(f).parent) for f in files)})


def ownership(tour: LabTour, kit: str, paths: list[str]) -> dict[str, dict[str, str]]:
    """Mode, owner and group of each path as the pyinfra deploy left it on the kit."""
    out = tour.on(kit, "stat -c '%a %U %G %n' " + " ".join(paths))
    found = {}
    for line in out.splitlines():
        mode, owner, group, path = line.split(" ", 3)
        found[path] = {"path": path, "mode": mode.rjust(4, "0"), "owner": owner, "group": group}
    return found


def project(tour: LabTour, kit: Kit, perms: dict[str, dict[str, str]], folder: Path) -> dict[str, str]:
    """The playbook, kit-vars.yml and files/ in `folder`; returns path -> content put."""
    content = kit_files(tour.tour, kit, tour.endpoints, secret=resolve)
    for path, text in content.items():
        target = folder / "files" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    shutil.copy(PLAYBOOK, folder / PLAYBOOK.name)
    (folder / "kit-vars.yml").write_text(yaml.safe_dump({
        "nk_hostname": kit.name, "nk_admin": kit.management.admin, "nk_admin_home": base.admin_home(kit),
        "nk_service_user": base.SERVICE_USER, "nk_packages": packages(), "nk_lab": kit.hardware == "lab",
        "nk_dirs": [perms[d] for d in directories(kit, list(content))],
        "nk_files": [perms[p] for p in content],
        "nk_uplinks": [u.name for u in kit.uplinks], "nk_streams": [s.name for s in kit.streams],
        "nk_ups": power.ups_name(kit), "nk_prime": bool(tour.endpoints and kit.cache),
        "nk_send": bool(tour.endpoints and kit.streams)}))
    return content


def ansible_deploy(tour: LabTour, playbook: Path) -> dict[str, dict[str, Any]]:
    """One ansible-runner run of the playbook; a run that reached no kit is an error that says
    what ansible-runner last said."""
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in tour.env().items() if k.startswith("NOMADKIT_")})
    said: list[str] = []
    try:
        result = run_playbook(playbook, load_fleet(tour.tour_file), say=said.append,
                              timeout_s=ANSIBLE_TIMEOUT_S)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if not result.hosts:
        raise RuntimeError(f"ansible-runner reached no kit ({result.status}, rc {result.rc}): "
                           + " | ".join(said[-8:]))
    return {kit: {"changed": h.changed, "operations": h.ok + h.changed, "changes": h.changes(),
                  "failures": h.failures, "status": "ok" if result.success else "failed"}
            for kit, h in result.hosts.items()}


def ansible_case(reruns: int, progress: Progress, folder: Path,
                 pyinfra_perms: dict[str, dict[str, str]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The same work through ansible-runner on a fresh kit: first apply and re-runs, and what keeps
    them from being clean figures (a failed run, a re-run that changed something, a file whose
    content differs from the roles' render)."""
    (folder / "project").mkdir(parents=True)
    with lab_tour(1, folder, progress) as tour:
        [name] = tour.names
        content = project(tour, tour.tour.kit(name), pyinfra_perms, folder / "project")
        runs = timed_runs(lambda: ansible_deploy(tour, folder / "project" / PLAYBOOK.name), reruns)
        differ = same_contents(tour, name, content)
    found = problems(runs)
    if differ:
        found.append(f"the Ansible kit's files differ from the roles' render: {differ[:5]}")
    return runs, found


def same_contents(tour: LabTour, kit: str, content: dict[str, str]) -> list[str]:
    """Paths whose content on the kit differs from what the roles render (should be none)."""
    out = tour.on(kit, "sha256sum " + " ".join(content))
    have = {path: digest for digest, path in (line.split(maxsplit=1) for line in out.splitlines())}
    return [p for p, text in content.items() if have.get(p) != hashlib.sha256(text.encode()).hexdigest()]


def run(quick: bool) -> Result:
    reruns = 1 if quick else 2
    progress = Progress(quiet=True)
    with tempfile.TemporaryDirectory(prefix="nomadkit-bench-deploy-") as scratch:
        folder = Path(scratch)
        os.environ["NOMADKIT_SECRETS"] = str(folder / "secrets")  # one set for both deploys
        (folder / "pyinfra").mkdir()

        def perms(tour: LabTour) -> dict[str, dict[str, str]]:
            [name] = tour.names
            kit = tour.tour.kit(name)
            files = list(kit_files(tour.tour, kit, tour.endpoints))
            return ownership(tour, name, [*directories(kit, files), *files])

        pyinfra = case(1, reruns, progress, folder / "pyinfra", after=perms)
        check(pyinfra["runs"])
        theirs = AnsibleOutcome()
        try:  # a failed comparison must not lose nomadkit's own figures
            theirs.runs, theirs.problems = ansible_case(reruns, progress, folder / "ansible",
                                                        pyinfra["after"])
        except PlaybookStopped as stopped:  # slower than the timeout: a lower bound, still a figure
            theirs.error = str(stopped)
            theirs.stopped_at = stopped.tasks_started if stopped.timed_out else 0  # cancelled: no figure
        except (RuntimeError, UserError) as error:
            theirs.error = f"{type(error).__name__}: {error}"
    summary, tables = compared(pyinfra["runs"], theirs)
    return Result(
        title=TITLE,
        measured=described(__doc__.split("\n\n", 1)[1]),
        on=f"QEMU lab, {detect_accel().name.upper()}, 1 kit, stand-in CDN and relay on loopback",
        summary=summary, tables=tables,
        figures={"pyinfra": pyinfra["runs"], "ansible": theirs.runs, "ansible_error": theirs.error,
                 "ansible_problems": theirs.problems})


@dataclass
class AnsibleOutcome:
    """How the Ansible side went: its runs (if it got through them), what kept them from being
    clean figures, or the error that stopped it (and at which task, if it hit its timeout)."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str = ""
    stopped_at: int = 0


def compared(ours_runs: list[dict[str, Any]], theirs: AnsibleOutcome) -> tuple[str, list[Table]]:
    """The summary line and tables: nomadkit's rows, then Ansible's — its figures whenever its first
    apply succeeded (a re-run that changed something is shown with what it changed), a lower bound
    when it hit its timeout, else the error."""
    table = Table("Wall seconds, one lab kit, same bench run (each tool on a fresh kit from one snapshot)",
                  ["tool", "run", "min", "median", "max", "N", "tasks/operations", "changed",
                   "first / re-run", "vs nomadkit (median)"])
    ours = tool_rows(table, "nomadkit (pyinfra)", ours_runs, None)
    summary = f"nomadkit: first apply {ours[0]:.0f} s, no-change re-run {ours[1]:.0f} s ({ratio(*ours)}); "
    if first_apply_ok(theirs.runs):
        first, again = tool_rows(table, "Ansible (ansible-runner)", theirs.runs, ours)
        summary += (f"the same work in Ansible: {first:.0f} s / {again:.0f} s "
                    f"({ratio(first, ours[0])} / {ratio(again, ours[1])} nomadkit's)")
        if not theirs.problems:
            return summary, [table]
        summary += f" — not clean: {len(theirs.problems)} problem(s), listed below"
        return summary, [table, Table("What kept the Ansible runs from being clean figures", ["problem"],
                                      [[problem] for problem in theirs.problems])]
    if theirs.stopped_at:
        bound = ratio(ANSIBLE_TIMEOUT_S, ours[0])
        table.rows.append(["Ansible (ansible-runner)", "first apply", f"> {ANSIBLE_TIMEOUT_S}", "", "",
                           "1", f"stopped during task {theirs.stopped_at}", "", "", f"≥ {bound}"])
        return summary + (f"the same work in Ansible did not finish its first apply in {ANSIBLE_TIMEOUT_S} s "
                          f"(stopped during task {theirs.stopped_at}): ≥ {bound} nomadkit's"), [table]
    error = theirs.error or "; ".join(theirs.problems)
    table.rows.append(["Ansible (ansible-runner)", f"failed in this run: {error}", *[""] * 8])
    return summary + f"the Ansible comparison failed in this run ({error[:120]})", [table]


def tool_rows(table: Table, tool: str, runs: list[dict[str, Any]],
              ours: tuple[float, float] | None) -> tuple[float, float]:
    """A tool's first-apply and re-run rows (ratios against nomadkit's `ours`); its two medians."""
    first, again = runs[0], runs[1:]
    spread = Spread.of(r["wall_s"] for r in again)
    [kit_first] = first["per_kit"].values()
    [kit_again] = again[0]["per_kit"].values()
    table.rows.append([tool, "first apply", *Spread.of([first["wall_s"]]).cells(1), "1",
                       str(kit_first["operations"]), str(kit_first["changed"]), "",
                       ratio(first["wall_s"], ours[0]) if ours else ""])
    table.rows.append([tool, "no-change re-run", *spread.cells(1), str(spread.n),
                       str(kit_again["operations"]), str(kit_again["changed"]),
                       ratio(first["wall_s"], spread.median), ratio(spread.median, ours[1]) if ours else ""])
    return first["wall_s"], spread.median


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kits", type=int, default=1)
    parser.add_argument("--reruns", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nomadkit-bench-deploy-") as scratch:
        os.environ["NOMADKIT_SECRETS"] = str(Path(scratch) / "secrets")
        figures = {"accel": detect_accel().name,
                   **case(args.kits, args.reruns, Progress(quiet=args.json), Path(scratch))}
    print(json.dumps(figures, indent=2) if args.json else
          "\n".join(f"{k}: {json.dumps(v)}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
