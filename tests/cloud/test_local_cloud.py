"""The local cloud, up for real on loopback: live stream through the edge, slate on failure,
a signed payment event through the local webhook into the moto ledger, and a clean down.

Uses a copy of the demo tour on shifted ports, so a developer's own local cloud is untouched.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe
import yaml

from nomadkit import ROOT, paths
from nomadkit import secrets as tour_secrets
from nomadkit.cloud import local
from nomadkit.endpoints import CloudEndpoints
from nomadkit.tour import Tour, load_tour

pytestmark = pytest.mark.cloud

PORT_SHIFT = 200
WAIT_S = 60


@pytest.fixture(scope="module")
def tour_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = yaml.safe_load((ROOT / "tours" / "demo.yaml").read_text())
    data["assets_dir"] = str(ROOT / "tours" / "demo-assets")
    data["cloud"]["ports"] = {name: port + PORT_SHIFT for name, port in {
        "moto": 4566, "edge": 8080, "webhook": 8081, "relay_srt": 9000, "relay_http": 8082}.items()}
    path = tmp_path_factory.mktemp("tour") / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def cloud(tour_file: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Tour, CloudEndpoints]]:
    state = tmp_path_factory.mktemp("state")
    patch = pytest.MonkeyPatch()
    patch.setenv("NOMADKIT_CACHE", str(state / "cache"))
    patch.setenv("NOMADKIT_SECRETS", str(state / "secrets"))
    patch.delenv("NOMADKIT_ENDPOINTS", raising=False)
    tour = load_tour(tour_file)
    try:
        yield tour, local.up(tour, tour_file, None, lambda _name, _message: None)
    finally:
        local.down(tour, None, lambda _name, _message: None)
        patch.undo()


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def wait_for_origin(url: str, origin: str) -> tuple[int, dict[str, str], bytes]:
    """Poll the edge until the named origin answers (bounded: WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        status, headers, body = get(url)
        if headers.get("X-Nomadkit-Origin") == origin and status == 200:
            return status, headers, body
        if time.monotonic() > deadline:
            pytest.fail(f"{url}: still {status} from {headers.get('X-Nomadkit-Origin')} "
                        f"after {WAIT_S} s, expected {origin}")
        time.sleep(0.2)


def test_writes_endpoints_for_the_kits(cloud: tuple[Tour, CloudEndpoints]) -> None:
    tour, endpoints = cloud
    written = CloudEndpoints.read(paths.endpoints_file(tour.name))
    assert written == endpoints
    assert endpoints.cdn_url == f"http://127.0.0.1:{8080 + PORT_SHIFT}"
    assert endpoints.relay_srt_urls["stage"] == f"srt://127.0.0.1:{9001 + PORT_SHIFT}"


def test_preflight_sees_the_streams_live_and_drills_the_fallback(
        cloud: tuple[Tour, CloudEndpoints]) -> None:
    """The preflight's CDN checks on the real edge: live first, then the origin drill, after
    which the live origin is back."""
    from nomadkit.preflight.cloud_checks import cdn_fallback, cdn_live
    from nomadkit.preflight.runner import Context, Failed

    tour, endpoints = cloud
    ctx = Context(tour=tour, stop=tour.stops[0], endpoints=endpoints, remotes={},
                  local_cloud=local.LocalCloud.for_tour(tour))
    with pytest.raises(Failed, match="not live at the edge"):
        cdn_live(ctx, None)  # nothing streams yet: the check must say so
    senders = [local.test_pattern(endpoints.relay_srt_urls[s], seconds=60) for s in ("stage", "room")]
    try:
        for stream in ("stage", "room"):
            wait_for_origin(f"{endpoints.cdn_url}/live/{stream}/index.m3u8", "live")
        live = cdn_live(ctx, None)
        assert live["stage"]["origin"] == "live" and live["stage"]["segments"] >= 1
        drill = cdn_fallback(ctx, None)
        assert drill["origin_down_to_slate_s"] < 10 and drill["back_to_live_s"] < 10
        print(f"\npreflight CDN drill: slate after {drill['origin_down_to_slate_s']} s, "
              f"live again after {drill['back_to_live_s']} s")
        assert get(f"{endpoints.cdn_url}/live/stage/index.m3u8")[1]["X-Nomadkit-Origin"] == "live"
    finally:
        for sender in senders:
            sender.kill()
            sender.wait()


def test_a_stopped_ingest_leaves_no_playlist_behind(cloud: tuple[Tour, CloudEndpoints]) -> None:
    """The relay's ingest stopping (a crash, a restart) must not leave its last playlist behind, or
    the edge keeps serving a frozen stream instead of the slate. ffmpeg still writes a segment and
    the playlist as it exits on SIGTERM, after the old script had already cleared them."""
    tour, endpoints = cloud
    playlist = f"{endpoints.cdn_url}/live/stage/index.m3u8"
    state = local.LocalCloud.for_tour(tour)
    sender = local.test_pattern(endpoints.relay_srt_urls["stage"], seconds=40)
    try:
        wait_for_origin(playlist, "live")
        assert local.stop(state, "relay-ingest")
        left = sorted(p.name for p in (state.hls / "live" / "stage").iterdir())
        assert left == [], f"the stopped ingest left {left}"
        wait_for_origin(playlist, "slate")
    finally:
        sender.kill()
        sender.wait()
        local.start_ingest(state)


def test_edge_serves_live_then_the_slate_when_the_origin_stops(
        cloud: tuple[Tour, CloudEndpoints]) -> None:
    tour, endpoints = cloud
    playlist = f"{endpoints.cdn_url}/live/stage/index.m3u8"
    sender = local.test_pattern(endpoints.relay_srt_urls["stage"], seconds=40)
    try:
        _, _, live = wait_for_origin(playlist, "live")
        assert b"seg" in live
        state = local.LocalCloud.for_tour(tour)
        assert local.stop(state, "relay-nginx") and local.stop(state, "relay-ingest")
        status, headers, slate = wait_for_origin(playlist, "slate")
        assert b"slate000.ts" in slate
        status, headers, segment = get(f"{endpoints.cdn_url}/live/stage/slate000.ts")
        assert status == 200 and headers["Content-Type"] == "video/mp2t" and segment[0] == 0x47
    finally:
        sender.kill()
        sender.wait()


def test_signed_event_lands_once_in_the_ledger(cloud: tuple[Tour, CloudEndpoints]) -> None:
    tour, endpoints = cloud
    body = json.dumps({
        "id": f"evt_{secrets.token_hex(8)}", "type": "checkout.session.completed",
        "created": int(time.time()),
        "data": {"object": {"id": "cs_local_1", "payment_status": "paid", "payment_intent": "pi_1",
                            "metadata": {"stop": "alfama", "tier": "general"}}},
    })
    secret = tour_secrets.resolve(tour.commerce.webhook_secret)
    answers = []
    for _ in range(2):
        header = stripe.WebhookSignature.generate_signature_header(body, secret)
        request = urllib.request.Request(endpoints.webhook_url, data=body.encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Stripe-Signature": header})
        with urllib.request.urlopen(request, timeout=10) as response:
            answers.append(json.loads(response.read()))
    assert answers[0]["outcome"] == "ticketed" and answers[1]["duplicate"] is True
    dynamodb = local.aws_client_factory(local.LocalCloud.for_tour(tour))("dynamodb")
    items = dynamodb.scan(TableName=endpoints.ledger_table)["Items"]
    assert len([i for i in items if i["kind"]["S"] == "event"]) == 1
    assert len([i for i in items if i["kind"]["S"] == "ticket"]) == 1


def test_down_stops_everything_and_leaves_nothing(cloud: tuple[Tour, CloudEndpoints]) -> None:
    tour, endpoints = cloud
    pids = [pid for pid in local.status(tour, None).values() if pid]
    assert pids
    local.down(tour, None, lambda _name, _message: None)
    assert not any(Path(f"/proc/{pid}").exists() and local.alive(pid) for pid in pids)
    assert not paths.cloud_state(tour.name).exists()
    for url in (endpoints.cdn_url, endpoints.webhook_url, endpoints.s3_endpoint):
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url, timeout=2)
