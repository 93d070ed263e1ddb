"""Fixtures of the cloud tests: the demo tour's plan (captured once) and a local AWS (moto)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from nomadkit import ROOT
from nomadkit.cloud.plan import Plan, capture
from nomadkit.cloud.realize import LocalAws, Realizer
from nomadkit.tickets import generate_ticket_key

DEMO = ROOT / "tours" / "demo.yaml"
REGION = "eu-west-1"


@pytest.fixture(scope="session")
def plan() -> Plan:
    """The demo tour's program under Pulumi mocks, as stack demo-test."""
    return capture(DEMO, "demo-test", REGION)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials and a private secrets dir: no test can reach a real account."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("NOMADKIT_SECRETS", str(tmp_path / "secrets"))


@pytest.fixture
def signing() -> dict[str, str]:
    """This test's secrets: the endpoint signing secret(s) and the ticket key."""
    return {"webhook_secret": f"whsec_{secrets.token_urlsafe(24)}",
            "ticket_key": generate_ticket_key()}


@pytest.fixture
def local_aws(aws_env: None, plan: Plan, signing: dict[str, str]) -> Iterator[LocalAws]:
    """The plan's buckets, tables, queue and secrets, created in an in-process moto."""
    with mock_aws():
        yield Realizer(plan, lambda service: boto3.client(service, region_name=REGION),
                       signing.__getitem__).realize()
