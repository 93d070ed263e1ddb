"""Checks of the paths between kits and the tour's cloud: payments, the door, the CDN.

Payment events are sent BY a kit (curl on the kit), so they travel the venue network the
real payment provider's customers will not — but the kit's own checkout and door traffic will.
The signature header is computed here; the webhook secret never leaves this machine.
"""

from __future__ import annotations

import json
import time
import uuid

from nomadkit import tickets
from nomadkit.cloud import local
from nomadkit.preflight.network_checks import agent_status, edge_get
from nomadkit.preflight.runner import Check, Context, Evidence, Failed, Skipped, Warned
from nomadkit.secrets import resolve
from nomadkit.tour import Kit
from nomadkit.webhook.signature import compute_signature

STALE_S = 600  # older than the webhook's 300 s tolerance
FALLBACK_LIMIT_S = 10.0  # viewers must see the slate within seconds, never an error page


def _first_kit(ctx: Context) -> Kit:
    return ctx.kits[0]


def _event(ctx: Context, tier: str) -> dict:
    session = f"cs_preflight_{uuid.uuid4().hex[:12]}"
    return {"id": f"evt_preflight_{uuid.uuid4().hex[:16]}", "type": "checkout.session.completed",
            "created": int(time.time()), "livemode": False,
            "data": {"object": {"id": session, "payment_status": "paid",
                                "payment_intent": f"pi_{session}", "customer": "cus_preflight",
                                "metadata": {"stop": ctx.stop.name, "tier": tier, "quantity": "1",
                                             "preflight": "true"}}}}


def _post_event(ctx: Context, event: dict, secret: str, at: int) -> tuple[int, dict]:
    assert ctx.kit_endpoints
    body = json.dumps(event)
    header = f"t={at},v1={compute_signature(at, body.encode(), secret)}"
    status, text = ctx.remotes[_first_kit(ctx).name].http(
        "POST", ctx.kit_endpoints.webhook_url, body,
        {"content-type": "application/json", "stripe-signature": header})
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, {"raw": text[:200]}


def payments_end_to_end(ctx: Context, kit: Kit | None) -> Evidence:
    """A signed test checkout lands once; its replay, a stale and a forged copy are refused."""
    if ctx.endpoints is None:
        raise Failed("no cloud endpoints — run `nomadkit cloud up` (or point NOMADKIT_ENDPOINTS at "
                     "`pulumi stack output --json`)")
    secret = resolve(ctx.tour.commerce.webhook_secret)
    ctx.secrets.append(secret)
    tier = next(t.name for t in ctx.tour.commerce.tiers if not t.members_only)
    event, now = _event(ctx, tier), int(time.time())
    valid = _post_event(ctx, event, secret, now)
    again = _post_event(ctx, event, secret, now)
    stale = _post_event(ctx, _event(ctx, tier), secret, now - STALE_S)
    forged = _post_event(ctx, _event(ctx, tier), "whsec_not_the_tour_secret", now)
    evidence = {"valid": [valid[0], valid[1].get("outcome")],
                "duplicate": [again[0], again[1].get("duplicate")],
                "stale": stale[0], "forged": forged[0], "from_kit": _first_kit(ctx).name}
    if valid[0] != 200 or valid[1].get("outcome") != "ticketed":
        raise Failed("the webhook did not ticket a correctly signed checkout — check that the "
                     "webhook secret in the tour file matches the payment provider's and the "
                     f"cloud's ({valid[1].get('reason') or valid[1]})", **evidence)
    if again[0] != 200 or not again[1].get("duplicate"):
        raise Failed("a replayed event was not recognised as a duplicate — the ledger is not "
                     "recording event ids; redeploy the cloud", **evidence)
    if stale[0] < 400 or forged[0] < 400:
        raise Failed("a stale or forged event was accepted — the webhook must be redeployed "
                     "before taking payments", **evidence)
    return evidence


def door_checkin_offline(ctx: Context, kit: Kit | None) -> Evidence:
    """The kit admits a ticket signed with the tour key, once; a forged one never."""
    assert kit
    key = resolve(ctx.tour.commerce.ticket_key)
    ctx.secrets.append(key)
    remote = ctx.remotes[kit.name]
    serving = agent_status(ctx, kit).get("door", {}).get("stop") or ctx.stop.name
    claims = {"tid": f"preflight-{uuid.uuid4().hex[:10]}", "tour": ctx.tour.name,
              "stop": serving, "tier": "preflight", "qty": 1, "iat": int(time.time())}
    token = tickets.sign_ticket(key, **claims)
    forged = tickets.sign_ticket(tickets.generate_ticket_key(), **claims)
    url = f"http://127.0.0.1:{kit.agent.http_port}/checkin"
    answers, took = [], []
    for scanned in (token, token, forged):
        start = time.monotonic()
        answers.append(remote.http("POST", url, json.dumps({"token": scanned, "door": "preflight"}),
                                   {"content-type": "application/json"}))
        took.append(round(time.monotonic() - start, 2))
    evidence = {"door_serves": serving, "first": answers[0][0], "second": answers[1][0],
                "forged": answers[2][0], "scan_s": took}
    if answers[0][0] != 200:
        raise Failed("the door refused a valid ticket — check the ticket public key in "
                     f"/etc/nomadkit/agent.json matches the tour key ({answers[0][1][:120]})", **evidence)
    if answers[1][0] != 409 or answers[2][0] != 422:
        raise Failed("the door admitted a second scan or a forged ticket — redeploy the agent",
                     **evidence)
    if serving != ctx.stop.name:
        raise Warned(f"the door verifies tickets, but for '{serving}' today, not '{ctx.stop.name}' "
                     "— the agent picks the stop from the tour dates and the kit's clock; on the "
                     "night it serves this stop", **evidence)
    return evidence


def _streams(ctx: Context) -> list[str]:
    return [s.name for kit in ctx.kits for s in kit.streams]


def cdn_live(ctx: Context, kit: Kit | None) -> Evidence:
    """Viewers get every live stream of the stop through the CDN edge, not the slate."""
    if ctx.endpoints is None:
        raise Failed("no cloud endpoints — run `nomadkit cloud up` first")
    evidence: Evidence = {}
    for stream in _streams(ctx):
        status, origin, body = edge_get(ctx, f"/live/{stream}/index.m3u8")
        segments = body.decode(errors="replace").count("#EXTINF")
        evidence[stream] = {"http": status, "origin": origin or "unknown", "segments": segments}
        if status != 200 or origin == "slate" or not segments:
            raise Failed(f"'{stream}' is not live at the edge (HTTP {status}, {origin or 'no'} "
                         "origin) — check the kit's encoder and that the relay receives its SRT",
                         **evidence)
    return evidence


def cdn_fallback(ctx: Context, kit: Kit | None) -> Evidence:
    """With the live origin down, the edge serves the slate within seconds; then it comes back."""
    cloud = ctx.local_cloud
    if cloud is None:
        raise Skipped("the origin drill stops the relay: only the local cloud allows it here; on "
                      "AWS run it in a staging stack")
    stream = _streams(ctx)[0]
    local.stop(cloud, "relay-nginx")
    start = time.monotonic()
    try:
        origin = ""
        while time.monotonic() - start < FALLBACK_LIMIT_S and origin != "slate":
            status, origin, _ = edge_get(ctx, f"/live/{stream}/index.m3u8")
            time.sleep(0.05)
        to_slate = time.monotonic() - start
    finally:
        local.start_origin(cloud)
    back = time.monotonic()
    while time.monotonic() - back < FALLBACK_LIMIT_S and edge_get(
            ctx, f"/live/{stream}/index.m3u8")[1] != "live":
        time.sleep(0.2)
    evidence = {"stream": stream, "origin_down_to_slate_s": round(to_slate, 2),
                "http": status, "back_to_live_s": round(time.monotonic() - back, 2)}
    if origin != "slate" or status != 200:
        raise Failed(f"the edge did not serve the slate within {FALLBACK_LIMIT_S:.0f} s of the "
                     "origin failing — viewers would see an error; check the CDN's origin group",
                     **evidence)
    return evidence


CLOUD_CHECKS = [
    Check("payments.e2e", "payments end to end from the venue network", payments_end_to_end,
          per_kit=False),
    Check("door.checkin", "door check-in verifies a ticket offline", door_checkin_offline),
    Check("cdn.live", "live stream visible through the CDN", cdn_live, per_kit=False),
    Check("cdn.fallback", "CDN falls back to the slate", cdn_fallback, per_kit=False,
          exclusive=True),
]
