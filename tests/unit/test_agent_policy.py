"""Which uplink carries the traffic (`nomadkit.agent.policy.choose`), rule by rule."""

from __future__ import annotations

import pytest

from nomadkit.agent.config import UplinkConf
from nomadkit.agent.health import DEAD, DEGRADED, HEALTHY
from nomadkit.agent.policy import choose

UPLINKS = [UplinkConf("wwan0", "modem", 1, 101), UplinkConf("wwan1", "modem", 2, 102),
           UplinkConf("sat0", "satellite", 3, 103)]
H, G, D = HEALTHY, DEGRADED, DEAD


@pytest.mark.parametrize(("wwan0", "wwan1", "sat0", "active", "chosen", "why"), [
    (H, H, H, None, "wwan0", "start: the first modem by priority"),
    (D, H, H, "wwan0", "wwan1", "a dead modem is left for the next one"),
    (D, D, H, "wwan1", "sat0", "the satellite only when no modem is usable"),
    (G, H, H, "wwan0", "wwan1", "a degrading modem is left before it dies"),
    (G, G, H, "wwan0", "wwan0", "degraded modems still beat the satellite"),
    (G, D, H, "sat0", "sat0", "a modem coming back does not take the traffic from a healthy satellite"),
    (G, D, G, "sat0", "wwan0", "but does from a degraded one"),
    (H, D, H, "sat0", "wwan0", "a modem healthy again wins the traffic back"),
    (G, H, H, "wwan1", "wwan1", "the primary returns only once healthy (the hysteresis)"),
    (H, H, H, "wwan1", "wwan0", "and then it does"),
    (D, D, D, "sat0", "sat0", "nothing usable: stay where we are"),
])
def test_choose(wwan0: str, wwan1: str, sat0: str, active: str | None, chosen: str, why: str) -> None:
    assert choose(UPLINKS, {"wwan0": wwan0, "wwan1": wwan1, "sat0": sat0}, active) == chosen, why
