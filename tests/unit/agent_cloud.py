"""A real HTTP AWS on loopback for the agent's tests: moto's server, and the fleet endpoint."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import boto3
from moto.server import ThreadedMotoServer

REGION = "eu-west-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_server() -> Iterator[str]:
    """moto over HTTP on a loopback port: the S3 and DynamoDB the kit talks to, like the local cloud."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    deadline = time.monotonic() + 30
    while True:  # start() returns before the socket listens
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def client(service: str, endpoint: str):
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


class FleetApp:
    """The shape `nomadkit.webhook.local.make_handler` serves: a callable with config.max_body_bytes."""

    def __init__(self, fleet) -> None:
        self.fleet = fleet
        self.config = SimpleNamespace(max_body_bytes=256 * 1024)

    def __call__(self, event: dict) -> dict:
        return self.fleet.handle(event) or {
            "statusCode": 404, "headers": {"content-type": "application/json"},
            "body": '{"error": "not a kit path"}'}
