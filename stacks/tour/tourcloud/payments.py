"""PaymentWebhook: the Lambda behind a Function URL, its ledger, members, queue and secrets.

The Function URL has no AWS auth because the payment provider cannot sign AWS requests;
every request is authenticated by its Stripe-style signature instead (see
``nomadkit.webhook.signature``). The function's role may touch its two tables, its two
secrets, its queue and its own log group, and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from nomadkit.tour import Tour
from nomadkit.webhook.config import WebhookNames, config_for_tour

RUNTIME = "python3.12"
HANDLER = "nomadkit.webhook.handler.handler"
LOG_RETENTION_DAYS = 30
CRM_RETENTION_S = 14 * 24 * 3600  # the longest SQS allows: the CRM may be down a while


@dataclass(frozen=True)
class PaymentWebhookArgs:
    """+ prefix: resource name prefix (tour-stack)
    + tour: the tour (tiers, stops, members' window go into the function's config)
    + package_root: the folder holding the ``nomadkit`` package (the function's code)
    + layer_dir: folder with the layer's ``python/`` (cryptography for the Lambda runtime)
    + webhook_secret, ticket_key: secret values from stack config
    """

    prefix: str
    tour: Tour
    package_root: Path
    layer_dir: Path
    webhook_secret: pulumi.Input[str]
    ticket_key: pulumi.Input[str]


def _code(package_root: Path) -> pulumi.AssetArchive:
    """Only what the handler imports: the webhook package and the ticket module."""
    pkg = package_root / "nomadkit"
    return pulumi.AssetArchive({
        "nomadkit/__init__.py": pulumi.FileAsset(str(pkg / "__init__.py")),
        "nomadkit/tickets.py": pulumi.FileAsset(str(pkg / "tickets.py")),
        "nomadkit/webhook": pulumi.FileArchive(str(pkg / "webhook")),
    })


class PaymentWebhook(pulumi.ComponentResource):
    """Verifies payment events, records each once, issues and revokes ticket tokens."""

    def __init__(self, name: str, args: PaymentWebhookArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("nomadkit:cloud:PaymentWebhook", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        p = args.prefix
        self.ledger = self._table(f"{p}-ledger", "pk", child)
        self.members = self._table(f"{p}-members", "customer", child)
        self.crm_queue = aws.sqs.Queue(
            f"{p}-crm-sync",
            name=f"{p}-crm-sync",
            sqs_managed_sse_enabled=True,
            message_retention_seconds=CRM_RETENTION_S,
            opts=child,
        )
        self.webhook_secret = self._secret(f"{p}-webhook-signing", args.webhook_secret,
                                           "payment provider endpoint signing secret(s)", child)
        self.ticket_key = self._secret(f"{p}-ticket-key", args.ticket_key,
                                       "Ed25519 ticket-signing key", child)
        function_name = f"{p}-webhook"
        logs = aws.cloudwatch.LogGroup(
            f"{p}-webhook-logs",
            name=f"/aws/lambda/{function_name}",
            retention_in_days=LOG_RETENTION_DAYS,
            opts=child,
        )
        role = self._role(p, logs, child)
        layer = aws.lambda_.LayerVersion(
            f"{p}-webhook-deps",
            layer_name=f"{p}-webhook-deps",
            code=pulumi.FileArchive(str(args.layer_dir)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=["x86_64"],
            opts=child,
        )
        names = pulumi.Output.all(self.ledger.name, self.members.name, self.crm_queue.url,
                                  self.webhook_secret.arn, self.ticket_key.arn)
        config = names.apply(lambda n: config_for_tour(args.tour, WebhookNames(*n)).to_json())
        self.function = aws.lambda_.Function(
            f"{p}-webhook",
            name=function_name,
            runtime=RUNTIME,
            architectures=["x86_64"],
            handler=HANDLER,
            code=_code(args.package_root),
            layers=[layer.arn],
            role=role.arn,
            timeout=10,
            memory_size=256,
            environment={"variables": {"NOMADKIT_WEBHOOK": config}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[logs]),
        )
        self.url = aws.lambda_.FunctionUrl(
            f"{p}-webhook-url",
            function_name=self.function.name,
            authorization_type="NONE",
            invoke_mode="BUFFERED",
            opts=child,
        )
        aws.lambda_.Permission(
            f"{p}-webhook-url-public",
            action="lambda:InvokeFunctionUrl",
            function=self.function.name,
            principal="*",
            function_url_auth_type="NONE",
            opts=child,
        )
        aws.lambda_.Permission(
            f"{p}-webhook-url-invoke",
            action="lambda:InvokeFunction",
            function=self.function.name,
            principal="*",
            invoked_via_function_url=True,
            opts=child,
        )
        self.register_outputs({"url": self.url.function_url, "ledger": self.ledger.name})

    @staticmethod
    def _table(name: str, key: str, child: pulumi.ResourceOptions) -> aws.dynamodb.Table:
        return aws.dynamodb.Table(
            name,
            name=name,
            billing_mode="PAY_PER_REQUEST",
            hash_key=key,
            attributes=[{"name": key, "type": "S"}],
            point_in_time_recovery={"enabled": True},
            server_side_encryption={"enabled": True},
            opts=child,
        )

    @staticmethod
    def _secret(name: str, value: pulumi.Input[str], description: str,
                child: pulumi.ResourceOptions) -> aws.secretsmanager.Secret:
        secret = aws.secretsmanager.Secret(name, name=name, description=description,
                                           recovery_window_in_days=7, opts=child)
        aws.secretsmanager.SecretVersion(f"{name}-value", secret_id=secret.id,
                                         secret_string=value, opts=child)
        return secret

    def _role(self, prefix: str, logs: aws.cloudwatch.LogGroup,
              child: pulumi.ResourceOptions) -> aws.iam.Role:
        assume = aws.iam.get_policy_document_output(statements=[{
            "effect": "Allow",
            "actions": ["sts:AssumeRole"],
            "principals": [{"type": "Service", "identifiers": ["lambda.amazonaws.com"]}],
        }])
        role = aws.iam.Role(f"{prefix}-webhook-role", name=f"{prefix}-webhook",
                            assume_role_policy=assume.json, opts=child)
        policy = aws.iam.get_policy_document_output(statements=[
            {
                "sid": "LedgerAndMembers",
                "effect": "Allow",
                "actions": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                "resources": [self.ledger.arn, self.members.arn],
            },
            {
                "sid": "SigningSecrets",
                "effect": "Allow",
                "actions": ["secretsmanager:GetSecretValue"],
                "resources": [self.webhook_secret.arn, self.ticket_key.arn],
            },
            {
                "sid": "CrmQueue",
                "effect": "Allow",
                "actions": ["sqs:SendMessage"],
                "resources": [self.crm_queue.arn],
            },
            {
                "sid": "OwnLogs",
                "effect": "Allow",
                "actions": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "resources": [pulumi.Output.concat(logs.arn, ":*")],
            },
        ])
        aws.iam.RolePolicy(f"{prefix}-webhook-policy", role=role.id, policy=policy.json,
                           opts=child)
        return role
