"""The one policy rule the agent owns: `priority 1000 lookup nk-<active uplink>`.

The uplinks role creates a routing table per uplink and the `priority 900 lookup main
suppress_prefixlength 0` rule that keeps connected and management routes working. Moving
traffic is replacing rule 1000, atomically: the new rule is added first (a rule added with an
equal priority sorts after the old one, so nothing changes yet), then the old one is deleted.
At no moment is there no rule.

The rules are changed over rtnetlink directly, not with `ip`: on a kit's slow CPU each `ip`
process costs a few hundred milliseconds, and a failover is three of them.
"""

from __future__ import annotations

import os
import socket
import struct

PRIORITY = 1000

RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 0x1, 0x4, 0x200, 0x400, 0x300
FRA_PRIORITY, FRA_TABLE = 6, 15
FR_ACT_TO_TBL = 1
HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
RULE = struct.Struct("=BBBBBBBBI")  # fib_rule_hdr: family, lengths, tos, table, _, _, action, flags


def _attr(kind: int, value: int) -> bytes:
    return struct.pack("=HHI", 8, kind, value)


def _request(kind: int, flags: int, body: bytes) -> list[bytes]:
    """Send one rtnetlink request; return the payloads of the replies (raising on an error)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.send(HEADER.pack(HEADER.size + len(body), kind, flags, 1, 0) + body)
        replies = []
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset < len(data):
                length, rtype, _, _, _ = HEADER.unpack_from(data, offset)
                payload = data[offset + HEADER.size:offset + length]
                offset += (length + 3) & ~3
                if rtype == NLMSG_DONE:
                    return replies
                if rtype == NLMSG_ERROR:
                    error = -struct.unpack_from("=i", payload)[0]
                    if error:
                        raise OSError(error, f"rtnetlink: {os.strerror(error)}")
                    return replies
                replies.append(payload)


def _rule(kind: int, flags: int, table: int) -> None:
    body = RULE.pack(socket.AF_INET, 0, 0, 0, table if table < 256 else 0, 0, 0, FR_ACT_TO_TBL, 0)
    _request(kind, NLM_F_REQUEST | NLM_F_ACK | flags,
             body + _attr(FRA_PRIORITY, PRIORITY) + _attr(FRA_TABLE, table))


def active_tables() -> list[int]:
    """The table numbers IPv4 rule 1000 currently points at."""
    tables = []
    for payload in _request(RTM_GETRULE, NLM_F_REQUEST | NLM_F_DUMP,
                            RULE.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)):
        attrs, offset, table = {}, RULE.size, payload[4]
        while offset + 4 <= len(payload):
            length, kind = struct.unpack_from("=HH", payload, offset)
            if length == 8:
                attrs[kind] = struct.unpack_from("=I", payload, offset + 4)[0]
            offset += (length + 3) & ~3
        if attrs.get(FRA_PRIORITY, 0) == PRIORITY:
            tables.append(attrs.get(FRA_TABLE, table))
    return tables


def point_to(table: int) -> bool:
    """Make rule 1000 look up `table` and only it; return whether it changed."""
    current = active_tables()
    if current == [table]:
        return False
    if table not in current:
        _rule(RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, table)
    for old in current:
        if old != table:
            _rule(RTM_DELRULE, 0, old)
    return True
