"""`put_all` applied for real with pyinfra's @local connector: puts what is missing or different,
repairs mode and owner, reads the kit's copies in ONE command per role, and changes nothing on a
second run (pyinfra's own results)."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from pathlib import Path

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.deploy import add_deploy
from pyinfra.api.deploy import deploy as pyinfra_deploy
from pyinfra.api.operations import run_ops

from nomadkit.roles.ops import FileStates, Perm, put_all


def apply(files: dict[str, str], mode: str = "640") -> list[bool]:
    """Run `put_all(files)` on this machine; each operation's did_change()."""
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name

    @pyinfra_deploy("put")
    def put() -> None:
        put_all(files, lambda path: Perm(mode=mode, user=me, group=group,
                                         secret=path.endswith(".secret")))

    os.environ.setdefault("PYINFRA_PROGRESS", "off")
    state = State(Inventory((["@local"], {})), Config())
    try:
        connect_all(state)
        add_deploy(state, put)
        run_ops(state)
    finally:
        disconnect_all(state)
    host = next(iter(state.inventory))
    return [state.ops[host][h].operation_meta.did_change() for h in state.get_op_order()]


def test_the_kits_copies_are_read_in_one_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a kit every command is an SSH round trip: one per role, not two per file."""
    calls: list[tuple[str, ...]] = []
    real = FileStates.command

    def counted(self: FileStates, paths: tuple[str, ...]) -> str:
        calls.append(paths)
        return real(self, paths)

    monkeypatch.setattr(FileStates, "command", counted)
    files = {str(tmp_path / f"f{i}.conf"): f"{i}\n" for i in range(5)}
    assert apply(files) == [True] * 5
    assert calls == [tuple(files)]


def test_put_all_puts_repairs_and_then_changes_nothing(tmp_path: Path) -> None:
    same, edited, missing, secret = (tmp_path / n for n in ("same.conf", "edited.conf",
                                                            "sub/dir/new.conf", "pin.secret"))
    for path, text in ((same, "as rendered\n"), (edited, "by hand\n"), (secret, "1234\n")):
        path.write_text(text)
        path.chmod(0o640)
    files = {str(same): "as rendered\n", str(edited): "as rendered\n",
             str(missing): "as rendered\n", str(secret): "5678\n"}

    assert apply(files) == [False, True, True, True]
    assert all(Path(p).read_text() == text for p, text in files.items())
    assert oct(missing.stat().st_mode & 0o777) == "0o640"

    assert apply(files) == [False] * 4, "a second run changes nothing"

    same.chmod(0o666)
    assert apply(files) == [True, False, False, False] and oct(same.stat().st_mode & 0o777) == "0o640"


def test_account_fact_reads_one_user_and_says_when_it_is_missing() -> None:
    from nomadkit.roles.ops import Account

    fact = Account()
    me = pwd.getpwuid(os.getuid()).pw_name
    done = subprocess.run(["sh", "-c", fact.command(me)], capture_output=True, text=True)
    found = fact.process(done.stdout.splitlines())
    assert found and found["home"] == pwd.getpwnam(me).pw_dir
    assert grp.getgrgid(os.getgid()).gr_name in found["groups"]
    missing = subprocess.run(["sh", "-c", fact.command("nk-no-such-user")], capture_output=True,
                             text=True)
    assert missing.returncode == 0 and fact.process(missing.stdout.splitlines()) is None
