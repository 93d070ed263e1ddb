"""KitCredentials: one AWS identity per kit, able to upload to its own recordings prefix only.

Kits live outside AWS (5G modems at a venue), so each gets an IAM user with one access
key. A stolen kit can add recordings under its own ``<kit>/`` prefix and do nothing else:
no reads, no deletes, no other kit's prefix, no other bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

# Multipart uploads (resumable recordings) are authorised by PutObject for Create/Upload/
# Complete; aborting and listing parts (to resume) need their own actions.
KIT_UPLOAD_ACTIONS = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]


@dataclass(frozen=True)
class KitCredentialsArgs:
    """+ prefix: resource name prefix (tour-stack)
    + kit: kit name, which is also its recordings prefix
    + recordings: the recordings bucket
    """

    prefix: str
    kit: str
    recordings: aws.s3.Bucket


class KitCredentials(pulumi.ComponentResource):
    """A kit's upload identity and its access key (a secret output)."""

    def __init__(self, name: str, args: KitCredentialsArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("nomadkit:cloud:KitCredentials", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        user_name = f"{args.prefix}-{args.kit}"
        self.user = aws.iam.User(user_name, name=user_name, path="/nomadkit/kits/",
                                 tags={"nomadkit:kit": args.kit}, opts=child)
        policy = aws.iam.get_policy_document_output(statements=[{
            "sid": "UploadOwnRecordings",
            "effect": "Allow",
            "actions": KIT_UPLOAD_ACTIONS,
            "resources": [pulumi.Output.concat(args.recordings.arn, f"/{args.kit}/*")],
        }])
        aws.iam.UserPolicy(f"{user_name}-upload", user=self.user.name, policy=policy.json,
                           opts=child)
        self.key = aws.iam.AccessKey(f"{user_name}-key", user=self.user.name, opts=child)
        self.prefix = f"{args.kit}/"
        self.register_outputs({"user": self.user.name, "prefix": self.prefix})
