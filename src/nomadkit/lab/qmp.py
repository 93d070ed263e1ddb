"""A minimal QMP client: one command per connection, enough for set_link, migrate, cont, quit."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from nomadkit.errors import UserError


def qmp(path: Path, command: str, timeout: float = 30.0, **arguments: Any) -> Any:
    """Run one QMP command on the VM whose monitor socket is `path`; return its result."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            f = s.makefile("rw")
            json.loads(f.readline())  # greeting
            for cmd in ({"execute": "qmp_capabilities"},
                        {"execute": command, **({"arguments": arguments} if arguments else {})}):
                f.write(json.dumps(cmd) + "\n")
                f.flush()
                reply = read_reply(f)
            return reply.get("return")
    except OSError as exc:
        raise UserError(f"lab: cannot reach the VM monitor {path}: {exc}; "
                        "is the lab up? (`nomadkit lab status`)") from exc


def read_reply(f: Any) -> dict[str, Any]:
    """The next reply, skipping asynchronous events; a QMP error becomes a UserError."""
    while True:
        line = f.readline()
        if not line:
            raise OSError("monitor closed the connection")
        msg = json.loads(line)
        if "error" in msg:
            raise UserError(f"lab: QEMU refused: {msg['error'].get('desc', msg['error'])}")
        if "return" in msg:
            return msg
