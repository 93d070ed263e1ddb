"""`nomadkit preflight`: run every check for one stop and write the GO / NO-GO report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nomadkit.errors import UserError
from nomadkit.preflight.checks import ALL_CHECKS, build_context, sign_report
from nomadkit.preflight.report import ICONS, CheckResult, Report, write
from nomadkit.preflight.runner import run_all
from nomadkit.tour import load_tour


class CouldNotRun(UserError):
    """The preflight itself could not start (no such stop, no cloud): exit 2, not NO-GO."""

    exit_code = 2


def _progress(result: CheckResult) -> None:
    where = result.kit or "cloud"
    line = f"  {ICONS[result.verdict]}  {result.id:<22} {where:<8} {result.duration_s:5.1f} s"
    print(line + (f"  {result.hint}" if result.hint else ""), file=sys.stderr, flush=True)


def cmd_preflight(args: argparse.Namespace) -> int:
    """Run the stop's preflight; exit 0 = GO, 1 = NO-GO, 2 = could not run."""
    tour = load_tour(args.file)
    if args.stop not in [s.name for s in tour.stops]:
        raise CouldNotRun(f"{args.file}: no stop named '{args.stop}' — "
                          f"choose one of {', '.join(s.name for s in tour.stops)}")
    checks = [c for c in ALL_CHECKS if _selected(c.id, args.only, args.skip)]
    if not checks:
        raise CouldNotRun("no check left after --only/--skip — see `nomadkit preflight --list`")
    ctx = build_context(tour, args.stop)
    print(f"preflight {tour.name} / {args.stop}: {len(checks)} checks on "
          f"{', '.join(ctx.stop.kits)}", file=sys.stderr)
    report = run_all(checks, ctx, Report(tour.name, args.stop),
                     progress=lambda r: None if args.quiet else _progress(r))
    folder = args.report or Path("reports") / f"{tour.name}-{args.stop}-{report.started_at[:19]}"
    paths = write(report, Path(str(folder).replace(":", "")), sign_report(tour, report))
    if args.json:
        print(json.dumps({**report.to_dict(), "files": {k: str(v) for k, v in paths.items()}},
                         indent=2))
    else:
        counts = report.counts()
        print(f"\n{'GO' if report.go else 'NO-GO'} — {counts['pass']} passed, {counts['warn']} "
              f"warnings, {counts['fail']} failed, {counts['skip']} skipped in "
              f"{report.duration_s:.0f} s\nreport: {paths['markdown']}")
    return 0 if report.go else 1


def _selected(check_id: str, only: list[str] | None, skip: list[str] | None) -> bool:
    def matches(patterns: list[str]) -> bool:
        return any(check_id == p or check_id.startswith(p.rstrip("*")) for p in patterns)

    return (not only or matches(only)) and not (skip and matches(skip))


def cmd_list(args: argparse.Namespace) -> int:
    for check in ALL_CHECKS:
        scope = "per kit" if check.per_kit else "tour"
        print(f"{check.id:<22} {scope:<8} {'drill ' if check.exclusive else ''}{check.title}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "preflight", help="prove the whole path for a stop: GO / NO-GO with evidence",
        description=cmd_preflight.__doc__,
        epilog="Checks run in parallel where harmless; drills (link cuts, origin stops) run one at "
               "a time at the end. The report (JSON, Markdown, signature) is written to --report.")
    parser.add_argument("file", type=Path, nargs="?", help="the tour file")
    parser.add_argument("--stop", help="the stop to check (its kits and the tour's cloud)")
    parser.add_argument("--report", type=Path, help="folder for the report (default reports/…)")
    parser.add_argument("--only", type=lambda s: s.split(","), help="check ids to run (prefix*)")
    parser.add_argument("--skip", type=lambda s: s.split(","), help="check ids to leave out")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no per-check progress lines")
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    parser.set_defaults(func=lambda a: cmd_list(a) if a.list else _require(a))


def _require(args: argparse.Namespace) -> int:
    if not args.file or not args.stop:
        raise CouldNotRun("preflight needs a tour file and --stop (e.g. `nomadkit preflight "
                          "tours/demo.yaml --stop alfama`)")
    return cmd_preflight(args)
