"""`nomadkit cloud`: the tour's cloud — its plan, the local cloud, ticket keys."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nomadkit.cloud import local
from nomadkit.cloud.plan import Plan, capture
from nomadkit.lab.progress import Progress
from nomadkit.tickets import generate_ticket_key
from nomadkit.tour import load_tour

KEY_INPUTS = ("bucket", "name", "key", "hashKey", "authorizationType", "runtime", "handler",
              "instanceType", "action", "originAccessControlOriginType")


def describe_plan(plan: Plan) -> str:
    lines = [f"stack {plan.stack}: {len(plan.resources)} resources "
             "(captured under Pulumi mocks — not a provider-validated preview; "
             "`pulumi preview` in stacks/tour is)"]
    for resource in plan.resources:
        keys = ", ".join(f"{k}={resource.inputs[k]}" for k in KEY_INPUTS
                         if isinstance(resource.inputs.get(k), str | int) and k in resource.inputs)
        parent = f" [{resource.parent}]" if resource.parent and resource.custom else ""
        lines.append(f"  {resource.type:<62} {resource.name}{parent}" + (f"  {keys}" if keys else ""))
    [cdn] = plan.of_type("aws:cloudfront/distribution:Distribution")
    [group] = cdn.inputs["originGroups"]
    origins = {o["originId"]: o for o in cdn.inputs["origins"]}
    first = origins[group["members"][0]["originId"]]
    lines.append(
        f"CDN failover: {' -> '.join(m['originId'] for m in group['members'])} on "
        f"{group['failoverCriteria']['statusCodes']}, {first['connectionAttempts']} attempt, "
        f"{first['connectionTimeout']} s connection timeout")
    lines.append("outputs (endpoints): " + json.dumps(plan.outputs["endpoints"], indent=2))
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> int:
    """Run the tour's Pulumi program (stacks/tour) under mocks and list every resource it would
    create, with its key inputs. Nothing is created anywhere."""
    tour = load_tour(args.file)
    plan = capture(args.file, args.stack, tour.cloud.region)
    print(json.dumps(plan.to_json(), indent=2) if args.json else describe_plan(plan))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Realize the tour's plan on this machine: moto (S3, DynamoDB, Secrets Manager, SQS, IAM),
    the relay (SRT -> HLS), the payment webhook and an nginx CDN edge with slate failover.
    Writes the CloudEndpoints the kits use."""
    if not args.local:
        print("nomadkit: the real cloud is deployed with the Pulumi CLI: see docs/cloud.md "
              "(cd stacks/tour && pulumi up)", file=sys.stderr)
        return 2
    tour = load_tour(args.file)
    progress = Progress(quiet=args.json)
    endpoints = local.up(tour, args.file, args.host, lambda name, msg: progress(f"{name:<9} {msg}"))
    if args.json:
        print(endpoints.model_dump_json(indent=2))
    else:
        print(f"local cloud of '{tour.name}' is up: CDN {endpoints.cdn_url}, "
              f"webhook {endpoints.webhook_url}; `nomadkit cloud down {args.file}` stops it")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Stop everything `nomadkit cloud up` started for this tour and remove its state."""
    tour = load_tour(args.file)
    progress = Progress(quiet=args.json)
    stopped = local.down(tour, args.host, lambda name, msg: progress(f"{name:<9} {msg}"))
    if args.json:
        print(json.dumps({"tour": tour.name, "stopped": stopped}))
    else:
        print(f"local cloud of '{tour.name}': " + (f"stopped {', '.join(stopped)}" if stopped
                                                   else "nothing was running"))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Which local cloud components run (exit 1 if any is down)."""
    tour = load_tour(args.file)
    pids = local.status(tour, args.host)
    if args.json:
        print(json.dumps({"tour": tour.name, "components": pids}))
    else:
        for name, pid in pids.items():
            print(f"{name:<13} {f'running (pid {pid})' if pid else 'stopped'}")
    return 0 if all(pids.values()) else 1


def cmd_ticket_key(args: argparse.Namespace) -> int:
    """Print a new Ed25519 ticket-signing key, for `pulumi config set --secret nomadkit:ticketKey`.
    Pipe it straight in; never paste it into a file in the repo."""
    if sys.stdout.isatty() and not args.yes:
        print("nomadkit: refusing to print a secret to a terminal — pipe it: `nomadkit cloud "
              "ticket-key | pulumi config set --secret nomadkit:ticketKey` (or pass --yes)",
              file=sys.stderr)
        return 2
    print(generate_ticket_key())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    cloud = sub.add_parser("cloud", help="the tour's cloud: plan, local cloud up/down",
                           description="The tour's cloud side. `plan` shows what the Pulumi program "
                           "creates; `up`/`down` run the same plan on this machine.")
    actions = cloud.add_subparsers(dest="cloud_command", metavar="ACTION", required=True)

    plan = actions.add_parser("plan", help="list every resource the Pulumi program creates",
                              description=cmd_plan.__doc__)
    plan.add_argument("file", type=Path, help="the tour file")
    plan.add_argument("--stack", default="staging", help="stack name the names derive from "
                      "(default: staging)")
    plan.add_argument("--json", action="store_true", help="the plan as JSON")
    plan.set_defaults(func=cmd_plan)

    for name, func, help_ in (("up", cmd_up, "bring the tour's local cloud up"),
                              ("down", cmd_down, "stop the tour's local cloud"),
                              ("status", cmd_status, "show the local cloud's components")):
        action = actions.add_parser(name, help=help_, description=func.__doc__)
        action.add_argument("file", type=Path, help="the tour file")
        action.add_argument("--host", help="address the local cloud binds to and advertises "
                            "(default: the tour's cloud.local_host, 127.0.0.1)")
        action.add_argument("--json", action="store_true", help="machine-readable output")
        action.set_defaults(func=func)
        if name == "up":
            action.add_argument("--local", action=argparse.BooleanOptionalAction, default=True,
                                help="realize on this machine (the default; the real cloud is "
                                "`pulumi up`, see docs/cloud.md)")

    key = actions.add_parser("ticket-key", help="print a new ticket-signing key (pipe it)",
                             description=cmd_ticket_key.__doc__)
    key.add_argument("--yes", action="store_true", help="print even to a terminal")
    key.set_defaults(func=cmd_ticket_key)
