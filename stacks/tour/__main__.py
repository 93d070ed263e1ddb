"""A tour's cloud: everything one tour file needs, named after the tour and the stack.

Stack config ``nomadkit:tour`` names the tour file; it is read through the Tour model, the
one source of truth. ``pulumi stack output endpoints --json`` gives the ``CloudEndpoints``
the kits receive (see docs/cloud.md).
"""

from pathlib import Path

import pulumi
import pulumi_aws as aws
from tourcloud.cdn import TourCdn, TourCdnArgs
from tourcloud.kits import KitCredentials, KitCredentialsArgs
from tourcloud.payments import PaymentWebhook, PaymentWebhookArgs
from tourcloud.relay import IngestRelay, IngestRelayArgs
from tourcloud.storage import TourStorage, TourStorageArgs

import nomadkit
from nomadkit.roles.relay import streams
from nomadkit.tickets import public_key_of
from nomadkit.tour import load_tour

HERE = Path(__file__).resolve().parent
config = pulumi.Config("nomadkit")
tour_file = (HERE / config.require("tour")).resolve()
tour = load_tour(tour_file)
prefix = f"{tour.name}-{pulumi.get_stack()}"
ports = tour.cloud.ports
relay_streams = streams(tour)
account_id = aws.get_caller_identity_output().account_id

storage = TourStorage("storage", TourStorageArgs(
    prefix=prefix,
    account_id=account_id,
    slate_dir=HERE / "slate",
    streams=[stream.name for stream in relay_streams],
    assets_dir=tour_file.parent / tour.assets_dir if tour.assets_dir else None,
))
relay = IngestRelay("relay", IngestRelayArgs(
    prefix=prefix,
    instance_type=config.get("relayInstanceType") or "t3.small",
    srt_ports=[stream.port for stream in relay_streams],
    http_port=ports.relay_http,
    admin_cidr=config.get("adminCidr") or "",
    ssh_key_name=config.get("sshKeyName") or "",
))
cdn = TourCdn("cdn", TourCdnArgs(
    prefix=prefix,
    assets=storage.assets,
    relay_domain=relay.address.public_dns,
    relay_http_port=ports.relay_http,
))
ticket_key = config.require_secret("ticketKey")
payments = PaymentWebhook("payments", PaymentWebhookArgs(
    prefix=prefix,
    tour=tour,
    package_root=Path(nomadkit.__file__).resolve().parent.parent,
    layer_dir=HERE / (config.get("webhookLayer") or "build/webhook-layer"),
    webhook_secret=config.require_secret("webhookSecret"),
    ticket_key=ticket_key,
))
kits = {kit.name: KitCredentials(f"kit-{kit.name}", KitCredentialsArgs(
    prefix=prefix, kit=kit.name, recordings=storage.recordings)) for kit in tour.kits}

pulumi.export("endpoints", {
    "stack": pulumi.get_stack(),
    "region": tour.cloud.region,
    "assets_bucket": storage.assets.bucket,
    "recordings_bucket": storage.recordings.bucket,
    "cdn_url": pulumi.Output.concat("https://", cdn.distribution.domain_name),
    "relay_srt_urls": {stream.name: pulumi.Output.concat("srt://", relay.address.public_dns,
                                                          f":{stream.port}")
                       for stream in relay_streams},
    "webhook_url": payments.url.function_url,
    "ledger_table": payments.ledger.name,
    "members_table": payments.members.name,
    "crm_queue_url": payments.crm_queue.url,
    "ticket_public_key": pulumi.Output.unsecret(ticket_key.apply(public_key_of)),
})
pulumi.export("kit_credentials", {
    name: {"access_key_id": creds.key.id, "secret_access_key": creds.key.secret,
           "prefix": creds.prefix}
    for name, creds in kits.items()
})
