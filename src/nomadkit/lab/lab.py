"""The lab: kits as QEMU VMs whose uplinks reach the cloud through a namespace we control.

`Lab().up(kits)` builds (or reuses) the image, makes the lab network, boots one VM per kit
(resumed from its golden snapshot when there is one) and writes a pyinfra inventory;
`link`, `impair`, `ssh`, `status` act on the running lab; `down` leaves nothing behind.
State lives in `~/.cache/nomadkit/lab/run/` (`lab.json`, sockets, logs, `inventory.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nomadkit.errors import UserError
from nomadkit.lab import net, vm, wire
from nomadkit.lab.image import build_image, lab_ssh_key
from nomadkit.lab.progress import Progress
from nomadkit.lab.qmp import qmp
from nomadkit.paths import cache_root
from nomadkit.tour import Tour


@dataclass(frozen=True)
class KitSpec:
    """What the lab needs to know about one kit: its name and its uplinks' names and MACs."""

    name: str
    uplinks: tuple[tuple[str, str | None], ...] = tuple((u, None) for u in net.DEFAULT_UPLINKS)


def kits_from_count(count: int) -> list[KitSpec]:
    """`--kits N`: kit-1 … kit-N, each with wwan0, wwan1 and sat0."""
    if not 1 <= count <= 8:
        raise UserError(f"lab: --kits {count}: choose 1 to 8 kits (each VM needs about 1 GiB "
                        "and a CPU share)")
    return [KitSpec(f"kit-{i + 1}") for i in range(count)]


def kits_from_tour(tour: Tour) -> list[KitSpec]:
    """`--tour FILE`: the tour's kits with their uplink names and MACs."""
    return [KitSpec(k.name, tuple((u.name, u.mac) for u in k.uplinks)) for k in tour.kits]


def run_dir() -> Path:
    return cache_root() / "lab" / "run"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lab:
    """A running (or not) lab on this machine; one at a time."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.dir = run_dir()
        self.progress = progress or Progress()
        self.key = lab_ssh_key()

    # --- state ---
    @property
    def state_file(self) -> Path:
        return self.dir / "lab.json"

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.py"

    def state(self) -> dict[str, Any]:
        if not self.state_file.exists():
            raise UserError("lab: no lab is up; start one with `nomadkit lab up --kits 2`")
        return json.loads(self.state_file.read_text())

    def save(self, state: dict[str, Any]) -> None:
        self.state_file.write_text(json.dumps(state, indent=2))

    def kit(self, name: str) -> dict[str, Any]:
        kits = self.state()["kits"]
        if name not in kits:
            raise UserError(f"lab: no kit {name!r}; the lab has {', '.join(kits)}")
        return kits[name]

    def uplink(self, kit: str, uplink: str) -> dict[str, Any]:
        uplinks = self.kit(kit)["uplinks"]
        if uplink not in uplinks:
            raise UserError(f"lab: {kit} has no uplink {uplink!r}; it has {', '.join(uplinks)}")
        return uplinks[uplink]

    # --- up ---
    def up(self, kits: list[KitSpec], memory_mb: int = 1024) -> dict[str, Any]:
        """Bring the lab up: image, network, one VM per kit, inventory. Returns the status."""
        if self.state_file.exists() or net.netns_exists():
            raise UserError("lab: a lab is already up (or half up); run `nomadkit lab down` "
                            "first")
        accel = vm.detect_accel()
        self.progress(f"accelerator: {accel.name} — {accel.reason}")
        image = build_image(self.progress)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        try:
            vms = self.make_vms(kits, image, memory_mb)
            self.make_network(vms)
            state = self.boot(vms, accel)
            self.write_inventory(state)
            self.progress(f"lab up: {len(vms)} kit(s); inventory {self.inventory}")
            return self.status()
        except BaseException:
            self.progress("lab up failed: cleaning up")
            self.down(quiet=True, keep_logs=True)
            raise

    def make_vms(self, kits: list[KitSpec], image: Any, memory_mb: int) -> list[vm.KitVm]:
        return [self.make_vm(k, spec, image, memory_mb) for k, spec in enumerate(kits)]

    def make_vm(self, index: int, spec: KitSpec, image: Any, memory_mb: int) -> vm.KitVm:
        """Kit number `index` (its MACs and uplink networks follow from it)."""
        uplinks = tuple(
            net.UplinkNet(kit=spec.name, name=name, kit_index=index, uplink_index=u,
                          mac=mac or net.lab_mac(index, u + 1))
            for u, (name, mac) in enumerate(spec.uplinks))
        return vm.KitVm(name=spec.name, index=index, mgmt_mac=net.lab_mac(index, 0),
                        uplinks=uplinks, image=image, run_dir=self.dir, memory_mb=memory_mb)

    def make_network(self, vms: list[vm.KitVm]) -> None:
        """Namespace, taps, the wire (impairments), DHCP/DNS and time for every kit uplink."""
        self.progress(f"lab network: namespace {net.NETNS}, cloud at {net.CLOUD_ADDRESS}")
        net.create_namespace()
        uplinks = [u for v in vms for u in v.uplinks]
        for u in uplinks:
            net.add_tap(u)
        ports = []
        for v in vms:
            for u in v.uplinks:
                wire_sock, qemu_sock = v.wire_paths(u)
                ports.append({"name": f"{v.name}/{u.name}", "tap": u.tap,
                              "sock_path": wire_sock, "qemu_path": qemu_sock})
        (self.dir / "wire.json").write_text(json.dumps({"ports": ports}, indent=2))
        log = (self.dir / "wire.log").open("ab")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", net.NETNS, sys.executable, "-m", "nomadkit.lab.wire",
             str(self.dir)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
        (self.dir / "wire.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + 15
        while not (self.dir / "wire.ctl").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise UserError(f"lab: the wire did not start; see {self.dir / 'wire.log'}")
            time.sleep(0.1)
        conf = self.dir / "dnsmasq.conf"
        conf.write_text(net.dnsmasq_config(uplinks, self.dir))
        net.sh(["ip", "netns", "exec", net.NETNS, "dnsmasq", f"--conf-file={conf}"])
        conf = self.dir / "chrony.conf"
        conf.write_text(net.chrony_config(self.dir))
        net.sh(["ip", "netns", "exec", net.NETNS, "chronyd", "-x", "-f", str(conf),
                "-l", str(self.dir / "chronyd.log")])

    def boot(self, vms: list[vm.KitVm], accel: vm.Accel) -> dict[str, Any]:
        """Cold-boot kits without a golden snapshot (and save one), then resume every kit."""
        ports = {v.name: free_port() for v in vms}
        cold = [v for v in vms if not (v.golden_dir(accel) / "state.zst").exists()]
        if cold:
            self.progress(f"first boot of {', '.join(v.name for v in cold)} (cold, "
                          f"{accel.name}); later labs resume from its snapshot in seconds")
            self.make_goldens(cold, accel, ports)
        started = {}
        for v in vms:
            golden = v.golden_dir(accel)
            vm.make_overlay(v.overlay, golden / "disk.qcow2", "qcow2")
            started[v.name] = (time.monotonic(), v.start(accel, v.overlay, ports[v.name],
                                                         incoming=golden / "state.zst"))
        kits: dict[str, Any] = {}
        for v in vms:
            t0, proc = started[v.name]
            vm.wait_qmp(v, proc)
            vm.resume(v)
            vm.wait_ssh(v, proc, ports[v.name], self.key)
            subprocess.run(vm.ssh_command(ports[v.name], self.key,
                                          f"date -s @{time.time():.3f} >/dev/null"), check=True)
            seconds = time.monotonic() - t0
            self.progress(f"{v.name}: up in {seconds:.1f} s (resumed), ssh 127.0.0.1:"
                          f"{ports[v.name]}")
            kits[v.name] = {
                "index": v.index, "pid": proc.pid, "ssh_port": ports[v.name],
                "qmp": str(v.qmp_path), "boot_s": round(seconds, 1), "mgmt_mac": v.mgmt_mac,
                "uplinks": {u.name: {"mac": u.mac, "tap": u.tap, "gateway": u.gateway,
                                     "address": u.address, "link": "up",
                                     "impairment": {}} for u in v.uplinks}}
        state = {"accel": accel.name, "accel_reason": accel.reason, "kits": kits,
                 "memory_mb": vms[0].memory_mb if vms else 0,
                 "cloud_address": net.CLOUD_ADDRESS, "ssh_key": str(self.key)}
        self.save(state)
        return state

    def make_goldens(self, vms: list[vm.KitVm], accel: vm.Accel, ports: dict[str, int]) -> None:
        """Cold-boot these kits together, wait for SSH and uplink addresses, snapshot them."""
        procs = {}
        for v in vms:
            partial = v.golden_dir(accel).with_suffix(".partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            vm.make_overlay(partial / "disk.qcow2", v.image.disk, "raw")
            procs[v.name] = (time.monotonic(), v.start(accel, partial / "disk.qcow2",
                                                       ports[v.name]))
        for v in vms:
            t0, proc = procs[v.name]
            vm.wait_ssh(v, proc, ports[v.name], self.key)
            seconds = time.monotonic() - t0  # from this VM's start: they boot side by side
            self.progress(f"{v.name}: cold boot to SSH {seconds:.1f} s; waiting for uplinks")
            vm.wait_uplinks(v, ports[v.name], self.key)
            name_it = (f"echo {v.name} >/etc/hostname && hostname {v.name} && "
                       f"echo '127.0.1.1 {v.name}' >>/etc/hosts && sync")
            subprocess.run(vm.ssh_command(ports[v.name], self.key, name_it), check=True)
            partial = v.golden_dir(accel).with_suffix(".partial")
            vm.save_golden(v, partial / "state.zst")
            proc.wait(timeout=60)
            (partial / "boot.json").write_text(json.dumps(
                {"cold_boot_to_ssh_s": round(seconds, 1),
                 "cold_boot_to_snapshot_s": round(time.monotonic() - t0, 1)}))
            partial.rename(v.golden_dir(accel))
            self.progress(f"{v.name}: golden snapshot saved "
                          f"({(v.golden_dir(accel) / 'state.zst').stat().st_size >> 20} MiB)")

    @property
    def connect_file(self) -> Path:
        return self.dir / "connect.json"

    def connect_overrides(self, state: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """Per-kit SSH data that points a tour's inventory at the lab's VMs (NOMADKIT_CONNECT)."""
        state = state or self.state()
        return {name: {"ssh_hostname": "127.0.0.1", "ssh_port": kit["ssh_port"], "ssh_user": "root",
                       "ssh_key": state["ssh_key"], "ssh_known_hosts_file": "/dev/null",
                       "ssh_strict_host_key_checking": "no", "lab": True,
                       "lab_cloud_address": state["cloud_address"]}
                for name, kit in state["kits"].items()}

    def write_inventory(self, state: dict[str, Any]) -> None:
        """A pyinfra inventory of the bare kits (`pyinfra …/run/inventory.py exec -- uname`), and
        connect.json for a tour's: `NOMADKIT_CONNECT=…/run/connect.json pyinfra inventories/tour.py …`."""
        connect = self.connect_overrides(state)
        hosts = [(name, {**connect[name],
                         "lab_uplinks": {u: {k: v[k] for k in ("gateway", "address", "mac")}
                                         for u, v in kit["uplinks"].items()}})
                 for name, kit in state["kits"].items()]
        self.inventory.write_text(
            '"""The running lab\'s kits, written by `nomadkit lab up` (do not edit)."""\n\n'
            f"kits = {hosts!r}\n")
        self.connect_file.write_text(json.dumps(connect, indent=2))

    # --- acting on a running lab ---
    def link(self, kit: str, uplink: str, up: bool) -> None:
        """Cut or restore an uplink's carrier (QMP set_link): the kit sees no-carrier."""
        self.uplink(kit, uplink)
        state = self.state()
        qmp(Path(state["kits"][kit]["qmp"]), "set_link", name=uplink, up=up)
        state["kits"][kit]["uplinks"][uplink]["link"] = "up" if up else "down"
        self.save(state)

    def impair(self, kit: str, uplink: str, delay_ms: float = 0, loss_pct: float = 0,
               rate_kbit: float = 0) -> dict[str, Any]:
        """Set an uplink's impairment on the lab side (all zero clears it)."""
        self.uplink(kit, uplink)
        reply = wire.request(self.dir, {"op": "impair", "port": f"{kit}/{uplink}",
                                        "delay_ms": delay_ms, "loss_pct": loss_pct,
                                        "rate_kbit": rate_kbit})
        if not reply.get("ok"):
            raise UserError(f"lab: impairing {kit} {uplink} failed: {reply.get('error')}")
        state = self.state()
        state["kits"][kit]["uplinks"][uplink]["impairment"] = reply["impairment"]
        self.save(state)
        return reply

    def power_cut(self, kit: str) -> None:
        """Pull a kit's plug: its QEMU is killed, nothing is flushed or shut down in the kit."""
        state = self.state()
        pid = self.kit(kit)["pid"]
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
            while alive(pid):
                time.sleep(0.05)
        state["kits"][kit]["power"] = "off"
        self.save(state)
        self.progress(f"{kit}: power cut")

    def power_on(self, kit: str) -> float:
        """Boot a kit after `power_cut`, cold, from its own disk as it was left; seconds to SSH."""
        state = self.state()
        info = self.kit(kit)
        if alive(info["pid"]):
            raise UserError(f"lab: {kit} is running; `nomadkit lab power {kit} cut` first")
        spec = KitSpec(kit, tuple((name, u["mac"]) for name, u in info["uplinks"].items()))
        machine = self.make_vm(info["index"], spec, build_image(self.progress),
                               state.get("memory_mb", 1024))
        accel = vm.detect_accel()
        started = time.monotonic()
        proc = machine.start(accel, machine.overlay, info["ssh_port"])
        seconds = vm.wait_ssh(machine, proc, info["ssh_port"], self.key)
        info.update(pid=proc.pid, power="on", boot_s=round(time.monotonic() - started, 1))
        self.save(state)
        self.progress(f"{kit}: powered on, SSH after {seconds:.1f} s (cold boot, {accel.name})")
        return seconds

    def ssh(self, kit: str, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a shell command on a kit as root; returns the finished process (text)."""
        k = self.kit(kit)
        return subprocess.run(vm.ssh_command(k["ssh_port"], self.key, command),
                              capture_output=True, text=True, timeout=timeout)

    def status(self) -> dict[str, Any]:
        """The lab as JSON: accelerator, each kit's VM (alive, memory), links and impairments."""
        state = self.state()
        for kit in state["kits"].values():
            kit["running"] = alive(kit["pid"])
            kit["rss_mb"] = round(vm.rss_mb(kit["pid"]), 1) if kit["running"] else 0
        state["inventory"] = str(self.inventory)
        return state

    # --- down ---
    def down(self, quiet: bool = False, keep_logs: bool = False) -> list[str]:
        """Stop every VM and lab process, delete the namespace and NAT; say what was stopped."""
        stopped = []
        for pid_file in sorted(self.dir.glob("*.pid")):
            try:
                pid = int(pid_file.read_text().strip())
            except ValueError:
                continue
            if stop_process(pid):
                stopped.append(pid_file.stem)
        net.delete_namespace()
        if keep_logs and self.dir.exists():
            for f in self.dir.iterdir():
                if not f.name.endswith(".log"):
                    f.unlink()
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if not quiet:
            self.progress(f"lab down: stopped {', '.join(stopped) or 'nothing'}")
        return stopped


def stop_process(pid: int, timeout: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; True if it was running."""
    if not alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that started it in this process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
