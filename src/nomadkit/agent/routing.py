"""The one policy rule the agent owns: `priority 1000 lookup nk-<active uplink>`.

The uplinks role creates a routing table per uplink and the `priority 900 lookup main
suppress_prefixlength 0` rule that keeps connected and management routes working. Moving
traffic is replacing rule 1000, atomically: the new rule is added first (a rule added with an
equal priority sorts after the old one, so nothing changes yet), then the old one is deleted.
At no moment is there no rule.
"""

from __future__ import annotations

import json
import subprocess

PRIORITY = 1000


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def active_tables() -> list[str]:
    """The tables rule 1000 currently points at (names or numbers, as `ip` prints them)."""
    rules = json.loads(_ip("-j", "rule", "show", "priority", str(PRIORITY)) or "[]")
    return [str(rule["table"]) for rule in rules if "table" in rule]


def point_to(table: int, name: str) -> bool:
    """Make rule 1000 look up `table` (also known as `name`) and only it; return whether it changed."""
    current = active_tables()
    wanted = {str(table), name}
    if len(current) == 1 and current[0] in wanted:
        return False
    if not wanted & set(current):
        _ip("rule", "add", "priority", str(PRIORITY), "lookup", str(table))
    for old in current:
        if old not in wanted:
            _ip("rule", "del", "priority", str(PRIORITY), "lookup", old)
    return True
