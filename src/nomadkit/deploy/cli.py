"""`nomadkit render` and `nomadkit deploy`: the kit's files, checked by real tools, and the deploy."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from nomadkit.deploy import cloud_endpoints, find_kit, write_tree
from nomadkit.deploy.checks import run_checks
from nomadkit.deploy.runner import as_json, deploy, summary
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
    deploys/kit.py`), showing progress and a summary of what changed on each kit."""
    results = deploy(args.file, stop=args.stop, kit=args.kit, dry=args.dry, force=args.force,
                     connect_file=args.connect, endpoints_file=args.endpoints,
                     progress=Progress(quiet=args.json))
    print(as_json(results, args.dry) if args.json else summary(results, args.dry))
    return 0 if all(r.status == "ok" for r in results) else 1


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
                         description=cmd_deploy.__doc__)
    dep.add_argument("file", type=Path, help="the tour file")
    dep.add_argument("--stop", help="only the kits of this stop")
    dep.add_argument("--kit", help="only this kit")
    dep.add_argument("--dry", action="store_true", help="show what would change (drift), change nothing")
    dep.add_argument("--force", action="store_true", help="deploy even while a kit's doors are open")
    dep.add_argument("--connect", type=Path, help="JSON of per-kit SSH overrides "
                     "(default: $NOMADKIT_CONNECT; the lab writes one)")
    dep.add_argument("--endpoints", type=Path, help="cloud endpoints JSON (default: the local cloud's)")
    dep.add_argument("--json", action="store_true", help="print the per-kit results as JSON")
    dep.set_defaults(func=cmd_deploy)
