"""The kit image and the QEMU lab: real Debian kits on this machine, uplinks you can cut and impair."""
