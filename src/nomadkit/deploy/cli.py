"""`nomadkit render` and `nomadkit deploy`: the kit's files, checked by real tools, and the deploy."""

from __future__ import annotations

import argparse
import inspect
import json
import tempfile
from pathlib import Path

from nomadkit.deploy import cloud_endpoints, drift, find_kit, rolling, write_tree
from nomadkit.deploy.checks import run_checks
from nomadkit.deploy.runner import as_json, deploy, summary
from nomadkit.errors import UserError
from nomadkit.lab.progress import Progress
from nomadkit.tour import load_tour


def cmd_render(args: argparse.Namespace) -> int:
    """Write every file the deploy would put on one kit (secrets redacted); --check runs the
    validators the kit itself would (nginx -t, systemd-analyze verify, nft -c, chronyd -p, sshd -t,
    visudo -c, NetworkManager's keyfile parser, NUT's upsd/upsmon/upsc)."""
    tour = load_tour(args.file)
    kit = find_kit(tour, args.kit)
    endpoints = cloud_endpoints(tour, args.endpoints)
    progress = Progress(quiet=args.json)
    with tempfile.TemporaryDirectory(prefix="nomadkit-render-") as scratch:
        out = args.out or Path(scratch)
        written = write_tree(tour, kit, endpoints, out)
        progress(f"{kit.name}: {len(written)} files written under {out}"
                 + ("" if endpoints else " (no cloud endpoints: cloud-dependent parts left out)"))
        results = run_checks(out, kit, progress) if args.check else []
    failed = [r for r in results if r.status != "pass"]
    if args.json:
        print(json.dumps({"kit": kit.name, "out": str(args.out) if args.out else None, "files": written,
                          "checks": [r.as_dict() for r in results], "ok": not failed}, indent=2))
    else:
        if not args.check:
            print("\n".join(written))
        for r in results:
            print(f"{r.status.upper():<5} {r.check:<36} {', '.join(r.files)[:80]}")
            if r.detail:
                print("      " + r.detail.replace("\n", "\n      "))
        if results:
            print(f"{len(results) - len(failed)}/{len(results)} checks passed")
    return 1 if failed else 0


def cmd_deploy(args: argparse.Namespace) -> int:
    """Configure the tour's kits with pyinfra (the same deploy as `pyinfra inventories/tour.py
    deploys/kit.py`), showing progress and a summary of what changed on each kit.

    With --rolling, the first kit goes alone (the canary), then the others --batch at a time; the
    first batch with a kit that failed, could not be reached or refused (doors open) halts the
    roll, and the report names the kits deployed, failed and left untouched.

    Example: nomadkit deploy tours/summer.yaml --rolling --batch 3"""
    if args.batch is not None and not args.rolling:
        raise UserError("--batch goes with --rolling (a plain deploy does every kit at once)")
    if args.rolling:
        if args.dry:
            raise UserError("--rolling changes kits batch by batch; to see what would change, use "
                            "`nomadkit drift` (or --dry without --rolling)")
        rollout = rolling.rolling_deploy(args.file, stop=args.stop, kit=args.kit, batch=args.batch,
                                         force=args.force, connect_file=args.connect,
                                         endpoints_file=args.endpoints, progress=Progress(quiet=args.json))
        print(rolling.as_json(rollout) if args.json else rolling.report(rollout))
        return 0 if rollout.ok else 1
    results = deploy(args.file, stop=args.stop, kit=args.kit, dry=args.dry, force=args.force,
                     connect_file=args.connect, endpoints_file=args.endpoints,
                     progress=Progress(quiet=args.json))
    print(as_json(results, args.dry) if args.json else summary(results, args.dry))
    return 0 if all(r.status == "ok" for r in results) else 1


def cmd_drift(args: argparse.Namespace) -> int:
    """Show, per kit, what `nomadkit deploy` would change: files edited by hand (named by their
    path on the kit), services stopped, packages removed. Nothing on a kit is changed, so it also
    runs while a kit's doors are open.

    Each kit is in-sync, drifted (with its changes listed), unreachable or failed (the check
    could not finish). Exit 0 = every kit in sync, 1 = drift found, 2 = some kit could not be
    checked (2 wins over 1: an unchecked kit may have drifted too). `nomadkit deploy` with the
    same --stop/--kit puts drifted kits back as the tour says.

    Example: nomadkit drift tours/summer.yaml --stop lisbon --json"""
    try:
        results = deploy(args.file, stop=args.stop, kit=args.kit, dry=True, force=True,
                         connect_file=args.connect, endpoints_file=args.endpoints,
                         progress=Progress(quiet=args.json))
    except UserError as exc:
        raise drift.CouldNotCheck(str(exc)) from None
    drifts = [drift.drift_of(r) for r in results]
    print(drift.as_json(drifts) if args.json else drift.report(drifts))
    return drift.exit_code(drifts)


def positive(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def kit_arguments(parser: argparse.ArgumentParser, json_help: str) -> None:
    """The arguments deploy and drift share: which tour and kits, how to reach them, --json."""
    parser.add_argument("file", type=Path, help="the tour file")
    parser.add_argument("--stop", help="only the kits of this stop")
    parser.add_argument("--kit", help="only this kit")
    parser.add_argument("--connect", type=Path, help="JSON of per-kit SSH overrides "
                        "(default: $NOMADKIT_CONNECT; the lab writes one)")
    parser.add_argument("--endpoints", type=Path, help="cloud endpoints JSON (default: the local cloud's)")
    parser.add_argument("--json", action="store_true", help=json_help)


def register(sub: argparse._SubParsersAction) -> None:
    render = sub.add_parser("render", help="write (and --check) every file a kit gets",
                            description=cmd_render.__doc__)
    render.add_argument("file", type=Path, help="the tour file")
    render.add_argument("--kit", required=True, help="which kit (e.g. kit-a)")
    render.add_argument("--out", type=Path, help="folder to write the kit's files into "
                        "(default: a temporary one, removed after --check)")
    render.add_argument("--check", action="store_true", help="run the real validators on the files")
    render.add_argument("--endpoints", type=Path, help="cloud endpoints JSON (default: the local "
                        "cloud's if it is up; without any, cloud-dependent parts are left out)")
    render.add_argument("--json", action="store_true", help="print files and check results as JSON")
    render.set_defaults(func=cmd_render)

    dep = sub.add_parser("deploy", help="configure the tour's kits (pyinfra)",
                         description=inspect.cleandoc(cmd_deploy.__doc__ or ""),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    kit_arguments(dep, "print the per-kit results (with --rolling: the batches) as JSON")
    dep.add_argument("--dry", action="store_true", help="show what would change (drift), change nothing")
    dep.add_argument("--force", action="store_true", help="deploy even while a kit's doors are open")
    dep.add_argument("--rolling", action="store_true",
                     help="canary kit first, then batches; halt at the first batch with a bad kit")
    dep.add_argument("--batch", type=positive, metavar="N",
                     help="kits per batch after the canary (default: the tour's rollout.batch, 2)")
    dep.set_defaults(func=cmd_deploy)

    dri = sub.add_parser("drift", help="show what a deploy would change on each kit (changes nothing)",
                         description=inspect.cleandoc(cmd_drift.__doc__ or ""),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    kit_arguments(dri, "print each kit's status, changes and changed files as JSON")
    dri.set_defaults(func=cmd_drift)
