"""The tour's Pulumi program under mocks: the properties that keep viewers, money and kits safe.

These run the real program (stacks/tour) with ``pulumi.runtime.set_mocks``; they check what
it asks AWS for. No AWS API validated the inputs: that is what ``pulumi up`` does.
"""

from __future__ import annotations

import json
from typing import Any

from nomadkit import ROOT
from nomadkit.cloud.plan import ACCOUNT_ID, Plan
from nomadkit.endpoints import CloudEndpoints

PREFIX = "night-shift-demo-test"


def policy(plan: Plan, name: str) -> dict[str, Any]:
    return json.loads(plan.named(name).inputs["policy"])


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return document["Statement"]


def test_live_origin_fails_over_to_the_slate_fast(plan: Plan) -> None:
    cdn = plan.named(f"{PREFIX}-cdn").inputs
    [group] = cdn["originGroups"]
    assert group["failoverCriteria"]["statusCodes"] == [500, 502, 503, 504]
    assert [m["originId"] for m in group["members"]] == ["live-relay", "fallback-slate"]
    origins = {o["originId"]: o for o in cdn["origins"]}
    for member in ("live-relay", "fallback-slate"):
        assert origins[member]["connectionAttempts"] == 1
        assert origins[member]["connectionTimeout"] == 1
    assert cdn["defaultCacheBehavior"]["targetOriginId"] == "live-or-slate"
    assert origins["fallback-slate"]["originPath"] == "/slate"


def test_playlists_have_short_ttls(plan: Plan) -> None:
    cdn = plan.named(f"{PREFIX}-cdn").inputs
    [m3u8] = [b for b in cdn["orderedCacheBehaviors"] if b["pathPattern"] == "*.m3u8"]
    playlists = plan.named(f"{PREFIX}-playlists")
    assert m3u8["cachePolicyId"] == playlists.id
    assert playlists.inputs["maxTtl"] <= 2 and playlists.inputs["defaultTtl"] <= 1
    assert m3u8["targetOriginId"] == "live-or-slate"


def test_s3_is_read_only_through_origin_access_control(plan: Plan) -> None:
    [oac] = plan.of_type("aws:cloudfront/originAccessControl:OriginAccessControl")
    assert oac.inputs["originAccessControlOriginType"] == "s3"
    assert oac.inputs["signingBehavior"] == "always"
    s3_origins = [o for o in plan.named(f"{PREFIX}-cdn").inputs["origins"]
                  if o["domainName"].endswith(".amazonaws.com") and "s3." in o["domainName"]]
    assert s3_origins and all("originAccessControlId" in o for o in s3_origins)
    [statement] = statements(policy(plan, f"{PREFIX}-assets-cdn-read"))
    assert statement["Principal"] == {"Service": ["cloudfront.amazonaws.com"]}
    assert statement["Action"] == ["s3:GetObject"]
    assert statement["Condition"]["StringEquals"]["AWS:SourceArn"][0].startswith(
        f"arn:aws:cloudfront::{ACCOUNT_ID}:distribution/")


def test_buckets_are_private_versioned_and_encrypted(plan: Plan) -> None:
    buckets = {b.inputs["bucket"] for b in plan.of_type("aws:s3/bucket:Bucket")}
    assert buckets == {f"{PREFIX}-assets-{ACCOUNT_ID}", f"{PREFIX}-recordings-{ACCOUNT_ID}"}
    blocks = plan.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert {b.inputs["bucket"] for b in blocks} == buckets
    for block in blocks:
        assert all(block.inputs[k] for k in ("blockPublicAcls", "blockPublicPolicy",
                                             "ignorePublicAcls", "restrictPublicBuckets"))
    versioning = plan.of_type("aws:s3/bucketVersioning:BucketVersioning")
    assert {v.inputs["versioningConfiguration"]["status"] for v in versioning} == {"Enabled"}
    assert len(plan.of_type("aws:s3/bucketServerSideEncryptionConfiguration:"
                            "BucketServerSideEncryptionConfiguration")) == 2


def test_recordings_move_to_cheaper_storage_and_stalled_uploads_end(plan: Plan) -> None:
    [lifecycle] = plan.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    assert lifecycle.inputs["bucket"] == f"{PREFIX}-recordings-{ACCOUNT_ID}"
    rules = {r["id"]: r for r in lifecycle.inputs["rules"]}
    classes = [t["storageClass"] for t in rules["recordings-to-cheaper-storage"]["transitions"]]
    assert classes == ["STANDARD_IA", "GLACIER_IR"]
    assert rules["abort-stalled-uploads"]["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7


def test_slate_is_uploaded_for_every_stream(plan: Plan) -> None:
    keys = {o.inputs["key"] for o in plan.of_type("aws:s3/bucketObjectv2:BucketObjectv2")}
    for stream in ("stage", "room"):
        assert f"slate/live/{stream}/index.m3u8" in keys
        assert f"slate/live/{stream}/slate000.ts" in keys


def test_webhook_role_touches_only_its_own_resources(plan: Plan) -> None:
    document = policy(plan, f"{PREFIX}-webhook-policy")
    region_account = f"eu-west-1:{ACCOUNT_ID}"
    allowed_prefixes = (
        f"arn:aws:dynamodb:{region_account}:table/{PREFIX}-ledger",
        f"arn:aws:dynamodb:{region_account}:table/{PREFIX}-members",
        f"arn:aws:secretsmanager:{region_account}:secret:{PREFIX}-webhook-signing-",
        f"arn:aws:secretsmanager:{region_account}:secret:{PREFIX}-ticket-key-",
        f"arn:aws:sqs:{region_account}:{PREFIX}-crm-sync",
        f"arn:aws:logs:{region_account}:log-group:/aws/lambda/{PREFIX}-webhook:*",
    )
    for statement in statements(document):
        assert statement["Effect"] == "Allow"
        assert all("*" not in action for action in statement["Action"])
        for resource in statement["Resource"]:
            assert resource.startswith(allowed_prefixes), resource
            assert resource.count("*") <= 1 and not resource.startswith("*")
    actions = {a for s in statements(document) for a in s["Action"]}
    assert actions == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                       "secretsmanager:GetSecretValue", "sqs:SendMessage",
                       "logs:CreateLogStream", "logs:PutLogEvents"}


def test_each_kit_uploads_only_to_its_own_prefix(plan: Plan) -> None:
    for kit in ("kit-a", "kit-b"):
        [statement] = statements(policy(plan, f"{PREFIX}-{kit}-upload"))
        assert statement["Resource"] == [f"arn:aws:s3:::{PREFIX}-recordings-{ACCOUNT_ID}/{kit}/*"]
        assert sorted(statement["Action"]) == [
            "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:PutObject"]


def test_function_url_is_public_and_authenticated_by_signature(plan: Plan) -> None:
    [url] = plan.of_type("aws:lambda/functionUrl:FunctionUrl")
    assert url.inputs["authorizationType"] == "NONE"
    permissions = {p.inputs["action"]: p.inputs for p in plan.of_type("aws:lambda/permission:Permission")}
    assert permissions["lambda:InvokeFunctionUrl"]["functionUrlAuthType"] == "NONE"
    assert permissions["lambda:InvokeFunction"]["invokedViaFunctionUrl"] is True
    function = plan.named(f"{PREFIX}-webhook").inputs
    assert function["handler"] == "nomadkit.webhook.handler.handler"
    for path in function["code"]["archive"].values():
        assert (ROOT / path["file"]).exists(), path  # mocks never open files: check ourselves


def test_secrets_never_appear_in_the_plan(plan: Plan) -> None:
    versions = plan.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    assert {v.inputs["secretString"] for v in versions} == {"[secret]"}
    assert "whsec_plan_placeholder" not in json.dumps(plan.to_json())


def test_outputs_are_cloud_endpoints(plan: Plan) -> None:
    endpoints = CloudEndpoints.model_validate(plan.outputs["endpoints"])
    assert endpoints.stack == "demo-test"
    assert endpoints.cdn_url.startswith("https://") and endpoints.cdn_url.endswith(".cloudfront.net")
    assert endpoints.webhook_url.endswith(".lambda-url.eu-west-1.on.aws/")
    assert endpoints.relay_srt_urls == {
        "room": "srt://ec2-203-0-113-10.eu-west-1.compute.amazonaws.com:9000",
        "stage": "srt://ec2-203-0-113-10.eu-west-1.compute.amazonaws.com:9001"}
    assert len(endpoints.ticket_public_key) == 43  # 32 bytes, base64url
    assert set(plan.outputs["kit_credentials"]) == {"kit-a", "kit-b"}


def test_components_parent_their_resources(plan: Plan) -> None:
    components = {r.name for r in plan.resources if r.type.startswith("nomadkit:cloud:")}
    assert components == {"storage", "cdn", "relay", "payments", "kit-kit-a", "kit-kit-b"}
    assert all(r.parent in components for r in plan.resources if r.custom)
