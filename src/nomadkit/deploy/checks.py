"""The real validators, run on a rendered kit tree (`nomadkit render --check`).

Each check runs the tool the kit itself runs (nginx, sshd, systemd, nft, chronyd, NetworkManager's
keyfile parser, NUT's daemons) on the rendered files. Tools that read fixed paths run in a
private mount namespace (`unshare --mount`) where the rendered folders are bind-mounted over
the real ones, so they see exactly the kit's layout and the host is left untouched; the
firewall and NUT checks also get a private network namespace (loopback only).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from nomadkit.roles import encoder, power
from nomadkit.tour import Kit

TIMEOUT_S = 60


@dataclass(frozen=True)
class Result:
    """One validator's verdict on the rendered files: pass, fail (with the tool's words) or skip."""

    check: str
    files: list[str]
    status: str  # "pass" | "fail" | "skip"
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run(cmd: list[str], stdin: str | None = None) -> tuple[int, str]:
    """Run a validator; (exit code, its output)."""
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {TIMEOUT_S} s"
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def sandboxed(out: Path, binds: list[str], script: str, net: bool = False,
              tmpfs: tuple[str, ...] = ()) -> tuple[int, str]:
    """Run a shell script in a private mount namespace with `out/<dir>` mounted over `/<dir>`
    (for each rendered one of `binds`) and empty tmpfs over `tmpfs`."""
    lines = ["set -eu"]
    lines += [f"mount -t tmpfs tmpfs {shlex.quote(d)}" for d in tmpfs]
    for kit_dir in (d for d in binds if (out / d.lstrip("/")).exists()):
        lines.append(f"mkdir -p {shlex.quote(kit_dir)}")
        lines.append(f"mount --bind {shlex.quote(str(out) + kit_dir)} {shlex.quote(kit_dir)}")
    if net:
        lines.append("ip link set lo up")
    cmd = ["unshare", "--mount", "--propagation", "private", *(["--net"] if net else []),
           "bash", "-c", "\n".join([*lines, script])]
    return run(cmd)


def verdict(name: str, files: list[str], code: int, output: str, ok: bool | None = None) -> Result:
    passed = code == 0 if ok is None else ok
    return Result(name, files, "pass" if passed else "fail", "" if passed else output[-2000:])


def check_nginx(out: Path, kit: Kit) -> Result:
    files = ["/etc/nginx/conf.d/nomadkit-cache.conf"]
    # The cache role's install stage makes /var/cache/nginx/nomadkit (nginx makes only the last level).
    code, output = sandboxed(out, ["/etc/nginx/conf.d"], "mkdir -p /var/cache/nginx/nomadkit && nginx -t",
                             tmpfs=("/etc/nginx/sites-enabled", "/var/cache", "/var/log/nginx"))
    return verdict("nginx -t", files, code, output)


def check_systemd(out: Path, kit: Kit) -> Result:
    units = sorted(str(p.relative_to(out)) for p in (out / "etc/systemd/system").glob("*.service"))
    names = [Path(u).name for u in units if "@." not in u]
    names += [encoder.unit(p, s.name) for s in kit.streams for p in encoder.PROFILES]
    names += [encoder.sender_unit(s.name) for s in kit.streams]
    script = "systemd-analyze verify " + " ".join(shlex.quote(f"/etc/systemd/system/{n}") for n in names)
    code, output = sandboxed(out, ["/etc/systemd/system", "/usr/local", "/opt/nomadkit"], script,
                             tmpfs=("/run",))
    # systemd-analyze exits 0 on warnings (unknown keys are "ignored"): any remark is a failure.
    return verdict("systemd-analyze verify", ["/" + u for u in units], code, output,
                   ok=code == 0 and not output)


def check_nftables(out: Path, kit: Kit) -> Result:
    """In an empty network namespace, and without /etc/protocols and /etc/services: a minimal
    kit has no netbase, so every name in the ruleset must be one nft knows by itself."""
    script = ("mount --bind /dev/null /etc/protocols && mount --bind /dev/null /etc/services && "
              f"nft -c -f {shlex.quote(str(out / 'etc/nftables.conf'))}")
    code, output = sandboxed(out, [], script, net=True)
    return verdict("nft -c -f", ["/etc/nftables.conf"], code, output)


def check_chrony(out: Path, kit: Kit) -> Result:
    code, output = run(["chronyd", "-p", "-f", str(out / "etc/chrony/chrony.conf")])
    return verdict("chronyd -p", ["/etc/chrony/chrony.conf"], code, output)


def check_sshd(out: Path, kit: Kit) -> Result:
    script = ("mkdir -p /run/sshd && ssh-keygen -q -t ed25519 -N '' -f /run/hostkey && "
              "sshd -t -f /etc/ssh/sshd_config -h /run/hostkey")
    code, output = sandboxed(out, ["/etc/ssh/sshd_config.d"], script, tmpfs=("/run",))
    return verdict("sshd -t", ["/etc/ssh/sshd_config.d/nomadkit.conf"], code, output)


def check_sudoers(out: Path, kit: Kit) -> Result:
    code, output = run(["visudo", "-c", "-f", str(out / "etc/sudoers.d/nomadkit")])
    return verdict("visudo -c", ["/etc/sudoers.d/nomadkit"], code, output)


def check_networkmanager(out: Path, kit: Kit) -> Result:
    """NetworkManager's own keyfile reader (libnm, `nmcli --offline`) loads and verifies each file."""
    failures, files = [], []
    for path in sorted((out / "etc/NetworkManager/system-connections").glob("*.nmconnection")):
        files.append("/" + str(path.relative_to(out)))
        text = path.read_text()
        conn_id = next(line.split("=", 1)[1] for line in text.splitlines() if line.startswith("id="))
        code, output = run(["nmcli", "--offline", "connection", "modify", "connection.id", conn_id],
                           stdin=text)
        if code:
            failures.append(f"{path.name}: {output}")
    return verdict("nmcli --offline (keyfile load)", files, len(failures), "\n".join(failures))


def check_shell(out: Path, kit: Kit) -> Result:
    """Scripts parse (`sh -n`, what runs them) and pass shellcheck at warning level."""
    scripts = [p for p in sorted(out.rglob("*")) if p.is_file() and p.read_text().startswith("#!/bin/sh")]
    failures = []
    for path in scripts:
        for cmd in (["sh", "-n"], ["shellcheck", "-s", "sh", "-S", "warning"]):
            code, output = run([*cmd, str(path)])
            if code:
                failures.append(f"{path.name}: {cmd[0]}: {output}")
    return verdict("sh -n + shellcheck", ["/" + str(p.relative_to(out)) for p in scripts],
                   len(failures), "\n".join(failures))


def check_nut(out: Path, kit: Kit) -> Result:
    """Start the driver (lab), upsd and upsmon on the rendered config in a private network:
    upsmon must log in (config and password agree) and, in the lab, upsc must read the battery."""
    ups = power.ups_name(kit)
    lab = kit.hardware == "lab"
    driver = f"/lib/nut/dummy-ups -a {ups} -u root -F >/run/driver.log 2>&1 & pids=\"$pids $!\""
    battery = (f'wait_for "upsc {ups}@127.0.0.1 battery.runtime"; '
               f'runtime=$(upsc {ups}@127.0.0.1 battery.runtime 2>/run/upsc.err) || '
               'runtime="failed: $(cat /run/upsc.err)"')
    script = f"""
wait_for() {{ for _ in $(seq 50); do sh -c "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }}
mkdir -p /run/nut
pids=""
{driver if lab else ''}
/lib/nut/upsd -u root -F >/run/upsd.log 2>&1 & pids="$pids $!"
wait_for "upsc -l 127.0.0.1" || true
/lib/nut/upsmon -p -F >/run/upsmon.log 2>&1 & pids="$pids $!"
wait_for "grep -q 'logged into UPS' /run/upsd.log" || true
{battery if lab else 'runtime=n/a'}
kill $pids 2>/dev/null; wait 2>/dev/null || true
cat /run/upsd.log /run/upsmon.log
echo "battery.runtime: $runtime"
grep -q "logged into UPS \\[{ups}\\]" /run/upsd.log
"""
    code, output = sandboxed(out, ["/etc/nut"], script, net=True, tmpfs=("/run",))
    ok = code == 0 and (not lab or output.rsplit("battery.runtime: ", 1)[-1].strip().isdigit())
    files = ["/" + str(p.relative_to(out)) for p in sorted((out / "etc/nut").iterdir())]
    return verdict("upsd + upsmon (+ upsc in the lab)", files, code, output, ok=ok)


# check -> the tools it needs (from `make setup`)
CHECKS: list[tuple[Callable[[Path, Kit], Result], tuple[str, ...], str]] = [
    (check_nginx, ("nginx", "unshare"), "etc/nginx/conf.d"),
    (check_systemd, ("systemd-analyze", "unshare"), "etc/systemd/system"),
    (check_nftables, ("nft", "unshare"), "etc/nftables.conf"),
    (check_chrony, ("chronyd",), "etc/chrony/chrony.conf"),
    (check_sshd, ("sshd", "ssh-keygen", "unshare"), "etc/ssh/sshd_config.d"),
    (check_sudoers, ("visudo",), "etc/sudoers.d/nomadkit"),
    (check_networkmanager, ("nmcli",), "etc/NetworkManager/system-connections"),
    (check_shell, ("sh", "shellcheck"), "usr/local"),
    (check_nut, ("unshare", "upsc", "ip"), "etc/nut"),
]


def run_checks(out: Path, kit: Kit, progress: Callable[[str], None] = lambda _m: None) -> list[Result]:
    """Every validator whose files were rendered; a missing tool is a skip that says why."""
    results = []
    for check, tools, needs in CHECKS:
        name = check.__name__.removeprefix("check_")
        if not (out / needs).exists():
            continue
        missing = [t for t in tools if shutil.which(t) is None]
        if missing:
            results.append(Result(name, [], "skip", f"{', '.join(missing)} not installed — run `make setup`"))
            continue
        progress(f"checking {name}")
        results.append(check(out, kit))
    return results
