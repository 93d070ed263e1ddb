"""Which uplink carries the live traffic: a pure function, so its rules are easy to test.

Order: healthy modems by priority, then degraded modems, then the satellite (healthy before
degraded). The satellite is used only when no modem is usable; a dead uplink never is. The
hysteresis lives in the health states: an uplink that was dead or degraded is healthy again only
after `recover_after_s` of good probes, and a healthy uplink carrying the traffic is left only
for a better HEALTHY one — so a modem coming back does not take the traffic from a working
satellite after its first good probe, and a flapping modem never makes the traffic flap.
"""

from __future__ import annotations

from nomadkit.agent.config import UplinkConf
from nomadkit.agent.health import DEAD, HEALTHY


def rank(uplink: UplinkConf, state: str) -> tuple[bool, bool, int]:
    return (uplink.kind == "satellite", state != HEALTHY, uplink.priority)


def choose(uplinks: list[UplinkConf], states: dict[str, str], active: str | None) -> str | None:
    """The uplink that should carry traffic now; the active one when nothing is usable."""
    usable = [u for u in uplinks if states.get(u.name) != DEAD]
    if not usable:
        return active
    if states.get(active or "") == HEALTHY:
        usable = [u for u in usable if states[u.name] == HEALTHY]
    return min(usable, key=lambda u: rank(u, states[u.name])).name
