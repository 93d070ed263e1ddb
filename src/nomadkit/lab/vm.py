"""One lab kit as a QEMU VM: its command line, cold boot, golden snapshot and fast resume.

A kit boots cold once (tens of seconds under TCG), is saved as a *golden* snapshot (its disk
as a qcow2 over the image, its memory as a zstd migration stream), and every lab boot after
that resumes from the snapshot on a fresh throwaway overlay in seconds. A snapshot only loads
into the same QEMU with the same machine options, so the golden key hashes all of them.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from nomadkit.errors import UserError
from nomadkit.lab.image import KitImage, digest
from nomadkit.lab.net import UplinkNet
from nomadkit.lab.qmp import qmp
from nomadkit.paths import cache_root

QEMU = "qemu-system-x86_64"
SSH_TIMEOUT_S = 420.0
NET_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Accel:
    """How VMs run here: `kvm` when /dev/kvm really works, else `tcg`, and why."""

    name: str
    reason: str

    @property
    def args(self) -> list[str]:
        if self.name == "kvm":
            return ["-accel", "kvm", "-cpu", "host"]
        return ["-accel", "tcg,tb-size=256", "-cpu", "qemu64"]


@cache
def detect_accel() -> Accel:
    """KVM only when /dev/kvm opens and the CPU shows vmx/svm (nested PVM hosts do not)."""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError as exc:
        return Accel("tcg", f"KVM unavailable ({exc.strerror}): using TCG emulation (slower)")
    flags = Path("/proc/cpuinfo").read_text()
    if " vmx" not in flags and " svm" not in flags:
        return Accel("tcg", "KVM unusable: /dev/kvm exists but the CPU has no vmx/svm "
                            "(nested virtualisation): using TCG emulation (slower)")
    return Accel("kvm", "KVM")


@cache
def qemu_version() -> str:
    return subprocess.run([QEMU, "--version"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[0]


@dataclass(frozen=True)
class KitVm:
    """A lab kit's VM: its name, NICs and where its runtime files live."""

    name: str
    index: int
    mgmt_mac: str
    uplinks: tuple[UplinkNet, ...]
    image: KitImage
    run_dir: Path
    memory_mb: int = 1024
    cpus: int = 1

    # --- paths of this run ---
    @property
    def qmp_path(self) -> Path:
        return self.run_dir / f"{self.name}.qmp"

    @property
    def overlay(self) -> Path:
        return self.run_dir / f"{self.name}.qcow2"

    @property
    def console_log(self) -> Path:
        return self.run_dir / f"{self.name}.console.log"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    def wire_paths(self, uplink: UplinkNet) -> tuple[str, str]:
        """(the wire's socket, QEMU's socket) for one uplink."""
        base = self.run_dir / f"{self.name}-{uplink.name}"
        return f"{base}.wire.sock", f"{base}.qemu.sock"

    # --- what the guest sees: the golden key hashes exactly these ---
    @property
    def cmdline(self) -> str:
        names = [f"nomadkit.ifname=mgmt0:{self.mgmt_mac}"]
        names += [f"nomadkit.ifname={u.name}:{u.mac}" for u in self.uplinks]
        return (f"root=PARTUUID={self.image.root_partuuid} rw console=ttyS0,115200 "
                f"systemd.hostname={self.name} " + " ".join(names))

    def golden_key(self, accel: Accel) -> str:
        nics = [("mgmt", self.mgmt_mac)] + [(u.name, u.mac) for u in self.uplinks]
        return digest(qemu_version(), self.image.key, accel.args, self.memory_mb, self.cpus,
                      self.cmdline, nics, [(u.gateway, u.address, u.tap_mac) for u in self.uplinks])

    def golden_dir(self, accel: Accel) -> Path:
        return cache_root() / "lab" / "golden" / f"{self.name}-{self.golden_key(accel)}"

    def args(self, accel: Accel, disk: Path, ssh_port: int) -> list[str]:
        """The full QEMU command line (machine options first, then this run's paths)."""
        args = [QEMU, "-name", self.name, "-machine", "q35", *accel.args,
                "-smp", str(self.cpus), "-m", str(self.memory_mb), "-nodefaults",
                "-no-user-config", "-display", "none",
                "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
                "-append", self.cmdline,
                "-drive", f"file={disk},if=none,id=disk0,format=qcow2",
                "-device", "virtio-blk-pci,drive=disk0",
                "-netdev", f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
                "-device", f"virtio-net-pci,netdev=mgmt,mac={self.mgmt_mac}",
                "-serial", f"file:{self.console_log}",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
                "-pidfile", str(self.pid_file)]
        for u in self.uplinks:
            wire, own = self.wire_paths(u)
            args += ["-netdev", f"dgram,id={u.name},local.type=unix,local.path={own},"
                                f"remote.type=unix,remote.path={wire}",
                     "-device", f"virtio-net-pci,netdev={u.name},mac={u.mac},id={u.name}-nic"]
        return args

    def start(self, accel: Accel, disk: Path, ssh_port: int,
              incoming: Path | None = None) -> subprocess.Popen[bytes]:
        """Start QEMU detached in its own session (migration to exec: needs no -daemonize)."""
        args = self.args(accel, disk, ssh_port)
        if incoming:
            args += ["-incoming", f"exec:zstd -dcq {incoming}"]
        for _, own in map(self.wire_paths, self.uplinks):
            Path(own).unlink(missing_ok=True)
        log = (self.run_dir / f"{self.name}.qemu.log").open("ab")
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)


def make_overlay(overlay: Path, backing: Path, backing_fmt: str) -> None:
    """A throwaway copy-on-write disk over a cached one (which is never written)."""
    overlay.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", backing_fmt, "-b",
                    str(backing), str(overlay)], check=True)


def ssh_command(port: int, key: Path, command: str | None, timeout: float = 5.0) -> list[str]:
    """ssh to a lab kit as root with the lab key (no command: an interactive shell)."""
    return ["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={int(timeout)}", *(["-t"] if command is None else []),
            "root@127.0.0.1", *([command] if command is not None else [])]


def wait_ssh(vm: KitVm, proc: subprocess.Popen[bytes], port: int, key: Path,
             timeout: float = SSH_TIMEOUT_S) -> float:
    """Wait until the kit accepts SSH; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise UserError(f"lab: {vm.name}'s QEMU exited ({proc.returncode}); see "
                            f"{vm.run_dir / (vm.name + '.qemu.log')}\n" + console_tail(vm))
        done = subprocess.run(ssh_command(port, key, "true"), capture_output=True)
        if done.returncode == 0:
            return time.monotonic() - start
        time.sleep(1)
    raise UserError(f"lab: {vm.name} did not accept SSH on 127.0.0.1:{port} within "
                    f"{timeout:.0f} s\n" + console_tail(vm))


def console_tail(vm: KitVm, lines: int = 15) -> str:
    if not vm.console_log.exists():
        return "(no console output)"
    text = vm.console_log.read_text(errors="replace").splitlines()[-lines:]
    return f"last console lines of {vm.name} ({vm.console_log}):\n" + "\n".join(text)


def wait_uplinks(vm: KitVm, port: int, key: Path, timeout: float = NET_TIMEOUT_S) -> None:
    """Wait until every uplink has its lab address (DHCP from the lab's gateway)."""
    want = {u.name: u.address for u in vm.uplinks}
    start = time.monotonic()
    got = ""
    while time.monotonic() - start < timeout:
        done = subprocess.run(ssh_command(port, key, "ip -4 -o addr show"),
                              capture_output=True, text=True)
        got = done.stdout
        if all(f" {name} " in got and f" {addr}/" in got for name, addr in want.items()):
            return
        time.sleep(2)
    raise UserError(f"lab: {vm.name}'s uplinks did not get their addresses {want} within "
                    f"{timeout:.0f} s; the kit has:\n{got}")


def save_golden(vm: KitVm, state: Path) -> None:
    """Stop the VM and write its memory to a zstd migration stream, then quit it."""
    qmp(vm.qmp_path, "stop")
    qmp(vm.qmp_path, "migrate", uri=f"exec:zstd -q -T0 -3 -o {state}")
    while True:
        status = qmp(vm.qmp_path, "query-migrate").get("status")
        if status == "completed":
            break
        if status in ("failed", "cancelled"):
            raise UserError(f"lab: saving {vm.name}'s snapshot failed ({status})")
        time.sleep(0.3)
    qmp(vm.qmp_path, "quit")


def resume(vm: KitVm) -> None:
    """Wait for the incoming snapshot to load, then run the VM."""
    while qmp(vm.qmp_path, "query-status")["status"] == "inmigrate":
        time.sleep(0.2)
    qmp(vm.qmp_path, "cont")


def wait_qmp(vm: KitVm, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    start = time.monotonic()
    while not vm.qmp_path.exists():
        if proc.poll() is not None or time.monotonic() - start > timeout:
            raise UserError(f"lab: {vm.name}'s QEMU did not start; see "
                            f"{vm.run_dir / (vm.name + '.qemu.log')}")
        time.sleep(0.1)


def rss_mb(pid: int) -> float:
    """Resident memory of a VM's QEMU process, in MiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
