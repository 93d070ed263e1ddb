"""`nomadkit render`: every file a kit gets, from the Tour model, checked by the real tools.

The validators are the tools the kit runs (nginx, systemd-analyze, nft, chronyd, sshd, visudo,
NetworkManager's keyfile parser, NUT); each is also shown to fail on a broken file, so a pass
means something. Root is needed for the private namespaces the validators run in.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nomadkit import ROOT
from nomadkit.cli import main
from nomadkit.deploy import checks, write_tree
from nomadkit.deploy.checks import run_checks
from nomadkit.endpoints import CloudEndpoints
from nomadkit.roles import kit_files, uplinks
from nomadkit.tour import Kit, Tour, load_tour

DEMO = ROOT / "tours" / "demo.yaml"
TOOLS = ("nginx", "systemd-analyze", "nft", "chronyd", "sshd", "visudo", "nmcli", "upsc", "unshare",
         "shellcheck")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or any(shutil.which(t) is None for t in TOOLS),
    reason=f"validators need root (private namespaces) and {', '.join(TOOLS)} (make setup)")


def endpoints_for(tour: Tour, cdn: str = "http://10.0.2.2:8080",
                  relay: str = "srt://10.0.2.2") -> CloudEndpoints:
    """Realistic endpoints; every field the model has, so a new field does not break the test."""
    values: dict[str, object] = {name: f"test-{name}" for name, f in CloudEndpoints.model_fields.items()
                                 if f.is_required()}
    streams = [s.name for k in tour.kits for s in k.streams]
    values |= {"cdn_url": cdn, "region": "eu-west-1"}
    if "relay_srt_urls" in values:
        values["relay_srt_urls"] = {name: f"{relay}:{9000 + i}" for i, name in enumerate(streams)}
    else:
        values["relay_srt_url"] = f"{relay}:9000"
    return CloudEndpoints.model_validate(values)


def lab(kit: Kit) -> Kit:
    return kit.model_copy(update={"hardware": "lab"})


@pytest.fixture(scope="module")
def tour() -> Tour:
    return load_tour(DEMO)


@pytest.mark.parametrize("hardware", ["mini-pc", "lab"])
@pytest.mark.parametrize("cloud", [False, True], ids=["no-cloud", "cloud"])
def test_every_file_of_every_kit_passes_the_real_validators(tour: Tour, tmp_path: Path, hardware: str,
                                                             cloud: bool) -> None:
    for kit in tour.kits:
        kit = kit.model_copy(update={"hardware": hardware})
        out = tmp_path / kit.name
        write_tree(tour, kit, endpoints_for(tour) if cloud else None, out)
        results = run_checks(out, kit)
        assert {r.check for r in results} >= {"nginx -t", "systemd-analyze verify", "nft -c -f",
                                               "chronyd -p", "sshd -t", "visudo -c",
                                               "nmcli --offline (keyfile load)", "sh -n + shellcheck",
                                               "upsd + upsmon (+ upsc in the lab)"}
        assert [(r.check, r.detail) for r in results if r.status != "pass"] == []


BREAKAGES = {
    "check_nginx": ("etc/nginx/conf.d/nomadkit-cache.conf", "    listen 80 default_server;",
                 "    listen 80 default_server\n"),
    "check_systemd": ("etc/systemd/system/nomadkit-encoder@.service", "Restart=always",
                               "Restart=sometimes"),
    "check_nftables": ("etc/nftables.conf", "policy drop;", "policy maybe;"),
    "check_chrony": ("etc/chrony/chrony.conf", "rtcsync", "rtcsink"),
    "check_sshd": ("etc/ssh/sshd_config.d/nomadkit.conf", "PasswordAuthentication no",
                "PasswordAuthentication never"),
    "check_sudoers": ("etc/sudoers.d/nomadkit", "NOPASSWD: ALL", "NOPASSWD ALL"),
    "check_networkmanager": ("etc/NetworkManager/system-connections/nk-sat0.nmconnection",
                                       "method=auto", "method=sometimes"),
    "check_shell": ("usr/local/bin/nomadkit-encoder", "esac", "esca"),
    "check_nut": ("etc/nut/upsmon.conf", 'upsmon "', 'upsmon "wrong'),
}


@pytest.mark.parametrize("check", list(BREAKAGES))
def test_each_validator_fails_on_a_broken_file(tour: Tour, tmp_path: Path, check: str) -> None:
    kit = lab(tour.kits[0])
    write_tree(tour, kit, endpoints_for(tour), tmp_path)
    path, old, new = BREAKAGES[check]
    text = (tmp_path / path).read_text()
    assert old in text
    (tmp_path / path).write_text(text.replace(old, new, 1))
    result = getattr(checks, check)(tmp_path, kit)
    assert result.status == "fail", result
    assert result.detail


def test_render_command_writes_the_tree_and_reports_checks_as_json(tmp_path: Path, capsys) -> None:
    assert main(["render", str(DEMO), "--kit", "kit-b", "--out", str(tmp_path), "--check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["kit"] == "kit-b"
    assert all((tmp_path / f.lstrip("/")).is_file() for f in report["files"])
    assert all(c["status"] == "pass" for c in report["checks"])


def test_render_names_an_unknown_kit(capsys) -> None:
    assert main(["render", str(DEMO), "--kit", "kit-z", "--out", "/nonexistent"]) == 1
    err = capsys.readouterr().err
    assert "no kit 'kit-z'" in err and "kit-a, kit-b" in err


def test_uplink_tables_and_metrics_follow_priority_order(tour: Tour) -> None:
    kit = tour.kits[0]
    assert uplinks.tables(kit) == {"wwan0": 101, "wwan1": 102, "sat0": 103}
    files = kit_files(tour, lab(kit), None)
    for name, table in uplinks.tables(kit).items():
        keyfile = files[f"/etc/NetworkManager/system-connections/nk-{name}.nmconnection"]
        assert f"route-metric={table}\n" in keyfile and "type=ethernet" in keyfile
        assert f"{table} nk-{name}\n" in files["/etc/iproute2/rt_tables.d/nomadkit.conf"]
    assert "ip -4 rule add priority 900 lookup main suppress_prefixlength 0" in \
        files["/etc/systemd/system/nomadkit-policy-routing.service"]


def test_real_modems_get_gsm_with_the_resolved_pin_and_renders_never_hold_it(tour: Tour) -> None:
    kit = tour.kits[0]
    redacted = kit_files(tour, kit, None)["/etc/NetworkManager/system-connections/nk-wwan0.nmconnection"]
    assert "type=gsm" in redacted and "apn=internet\n" in redacted
    assert "pin=REDACTED-kit_a_wwan0_pin" in redacted
    resolved = uplinks.files(tour, kit, None, secret=lambda ref: "8642" if ref.endswith("wwan0_pin") else "x")
    assert "pin=8642\n" in resolved["/etc/NetworkManager/system-connections/nk-wwan0.nmconnection"]
    assert "type=ethernet" in resolved["/etc/NetworkManager/system-connections/nk-sat0.nmconnection"]


def test_firewall_allows_ssh_on_management_only_and_lan_services_on_the_lan(tour: Tour) -> None:
    kit = tour.kits[0]
    rules = kit_files(tour, kit, None)["/etc/nftables.conf"]
    ssh = [line for line in rules.splitlines() if "dport 22" in line]
    assert ssh == ['        iifname "mgmt0" tcp dport 22 accept comment "SSH: management only"']
    assert f'iifname "lan0" tcp dport {{ 80, {kit.agent.http_port} }} accept' in rules
    assert "policy drop;" in rules.split("chain forward")[0]


def test_encoder_profiles(tour: Tour) -> None:
    kit, stream = tour.kits[0], tour.kits[0].streams[0]
    endpoints = endpoints_for(tour)
    real = kit_files(tour, kit, endpoints)["/usr/local/bin/nomadkit-encoder"]
    in_lab = kit_files(tour, lab(kit), endpoints)["/usr/local/bin/nomadkit-encoder"]
    assert "-f v4l2" in real and "-f alsa" in real and "lavfi" not in real
    assert "testsrc2=size=640x360:rate=25" in in_lab and "v4l2" not in in_lab
    live, fallback, prewarm, send = (line for line in in_lab.splitlines() if line.strip().startswith("exec "))
    handoff = f"udp://127.0.0.1:{kit.handoff_port}"
    assert f"{handoff}?pkt_size=1316" in live and "-b:v 900k" in live and "f=segment" in live
    assert "-b:a 48k" in fallback and "-f segment" in fallback and f"-f mpegts '{handoff}" in fallback
    assert "-f null -" in prewarm and "udp://" not in prewarm
    assert "srt://" not in live + fallback + prewarm, "only the sender talks SRT (it alone reconnects)"
    assert send.split()[1:4] == ["srt-live-transmit", "-a:yes", "-ll:warn"] and handoff in send
    assert f"streamid=kit-a/{stream.name}&latency={stream.latency_ms}" in send
    no_cloud = kit_files(tour, lab(kit), None)["/usr/local/bin/nomadkit-encoder"]
    assert "srt://" not in no_cloud and "f=segment" in no_cloud and "send:" not in no_cloud


def test_dispatcher_and_policy_rule_build_the_uplink_tables(tour: Tour, tmp_path: Path) -> None:
    """The rendered dispatcher script and policy-rule command, run in a network namespace with a
    veth named like an uplink: the uplink's routes land in its table, rule 900 appears once."""
    kit = lab(tour.kits[0])
    write_tree(tour, kit, None, tmp_path)
    dispatcher = tmp_path / "etc/NetworkManager/dispatcher.d/50-nomadkit-uplinks"
    unit = (tmp_path / "etc/systemd/system/nomadkit-policy-routing.service").read_text()
    rule = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    rule = rule.removeprefix("ExecStart=/bin/sh -c ").strip("'")
    ns = f"nkt-{os.getpid()}"
    run = functools.partial(subprocess.run, check=True, capture_output=True, text=True)
    run(["ip", "netns", "add", ns])
    try:
        for cmd in ("link add wwan1 type veth peer name lab1", "link set wwan1 up", "link set lab1 up",
                    "addr add 100.65.0.2/24 dev wwan1",
                    "route add default via 100.65.0.1 dev wwan1 proto dhcp metric 102"):
            run(["ip", "-n", ns, *cmd.split()])
        for action in ("up", "dhcp4-change"):
            run(["ip", "netns", "exec", ns, "sh", str(dispatcher), "wwan1", action])
        table = run(["ip", "-n", ns, "-4", "route", "show", "table", "102"]).stdout
        assert "default via 100.65.0.1 dev wwan1" in table and "100.65.0.0/24 dev wwan1" in table
        for _ in range(2):
            run(["ip", "netns", "exec", ns, "sh", "-c", rule])
        rules = run(["ip", "-n", ns, "-4", "rule", "show"]).stdout
        assert rules.count("900:\tfrom all lookup main suppress_prefixlength 0") == 1, rules
        run(["ip", "netns", "exec", ns, "sh", str(dispatcher), "sat0", "up"])  # not its uplink: no-op
    finally:
        run(["ip", "netns", "del", ns])
