"""The lab's pieces that need no VM: address scheme, impairment arithmetic, CLI units, cache keys."""

from __future__ import annotations

import ipaddress
import random
import subprocess
from pathlib import Path

import pytest

from nomadkit.errors import UserError
from nomadkit.lab import image, net
from nomadkit.lab.cli import parse_quantity
from nomadkit.lab.lab import kits_from_count, kits_from_tour
from nomadkit.lab.wire import Direction, Impairment
from nomadkit.tour import load_tour

REPO = Path(__file__).resolve().parents[2]


def uplinks(kits: int = 3) -> list[net.UplinkNet]:
    return [net.UplinkNet(kit=f"kit-{k}", name=name, kit_index=k, uplink_index=u,
                          mac=net.lab_mac(k, u + 1))
            for k in range(kits) for u, name in enumerate(net.DEFAULT_UPLINKS)]


def test_every_kit_uplink_has_its_own_subnet_tap_and_macs() -> None:
    ups = uplinks()
    assert len({u.network for u in ups}) == len(ups)
    assert len({u.tap for u in ups}) == len(ups)
    assert len({u.mac for u in ups} | {u.tap_mac for u in ups}) == 2 * len(ups)
    for u in ups:
        assert len(u.tap) <= 15
        assert ipaddress.IPv4Address(u.gateway) in u.network
        assert ipaddress.IPv4Address(u.address) in u.network
        assert ipaddress.IPv4Address(u.address) in ipaddress.IPv4Network("100.64.0.0/10")


def test_cloud_address_is_outside_every_uplink_and_not_loopback() -> None:
    cloud = ipaddress.IPv4Address(net.CLOUD_ADDRESS)
    assert not cloud.is_loopback
    assert all(cloud not in u.network for u in uplinks())
    assert cloud in ipaddress.IPv4Network(f"{net.LAB_VETH_ADDRESS}/{net.VETH_PREFIX}",
                                          strict=False)


def test_dnsmasq_gives_each_uplink_exactly_its_address() -> None:
    ups = uplinks(1)
    conf = net.dnsmasq_config(ups, Path("/run/x"))
    for u in ups:
        assert f"interface={u.tap}" in conf
        assert f"dhcp-range=set:{u.tap},{u.address},{u.address}," in conf
    assert "no-resolv" in conf  # never forwards a query off the lab


def test_root_nat_only_sends_the_cloud_address_from_the_lab_veth_to_loopback() -> None:
    rules = net.root_ruleset()
    assert f'iifname "{net.HOST_VETH}" ip daddr {net.CLOUD_ADDRESS} dnat to 127.0.0.1' in rules


def test_lab_time_server_answers_kits_for_the_cloud_address_and_never_sets_the_clock(
        tmp_path: Path) -> None:
    assert (f"ip daddr {net.CLOUD_ADDRESS} udp dport 123 dnat to {net.LAB_VETH_ADDRESS}"
            in net.lab_ruleset())
    conf = tmp_path / "chrony.conf"
    conf.write_text(net.chrony_config(tmp_path))
    parsed = subprocess.run(["chronyd", "-p", "-f", str(conf)], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr
    assert f"bindaddress {net.LAB_VETH_ADDRESS}" in parsed.stdout and "local stratum" in parsed.stdout
    assert "allow 100.64.0.0/10" in parsed.stdout


def test_delay_is_added_to_every_frame() -> None:
    d = Direction()
    assert d.schedule(10.0, 1500, Impairment(delay_ms=80)) == pytest.approx(10.08)
    assert d.frames == 1


def test_rate_limit_spaces_frames_and_drops_past_the_queue_limit() -> None:
    d = Direction()
    imp = Impairment(rate_kbit=1000)  # 1500 bytes = 12 ms on the wire
    times = [d.schedule(0.0, 1500, imp) for _ in range(50)]
    sent = [t for t in times if t is not None]
    assert sent[:3] == pytest.approx([0.012, 0.024, 0.036])
    assert max(sent) <= 0.5 + 0.012
    assert d.overflow == 50 - len(sent) > 0


def test_loss_drops_about_the_given_share() -> None:
    random.seed(4)
    d = Direction()
    kept = [d.schedule(0.0, 100, Impairment(loss_pct=20)) for _ in range(5000)]
    assert 900 < d.lost < 1100
    assert d.frames == sum(t is not None for t in kept)


@pytest.mark.parametrize(("kind", "text", "value"), [
    ("delay", "80ms", 80), ("delay", "0.5s", 500), ("rate", "2mbit", 2000),
    ("rate", "500kbit", 500), ("loss", "5%", 5), ("loss", "0.5", 0.5),
])
def test_cli_quantities_use_tc_units(kind: str, text: str, value: float) -> None:
    assert parse_quantity(kind, text) == value


@pytest.mark.parametrize(("kind", "text"), [("delay", "80 parsecs"), ("rate", "2mbps"),
                                            ("loss", "150%")])
def test_bad_quantities_say_what_to_write(kind: str, text: str) -> None:
    with pytest.raises(UserError, match=r"e\.g\."):
        parse_quantity(kind, text)


def test_kit_count_is_bounded_with_a_reason() -> None:
    assert [k.name for k in kits_from_count(2)] == ["kit-1", "kit-2"]
    with pytest.raises(UserError, match="1 to 8"):
        kits_from_count(0)


def test_image_key_changes_with_its_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    base = image.image_key("ssh-ed25519 AAAA lab")
    assert image.image_key("ssh-ed25519 AAAA lab") == base
    assert image.image_key("ssh-ed25519 BBBB lab") != base
    monkeypatch.setattr(image, "KIT_PACKAGES", (*image.KIT_PACKAGES, "tcpdump"))
    assert image.image_key("ssh-ed25519 AAAA lab") != base


def test_tour_kits_keep_their_uplink_names_and_macs() -> None:
    tour = load_tour(REPO / "tours" / "demo.yaml")
    specs = kits_from_tour(tour)
    assert [s.name for s in specs] == [k.name for k in tour.kits]
    for spec, kit in zip(specs, tour.kits, strict=True):
        assert spec.uplinks == tuple((u.name, u.mac) for u in kit.uplinks)


@pytest.mark.parametrize("accel", ["tcg", "kvm"])
def test_the_tour_as_lab_kits_play_it_is_a_valid_tour(accel: str) -> None:
    from nomadkit.lab.played import TCG_FPS, TCG_RESOLUTION, play_in_lab
    from nomadkit.tour import Tour

    tour = load_tour(REPO / "tours" / "demo.yaml")
    data = tour.model_dump(mode="json", exclude_none=True)
    for kit in data["kits"]:
        play_in_lab(kit, accel)
    played = Tour.model_validate(data)
    assert all(k.hardware == "lab" for k in played.kits)
    streams = [s for k in played.kits for s in k.streams]
    lighter = [s.resolution == TCG_RESOLUTION and s.fps == TCG_FPS for s in streams]
    assert all(lighter) if accel == "tcg" else not any(lighter)
