"""IngestRelay: the small instance that takes SRT from the kits and serves HLS to the CDN.

The instance only boots Debian; the ``relay`` pyinfra role (``deploys/relay.py``, the same
code path as the kits) installs and configures ffmpeg and nginx on it. HLS is reachable
only from CloudFront's origin-facing addresses; SRT from anywhere (kits sit behind carrier
NAT), protected by the stream passphrase.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

DEBIAN_OWNER = "136693071363"  # Debian's official AWS account
CLOUDFRONT_ORIGIN_FACING = "com.amazonaws.global.cloudfront.origin-facing"


@dataclass(frozen=True)
class IngestRelayArgs:
    """+ prefix: resource name prefix (tour-stack)
    + instance_type: EC2 size (SRT relaying and HLS muxing without transcoding is light)
    + srt_ports: the relay's SRT listener ports (one per stream)
    + http_port: where the relay serves HLS
    + admin_cidr: who may SSH in for pyinfra ("" = nobody)
    + ssh_key_name: EC2 key pair for that SSH access ("" = none)
    """

    prefix: str
    instance_type: str
    srt_ports: list[int]
    http_port: int
    admin_cidr: str
    ssh_key_name: str


class IngestRelay(pulumi.ComponentResource):
    """The live origin: Debian instance, fixed public address, tight security group."""

    def __init__(self, name: str, args: IngestRelayArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("nomadkit:cloud:IngestRelay", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ami = aws.ec2.get_ami_output(
            most_recent=True,
            owners=[DEBIAN_OWNER],
            filters=[{"name": "name", "values": ["debian-12-amd64-*"]},
                     {"name": "architecture", "values": ["x86_64"]}],
        )
        cloudfront = aws.ec2.get_managed_prefix_list_output(name=CLOUDFRONT_ORIGIN_FACING)
        ingress = [
            {"description": "SRT from the kits", "protocol": "udp", "from_port": min(args.srt_ports),
             "to_port": max(args.srt_ports), "cidr_blocks": ["0.0.0.0/0"]},
            {"description": "HLS to CloudFront only", "protocol": "tcp",
             "from_port": args.http_port, "to_port": args.http_port,
             "prefix_list_ids": [cloudfront.id]},
        ]
        if args.admin_cidr:
            ingress.append({"description": "SSH for pyinfra", "protocol": "tcp",
                            "from_port": 22, "to_port": 22, "cidr_blocks": [args.admin_cidr]})
        group = aws.ec2.SecurityGroup(
            f"{args.prefix}-relay",
            name=f"{args.prefix}-relay",
            description="nomadkit ingest relay",
            ingress=ingress,
            egress=[{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}],
            opts=child,
        )
        self.instance = aws.ec2.Instance(
            f"{args.prefix}-relay",
            ami=ami.id,
            instance_type=args.instance_type,
            vpc_security_group_ids=[group.id],
            key_name=args.ssh_key_name or None,
            metadata_options={"http_tokens": "required"},
            root_block_device={"encrypted": True, "volume_size": 16, "volume_type": "gp3"},
            tags={"Name": f"{args.prefix}-relay", "nomadkit:role": "relay"},
            opts=child,
        )
        self.address = aws.ec2.Eip(f"{args.prefix}-relay-ip", instance=self.instance.id,
                                   domain="vpc", opts=child)
        self.register_outputs({"public_dns": self.address.public_dns,
                               "public_ip": self.address.public_ip})
