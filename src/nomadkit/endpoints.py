"""What the cloud side hands to the kits: the stack outputs, as one model.

Written by `nomadkit cloud up` (local) or read from `pulumi stack output --json` (real AWS);
the inventory gives it to every kit as host data.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from nomadkit.errors import UserError


class CloudEndpoints(BaseModel):
    """Addresses and names of the tour's cloud resources (no secrets)."""

    model_config = ConfigDict(extra="forbid")

    stack: str
    region: str
    assets_bucket: str
    recordings_bucket: str
    cdn_url: str
    relay_srt_urls: dict[str, str]  # stream name -> srt://relay:port (one listener port per stream)
    webhook_url: str
    ledger_table: str
    members_table: str
    crm_queue_url: str
    ticket_public_key: str  # Ed25519, base64url: kits verify ticket tokens offline with it
    s3_endpoint: str | None = None  # set for the local cloud (moto); None means AWS itself

    def seen_from(self, address: str) -> CloudEndpoints:
        """The same endpoints as a lab kit reaches them: loopback URLs become `address`
        (the lab's cloud address, which the lab forwards to this machine's loopback)."""
        return CloudEndpoints.model_validate_json(
            self.model_dump_json().replace("//127.0.0.1:", f"//{address}:"))

    @classmethod
    def read(cls, path: Path) -> CloudEndpoints:
        """Load endpoints written by `nomadkit cloud up` or `pulumi stack output --json`."""
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except FileNotFoundError:
            raise UserError(f"{path}: no cloud endpoints yet — run `nomadkit cloud up` first") from None
        except (ValueError, json.JSONDecodeError) as exc:
            raise UserError(
                f"{path}: not valid cloud endpoints ({exc}) — re-run `nomadkit cloud up`") from None
