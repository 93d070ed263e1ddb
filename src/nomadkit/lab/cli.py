"""`nomadkit image …` and `nomadkit lab …`: the kit image and the QEMU lab from the command line."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path
from typing import Any

from nomadkit.errors import UserError
from nomadkit.lab.image import build_image
from nomadkit.lab.lab import Lab, kits_from_count, kits_from_tour
from nomadkit.lab.net import CLOUD_ADDRESS
from nomadkit.lab.progress import Progress
from nomadkit.lab.vm import ssh_command
from nomadkit.tour import load_tour

UNITS = {
    "delay": {"ms": 1.0, "s": 1000.0, "": 1.0},
    "rate": {"bit": 0.001, "kbit": 1.0, "mbit": 1000.0, "gbit": 1e6},
}


def parse_quantity(kind: str, text: str) -> float:
    """`80ms` -> 80 (ms), `2mbit` -> 2000 (kbit/s), `5%` -> 5: the units tc users know."""
    if kind == "loss":
        match = re.fullmatch(r"(\d+(?:\.\d+)?)%?", text.strip())
        if match and float(match[1]) <= 100:
            return float(match[1])
        raise UserError(f"--loss {text}: give a percentage from 0 to 100, e.g. 5%")
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([a-z]*)", text.strip().lower())
    if not match or match[2] not in UNITS[kind]:
        units = ", ".join(u for u in UNITS[kind] if u)
        raise UserError(f"--{kind} {text}: give a number with a unit ({units}), "
                        f"e.g. {'80ms' if kind == 'delay' else '2mbit'}")
    return float(match[1]) * UNITS[kind][match[2]]


def cmd_image_build(args: argparse.Namespace) -> int:
    """Build the kit image (debootstrap + pyinfra), or reuse the cached one with the same inputs."""
    image = build_image(Progress(quiet=args.json), force=args.force)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "--sparse=always", str(image.disk), str(args.out)], check=True)
    result = {"image": str(image.dir), "disk": str(args.out or image.disk),
              "kernel": str(image.kernel), "initrd": str(image.initrd), "key": image.key}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"kit image {image.key}\n  disk    {result['disk']}  (GPT, UEFI: write it to the "
              f"kit's disk)\n  kernel  {image.kernel}\n  initrd  {image.initrd}  (lab, virtio only)")
    return 0


def cmd_lab_up(args: argparse.Namespace) -> int:
    """Boot one VM per kit with wwan0/wwan1/sat0 uplinks into the lab's internet."""
    kits = kits_from_tour(load_tour(args.tour)) if args.tour else kits_from_count(args.kits)
    status = Lab(Progress(quiet=args.json)).up(kits, memory_mb=args.memory)
    print_status(status, args.json)
    return 0


def cmd_lab_down(args: argparse.Namespace) -> int:
    """Stop every lab VM and process, remove the lab network; leaves nothing running."""
    Lab().down()
    return 0


def cmd_lab_status(args: argparse.Namespace) -> int:
    """Show the running lab: accelerator, kits, SSH ports, memory, links, impairments."""
    print_status(Lab().status(), args.json)
    return 0


def cmd_lab_link(args: argparse.Namespace) -> int:
    """Cut (down) or restore (up) a kit uplink's carrier, as pulling a modem's cable would."""
    Lab().link(args.kit, args.uplink, args.state == "up")
    print(f"{args.kit} {args.uplink}: link {args.state}")
    return 0


def cmd_lab_impair(args: argparse.Namespace) -> int:
    """Add delay, loss and a rate limit to a kit uplink, on the lab side (outside the kit)."""
    values = {"delay_ms": 0.0, "loss_pct": 0.0, "rate_kbit": 0.0}
    if not args.clear:
        if not (args.delay or args.loss or args.rate):
            raise UserError("lab impair: give --delay, --loss and/or --rate (or --clear)")
        values = {"delay_ms": parse_quantity("delay", args.delay or "0ms"),
                  "loss_pct": parse_quantity("loss", args.loss or "0"),
                  "rate_kbit": parse_quantity("rate", args.rate or "0kbit")}
    reply = Lab().impair(args.kit, args.uplink, **values)
    if args.json:
        print(json.dumps(reply["impairment"], indent=2))
    else:
        print(f"{args.kit} {args.uplink}: {describe_impairment(reply['impairment'])}")
    return 0


def cmd_lab_power(args: argparse.Namespace) -> int:
    """Cut a kit's power (its VM is killed mid-whatever, as a pulled plug would) or turn it
    back on (a cold boot from its own disk, as it was left)."""
    lab = Lab()
    if args.state == "cut":
        lab.power_cut(args.kit)
    else:
        lab.power_on(args.kit)
    return 0


def cmd_lab_ssh(args: argparse.Namespace) -> int:
    """Open a root shell on a kit (or run a command there) over the lab's SSH forward."""
    lab = Lab()
    kit = lab.kit(args.kit)
    command = " ".join(args.command) if args.command else None
    return subprocess.run(ssh_command(kit["ssh_port"], lab.key, command)).returncode


def describe_impairment(imp: dict[str, float]) -> str:
    parts = [f"delay {imp['delay_ms']:g} ms each way" if imp.get("delay_ms") else "",
             f"loss {imp['loss_pct']:g}%" if imp.get("loss_pct") else "",
             f"rate {imp['rate_kbit']:g} kbit/s" if imp.get("rate_kbit") else ""]
    return ", ".join(p for p in parts if p) or "clear"


def print_status(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(status, indent=2))
        return
    print(f"lab: {len(status['kits'])} kit(s), {status['accel_reason']}")
    print(f"cloud address (any uplink): {status['cloud_address']}; "
          f"inventory: {status['inventory']}")
    for name, kit in status["kits"].items():
        state = "running" if kit["running"] else "STOPPED"
        print(f"  {name:<10} {state}, ssh root@127.0.0.1 -p {kit['ssh_port']}, "
              f"{kit['rss_mb']:.0f} MiB, up in {kit['boot_s']} s")
        for up, u in kit["uplinks"].items():
            print(f"    {up:<6} link {u['link']:<4} {u['address']} via {u['gateway']}  "
                  f"{describe_impairment(u['impairment'])}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `image` and `lab` to the nomadkit command."""
    image = subparsers.add_parser("image", help="build the kit image",
                                  description="The kit's disk image (Debian bookworm).")
    isub = image.add_subparsers(dest="image_command", metavar="COMMAND", required=True)
    build = isub.add_parser("build", help="build (or reuse) the kit image",
                            description=cmd_image_build.__doc__,
                            epilog="Cached under ~/.cache/nomadkit/images/ by a hash of its "
                                   "inputs: a second build with the same inputs is instant.")
    build.add_argument("--out", type=Path, help="also copy the UEFI disk image here")
    build.add_argument("--force", action="store_true", help="rebuild even if cached")
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.set_defaults(func=cmd_image_build)

    lab = subparsers.add_parser(
        "lab", help="QEMU lab kits on this machine",
        description="Lab kits are real Debian VMs; their uplinks wwan0, wwan1, sat0 reach the "
                    f"cloud ({CLOUD_ADDRESS} = this machine's loopback) through a network "
                    "namespace where links are cut and impaired.")
    lsub = lab.add_subparsers(dest="lab_command", metavar="COMMAND", required=True)
    up = lsub.add_parser("up", help="boot the lab kits", description=cmd_lab_up.__doc__,
                         epilog="Then: pyinfra ~/.cache/nomadkit/lab/run/inventory.py "
                                "deploys/kit.py")
    which = up.add_mutually_exclusive_group()
    which.add_argument("--kits", type=int, default=2, help="how many kits (default 2)")
    which.add_argument("--tour", type=Path, help="one kit per kit of this tour file")
    up.add_argument("--memory", type=int, default=1024, help="MiB per kit (default 1024)")
    up.add_argument("--json", action="store_true", help="print the status as JSON")
    up.set_defaults(func=cmd_lab_up)

    down = lsub.add_parser("down", help="stop the lab, leave nothing behind",
                           description=cmd_lab_down.__doc__)
    down.set_defaults(func=cmd_lab_down)

    status = lsub.add_parser("status", help="show the running lab",
                             description=cmd_lab_status.__doc__)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=cmd_lab_status)

    link = lsub.add_parser("link", help="cut or restore an uplink",
                           description=cmd_lab_link.__doc__)
    link.add_argument("kit")
    link.add_argument("uplink", help="wwan0, wwan1, sat0, …")
    link.add_argument("state", choices=("down", "up"))
    link.set_defaults(func=cmd_lab_link)

    impair = lsub.add_parser(
        "impair", help="delay, loss, rate limit on an uplink", description=cmd_lab_impair.__doc__,
        epilog="Each applies to both directions: --delay 80ms adds 80 ms each way (a ping "
               "rises by 160 ms). Setting an impairment replaces the previous one.")
    impair.add_argument("kit")
    impair.add_argument("uplink")
    impair.add_argument("--delay", help="added one-way delay, e.g. 80ms")
    impair.add_argument("--loss", help="random loss, e.g. 5%%")
    impair.add_argument("--rate", help="rate limit, e.g. 2mbit or 500kbit")
    impair.add_argument("--clear", action="store_true", help="remove the impairment")
    impair.add_argument("--json", action="store_true", help="print the result as JSON")
    impair.set_defaults(func=cmd_lab_impair)

    power = lsub.add_parser("power", help="cut a kit's power or turn it on",
                            description=cmd_lab_power.__doc__)
    power.add_argument("kit")
    power.add_argument("state", choices=("cut", "on"))
    power.set_defaults(func=cmd_lab_power)

    ssh = lsub.add_parser("ssh", help="shell on a kit", description=cmd_lab_ssh.__doc__)
    ssh.add_argument("kit")
    ssh.add_argument("command", nargs=argparse.REMAINDER, help="command to run (default: shell)")
    ssh.set_defaults(func=cmd_lab_ssh)

