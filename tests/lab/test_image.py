"""The kit image: cached by its inputs, a GPT disk with an EFI partition, and it boots by UEFI."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from nomadkit.lab.image import build_image, lab_ssh_key
from nomadkit.lab.lab import free_port
from nomadkit.lab.vm import QEMU, detect_accel, ssh_command

pytestmark = pytest.mark.lab

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


@pytest.fixture(scope="module")
def image():
    return build_image()


def test_a_second_build_with_the_same_inputs_is_a_cache_hit(image) -> None:
    mtime = image.disk.stat().st_mtime_ns
    again = build_image()
    assert again == image
    assert again.disk.stat().st_mtime_ns == mtime


def test_disk_is_gpt_with_an_efi_partition_holding_systemd_boot(image) -> None:
    table = subprocess.run(["sgdisk", "-p", str(image.disk)], capture_output=True, text=True,
                           check=True).stdout
    assert "EF00" in table and "8304" in table
    esp_offset = int(table.split("EF00")[0].splitlines()[-1].split()[1]) * 512
    listing = subprocess.run(["mdir", "-b", "-s", "-i", f"{image.disk}@@{esp_offset}", "::/"],
                             capture_output=True, text=True, check=True).stdout
    for path in ("EFI/BOOT/BOOTX64.EFI", "vmlinuz", "initrd.img", "loader/entries/nomadkit.conf"):
        assert f"::/{path}" in listing


def test_disk_boots_by_uefi_under_ovmf(image, tmp_path: Path) -> None:
    """The whole disk, as a mini-PC's firmware sees it: OVMF, systemd-boot, kernel, SSH."""
    if not OVMF_CODE.exists():
        pytest.skip("OVMF is not installed (apt package ovmf, in `make setup`)")
    vars_copy = tmp_path / "OVMF_VARS.fd"
    shutil.copy(OVMF_VARS, vars_copy)
    overlay = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                    str(image.disk), str(overlay)], check=True)
    port = free_port()
    console = tmp_path / "console.log"
    args = [QEMU, "-machine", "q35", *detect_accel().args, "-m", "1024", "-smp", "1",
            "-nodefaults", "-display", "none",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
            "-drive", f"file={overlay},if=virtio,format=qcow2",
            "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
            "-device", "virtio-net-pci,netdev=net0", "-serial", f"file:{console}"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    start = time.monotonic()
    try:
        while time.monotonic() - start < 900:
            assert proc.poll() is None, f"QEMU exited: {proc.stderr.read().decode()}"
            efi = subprocess.run(ssh_command(port, lab_ssh_key(),
                                             "ls /sys/firmware/efi/efivars; findmnt -no PARTUUID /"),
                                 capture_output=True, text=True)
            if efi.returncode == 0:
                break
            time.sleep(3)
        else:
            pytest.fail("no SSH after 900 s of UEFI boot; console:\n"
                        + console.read_text(errors="replace")[-2000:])
        print(f"\nUEFI boot (OVMF, {detect_accel().name}) to SSH: "
              f"{time.monotonic() - start:.1f} s")
        assert "LoaderInfo-" in efi.stdout, "not booted by systemd-boot"
        assert image.root_partuuid in efi.stdout
    finally:
        proc.kill()
        proc.wait()
