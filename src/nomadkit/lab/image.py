"""The kit image: Debian bookworm by debootstrap, finished by pyinfra in a chroot, as a GPT disk.

One build gives three things, cached together under `~/.cache/nomadkit/images/kit-<key>/`:
- `disk.raw`: a whole-disk image (GPT, an EFI system partition with systemd-boot, an ext4 root)
  that boots by UEFI on a real x86 mini-PC once written to its disk;
- `vmlinuz` + `initrd-lab.img`: the same kernel with a small virtio-only initrd, for fast
  direct-kernel boots of lab VMs over that same disk.
The key hashes every input (suite, packages, this build code, the finishing deploy and its
files, the lab SSH public key, the disk layout), so a second build with the same inputs is a cache hit.
The debootstrap root filesystem is cached on its own (`rootfs-<key>/`): it is the slow part
(minutes) and changes only with the suite or the package list.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nomadkit.errors import UserError
from nomadkit.lab.progress import Progress
from nomadkit.paths import cache_root
from nomadkit.roles import packages as role_packages

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"

# What a booted kit needs before any role runs (boot, SSH, Python for pyinfra), baked in because
# apt inside a TCG VM is very slow…
KIT_PACKAGES: tuple[str, ...] = (
    # boot and base system
    "linux-image-amd64", "systemd-sysv", "libpam-systemd", "udev", "kmod", "dbus",
    "initramfs-tools",
    "systemd-boot-efi", "e2fsprogs", "procps", "sudo", "ca-certificates", "python3",
    "python3-venv", "sqlite3", "openssh-server",
    # virtual packages debootstrap cannot resolve by itself (Provides of these)
    "python3-cffi-backend",  # python3-cryptography's python3-cffi-backend-api-*
    # uplinks and network
    "network-manager", "modemmanager", "iproute2", "nftables", "iputils-ping", "curl",
    "ethtool", "iperf3", "socat",
    # cache, encoder, power, time
    "nginx", "ffmpeg", "srt-tools", "nut-server", "nut-client", "chrony",
)
# …and every role's PACKAGES (nomadkit.roles), so deploying a kit never needs apt.
KIT_PACKAGES = tuple(dict.fromkeys((*KIT_PACKAGES, *role_packages())))

FILES = Path(__file__).parent / "files"
FINISH_DEPLOY = Path(__file__).parent / "image_deploy.py"

DISK_BYTES = 4 * 1024**3
SECTOR = 512
ESP_START = 2048  # sectors: 1 MiB alignment
ESP_SECTORS = 256 * 1024**2 // SECTOR
ROOT_START = ESP_START + ESP_SECTORS
GPT_BACKUP_SECTORS = 34
ROOT_LABEL = "nomadkit-root"
# Modules the lab initrd needs to find and mount the root disk of a QEMU virtio machine.
LAB_INITRD_MODULES = ("virtio_pci", "virtio_blk", "ext4", "crc32c_generic")


@dataclass(frozen=True)
class KitImage:
    """A built kit image in the cache; `root_partuuid` is what the kernel command line mounts."""

    dir: Path
    key: str
    root_partuuid: str

    @property
    def disk(self) -> Path:
        return self.dir / "disk.raw"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd-lab.img"


def images_dir() -> Path:
    return cache_root() / "images"


def lab_ssh_key() -> Path:
    """The lab's SSH key (private part), made once; its public part is baked into every image.

    The lab kits are throwaway VMs on loopback: one key per machine, kept out of the repo.
    """
    key = cache_root() / "lab" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nomadkit-lab", "-f", str(key)])
    return key


def digest(*parts: object) -> str:
    """A short stable hash of the given inputs (JSON-encoded)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def rootfs_key() -> str:
    return digest(SUITE, MIRROR, sorted(KIT_PACKAGES), "minbase")


def image_key(pubkey: str) -> str:
    """Hash of everything that goes into the image; changes to any of it mean a new image."""
    files = {p.name: p.read_text() for p in sorted(FILES.iterdir()) if p.is_file()}
    layout = (DISK_BYTES, ESP_START, ESP_SECTORS, ROOT_LABEL, LAB_INITRD_MODULES)
    build_code = Path(__file__).read_text()
    return digest(rootfs_key(), build_code, FINISH_DEPLOY.read_text(), files, pubkey, layout)


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a build step; a failure names the command and shows the end of its output."""
    proc = subprocess.run(cmd, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise UserError(f"image build: `{' '.join(cmd[:3])} …` failed (exit {proc.returncode}):\n"
                        f"{tail}")
    return proc


def check_tools() -> None:
    """Say up front which build tools are missing (they come from `make setup`)."""
    tools = ("debootstrap", "sgdisk", "mkfs.ext4", "mkfs.fat", "mcopy", "mmd", "ssh-keygen")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise UserError(f"image build needs {', '.join(missing)}: run `make setup` "
                        "(apt packages debootstrap gdisk e2fsprogs dosfstools mtools openssh-client)")


def build_rootfs(progress: Progress) -> Path:
    """debootstrap the kit's packages into a cached root filesystem (minutes, done once)."""
    target = images_dir() / f"rootfs-{rootfs_key()}"
    if (target / ".complete").exists():
        progress(f"root filesystem: cached ({target.name})")
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    progress(f"debootstrap {SUITE} with {len(KIT_PACKAGES)} kit packages (a few minutes)")
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(KIT_PACKAGES)}",
           SUITE, str(partial), MIRROR]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        lines = stream_debootstrap(proc, progress)
    if proc.returncode != 0:
        log = partial.parent / f"{target.name}.debootstrap.log"
        log.write_text("\n".join(lines))
        raise UserError(f"debootstrap failed (exit {proc.returncode}); last lines:\n"
                        + "\n".join(lines[-10:]) + f"\nfull log: {log}")
    (partial / ".complete").touch()
    partial.rename(target)
    return target


def stream_debootstrap(proc: subprocess.Popen[str], progress: Progress) -> list[str]:
    """Show debootstrap's phases (not its hundreds of lines) and keep the lines for errors."""
    lines: list[str] = []
    seen: dict[str, int] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
        words = line.split()
        if len(words) >= 3 and words[0] == "I:":
            count = seen[words[1]] = seen.get(words[1], 0) + 1
            if count == 1 or count % 100 == 0:
                progress(f"  debootstrap: {words[1].lower()} {count}: {' '.join(words[2:4])}")
    proc.wait()
    return lines


@contextmanager
def mounted_proc(root: Path):
    """/proc, /sys and /dev inside the chroot while the finishing steps run, unmounted after."""
    mounts = [("proc", root / "proc", ["-t", "proc", "proc"]),
              ("sysfs", root / "sys", ["-t", "sysfs", "sysfs"]),
              ("dev", root / "dev", ["--bind", "/dev"])]
    done: list[Path] = []
    try:
        for _name, where, args in mounts:
            run(["mount", *args, str(where)])
            done.append(where)
        yield
    finally:
        for where in reversed(done):
            subprocess.run(["umount", "-l", str(where)], check=False)


def finish(root: Path, pubkey: Path, root_partuuid: str, esp_partuuid: str,
           progress: Progress) -> None:
    """Apply the finishing deploy with pyinfra's chroot connector (the same tool as live kits)."""
    progress("pyinfra @chroot: finishing the image (ssh keys, sshd, fstab, lab interface names)")
    cmd = [sys.executable, "-m", "pyinfra", "-y", f"@chroot/{root}", str(FINISH_DEPLOY),
           "--data", f"lab_pubkey_file={pubkey}", "--data", f"root_partuuid={root_partuuid}",
           "--data", f"esp_partuuid={esp_partuuid}", "--data", f"files_dir={FILES}"]
    run(cmd)


def kernel_version(root: Path) -> str:
    kernels = sorted((root / "lib" / "modules").iterdir())
    if len(kernels) != 1:
        raise UserError(f"image build: expected one kernel in {root}/lib/modules, found {kernels}")
    return kernels[0].name


def make_lab_initrd(root: Path, kver: str, out: Path, progress: Progress) -> None:
    """A small initrd with only virtio and ext4: lab VMs boot faster than with the stock one."""
    progress("lab initrd (virtio + ext4 only)")
    conf = root / "tmp" / "initramfs-lab"
    shutil.rmtree(conf, ignore_errors=True)
    shutil.copytree(root / "etc" / "initramfs-tools", conf)
    text = (conf / "initramfs.conf").read_text().replace("MODULES=most", "MODULES=list")
    (conf / "initramfs.conf").write_text(text)
    (conf / "modules").write_text("\n".join(LAB_INITRD_MODULES) + "\n")
    run(["chroot", str(root), "mkinitramfs", "-d", "/tmp/initramfs-lab", "-o",
         "/tmp/initrd-lab.img", kver])
    shutil.move(root / "tmp" / "initrd-lab.img", out)
    shutil.rmtree(conf)


def assemble_disk(root: Path, kver: str, disk: Path, root_partuuid: str, esp_partuuid: str,
                  progress: Progress) -> None:
    """GPT disk: EFI partition (systemd-boot, kernel, stock initrd) + ext4 root, no loop devices.

    Filesystems are written straight into the disk file at their partition offsets
    (`mkfs.ext4 -d -E offset=`, `mkfs.fat --offset`, mtools), so no mounts or loop devices
    are needed: it works in containers and CI.
    """
    progress("disk: GPT + EFI system partition + ext4 root")
    disk.unlink(missing_ok=True)
    with disk.open("wb") as f:
        f.truncate(DISK_BYTES)
    root_end = DISK_BYTES // SECTOR - GPT_BACKUP_SECTORS - 1
    run(["sgdisk", "-n", f"1:{ESP_START}:{ROOT_START - 1}", "-t", "1:ef00", "-c", "1:EFI",
         "-u", f"1:{esp_partuuid}",
         "-n", f"2:{ROOT_START}:{root_end}", "-t", "2:8304", "-c", f"2:{ROOT_LABEL}",
         "-u", f"2:{root_partuuid}", str(disk)])
    root_bytes = (root_end - ROOT_START + 1) * SECTOR
    run(["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", str(root),
         "-E", f"offset={ROOT_START * SECTOR}", str(disk), f"{root_bytes // 1024}k"])
    # one sector per cluster: 256 MiB is then clearly FAT32 (mtools rejects the edge case)
    run(["mkfs.fat", "-F", "32", "-s", "1", "-n", "EFI", f"--offset={ESP_START}", str(disk),
         str(ESP_SECTORS * SECTOR // 1024)])
    esp = f"{disk}@@{ESP_START * SECTOR}"
    for d in ("::/EFI", "::/EFI/BOOT", "::/loader", "::/loader/entries"):
        run(["mmd", "-i", esp, d])
    entry = root / "tmp" / "nomadkit.conf"
    entry.write_text(
        "title nomadkit kit\nlinux /vmlinuz\ninitrd /initrd.img\n"
        f"options root=PARTUUID={root_partuuid} rw console=tty0 console=ttyS0,115200\n")
    loader = root / "tmp" / "loader.conf"
    loader.write_text("default nomadkit.conf\ntimeout 2\n")
    copies = [(root / "usr/lib/systemd/boot/efi/systemd-bootx64.efi", "::/EFI/BOOT/BOOTX64.EFI"),
              (root / "boot" / f"vmlinuz-{kver}", "::/vmlinuz"),
              (root / "boot" / f"initrd.img-{kver}", "::/initrd.img"),
              (loader, "::/loader/loader.conf"),
              (entry, "::/loader/entries/nomadkit.conf")]
    for src, dst in copies:
        run(["mcopy", "-i", esp, str(src), dst])
    entry.unlink()
    loader.unlink()


def cached_image(key: str) -> KitImage | None:
    """The cached image for this key, if a build completed."""
    d = images_dir() / f"kit-{key}"
    manifest = d / "manifest.json"
    if not manifest.exists():
        return None
    return KitImage(dir=d, key=key, root_partuuid=json.loads(manifest.read_text())["root_partuuid"])


def build_image(progress: Progress | None = None, force: bool = False) -> KitImage:
    """Build the kit image, or return the cached one with the same inputs (instant)."""
    progress = progress or Progress()
    check_tools()
    pubkey = lab_ssh_key().with_suffix(".pub")
    key = image_key(pubkey.read_text())
    hit = None if force else cached_image(key)
    if hit:
        progress(f"kit image: cached ({hit.dir})")
        return hit
    rootfs = build_rootfs(progress)
    out = images_dir() / f"kit-{key}"
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    root = work / "root"
    progress("copying the root filesystem for finishing")
    run(["cp", "-a", "--reflink=auto", str(rootfs), str(root)])
    (root / ".complete").unlink()
    root_partuuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"nomadkit-root-{key}"))
    esp_partuuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"nomadkit-esp-{key}"))
    kver = kernel_version(root)
    with mounted_proc(root):
        finish(root, pubkey, root_partuuid, esp_partuuid, progress)
        make_lab_initrd(root, kver, work / "initrd-lab.img", progress)
    shutil.copy(root / "boot" / f"vmlinuz-{kver}", work / "vmlinuz")
    assemble_disk(root, kver, work / "disk.raw", root_partuuid, esp_partuuid, progress)
    shutil.rmtree(root)
    (work / "manifest.json").write_text(json.dumps(
        {"key": key, "suite": SUITE, "kernel": kver, "root_partuuid": root_partuuid,
         "esp_partuuid": esp_partuuid, "packages": sorted(KIT_PACKAGES)}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)
    progress(f"kit image ready: {out / 'disk.raw'}")
    return KitImage(dir=out, key=key, root_partuuid=root_partuuid)
