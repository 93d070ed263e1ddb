"""TourCdn: CloudFront in front of the live relay, failing over to the slate in S3.

The origin group tries the live ingest relay first. On 500/502/503/504, or when the relay
does not answer, CloudFront asks the secondary origin — the fallback slate in the private
assets bucket, read through Origin Access Control — so viewers never see a blackout. The
default of 3 connection attempts x 10 s would leave viewers staring at a spinner for 30 s:
we use one attempt and a 1 s connection timeout.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from tourcloud.storage import SLATE_PREFIX

FAILOVER_STATUS_CODES = [500, 502, 503, 504]
CONNECTION_ATTEMPTS = 1
CONNECTION_TIMEOUT_S = 1
ORIGIN_READ_TIMEOUT_S = 4  # a live segment is 2 s; a relay slower than this is as good as down
PLAYLIST_TTL_S = 1
SEGMENT_TTL_S = 86400

RELAY_ORIGIN = "live-relay"
SLATE_ORIGIN = "fallback-slate"
ASSETS_ORIGIN = "assets"
LIVE_GROUP = "live-or-slate"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"  # AWS's managed CachingDisabled policy


@dataclass(frozen=True)
class TourCdnArgs:
    """+ prefix: resource name prefix (tour-stack)
    + assets: the private assets bucket (slate and preview assets)
    + relay_domain: public DNS name of the ingest relay (CloudFront needs a name, not an IP)
    + relay_http_port: where the relay serves HLS
    """

    prefix: str
    assets: aws.s3.Bucket
    relay_domain: pulumi.Input[str]
    relay_http_port: int


class TourCdn(pulumi.ComponentResource):
    """The viewers' entry point: live HLS with slate failover, and the preview assets."""

    distribution: aws.cloudfront.Distribution

    def __init__(self, name: str, args: TourCdnArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nomadkit:cloud:TourCdn", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        oac = aws.cloudfront.OriginAccessControl(
            f"{args.prefix}-oac",
            name=f"{args.prefix}-oac",
            description="CloudFront reads the private assets bucket (slate, previews)",
            origin_access_control_origin_type="s3",
            signing_behavior="always",
            signing_protocol="sigv4",
            opts=child,
        )
        playlists = self._cache_policy(args.prefix, "playlists", PLAYLIST_TTL_S, child)
        segments = self._cache_policy(args.prefix, "segments", SEGMENT_TTL_S, child)
        s3_domain = args.assets.bucket_regional_domain_name
        self.distribution = aws.cloudfront.Distribution(
            f"{args.prefix}-cdn",
            enabled=True,
            comment=f"{args.prefix}: live HLS with fallback slate",
            http_version="http2and3",
            price_class="PriceClass_100",
            origins=[
                {
                    "origin_id": RELAY_ORIGIN,
                    "domain_name": args.relay_domain,
                    "connection_attempts": CONNECTION_ATTEMPTS,
                    "connection_timeout": CONNECTION_TIMEOUT_S,
                    "custom_origin_config": {
                        "http_port": args.relay_http_port,
                        "https_port": 443,
                        "origin_protocol_policy": "http-only",
                        "origin_ssl_protocols": ["TLSv1.2"],
                        "origin_read_timeout": ORIGIN_READ_TIMEOUT_S,
                        "origin_keepalive_timeout": 5,
                    },
                },
                {
                    "origin_id": SLATE_ORIGIN,
                    "domain_name": s3_domain,
                    "origin_path": f"/{SLATE_PREFIX}",
                    "origin_access_control_id": oac.id,
                    "connection_attempts": CONNECTION_ATTEMPTS,
                    "connection_timeout": CONNECTION_TIMEOUT_S,
                },
                {
                    "origin_id": ASSETS_ORIGIN,
                    "domain_name": s3_domain,
                    "origin_access_control_id": oac.id,
                },
            ],
            origin_groups=[{
                "origin_id": LIVE_GROUP,
                "failover_criteria": {"status_codes": FAILOVER_STATUS_CODES},
                "members": [{"origin_id": RELAY_ORIGIN}, {"origin_id": SLATE_ORIGIN}],
            }],
            default_cache_behavior=self._behavior(LIVE_GROUP, segments.id),
            ordered_cache_behaviors=[
                {"path_pattern": "*.m3u8", **self._behavior(LIVE_GROUP, playlists.id)},
                {"path_pattern": "/preview/*", **self._behavior(ASSETS_ORIGIN, segments.id)},
                # pull-mode deploy bundles: `latest` changes with every publish, never cached
                {"path_pattern": "/bundles/*", **self._behavior(ASSETS_ORIGIN, CACHING_DISABLED)},
            ],
            restrictions={"geo_restriction": {"restriction_type": "none"}},
            viewer_certificate={"cloudfront_default_certificate": True},
            opts=child,
        )
        self._allow_cloudfront_reads(args, child)
        self.register_outputs({"domain_name": self.distribution.domain_name})

    @staticmethod
    def _cache_policy(prefix: str, kind: str, ttl: int,
                      child: pulumi.ResourceOptions) -> aws.cloudfront.CachePolicy:
        """Playlists change every segment, so they live 1 s at the edge; segments never change."""
        return aws.cloudfront.CachePolicy(
            f"{prefix}-{kind}",
            name=f"{prefix}-{kind}",
            min_ttl=0,
            default_ttl=ttl,
            max_ttl=ttl,
            parameters_in_cache_key_and_forwarded_to_origin={
                "cookies_config": {"cookie_behavior": "none"},
                "headers_config": {"header_behavior": "none"},
                "query_strings_config": {"query_string_behavior": "none"},
                "enable_accept_encoding_gzip": True,
                "enable_accept_encoding_brotli": True,
            },
            opts=child,
        )

    @staticmethod
    def _behavior(origin: str, cache_policy_id: pulumi.Input[str]) -> dict:
        # Origin groups only serve GET/HEAD/OPTIONS: fine, viewers only read.
        return {
            "target_origin_id": origin,
            "viewer_protocol_policy": "redirect-to-https",
            "allowed_methods": ["GET", "HEAD", "OPTIONS"],
            "cached_methods": ["GET", "HEAD"],
            "compress": True,
            "cache_policy_id": cache_policy_id,
        }

    def _allow_cloudfront_reads(self, args: TourCdnArgs, child: pulumi.ResourceOptions) -> None:
        """Bucket policy: only this distribution, only the slate, preview and bundle prefixes."""
        policy = aws.iam.get_policy_document_output(statements=[{
            "sid": "CloudFrontReadsSlatePreviewsAndBundles",
            "effect": "Allow",
            "principals": [{"type": "Service", "identifiers": ["cloudfront.amazonaws.com"]}],
            "actions": ["s3:GetObject"],
            "resources": [
                pulumi.Output.concat(args.assets.arn, f"/{SLATE_PREFIX}/*"),
                pulumi.Output.concat(args.assets.arn, "/preview/*"),
                pulumi.Output.concat(args.assets.arn, "/bundles/*"),
            ],
            "conditions": [{
                "test": "StringEquals",
                "variable": "AWS:SourceArn",
                "values": [self.distribution.arn],
            }],
        }])
        aws.s3.BucketPolicy(
            f"{args.prefix}-assets-cdn-read",
            bucket=args.assets.id,
            policy=policy.json,
            opts=child,
        )
