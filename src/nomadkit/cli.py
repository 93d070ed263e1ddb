"""The `nomadkit` command.

Each area (lab, cloud, deploy, preflight, …) adds its subcommands from its own module's
`register(subparsers)`; this file only wires them together and turns expected failures
(`UserError`) into one clear message and an exit code, never a traceback (unless --debug).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from nomadkit import __version__
from nomadkit.errors import UserError
from nomadkit.tour import Tour, load_tour

# Modules that each add subcommands with `register(subparsers)`.
AREAS: tuple[str, ...] = (
    "nomadkit.cloud.cli", "nomadkit.lab.cli", "nomadkit.deploy.cli", "nomadkit.status.cli",
    "nomadkit.preflight.cli", "nomadkit.up", "nomadkit.fleet.cli",
)


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a tour file and summarise it on one screen."""
    tour = load_tour(args.file)
    if args.json:
        print(json.dumps(summary(tour), indent=2))
    else:
        print(describe(tour, args.file))
    return 0


def summary(tour: Tour) -> dict[str, object]:
    """The figures a tour manager checks first."""
    return {
        "tour": tour.name,
        "stops": [{"name": s.name, "city": s.city, "date": s.date.isoformat(),
                   "doors_open": s.doors_open.strftime("%H:%M"), "kits": s.kits} for s in tour.stops],
        "kits": [{"name": k.name, "uplinks": [u.name for u in k.uplinks],
                  "streams": [st.name for st in k.streams], "cache_assets": len(k.cache)}
                 for k in tour.kits],
        "commerce": {"currency": tour.commerce.currency,
                     "tiers": [t.name for t in tour.commerce.tiers],
                     "merch_items": len(tour.commerce.merch)},
    }


def describe(tour: Tour, file: str) -> str:
    """Human one-screen summary of a valid tour."""
    lines = [f"{file}: tour '{tour.name}' is valid", "", f"stops ({len(tour.stops)}):"]
    lines += [f"  {s.date}  {s.doors_open:%H:%M}  {s.name:<16} {s.venue}, {s.city}  "
              f"cap {s.capacity}  kits {', '.join(s.kits)}" for s in tour.stops]
    lines.append(f"kits ({len(tour.kits)}):")
    for kit in tour.kits:
        uplinks = " > ".join(f"{u.name}({u.kind})" for u in sorted(kit.uplinks, key=lambda u: u.priority))
        streams = ", ".join(f"{s.name} {s.resolution}@{s.fps} {s.bitrates_kbps[0]}k" for s in kit.streams)
        lines.append(f"  {kit.name:<8} uplinks {uplinks}")
        lines.append(f"  {'':<8} streams {streams or 'none'}; cache {len(kit.cache)} assets")
    c = tour.commerce
    tiers = ", ".join(f"{t.name} {t.price:.2f} {c.currency} x{t.capacity}"
                      + (" (members)" if t.members_only else "") for t in c.tiers)
    lines += [f"commerce: {tiers}; {len(c.merch)} merch items; "
              f"members early access {c.members_early_access_hours} h",
              f"consent: capture {tour.consent.default_capture}, "
              f"blur unconsented {'on' if tour.consent.blur_unconsented else 'off'}"]
    return "\n".join(lines)


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the tour file's JSON Schema (point your editor's YAML plugin at it)."""
    print(json.dumps(Tour.model_json_schema(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nomadkit",
        description="Tour infrastructure as code: one tour file -> the tour's cloud, "
                    "configured nomad kits, and a GO / NO-GO preflight.",
        epilog="Start with `nomadkit validate tours/demo.yaml`; `make demo` brings the demo "
               "tour up on this machine.",
    )
    parser.add_argument("--version", action="version", version=f"nomadkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    validate = sub.add_parser("validate", help="check a tour file and summarise it",
                              description=cmd_validate.__doc__)
    validate.add_argument("file", type=Path, help="the tour file (YAML)")
    validate.add_argument("--json", action="store_true", help="print the summary as JSON")
    validate.set_defaults(func=cmd_validate)

    schema = sub.add_parser("schema", help="print the tour file's JSON Schema",
                            description=cmd_schema.__doc__)
    schema.set_defaults(func=cmd_schema)

    for area in AREAS:
        importlib.import_module(area).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        if args.debug:
            raise
        print(f"nomadkit: {exc}" if "\n" not in str(exc) else str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nomadkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
