"""Run nomadkit's benchmarks and rewrite docs/benchmarks.md from this run's figures.

    .venv/bin/python -m bench [--only NAME ... [--merge]] [--quick] [--json] [--no-write] [--lab-wait S]
    .venv/bin/python -m bench --render

Benchmarks that need no VM run first (namespaces, loopback); the ones that boot the QEMU lab
run last, each only when no other lab is up on this machine (the lab's namespace is fixed),
waiting up to --lab-wait seconds for it to be free, else reported as skipped. Every number in
the document comes from the run that wrote it; a benchmark that cannot run says why. The run's
results are also kept in docs/benchmarks.json, so `--only NAME --merge` can re-measure one
benchmark (after a fix) and put it in the document, marked with its own date.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from bench.report import Result, skipped
from nomadkit import ROOT
from nomadkit.lab.vm import detect_accel
from nomadkit.paths import cache_root

# In running order: namespace/loopback ones first, lab ones last.
BENCHMARKS = ("failover", "overhead", "uploads", "cdn", "webhook", "lab", "kit_deploy", "fleet",
              "preflight")
BUDGET_S = 30 * 60  # the whole suite's time budget (issue #10)
DOC = ROOT / "docs" / "benchmarks.md"
RECORD = ROOT / "docs" / "benchmarks.json"


def lab_busy() -> str | None:
    """Why the lab cannot be used now (another lab up, lab tests running), or None."""
    if (cache_root() / "lab" / "run" / "lab.json").exists():
        return "a lab is up on this machine (not ours to take down)"
    found = subprocess.run(["pgrep", "-af", "pytest.*lab"], capture_output=True, text=True).stdout
    mine = str(os.getpid())
    if any(line.split()[0] != mine for line in found.splitlines()):
        return "lab tests are running on this machine"
    return None


def wait_for_lab(limit_s: float) -> str | None:
    """Wait until the lab is free; return why not if it stays busy for limit_s."""
    end = time.monotonic() + limit_s
    while (busy := lab_busy()) and time.monotonic() < end:
        print(f"bench: waiting for the lab ({busy})", file=sys.stderr)
        time.sleep(20)
    return busy


def needs_lab(name: str) -> bool:
    """Whether a benchmark boots the QEMU lab (it waits for the lab, and counts as lab time)."""
    return getattr(importlib.import_module(f"bench.bench_{name}"), "NEEDS_LAB", False)


def run_one(name: str, quick: bool, lab_wait_s: float, earlier: Mapping[str, Result]) -> Result:
    """One benchmark. A module that names a benchmark in `REUSES` gets this run's `earlier`
    results, to take a figure measured there instead of measuring it again."""
    module = importlib.import_module(f"bench.bench_{name}")
    if needs_lab(name) and (busy := wait_for_lab(lab_wait_s)):
        return skipped(module.TITLE, f"{busy} for {lab_wait_s:.0f} s")
    print(f"bench: {name} ...", file=sys.stderr)
    started = time.monotonic()
    try:
        if hasattr(module, "REUSES"):
            result = module.run(quick, {n: earlier[n] for n in module.REUSES if n in earlier})
        else:
            result = module.run(quick)
    except Exception as error:  # one broken benchmark must not lose the others' figures
        traceback.print_exc()
        result = skipped(module.TITLE, f"failed in this run: {type(error).__name__}: {error}")
    result.figures.setdefault("bench_wall_s", round(time.monotonic() - started, 1))
    result.ran_at = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
    print(f"bench: {name} done in {result.figures['bench_wall_s']} s"
          + (f" (skipped: {result.skipped})" if result.skipped else ""), file=sys.stderr)
    return result


def machine() -> str:
    accel = detect_accel()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} CPU cores, {mem_gib:.0f} GiB, Linux {platform.release()}, "
            f"Python {platform.python_version()}; VMs: {accel.name} ({accel.reason})")


def brief(text: str) -> str:
    """A reason's first line, short enough for a summary line (the JSON record keeps it whole)."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= 300 else first[:300] + " …"


def markdown_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def document(results: dict[str, Result], quick: bool, wall_s: float, written_at: str | None = None,
             merged: Collection[str] = ()) -> str:
    written_at = written_at or f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
    lines = ["# Benchmarks", "",
             "Written by `make bench` (`python -m bench`"
             + (" --quick" if quick else "") + f") on {written_at} UTC "
             f"in {wall_s / 60:.1f} min. Machine: {machine()}.", "",
             "Every figure below comes from that one run; ratios compare figures measured in the "
             "same run (these shared machines are noisy, so compare ratios rather than seconds "
             "across runs). Repeated measurements show min / median / max over N runs.", "",
             "## Where nomadkit stands", ""]
    lines += [f"- **{r.title}**: {brief(r.summary)}" for r in results.values()]
    lines += ["", *time_taken(results, wall_s, merged)]
    for name, result in results.items():
        lines += ["", f"## {result.title}", ""]
        if name in merged:
            lines += [f"_Re-measured on {result.ran_at} UTC by `python -m bench --only {name} --merge`; "
                      "every other section is from the run above._", ""]
        if result.skipped:
            lines += [f"skipped: {brief(result.skipped)}"]
            continue
        lines += [f"**Measured:** {result.measured}", "", f"**On:** {result.on}"]
        for table in result.tables:
            lines += ["", f"**{table.title}**", "", *markdown_table(list(table.columns),
                                                                    [list(r) for r in table.rows])]
    return "\n".join(lines) + "\n"


def time_taken(results: dict[str, Result], wall_s: float, merged: Collection[str]) -> list[str]:
    """How long each benchmark took, against the suite's budget: the lab ones dominate on TCG.
    A benchmark re-measured later (`--merge`) shows its own time but is not counted in the run's."""
    took = {name: r.figures["bench_wall_s"] for name, r in results.items() if "bench_wall_s" in r.figures}
    on_lab = sum(s for name, s in took.items() if name not in merged and needs_lab(name))
    verdict = "within" if wall_s <= BUDGET_S else "over"
    return [f"**Time taken:** {wall_s / 60:.1f} min, {verdict} the suite's {BUDGET_S / 60:.0f}-minute "
            f"budget; the benchmarks that boot and deploy QEMU kits took {on_lab / 60:.1f} min of it"
            + (" (not counting those re-measured since)" if merged else "")
            + " (see the machine line above for KVM or TCG).", "",
            *markdown_table(["benchmark", "minutes"],
                            [[results[name].title, f"{s / 60:.1f}"
                              + (" (re-measured on its own)" if name in merged else "")]
                             for name, s in took.items()])]


def write_document(record: dict[str, Any]) -> None:
    """docs/benchmarks.md from a run's record (docs/benchmarks.json)."""
    every = {name: Result.from_dict(record["results"][name]) for name in BENCHMARKS
             if name in record["results"]}
    DOC.write_text(document(every, record["quick"], record["wall_s"], record["written_at"],
                            record.get("merged", [])))
    print(f"bench: wrote {DOC.relative_to(ROOT)} from {RECORD.relative_to(ROOT)}", file=sys.stderr)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=BENCHMARKS, metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON")
    parser.add_argument("--no-write", action="store_true",
                        help="leave docs/benchmarks.md alone (implied by --only without --merge)")
    parser.add_argument("--merge", action="store_true",
                        help="with --only: put these results into the last full run's document "
                             "(docs/benchmarks.json), each marked with when it was re-measured")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite docs/benchmarks.md from docs/benchmarks.json (no benchmark runs)")
    parser.add_argument("--lab-wait", type=float, default=600,
                        help="seconds to wait for a busy lab before skipping (default 600)")
    args = parser.parse_args(argv)
    if args.render:
        write_document(json.loads(RECORD.read_text()))
        return 0
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces, nftables, the QEMU lab)", file=sys.stderr)
        return 2
    if args.merge and not (args.only and RECORD.exists()):
        print(f"bench: --merge needs --only NAME and a full run's {RECORD.relative_to(ROOT)}",
              file=sys.stderr)
        return 2
    started, written_at = time.monotonic(), f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
    results: dict[str, Result] = {}
    for name in args.only or BENCHMARKS:
        results[name] = run_one(name, args.quick, args.lab_wait, results)
    wall_s = time.monotonic() - started
    if not args.no_write and (args.merge or not args.only):
        record = {"written_at": written_at, "wall_s": wall_s, "quick": args.quick, "results": {},
                  "merged": []}
        if args.merge:
            record = json.loads(RECORD.read_text())
            record["merged"] = sorted({*record.get("merged", []), *results})
        record["results"] |= {name: r.as_dict() for name, r in results.items()}
        RECORD.write_text(json.dumps(record, indent=1) + "\n")
        write_document(record)
    if args.json:
        print(json.dumps({k: r.as_dict() for k, r in results.items()}, indent=2))
    else:
        for result in results.values():
            print(f"{result.title}: {result.summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
