"""The failover drill's view of the stream: what the CDN edge lists, and when the stream is back.

A stand-in edge on loopback serves a playlist that the test changes, with the local edge's
`X-Nomadkit-Origin` header; the lab's drills run the same code against the real edge.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from nomadkit.preflight import network_checks
from nomadkit.preflight.network_checks import edge_segments, stream_back


class Edge(http.server.BaseHTTPRequestHandler):
    playlist: ClassVar[list[str]] = []
    origin = "live"

    def do_GET(self) -> None:
        body = "#EXTM3U\n" + "".join(f"#EXTINF:2.0,\n{name}\n" for name in Edge.playlist)
        self.send_response(200 if Edge.playlist else 503)
        self.send_header("X-Nomadkit-Origin", Edge.origin)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def ctx() -> Iterator[Any]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Edge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Edge.playlist, Edge.origin = ["seg00041.ts", "seg00042.ts"], "live"
    yield SimpleNamespace(endpoints=SimpleNamespace(cdn_url=f"http://127.0.0.1:{server.server_address[1]}/"))
    server.shutdown()


def test_the_edge_lists_live_segments_and_nothing_for_the_slate_or_an_error(ctx: Any) -> None:
    assert edge_segments(ctx, "stage") == {"seg00041.ts", "seg00042.ts"}
    Edge.origin = "slate"
    assert edge_segments(ctx, "stage") == set()
    Edge.origin, Edge.playlist = "live", []
    assert edge_segments(ctx, "stage") == set()


def test_the_stream_is_back_after_two_segments_the_edge_did_not_list_at_the_move(ctx: Any) -> None:
    moved_at = time.time()

    def relay() -> None:
        time.sleep(0.5)
        Edge.playlist = []  # the relay let the old session go: 503, the slate
        time.sleep(0.5)
        Edge.playlist = ["seg00000.ts"]  # one new segment is not enough (a flush of the old one)
        time.sleep(0.5)
        Edge.playlist = ["seg00000.ts", "seg00001.ts"]

    threading.Thread(target=relay, daemon=True).start()
    back = stream_back(ctx, "stage", moved_at)
    assert back is not None and 1.4 < back < 3.0, back


def test_a_stream_that_never_comes_back_is_none(ctx: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network_checks, "STREAM_BACK_S", 1.0)
    assert stream_back(ctx, "stage", time.time()) is None
