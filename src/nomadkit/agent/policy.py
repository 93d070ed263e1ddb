"""Which uplink carries the live traffic: a pure function, so its rules are easy to test.

Order: healthy modems by priority, then degraded modems, then the satellite (healthy before
degraded). The satellite is used only when no modem is usable; a dead uplink never is. The
hysteresis lives in the health states: a better uplink wins back the traffic only once it is
healthy again, which takes `recover_after_s` of good probes.
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
    return min(usable, key=lambda u: rank(u, states[u.name])).name
