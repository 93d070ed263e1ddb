"""The encoder's profile: live (video ladder) or fallback (audio only), switched with systemctl,
and the SRT sender that carries either to the relay.

The encoder role ships two systemd templates per stream; the fallback one Conflicts= the live
one, so `systemctl start` of either is the whole switch. The local recording runs in both
profiles, so switching never stops it. Both hand their output to the stream's sender
(`nomadkit-sender@S`) on loopback; only the sender talks SRT, so only it reconnects when the
uplink changes.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

LIVE, FALLBACK = "live", "fallback"
UNITS = {LIVE: "nomadkit-encoder@{}.service", FALLBACK: "nomadkit-encoder-fallback@{}.service"}
SENDER = "nomadkit-sender@{}.service"


def unit(profile: str, stream: str) -> str:
    return UNITS[profile].format(stream)


class Encoder:
    """Drives the encoder units of every stream of the kit.

    + systemctl: the systemctl command (argv prefix)
    + streams: stream names
    """

    def __init__(self, systemctl: Sequence[str], streams: Sequence[str]) -> None:
        self.systemctl = list(systemctl)
        self.streams = list(streams)
        self.profile: str | None = None

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.systemctl, *args], capture_output=True, text=True, timeout=30)

    def select(self, profile: str) -> list[str]:
        """Start `profile`'s unit for every stream (unless already selected); return errors."""
        if profile == self.profile or not self.streams:
            return []
        errors = []
        for stream in self.streams:
            done = self._run("start", "--no-block", unit(profile, stream))
            if done.returncode:
                errors.append(f"{unit(profile, stream)}: {done.stderr.strip() or done.returncode}")
        if not errors:
            self.profile = profile
        return errors

    def reconnect(self) -> None:
        """After the path moved, restart the senders so their SRT sessions start on it.

        An SRT session is tied to the source address it began with; on a new uplink the relay
        would drop its packets until the session timed out. A new sender process connects in a
        fraction of a second; the encoders, and the recordings, are not touched.
        """
        for stream in self.streams:
            self._run("restart", "--no-block", SENDER.format(stream))

    def states(self) -> dict[str, dict[str, str]]:
        """`systemctl is-active` of both profiles and the sender of every stream (for the status
        endpoint)."""
        out = {}
        for stream in self.streams:
            names = [unit(LIVE, stream), unit(FALLBACK, stream), SENDER.format(stream)]
            answer = self._run("is-active", *names).stdout.split()
            out[stream] = dict(zip((LIVE, FALLBACK, "sender"), answer + ["unknown"] * (3 - len(answer)),
                                   strict=True))
        return out
