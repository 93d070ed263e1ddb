"""What the webhook needs to know about its tour, carried in one environment variable.

The Lambda cannot read the tour file, so the cloud side distils the Tour model into this
small JSON document (``NOMADKIT_WEBHOOK``) when it deploys the function. The local server
builds the same document, so both paths run with identical settings. This module stays
free of pydantic and of the Tour model at run time: the Lambda package carries only the
webhook, the ticket module and boto3 (which the runtime provides).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nomadkit.tour import Tour

ENV_VAR = "NOMADKIT_WEBHOOK"
MAX_BODY_BYTES = 64 * 1024  # Stripe events are a few KiB; anything near this is not one.


@dataclass(frozen=True)
class WebhookConfig:
    """Settings of one tour's payment webhook.

    + tour: tour name, written into every ticket token
    + stops: stop names a checkout may name in ``metadata.stop``
    + tiers: tier name -> True when members only
    + members_window_opens: unix time members-only tiers open (None: always open to members)
    + ledger_table, members_table: DynamoDB table names
    + crm_queue_url: the SQS queue for later CRM sync
    + webhook_secret_id, ticket_key_id: Secrets Manager ids of the signing secret(s) and
      the ticket key
    """

    tour: str
    stops: list[str]
    tiers: dict[str, bool]
    ledger_table: str
    members_table: str
    crm_queue_url: str
    webhook_secret_id: str
    ticket_key_id: str
    members_window_opens: int | None = None
    max_body_bytes: int = field(default=MAX_BODY_BYTES)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WebhookConfig:
        return cls(**json.loads(text))

    @classmethod
    def from_env(cls) -> WebhookConfig:
        """The config the deployment put in ``NOMADKIT_WEBHOOK``."""
        try:
            return cls.from_json(os.environ[ENV_VAR])
        except KeyError:
            raise RuntimeError(
                f"{ENV_VAR} is not set: the function was deployed without its config"
            ) from None


def config_for_tour(tour: Tour, names: WebhookNames) -> WebhookConfig:
    """Distil the Tour model (and the deployed resource names) into the webhook's config."""
    commerce = tour.commerce
    opens = commerce.general_sale_opens
    window = None
    if opens is not None:
        window = int(opens.timestamp()) - commerce.members_early_access_hours * 3600
    return WebhookConfig(
        tour=tour.name,
        stops=[stop.name for stop in tour.stops],
        tiers={tier.name: tier.members_only for tier in commerce.tiers},
        members_window_opens=window,
        **asdict(names),
    )


@dataclass(frozen=True)
class WebhookNames:
    """Names of the resources the webhook uses, as created by the stack or the local cloud."""

    ledger_table: str
    members_table: str
    crm_queue_url: str
    webhook_secret_id: str
    ticket_key_id: str
