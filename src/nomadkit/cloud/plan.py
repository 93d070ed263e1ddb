"""Capture the tour's Pulumi program as a plan: every resource it registers, under mocks.

The Pulumi CLI cannot run here, so the program (``stacks/tour``) runs the documented test
way, under ``pulumi.runtime.set_mocks``. A ``MockMonitor`` subclass records each resource's
type, name, parent and inputs; ``TourMocks`` answers invokes and fills in the computed
attributes AWS would (ARNs, domain names, URLs) so the program's outputs are realistic.
This is NOT a provider-validated preview: no AWS API checked these inputs. The local
cloud realizes this same plan on this machine.
"""

from __future__ import annotations

import hashlib
import json
import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks

from nomadkit import ROOT
from nomadkit.tickets import generate_ticket_key

PROJECT = "nomadkit-tour"  # must equal stacks/tour/Pulumi.yaml's name, or config is ignored
PROJECT_CONFIG = "nomadkit"  # the config namespace the program reads
PROGRAM_DIR = ROOT / "stacks" / "tour"
ACCOUNT_ID = "123456789012"  # the mocks' pretend AWS account


@dataclass
class PlannedResource:
    """One resource the program registers: what the plan prints and the local cloud builds."""

    type: str
    name: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    id: str = ""
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """Everything a stack would hold, plus its outputs, for one tour and stack name."""

    stack: str
    tour_file: str
    resources: list[PlannedResource]
    outputs: dict[str, Any]

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> PlannedResource:
        return next(r for r in self.resources if r.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "tour_file": self.tour_file,
            "note": "captured under pulumi mocks; not a provider-validated preview",
            "resources": [
                {"type": r.type, "name": r.name, "parent": r.parent, "inputs": r.inputs}
                for r in self.resources
            ],
            "outputs": self.outputs,
        }


def _plain(value: Any) -> Any:
    """Inputs as JSON: assets become their path, secrets are never shown."""
    if isinstance(value, dict):
        if value.get(pulumi.runtime.rpc._special_sig_key) == pulumi.runtime.rpc._special_secret_sig:
            return "[secret]"
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, pulumi.FileAsset | pulumi.FileArchive):
        return {"file": str(value.path)}
    if isinstance(value, pulumi.AssetArchive):
        return {"archive": {k: _plain(v) for k, v in value.assets.items()}}
    if isinstance(value, pulumi.StringAsset):
        return {"text": f"{len(value.text)} characters"}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _short_id(name: str, length: int = 13) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:length]


class TourMocks(pulumi_mocks.Mocks):
    """What AWS would answer, closely enough that outputs and policies look real."""

    def __init__(self, region: str):
        self.region = region

    def call(self, args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:
        token, inputs = args.token, args.args
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/plan",
                    "userId": "AIDAPLAN", "id": ACCOUNT_ID}
        if token == "aws:iam/getPolicyDocument:getPolicyDocument":
            document = policy_document(inputs.get("statements") or [])
            return {"json": document, "minifiedJson": document, "id": _short_id(document)}
        if token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-0debian12plan0000", "architecture": "x86_64",
                    "name": "debian-12-amd64-plan"}
        if token == "aws:ec2/getManagedPrefixList:getManagedPrefixList":
            return {"id": "pl-cloudfrontplan", "name": inputs.get("name")}
        raise NotImplementedError(f"the plan's mocks do not answer {token}: add it to TourMocks.call")

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        name = inputs.get("name") or inputs.get("bucket") or args.name
        region, account = self.region, ACCOUNT_ID
        computed: dict[str, dict[str, Any]] = {
            "aws:s3/bucket:Bucket": {
                "arn": f"arn:aws:s3:::{name}",
                "bucketDomainName": f"{name}.s3.amazonaws.com",
                "bucketRegionalDomainName": f"{name}.s3.{region}.amazonaws.com",
            },
            "aws:dynamodb/table:Table": {"arn": f"arn:aws:dynamodb:{region}:{account}:table/{name}"},
            "aws:sqs/queue:Queue": {
                "arn": f"arn:aws:sqs:{region}:{account}:{name}",
                "url": f"https://sqs.{region}.amazonaws.com/{account}/{name}",
            },
            "aws:secretsmanager/secret:Secret": {
                "arn": f"arn:aws:secretsmanager:{region}:{account}:secret:{name}-{_short_id(name, 6)}",
            },
            "aws:cloudwatch/logGroup:LogGroup": {
                "arn": f"arn:aws:logs:{region}:{account}:log-group:{name}",
            },
            "aws:iam/role:Role": {"arn": f"arn:aws:iam::{account}:role/{name}"},
            "aws:iam/user:User": {"arn": f"arn:aws:iam::{account}:user/nomadkit/kits/{name}"},
            "aws:iam/accessKey:AccessKey": {"secret": "plan-not-a-real-secret"},
            "aws:lambda/function:Function": {
                "arn": f"arn:aws:lambda:{region}:{account}:function:{name}",
            },
            "aws:lambda/layerVersion:LayerVersion": {
                "arn": f"arn:aws:lambda:{region}:{account}:layer:{inputs.get('layerName')}:1",
            },
            "aws:lambda/functionUrl:FunctionUrl": {
                "functionUrl": f"https://{_short_id(args.name, 32)}.lambda-url.{region}.on.aws/",
            },
            "aws:cloudfront/distribution:Distribution": {
                "arn": f"arn:aws:cloudfront::{account}:distribution/E{_short_id(args.name).upper()}",
                "domainName": f"d{_short_id(args.name)}.cloudfront.net",
            },
            "aws:ec2/eip:Eip": {
                "publicIp": "203.0.113.10",
                "publicDns": f"ec2-203-0-113-10.{region}.compute.amazonaws.com",
            },
        }
        state = {**inputs, "name": name, **computed.get(args.typ, {})}
        # AWS's ids: names for buckets, tables, roles, users, functions; URL or ARN for others.
        ids = {
            "aws:s3/bucket:Bucket": name, "aws:dynamodb/table:Table": name,
            "aws:iam/role:Role": name, "aws:iam/user:User": name,
            "aws:lambda/function:Function": name, "aws:sqs/queue:Queue": state.get("url"),
            "aws:secretsmanager/secret:Secret": state.get("arn"),
            "aws:cloudfront/distribution:Distribution": f"E{_short_id(args.name).upper()}",
            "aws:iam/accessKey:AccessKey": f"AKIAPLAN{_short_id(args.name).upper()}",
            "aws:ec2/instance:Instance": f"i-{_short_id(args.name, 17)}",
        }
        return ids.get(args.typ) or _short_id(args.name), state


def policy_document(statements: list[dict[str, Any]]) -> str:
    """The IAM JSON ``aws.iam.get_policy_document`` would return for these statements."""
    rendered = []
    for statement in statements:
        out: dict[str, Any] = {}
        if statement.get("sid"):
            out["Sid"] = statement["sid"]
        out["Effect"] = statement.get("effect", "Allow")
        for principal in statement.get("principals") or []:
            out.setdefault("Principal", {})[principal["type"]] = principal["identifiers"]
        out["Action"] = statement.get("actions") or []
        if statement.get("resources"):
            out["Resource"] = statement["resources"]
        for condition in statement.get("conditions") or []:
            out.setdefault("Condition", {}).setdefault(condition["test"], {})[
                condition["variable"]] = condition["values"]
        rendered.append(out)
    return json.dumps({"Version": "2012-10-17", "Statement": rendered}, indent=2)


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """A mock monitor that also keeps each resource's parent, which ``new_resource`` never sees."""

    def __init__(self, mocks: TourMocks):
        super().__init__(mocks)
        self.recorded: list[PlannedResource] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = pulumi.runtime.rpc.deserialize_properties(request.object)
            parent = request.parent.split("::")[-1] if request.parent else None
            state = self.resources[response.urn].state
            self.recorded.append(PlannedResource(
                request.type, request.name, parent, bool(request.custom), _plain(inputs),
                response.id, _plain(state)))
        return response


def capture(tour_file: Path, stack: str, region: str) -> Plan:
    """Run ``stacks/tour`` under mocks for ``tour_file`` as stack ``stack``; return its plan.

    Secrets get throwaway values (the plan never shows them). Run once per process: the
    Pulumi runtime's settings are global.
    """
    monitor = RecordingMonitor(TourMocks(region))
    pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=False,
                             monitor=monitor)
    pulumi.runtime.set_all_config(
        {
            f"{PROJECT_CONFIG}:tour": str(tour_file.resolve()),
            f"{PROJECT_CONFIG}:webhookSecret": "whsec_plan_placeholder",
            f"{PROJECT_CONFIG}:ticketKey": generate_ticket_key(),
        },
        secret_keys=[f"{PROJECT_CONFIG}:webhookSecret", f"{PROJECT_CONFIG}:ticketKey"],
    )
    if str(PROGRAM_DIR) not in sys.path:
        sys.path.insert(0, str(PROGRAM_DIR))
    exported: dict[str, Any] = {}

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        runpy.run_path(str(PROGRAM_DIR / "__main__.py"), run_name="__main__")
        outputs = pulumi.runtime.settings.get_root_resource().outputs
        return pulumi.Output.from_input(dict(outputs)).apply(exported.update)

    run()
    resources = sorted(monitor.recorded, key=lambda r: (r.type, r.name))
    for creds in exported.get("kit_credentials", {}).values():
        creds["secret_access_key"] = "[secret]"
    return Plan(stack, str(tour_file), resources, _plain(exported))
