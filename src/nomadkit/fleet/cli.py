"""`nomadkit ansible …` and `nomadkit bundle …`: fleet commands over one tour file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from nomadkit import secrets
from nomadkit.errors import UserError
from nomadkit.fleet import ansible, bundle
from nomadkit.fleet.hosts import load_fleet
from nomadkit.tickets import public_key_of
from nomadkit.tour import load_tour


def cmd_ansible_inventory(args: argparse.Namespace) -> int:
    """Print the tour as an Ansible inventory: every kit, one group per stop, no secrets.

    Save it and use it with Ansible directly: `nomadkit ansible inventory tours/demo.yaml > inv.yaml`,
    then `ansible -i inv.yaml alfama -m ping`.
    """
    inventory = ansible.inventory(load_fleet(args.file))
    if args.format == "json":
        print(json.dumps(inventory, indent=2))
    else:
        print(yaml.safe_dump(inventory, sort_keys=False), end="")
    return 0


def cmd_ansible_run(args: argparse.Namespace) -> int:
    """Run a venue's own playbook (switches, access points) against the tour's kits.

    The kits are reached exactly as pyinfra reaches them. With --stop, the play gets that stop's
    details as variables (nomadkit_stop, nomadkit_venue, nomadkit_city, nomadkit_date,
    nomadkit_doors_open, nomadkit_timezone, nomadkit_capacity). Exit code 0 when every kit ran the
    play without a failure, 1 otherwise.
    """
    fleet = load_fleet(args.file)
    say = (lambda line: print(line, file=sys.stderr)) if args.json else print
    result = ansible.run_playbook(args.playbook, fleet, args.stop, args.kit, say=say, timeout_s=args.timeout)
    print(json.dumps(result.as_dict(), indent=2) if args.json else ansible.describe(result))
    return 0 if result.success else 1


def cmd_bundle(args: argparse.Namespace) -> int:
    """Build a kit's signed deploy bundle (pull mode, for kits behind carrier NAT).

    The bundle holds the deploy code, the kit's host data and a manifest with the sha256 of every
    file and a version that only goes up, signed with the tour's deploy key. With --publish it is
    uploaded to the tour's asset bucket as bundles/<kit>/latest, where the kit's timer fetches it
    through the CDN.
    """
    fleet = load_fleet(args.file)
    key = bundle.signing_key(fleet.tour)
    fleet.host(args.kit)  # an unknown kit is named before anything is built
    published = None
    if args.publish:
        if fleet.endpoints is None:
            raise UserError(f"no cloud endpoints for tour {fleet.tour.name} — run `nomadkit cloud up` "
                            "(or set NOMADKIT_ENDPOINTS) before --publish")
        published = bundle.published_version(fleet.endpoints, args.kit)
    if args.version and published is not None and args.version <= published:
        raise UserError(f"--version {args.version} is not newer than the published {published}: "
                        "the kit would refuse it")
    built = bundle.build(fleet, args.kit, args.version or bundle.next_version(published), key)
    out = args.out or Path(f"{args.kit}-{built.version}.bundle.tar.gz")
    out.write_bytes(built.data)
    urls = bundle.publish(fleet.endpoints, built) if args.publish else []
    result = {"kit": args.kit, "version": built.version, "file": str(out), "bytes": len(built.data),
              "files": len(built.manifest["members"]), "published": urls}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.kit}: bundle version {built.version}, {result['files']} files, "
              f"{len(built.data) / 1024:.0f} KiB, signed -> {out}")
        for url in urls:
            print(f"  published {url}")
    return 0


def cmd_bundle_key(args: argparse.Namespace) -> int:
    """Make the tour's deploy key (if its secret does not exist yet) and print its public half.

    The private key stays in the secret the tour's pull.signing_key names; put the printed
    public_key into the tour file's pull section, then deploy once over SSH so the kits trust it.
    """
    tour = load_tour(args.file)
    ref = tour.pull.signing_key if tour.pull else args.ref
    if ref is None:
        raise UserError("the tour has no pull section — give --ref secret:NAME for the new key")
    try:
        public = public_key_of(secrets.resolve(ref))
        made = False
    except UserError:
        seed, public = bundle.new_deploy_key()
        secrets.store(ref, seed)
        made = True
    print(f"{'made' if made else 'existing'} deploy key {ref}; put this in {args.file}:\n"
          f"pull:\n  signing_key: \"{ref}\"\n  public_key: {public}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `ansible` (inventory, run), `bundle` and `bundle-key` to the `nomadkit` command."""
    group = sub.add_parser("ansible", help="Ansible interop: export the inventory, run venue playbooks",
                           description="Use the tour's kits from Ansible: the same hosts, groups and "
                                       "variables as the pyinfra inventory.")
    commands = group.add_subparsers(dest="ansible_command", metavar="SUBCOMMAND", required=True)

    inv = commands.add_parser("inventory", help="print the tour as an Ansible inventory",
                              description=cmd_ansible_inventory.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    inv.add_argument("file", type=Path, help="the tour file (YAML)")
    fmt = inv.add_mutually_exclusive_group()
    fmt.add_argument("--yaml", dest="format", action="store_const", const="yaml",
                     help="YAML inventory (the default)")
    fmt.add_argument("--json", dest="format", action="store_const", const="json",
                     help="the same inventory as JSON")
    inv.set_defaults(func=cmd_ansible_inventory, format="yaml")

    run = commands.add_parser("run", help="run a venue playbook against the kits (ansible-runner)",
                              description=cmd_ansible_run.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("file", type=Path, help="the tour file (YAML)")
    run.add_argument("playbook", type=Path, help="the playbook to run")
    run.add_argument("--stop", help="only the kits of this stop, with its details as variables")
    run.add_argument("--kit", help="only this kit")
    run.add_argument("--timeout", type=int, default=1800, metavar="S",
                     help="stop the whole run after S seconds (default 1800)")
    run.add_argument("--json", action="store_true",
                     help="print the per-kit result as JSON (progress goes to stderr)")
    run.set_defaults(func=cmd_ansible_run)

    bun = sub.add_parser("bundle", help="build (and --publish) a kit's signed pull-mode deploy bundle",
                         description=cmd_bundle.__doc__,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    bun.add_argument("file", type=Path, help="the tour file (YAML)")
    bun.add_argument("--kit", required=True, help="which kit the bundle is for")
    bun.add_argument("--out", type=Path, help="where to write it (default: KIT-VERSION.bundle.tar.gz)")
    bun.add_argument("--publish", action="store_true",
                     help="upload it to the tour's asset bucket as bundles/KIT/latest")
    bun.add_argument("--version", type=int, help="bundle version (default: now in epoch seconds, "
                                                 "above the published one)")
    bun.add_argument("--json", action="store_true", help="print the result as JSON")
    bun.set_defaults(func=cmd_bundle)

    key = sub.add_parser("bundle-key", help="make the tour's deploy key and print its public half",
                         description=cmd_bundle_key.__doc__,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    key.add_argument("file", type=Path, help="the tour file (YAML)")
    key.add_argument("--ref", help="secret:NAME for the key when the tour has no pull section yet")
    key.set_defaults(func=cmd_bundle_key)
