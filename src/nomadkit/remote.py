"""Running one command on a kit over SSH, with the same connection data pyinfra uses.

The preflight and `nomadkit status` ask kits small questions (`chronyc tracking`, `df`, the
agent's status) where a whole pyinfra deploy would be too heavy.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from typing import Any

from nomadkit.errors import UserError
from nomadkit.paths import cache_root
from nomadkit.tour import Kit


class Unreachable(UserError):
    """The kit did not answer over SSH; the message names it and says what to check."""


@dataclass(frozen=True)
class Remote:
    """SSH coordinates of one kit (from its pyinfra host data)."""

    name: str
    host: str
    port: int = 22
    user: str = "root"
    key: str | None = None
    known_hosts: str | None = None  # None: the user's own known_hosts, as ssh and pyinfra use
    host_key_checking: str = "accept-new"  # pyinfra's default: trust on first use, then verify

    @classmethod
    def from_host_data(cls, name: str, data: dict[str, Any]) -> Remote:
        """The same data keys (and defaults) as pyinfra's SSH connector."""
        return cls(name, data["ssh_hostname"], int(data.get("ssh_port", 22)),
                   data.get("ssh_user", "root"), data.get("ssh_key"), data.get("ssh_known_hosts_file"),
                   data.get("ssh_strict_host_key_checking", cls.host_key_checking))

    @classmethod
    def for_kit(cls, kit: Kit, connect: dict[str, Any] | None = None) -> Remote:
        """The kit's management address, or the overrides the lab (NOMADKIT_CONNECT) gives."""
        data = {"ssh_hostname": kit.management.address, "ssh_port": kit.management.port,
                "ssh_user": kit.management.user, **(connect or {})}
        return cls.from_host_data(kit.name, data)

    def argv(self, command: str) -> list[str]:
        """One shared SSH connection per kit (ControlMaster): a busy kit's CPU pays for one key
        exchange, not one per question; the master lingers a minute after the last use."""
        sockets = cache_root() / "ssh"
        sockets.mkdir(parents=True, exist_ok=True, mode=0o700)
        args = ["ssh", "-p", str(self.port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=30",
                "-o", f"StrictHostKeyChecking={self.host_key_checking}", "-o", "LogLevel=ERROR",
                "-o", "ControlMaster=auto", "-o", "ControlPersist=60",
                "-o", f"ControlPath={sockets}/%C", "-o", "ServerAliveInterval=10"]
        if self.known_hosts:
            args += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.key:
            args += ["-i", self.key, "-o", "IdentitiesOnly=yes"]
        return [*args, f"{self.user}@{self.host}", command]

    def run(self, command: str, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `command` on the kit (stdin from `input`); raise `Unreachable` when SSH fails."""
        try:
            done = subprocess.run(self.argv(command), capture_output=True, text=True,
                                  timeout=timeout, input=input)
        except subprocess.TimeoutExpired:
            raise Unreachable(
                f"{self.name}: no answer over SSH within {timeout:.0f} s "
                f"({self.user}@{self.host}:{self.port}) — is the kit on and reachable?") from None
        if done.returncode == 255:
            raise Unreachable(f"{self.name}: SSH to {self.user}@{self.host}:{self.port} failed: "
                              f"{done.stderr.strip() or 'no reason given'} — check the kit's management "
                              "address and that it is powered")
        return done

    def output(self, command: str, timeout: float = 60, input: str | None = None) -> str:
        """stdout of a command that must succeed; its stderr explains a failure."""
        done = self.run(command, timeout, input)
        if done.returncode:
            raise RuntimeError(f"{done.stderr.strip()[:300] or 'no error output'} (exit {done.returncode} "
                               f"of `{command[:200]}`)")
        return done.stdout


    def http(self, method: str, url: str, body: str = "",
             headers: dict[str, str] | None = None, timeout: float = 15) -> tuple[int, str]:
        """An HTTP request made BY the kit (its own network path), with curl on the kit."""
        args = ["curl", "-sS", "-o", "-", "-w", "\\n%{http_code}", "-X", method,
                "--max-time", str(int(timeout))]
        for name, value in (headers or {}).items():
            args += ["-H", f"{name}: {value}"]
        if body:
            args += ["--data-binary", "@-"]
        out = self.output(quote(*args, url), timeout=timeout + 15, input=body or None)
        text, _, code = out.rpartition("\n")
        return int(code or 0), text


def quote(*words: str) -> str:
    return " ".join(shlex.quote(w) for w in words)
