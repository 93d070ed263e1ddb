"""`nomadkit ansible …` and `nomadkit bundle …`: fleet commands over one tour file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from nomadkit.fleet import ansible
from nomadkit.fleet.hosts import load_fleet


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


def register(sub: argparse._SubParsersAction) -> None:
    """Add `ansible` (inventory, run) to the `nomadkit` command."""
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
