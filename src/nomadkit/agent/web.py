"""The agent's HTTP endpoint on the kit: status for people and scripts, check-in for the door.

    GET  /status    the status JSON (also written to <run_dir>/status.json every second)
    GET  /          the door page: scan or paste a ticket, see ADMIT or the reason not to
    POST /checkin   {"token": "...", "door": "front"} -> 200 admitted, 409 duplicate, 422 refused

The firewall role opens its port on the venue LAN and the management interface only.
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nomadkit.agent.daemon import Agent

MAX_BODY = 8192

DOOR_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Door check-in</title>
<style>body{font:1.2em system-ui;margin:1em}input{width:100%;font-size:1.2em}
#r{margin-top:1em;padding:1em;border-radius:.4em;font-size:1.4em}.ok{background:#2a2;color:#fff}
.no{background:#c22;color:#fff}</style></head>
<body><h1>Door check-in</h1>
<form id="f"><input id="t" autofocus autocomplete="off" placeholder="scan ticket"></form>
<div id="r"></div>
<script>
document.getElementById('f').onsubmit = async (e) => {
  e.preventDefault();
  const t = document.getElementById('t'), r = document.getElementById('r');
  const res = await fetch('/checkin', {method: 'POST', headers: {'content-type': 'application/json'},
                                       body: JSON.stringify({token: t.value, door: 'door-phone'})});
  const a = await res.json();
  r.className = a.ok ? 'ok' : 'no';
  r.textContent = a.ok ? `ADMIT ${a.qty} (${a.tier})` : `DO NOT ADMIT: ${a.reason}`;
  t.value = ''; t.focus();
};
</script></body></html>
"""


def make_handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "nomadkit-agent"

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.send_header("cache-control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: Any) -> None:
            self._send(status, json.dumps(data, sort_keys=True).encode(), "application/json")

        def do_GET(self) -> None:
            if self.path == "/status":
                self._json(200, agent.status())
            elif self.path == "/":
                self._send(200, DOOR_PAGE.encode(), "text/html; charset=utf-8")
            else:
                self._json(404, {"error": f"no such path {self.path}: try /status or /"})

        def do_POST(self) -> None:
            if self.path != "/checkin":
                self._json(404, {"error": f"no such path {self.path}: tickets go to POST /checkin"})
                return
            try:
                length = int(self.headers.get("content-length") or 0)
                if not 0 < length <= MAX_BODY:
                    raise ValueError(f"body must be 1..{MAX_BODY} bytes")
                body = json.loads(self.rfile.read(length))
                token = body["token"]
                if not isinstance(token, str):
                    raise ValueError("token must be text")
            except (ValueError, KeyError, TypeError) as error:
                self._json(400, {"ok": False, "reason": f"bad request: {error} — send "
                                                         '{"token": "<scanned text>"}'})
                return
            answer = agent.door.scan(token, str(body.get("door") or "door"))
            self._json(200 if answer["ok"] else 409 if answer.get("duplicate") else 422, answer)

        def log_message(self, format: str, *args: object) -> None:
            logging.getLogger("nomadkit.agent.http").debug(format, *args)

    return Handler


def serve(agent: Agent) -> None:
    """Serve until the process ends (a daemon thread of the agent)."""
    server = ThreadingHTTPServer((agent.config.http_bind, agent.config.http_port), make_handler(agent))
    server.daemon_threads = True
    server.serve_forever()
