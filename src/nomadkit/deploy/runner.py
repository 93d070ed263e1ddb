"""`nomadkit deploy`: pyinfra's Python API around `configure_kit`, with progress and a summary.

Change counts come from pyinfra's own operation results (`OperationMeta.did_change()` after a
run; the change detection pyinfra does before a run for `--dry`), never from its text output.
A kit that cannot be reached or refuses (doors open) is reported by name; the others deploy.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyinfra.api import BaseStateCallback, Config, Inventory, State
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.deploy import add_deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.host import Host
from pyinfra.api.operations import run_ops

from nomadkit import inventory
from nomadkit.deploy import cloud_endpoints, find_kit
from nomadkit.deploy.kit import configure_kit
from nomadkit.errors import UserError
from nomadkit.lab.progress import Progress
from nomadkit.roles.ops import put_path
from nomadkit.tour import Tour, load_tour


@dataclass
class KitResult:
    """How one kit's deploy went, from pyinfra's results."""

    kit: str
    status: str = "ok"  # ok | failed | unreachable | refused
    operations: int = 0
    changed: int = 0  # --dry: operations that would change something
    conditional: int = 0  # --dry: operations that change only if an earlier one does
    changes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # the paths on the kit among `changes`
    error: str = ""
    seconds: float = 0.0

    def add_change(self, name: str, path: str | None) -> None:
        """One operation that changed (or with --dry would change) something; `path` if it puts a file."""
        self.changed += 1
        self.changes.append(name)
        if path:
            self.files.append(path)


def select_kits(tour: Tour, stop: str | None, kit: str | Sequence[str] | None) -> list[str]:
    """The kits of one stop, or the named kit(s) (in tour order), or every kit of the tour."""
    names = [k.name for k in tour.kits]
    if stop:
        stops = [s for s in tour.stops if s.name == stop]
        if not stops:
            raise UserError(f"tour '{tour.name}' has no stop '{stop}' — stops: "
                            f"{', '.join(s.name for s in tour.stops)}")
        names = list(stops[0].kits)
    if kit is not None:
        wanted = [kit] if isinstance(kit, str) else list(kit)
        if not wanted:
            raise UserError("no kit chosen — name at least one kit")
        for name in wanted:
            find_kit(tour, name)
            if name not in names:
                raise UserError(f"kit '{name}' does not play stop '{stop}' — its kits: {', '.join(names)}")
        names = [n for n in names if n in wanted]
    return names


class Reporter(BaseStateCallback):
    """pyinfra callbacks -> progress lines (changes and failures) and per-kit timings."""

    def __init__(self, results: dict[str, KitResult], progress: Progress) -> None:
        self.results = results
        self.progress = progress
        self.started = time.monotonic()  # a kit's seconds count from this deploy's start, not the
        # progress clock's (one Progress may time several deploys, as the benchmarks do)
        self.done: dict[str, int] = {}
        self.pending: dict[str, tuple[Host, str]] = {}

    def host_connect_error(self, state: State, host: Host, error: Any) -> None:
        self.results[host.name].status = "unreachable"
        self.results[host.name].error = f"cannot connect to {host.name}: {error}"
        self.progress(f"{host.name}: UNREACHABLE — {error}")

    def host_connect(self, state: State, host: Host) -> None:
        self.progress(f"{host.name}: connected")

    def operation_host_success(self, state: State, host: Host, op_hash: str, retry_count: int = 0) -> None:
        self._done(state, host, op_hash)

    def operation_host_error(self, state: State, host: Host, op_hash: str, retry_count: int = 0,
                             max_retries: int = 0) -> None:
        self._done(state, host, op_hash)
        self.progress(f"{host.name}: FAILED  {', '.join(sorted(state.op_meta[op_hash].names))}")

    def _done(self, state: State, host: Host, op_hash: str) -> None:
        """pyinfra completes an operation's result only after this callback: report the
        previous one of this host now, this one with the next (or at `flush`)."""
        self.flush(state, host)
        self.pending[host.name] = (host, op_hash)
        count = self.done[host.name] = self.done.get(host.name, 0) + 1
        self.results[host.name].seconds = time.monotonic() - self.started
        if count % 25 == 0:
            self.progress(f"{host.name}: {count} operations done")

    def flush(self, state: State, host: Host | None = None) -> None:
        """Print the changed operations not yet reported (all hosts without `host`)."""
        names = [host.name] if host else list(self.pending)
        for name in names:
            if name not in self.pending:
                continue
            pending_host, op_hash = self.pending.pop(name)
            meta = state.ops[pending_host][op_hash].operation_meta
            if meta.is_complete() and meta.did_change():
                self.progress(f"{name}: changed {op_label(state, pending_host, op_hash)[0]}")


def deploy(tour_file: Path, *, stop: str | None = None, kit: str | Sequence[str] | None = None,
           dry: bool = False, force: bool = False, connect_file: Path | None = None,
           endpoints_file: Path | None = None, progress: Progress | None = None) -> list[KitResult]:
    """Deploy (or with `dry`, detect the changes a deploy would make on) the chosen kits."""
    progress = progress or Progress()
    tour = load_tour(tour_file)
    names = select_kits(tour, stop, kit)
    endpoints = cloud_endpoints(tour, endpoints_file)
    if endpoints is None:
        progress("no cloud endpoints: kits get everything that does not need the cloud "
                 "(run `nomadkit cloud up` for the rest)")
    groups = inventory.groups(tour, endpoints, inventory.read_connect(connect_file))
    hosts = [(n, {**data, "nomadkit_force": force}) for n, data in groups["all"][0] if n in names]
    inv = Inventory((hosts, {}), **{g: ([h for h in members if h in names], {})
                                    for g, members in groups.items() if g != "all"})
    os.environ.setdefault("PYINFRA_PROGRESS", "off")
    state = State(inv, Config(), check_for_changes=dry)
    results = {n: KitResult(n) for n in names}
    reporter = Reporter(results, progress)
    state.add_callback_handler(reporter)
    progress(f"{'checking' if dry else 'deploying'} {len(names)} kit(s): {', '.join(names)}")
    try:
        connect_all(state)
        prepare(state, results, progress)
        if not dry:
            run_ops(state)
            reporter.flush(state)
    except PyinfraError as exc:
        if state.active_hosts:  # "No hosts remaining" is reported per kit below
            raise UserError(f"deploy stopped: {exc}") from None
    finally:
        disconnect_all(state)
    for host in inv:
        collect(state, host, results[host.name], dry)
    return list(results.values())


def prepare(state: State, results: dict[str, KitResult], progress: Progress) -> None:
    """Load the deploy for each kit on its own: a kit that refuses does not stop the others."""
    for host in list(state.active_hosts):
        try:
            add_deploy(state, configure_kit, host=host)
        except (UserError, PyinfraError) as exc:
            results[host.name].status = "refused" if isinstance(exc, UserError) else "failed"
            results[host.name].error = str(exc)
            progress(f"{host.name}: {results[host.name].status.upper()} — {exc}")
            state.fail_hosts({host})


def op_label(state: State, host: Host, op_hash: str) -> tuple[str, str | None]:
    """An operation's name on this host, and the path on the kit it puts (None if it puts none).

    In pyinfra's API mode the N-th operation of every host shares one hash, so its names merge
    across kits ("Put /a, Put /b"); a put operation keeps only the name of its own path.
    """
    names = sorted(state.op_meta[op_hash].names)
    path = put_path(state.ops[host][op_hash].operation_meta)
    own = [n for n in names if path in n.split()] if path else []
    return ", ".join(own or names), path


def collect(state: State, host: Host, result: KitResult, dry: bool) -> None:
    """Per-kit counts from pyinfra's own operation results."""
    for op_hash in state.get_op_order():
        if op_hash not in state.ops[host]:
            continue
        data = state.get_op_data_for_host(host, op_hash)
        meta = data.operation_meta
        name, path = op_label(state, host, op_hash)
        result.operations += 1
        if dry:
            if meta._maybe_is_change and data.global_arguments.get("_if"):
                result.conditional += 1
            elif meta._maybe_is_change:
                result.add_change(name, path)
        elif meta.is_complete() and meta.did_error():
            result.status, result.error = "failed", result.error or f"operation failed: {name}"
        elif meta.is_complete() and meta.did_change():
            result.add_change(name, path)
    if result.status == "ok" and host in state.failed_hosts:
        result.status = "failed"
        result.error = result.error or "failed (see the lines above)"


def summary(results: list[KitResult], dry: bool) -> str:
    """One line per kit: status, operations, changes, time; errors named."""
    verb = "would change" if dry else "changed"
    lines = [f"{'kit':<10} {'status':<12} {'ops':>5} {verb:>13} {'seconds':>8}"]
    for r in results:
        lines.append(f"{r.kit:<10} {r.status:<12} {r.operations:>5} {r.changed:>13} {r.seconds:>8.1f}")
        if r.conditional:
            lines.append(f"{'':<10} +{r.conditional} conditional (only if an earlier operation changes)")
        if r.error:
            lines.append(f"{'':<10} {r.error}")
    return "\n".join(lines)


def as_json(results: list[KitResult], dry: bool) -> str:
    return json.dumps({"dry": dry, "ok": all(r.status == "ok" for r in results),
                       "kits": [asdict(r) for r in results]}, indent=2)
