"""The webhook behind a local HTTP server: each request becomes a Function URL event.

The local cloud cannot run Lambda code (moto would need docker), so this adapter turns an
HTTP request into exactly the payload-2.0 event a Function URL delivers and hands it to
the same ``Webhook`` the Lambda runs. Bodies are read only up to the size limit.
"""

from __future__ import annotations

import argparse
import base64
import logging
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from nomadkit.webhook.config import WebhookConfig
from nomadkit.webhook.handler import Webhook, build, refuse


def function_url_event(method: str, target: str, headers: dict[str, str], body: bytes,
                       source_ip: str) -> dict:
    """The Function URL (payload format 2.0) event for one HTTP request."""
    url = urlsplit(target)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": url.path or "/",
        "rawQueryString": url.query,
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {
            "http": {"method": method, "path": url.path or "/", "protocol": "HTTP/1.1",
                     "sourceIp": source_ip},
            "timeEpoch": int(time.time() * 1000),
        },
        "body": base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": True,
    }


def make_handler(webhook: Webhook) -> type[BaseHTTPRequestHandler]:
    """An ``http.server`` request handler class bound to one webhook."""

    class FunctionUrlAdapter(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "nomadkit-webhook"

        def _answer(self) -> None:
            limit = webhook.config.max_body_bytes
            try:
                length = int(self.headers.get("content-length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > limit:
                reason = "bad Content-Length" if length < 0 else f"body over {limit} bytes"
                response = refuse(413 if length > limit else 400, reason)
                self.close_connection = True
            else:
                body = self.rfile.read(length)
                event = function_url_event(self.command, self.path, dict(self.headers), body,
                                           self.client_address[0])
                try:
                    response = webhook(event)
                except Exception:  # the Lambda runtime would answer 502; say it and log why
                    logging.getLogger("nomadkit.webhook").exception("handler failed")
                    response = refuse(500, "internal error in the webhook (see its log)")
            payload = response["body"].encode()
            self.send_response(response["statusCode"])
            for name, value in response["headers"].items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:
            logging.getLogger("nomadkit.webhook.http").info(format, *args)

    return FunctionUrlAdapter


def serve(config: WebhookConfig, host: str, port: int, endpoint_url: str | None) -> None:
    """Serve the webhook on ``host:port`` until killed, with AWS calls sent to ``endpoint_url``."""
    webhook = build(config, endpoint_url=endpoint_url) if endpoint_url else build(config)
    ThreadingHTTPServer.request_queue_size = 128  # bursts from the provider's retries
    server = ThreadingHTTPServer((host, port), make_handler(webhook))
    server.daemon_threads = True
    logging.getLogger("nomadkit.webhook").info("serving on http://%s:%d/", host, port)
    server.serve_forever()


def main() -> None:
    """``python -m nomadkit.webhook.local``: how the local cloud starts the server."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--endpoint-url", help="AWS endpoint (the local moto server)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve(WebhookConfig.from_env(), args.host, args.port,
          args.endpoint_url)


if __name__ == "__main__":
    main()
