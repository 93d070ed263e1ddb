"""Finish a debootstrapped kit root in a chroot: `pyinfra @chroot/ROOT image_deploy.py --data …`.

Run by `nomadkit image build` (nomadkit.lab.image.finish). Only steps that are safe without a
running system (files, links): the image build is the roles' *install* stage, never activate.
Data: lab_pubkey_file, root_partuuid, esp_partuuid, files_dir.
"""

from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.operations import files

FILES = Path(host.data.files_dir)

files.put(
    name="Debian sources: bookworm, updates, security",
    src=str(FILES / "sources.list"), dest="/etc/apt/sources.list", mode="644",
)
files.put(
    name="fstab: root and EFI partition by PARTUUID",
    src=StringIO(
        "# nomadkit kit image: root and the EFI system partition, by GPT partition UUID.\n"
        f"PARTUUID={host.data.root_partuuid}  /          ext4  errors=remount-ro  0 1\n"
        f"PARTUUID={host.data.esp_partuuid}  /boot/efi  vfat  umask=0077,nofail  0 2\n"
    ),
    dest="/etc/fstab", mode="644",
)
files.directory(name="ESP mount point", path="/boot/efi", mode="755")
files.put(name="Hostname until the kit is named", src=StringIO("nomadkit\n"),
          dest="/etc/hostname", mode="644")
files.put(
    name="Empty machine-id: every kit makes its own on first boot",
    src=StringIO(""), dest="/etc/machine-id", mode="444",
)

files.directory(name="root's .ssh", path="/root/.ssh", mode="700")
files.put(
    name="Lab SSH key may log in as root",
    src=str(host.data.lab_pubkey_file), dest="/root/.ssh/authorized_keys", mode="600",
)
files.put(
    name="sshd: root by key only, no passwords",
    src=str(FILES / "sshd-nomadkit.conf"), dest="/etc/ssh/sshd_config.d/nomadkit.conf",
    mode="644",
)
for kind in ("rsa", "ecdsa", "ed25519"):
    for suffix in ("", ".pub"):
        files.file(
            name=f"No shared SSH host key ({kind}{suffix})",
            path=f"/etc/ssh/ssh_host_{kind}_key{suffix}", present=False,
        )
files.directory(name="ssh.service drop-ins", path="/etc/systemd/system/ssh.service.d")
files.put(
    name="sshd makes its host keys on first start",
    src=str(FILES / "ssh-hostkeys.conf"), dest="/etc/systemd/system/ssh.service.d/hostkeys.conf",
    mode="644",
)

files.put(
    name="Interface names from the kernel command line (lab NICs by MAC)",
    src=str(FILES / "nomadkit-ifnames"),
    dest="/usr/lib/systemd/system-generators/nomadkit-ifnames", mode="755",
)
files.put(
    name="Management NIC: DHCP, never the default route",
    src=str(FILES / "mgmt0.nmconnection"),
    dest="/etc/NetworkManager/system-connections/mgmt0.nmconnection", mode="600",
)
