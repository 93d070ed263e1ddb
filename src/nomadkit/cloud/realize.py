"""Create the plan's AWS-API resources in a local AWS (moto): buckets, tables, queue, secrets.

Each planned resource type has one small function that makes the same thing through boto3,
reading the same inputs the Pulumi program gave. References between resources in the plan
use the mocks' ids and ARNs; those are translated to what moto hands back. Types the local
cloud realizes as processes (CloudFront -> nginx edge, Lambda -> local webhook server, EC2
-> local relay) are listed with where they went, never silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nomadkit.cloud.plan import Plan, PlannedResource
from nomadkit.webhook.config import WebhookConfig

SPECIAL_KEYS = {"id": "ID", "sseAlgorithm": "SSEAlgorithm", "kmsMasterKeyId": "KMSMasterKeyID"}

# Types realized by a local process instead of an AWS API, and where they went.
AS_PROCESSES = {
    "aws:cloudfront/": "nginx edge (origin-group failover rules)",
    "aws:lambda/": "local webhook server (same handler, Function URL events)",
    "aws:ec2/": "local relay (ffmpeg SRT listener -> HLS)",
    "aws:cloudwatch/": "log files in the local cloud's state dir",
    "aws:iam/role": "the local webhook server runs with moto's credentials",
    "nomadkit:cloud:": "component (groups its children)",
}


def pascal(value: Any) -> Any:
    """Pulumi's camelCase inputs as the AWS API's PascalCase parameters."""
    if isinstance(value, dict):
        return {SPECIAL_KEYS.get(k, k[:1].upper() + k[1:]): pascal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [pascal(v) for v in value]
    return value


@dataclass
class LocalAws:
    """What realizing the plan produced: the webhook's config and the kits' credentials.

    + webhook: the Lambda's config from the plan, pointing at the local resources
    + kit_credentials: kit -> access key id, secret and prefix (moto IAM users)
    + created: names of the resources made through the AWS API
    + elsewhere: resource name -> where the local cloud realizes it instead
    """

    webhook: WebhookConfig
    kit_credentials: dict[str, dict[str, str]] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    elsewhere: dict[str, str] = field(default_factory=dict)


class Realizer:
    """Creates the plan's resources through boto3 clients (``client(service)`` makes them).

    + plan: the captured plan
    + client: factory of boto3 clients for the local AWS endpoint
    + secret_value: the value for a secret, given its role (``webhook_secret`` or ``ticket_key``)
    """

    def __init__(self, plan: Plan, client: Callable[[str], Any],
                 secret_value: Callable[[str], str]):
        self.plan = plan
        self.client = client
        self.secret_value = secret_value
        function = plan.of_type("aws:lambda/function:Function")[0]
        self.planned_webhook = WebhookConfig.from_json(
            function.inputs["environment"]["variables"]["NOMADKIT_WEBHOOK"])
        self.local_ids: dict[str, str] = {}  # mock id/arn/url -> local id/arn/url
        self.kit_credentials: dict[str, dict[str, str]] = {}

    def local(self, planned: str) -> str:
        return self.local_ids.get(planned, planned)

    def realize(self) -> LocalAws:
        steps: list[tuple[str, Callable[[PlannedResource], None]]] = [
            ("aws:s3/bucket:Bucket", self.bucket),
            ("aws:s3/bucketOwnershipControls:BucketOwnershipControls", self.ownership),
            ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", self.public_access_block),
            ("aws:s3/bucketVersioning:BucketVersioning", self.versioning),
            ("aws:s3/bucketServerSideEncryptionConfiguration:"
             "BucketServerSideEncryptionConfiguration", self.encryption),
            ("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", self.lifecycle),
            ("aws:s3/bucketPolicy:BucketPolicy", self.bucket_policy),
            ("aws:s3/bucketObjectv2:BucketObjectv2", self.bucket_object),
            ("aws:dynamodb/table:Table", self.table),
            ("aws:sqs/queue:Queue", self.queue),
            ("aws:secretsmanager/secret:Secret", self.secret),
            ("aws:secretsmanager/secretVersion:SecretVersion", self.secret_version),
            ("aws:iam/user:User", self.user),
            ("aws:iam/userPolicy:UserPolicy", self.user_policy),
            ("aws:iam/accessKey:AccessKey", self.access_key),
        ]
        result = LocalAws(webhook=self.planned_webhook)
        handled = {type_ for type_, _ in steps}
        for type_, step in steps:
            for resource in self.plan.of_type(type_):
                step(resource)
                result.created.append(resource.name)
        for resource in self.plan.resources:
            if resource.type in handled:
                continue
            where = next((v for k, v in AS_PROCESSES.items() if resource.type.startswith(k)), None)
            if where is None:
                raise NotImplementedError(
                    f"{resource.type} ({resource.name}) has no local realization: "
                    "add it to nomadkit.cloud.realize")
            result.elsewhere[resource.name] = where
        planned = self.planned_webhook
        result.webhook = WebhookConfig(**{
            **planned.__dict__,
            "crm_queue_url": self.local(planned.crm_queue_url),
            "webhook_secret_id": self.local(planned.webhook_secret_id),
            "ticket_key_id": self.local(planned.ticket_key_id),
        })
        result.kit_credentials = self.kit_credentials
        return result

    # --- S3 ------------------------------------------------------------------------------------

    def bucket(self, resource: PlannedResource) -> None:
        s3, name = self.client("s3"), resource.inputs["bucket"]
        region = s3.meta.region_name
        location = {} if region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=name, **location)
        self.local_ids[resource.state["arn"]] = f"arn:aws:s3:::{name}"

    def ownership(self, resource: PlannedResource) -> None:
        self.client("s3").put_bucket_ownership_controls(
            Bucket=resource.inputs["bucket"],
            OwnershipControls={"Rules": [pascal(resource.inputs["rule"])]})

    def public_access_block(self, resource: PlannedResource) -> None:
        inputs = dict(resource.inputs)
        bucket = inputs.pop("bucket")
        self.client("s3").put_public_access_block(
            Bucket=bucket, PublicAccessBlockConfiguration=pascal(inputs))

    def versioning(self, resource: PlannedResource) -> None:
        self.client("s3").put_bucket_versioning(
            Bucket=resource.inputs["bucket"],
            VersioningConfiguration=pascal(resource.inputs["versioningConfiguration"]))

    def encryption(self, resource: PlannedResource) -> None:
        self.client("s3").put_bucket_encryption(
            Bucket=resource.inputs["bucket"],
            ServerSideEncryptionConfiguration={"Rules": pascal(resource.inputs["rules"])})

    def lifecycle(self, resource: PlannedResource) -> None:
        self.client("s3").put_bucket_lifecycle_configuration(
            Bucket=resource.inputs["bucket"],
            LifecycleConfiguration={"Rules": pascal(resource.inputs["rules"])})

    def bucket_policy(self, resource: PlannedResource) -> None:
        self.client("s3").put_bucket_policy(Bucket=resource.inputs["bucket"],
                                            Policy=resource.inputs["policy"])

    def bucket_object(self, resource: PlannedResource) -> None:
        inputs = resource.inputs
        extra = {"CacheControl": inputs["cacheControl"]} if inputs.get("cacheControl") else {}
        self.client("s3").put_object(
            Bucket=inputs["bucket"], Key=inputs["key"],
            Body=Path(inputs["source"]["file"]).read_bytes(),
            ContentType=inputs["contentType"], **extra)

    # --- DynamoDB, SQS, Secrets Manager ---------------------------------------------------------

    def table(self, resource: PlannedResource) -> None:
        inputs = resource.inputs
        dynamodb = self.client("dynamodb")
        dynamodb.create_table(
            TableName=inputs["name"],
            BillingMode=inputs["billingMode"],
            KeySchema=[{"AttributeName": inputs["hashKey"], "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": a["name"], "AttributeType": a["type"]}
                                  for a in inputs["attributes"]],
            SSESpecification={"Enabled": inputs["serverSideEncryption"]["enabled"]},
        )
        if inputs.get("pointInTimeRecovery", {}).get("enabled"):
            dynamodb.update_continuous_backups(
                TableName=inputs["name"],
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})

    def queue(self, resource: PlannedResource) -> None:
        inputs = resource.inputs
        url = self.client("sqs").create_queue(QueueName=inputs["name"], Attributes={
            "MessageRetentionPeriod": str(inputs["messageRetentionSeconds"]),
            "SqsManagedSseEnabled": str(inputs["sqsManagedSseEnabled"]).lower(),
        })["QueueUrl"]
        self.local_ids[resource.state["url"]] = url

    def secret(self, resource: PlannedResource) -> None:
        inputs = resource.inputs
        arn = self.client("secretsmanager").create_secret(
            Name=inputs["name"], Description=inputs["description"])["ARN"]
        self.local_ids[resource.state["arn"]] = arn

    def secret_version(self, resource: PlannedResource) -> None:
        planned_arn = resource.inputs["secretId"]  # the mocks give a Secret AWS's id: its ARN
        role = ("webhook_secret" if planned_arn == self.planned_webhook.webhook_secret_id
                else "ticket_key")
        self.client("secretsmanager").put_secret_value(
            SecretId=self.local(planned_arn), SecretString=self.secret_value(role))

    # --- IAM (the kits' upload identities) ------------------------------------------------------

    def user(self, resource: PlannedResource) -> None:
        self.client("iam").create_user(UserName=resource.inputs["name"],
                                       Path=resource.inputs.get("path", "/"))

    def user_policy(self, resource: PlannedResource) -> None:
        policy = json.loads(resource.inputs["policy"])
        self.client("iam").put_user_policy(UserName=resource.inputs["user"],
                                           PolicyName=resource.name,
                                           PolicyDocument=json.dumps(policy))

    def access_key(self, resource: PlannedResource) -> None:
        key = self.client("iam").create_access_key(UserName=resource.inputs["user"])["AccessKey"]
        user = self.plan.named(resource.inputs["user"])
        kit = user.inputs["tags"]["nomadkit:kit"]
        self.kit_credentials[kit] = {
            "access_key_id": key["AccessKeyId"],
            "secret_access_key": key["SecretAccessKey"],
            "prefix": f"{kit}/",
        }
