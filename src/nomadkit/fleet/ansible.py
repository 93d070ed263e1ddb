"""Ansible interop: the tour as an Ansible inventory, and venue playbooks run through ansible-runner.

Venues bring their own Ansible playbooks (switches, access points). They run against the same kits,
reached the same way pyinfra reaches them: the inventory here is built from the same host data as
`inventories/tour.py` (including the lab's NOMADKIT_CONNECT overrides), so the two tools can never
disagree about which kit is where. No secret and no secret reference goes into it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nomadkit.endpoints import CloudEndpoints
from nomadkit.errors import UserError
from nomadkit.fleet.hosts import Fleet
from nomadkit.inventory import group_name
from nomadkit.tour import Kit, Tour

# pyinfra SSH host-data keys and the Ansible variables that mean the same thing.
SSH_TO_ANSIBLE = {
    "ssh_hostname": "ansible_host",
    "ssh_port": "ansible_port",
    "ssh_user": "ansible_user",
    "ssh_key": "ansible_ssh_private_key_file",
}


def connection_vars(data: dict[str, Any]) -> dict[str, Any]:
    """How Ansible reaches a kit: the SSH settings of its pyinfra host data, under Ansible's names.

    Host-key checking stays on unless the host data turns it off (lab VMs get fresh keys per boot).
    """
    out = {ansible: data[key] for key, ansible in SSH_TO_ANSIBLE.items() if data.get(key) is not None}
    if str(data.get("ssh_strict_host_key_checking", "")).lower() in ("no", "false", "off"):
        known = data.get("ssh_known_hosts_file", "/dev/null")
        out["ansible_ssh_common_args"] = f"-o StrictHostKeyChecking=no -o UserKnownHostsFile={known}"
    # Kits run Debian's python3; naming it avoids interpreter discovery on every run.
    out["ansible_python_interpreter"] = "/usr/bin/python3"
    return out


def kit_vars(tour: Tour, kit: Kit, endpoints: CloudEndpoints | None) -> dict[str, Any]:
    """What a venue playbook may want to know about a kit (interfaces, streams) — never its secrets."""
    return {
        "nomadkit_tour": tour.name,
        "nomadkit_kit": kit.name,
        "nomadkit_hardware": kit.hardware,
        "nomadkit_management_interface": kit.management.interface,
        "nomadkit_lan_interface": kit.lan_interface,
        "nomadkit_uplinks": [u.model_dump(mode="json", exclude={"pin"}) for u in
                             sorted(kit.uplinks, key=lambda u: u.priority)],
        "nomadkit_streams": [s.model_dump(mode="json", include={"name", "resolution", "fps",
                                                                 "bitrates_kbps", "latency_ms"})
                             for s in kit.streams],
        "nomadkit_recordings_dir": kit.recordings_dir,
        "nomadkit_agent_port": kit.agent.http_port,
        "nomadkit_stops": [s.name for s in tour.stops if kit.name in s.kits],
        "nomadkit_endpoints": endpoints.model_dump(mode="json") if endpoints else None,
    }


def stop_vars(tour: Tour, stop_name: str) -> dict[str, Any]:
    """Where and when one stop happens: the variables a venue playbook reads (`nomadkit_venue`, …)."""
    stop = tour.stop(stop_name)
    return {"nomadkit_stop": stop.name, "nomadkit_city": stop.city, "nomadkit_venue": stop.venue,
            "nomadkit_date": stop.date.isoformat(), "nomadkit_doors_open": stop.doors_open.strftime("%H:%M"),
            "nomadkit_timezone": stop.timezone, "nomadkit_capacity": stop.capacity}


def inventory(fleet: Fleet) -> dict[str, Any]:
    """The tour as an Ansible YAML-style inventory: every kit under `all`, one child group per stop.

    A kit plays at many stops, so stop details are not group variables (Ansible would let the
    alphabetically last group win); they sit in `nomadkit_stop_details` keyed by stop, and
    `run_playbook(stop=...)` hands one stop's details to the play as extra variables. Group names
    are the pyinfra ones (dashes become underscores, which Ansible also wants).
    """
    tour = fleet.tour
    hosts = {name: {**connection_vars(data), **kit_vars(tour, tour.kit(name), fleet.endpoints)}
             for name, data in fleet.hosts}
    children = {group_name(stop.name): {"hosts": {name: {} for name in stop.kits}} for stop in tour.stops}
    details = {stop.name: stop_vars(tour, stop.name) for stop in tour.stops}
    return {"all": {"hosts": hosts, "vars": {"nomadkit_stop_details": details}, "children": children}}


def limit_pattern(tour: Tour, stop: str | None, kit: str | None) -> str | None:
    """An Ansible `--limit` for a stop and/or a kit, after checking both exist in the tour."""
    if stop is not None and stop not in {s.name for s in tour.stops}:
        raise UserError(f"no stop named '{stop}' in tour {tour.name} — known: "
                        f"{', '.join(s.name for s in tour.stops)}")
    if kit is not None and kit not in {k.name for k in tour.kits}:
        raise UserError(f"no kit named '{kit}' in tour {tour.name} — known: "
                        f"{', '.join(k.name for k in tour.kits)}")
    if stop is not None and kit is not None and kit not in tour.stop(stop).kits:
        raise UserError(f"kit {kit} is not at stop {stop} (its kits: {', '.join(tour.stop(stop).kits)})")
    if kit is not None:
        return kit
    return group_name(stop) if stop is not None else None


@dataclass
class HostResult:
    """One kit's outcome of a playbook run, as nomadkit reports it."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    changed_tasks: list[str] = field(default_factory=list)
    changed_items: list[str] = field(default_factory=list)  # "task: item" for loops: which item changed
    failures: list[str] = field(default_factory=list)

    def changes(self) -> list[str]:
        """What changed, in run order: each changed task, or for a loop each of its changed items."""
        return [change for task in self.changed_tasks
                for change in [i for i in self.changed_items if i.startswith(f"{task}: ")] or [task]]


@dataclass
class PlaybookResult:
    """The folded events of one ansible-runner run."""

    playbook: str
    status: str
    rc: int
    hosts: dict[str, HostResult]

    @property
    def success(self) -> bool:
        return self.rc == 0 and not any(h.failed or h.unreachable for h in self.hosts.values())

    def as_dict(self) -> dict[str, Any]:
        return {"playbook": self.playbook, "status": self.status, "rc": self.rc, "success": self.success,
                "hosts": {name: asdict(h) for name, h in self.hosts.items()}}


class PlaybookStopped(UserError):
    """ansible-runner stopped a run before the play ended: at its timeout (`timed_out`), or
    cancelled (Ctrl-C or SIGTERM reached this process: nothing to read into the run's length)."""

    def __init__(self, message: str, tasks_started: int, timed_out: bool) -> None:
        super().__init__(message)
        self.tasks_started = tasks_started
        self.timed_out = timed_out

    @classmethod
    def of(cls, playbook: str, status: str, timeout_s: int, elapsed_s: float,
           folder: EventFolder) -> PlaybookStopped:
        """The error for a run ansible-runner ended with `status` "timeout" or "canceled"."""
        if status == "timeout":
            return cls(f"{playbook}: ansible-runner stopped the run at its {timeout_s} s timeout "
                       f"{folder.how_far()} — a slow kit needs a longer --timeout; a hung one, check "
                       "that it answers over SSH", len(folder.tasks), timed_out=True)
        return cls(f"{playbook}: the run was cancelled after {elapsed_s:.0f} s {folder.how_far()} "
                   "(Ctrl-C or SIGTERM) — run it again; the tasks that finished are not undone",
                   len(folder.tasks), timed_out=False)


class EventFolder:
    """Turns ansible-runner's event stream into per-host results, and says what happens as it happens.

    ansible-runner calls it for every event; task-level events update the host's lists, and the
    final `playbook_on_stats` event gives the authoritative counts.
    """

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.hosts: dict[str, HostResult] = {}
        self.tasks: list[str] = []  # started, in order: how far a stopped run got

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        if kind == "playbook_on_task_start":
            self.tasks.append(data.get("task", "?"))
            self.say(f"task: {self.tasks[-1]}")
        elif kind.startswith("runner_on_") and "host" in data:
            self.task_event(kind.removeprefix("runner_on_"), data)
        elif kind == "runner_item_on_ok" and "host" in data:
            self.item_event(data)
        elif kind == "playbook_on_stats":
            self.stats(data)
        return True  # keep the event in ansible-runner's artifacts too

    def task_event(self, outcome: str, data: dict[str, Any]) -> None:
        host = self.hosts.setdefault(data["host"], HostResult())
        task = data.get("task", "?")
        result = data.get("res", {}) or {}
        if outcome == "ok" and result.get("changed"):
            host.changed_tasks.append(task)
            self.say(f"  {data['host']}: changed  {task}")
        elif outcome in ("failed", "unreachable") and not data.get("ignore_errors"):
            message = str(result.get("msg") or result.get("stderr") or "no message").strip()
            host.failures.append(f"{task}: {message[:300]}")
            self.say(f"  {data['host']}: {outcome.upper()}  {task}: {message[:200]}")

    def item_event(self, data: dict[str, Any]) -> None:
        """A loop's item: the task-level event says only that some item changed, this says which."""
        result = data.get("res", {}) or {}
        if result.get("changed"):
            label = result.get("_ansible_item_label", result.get("item", "?"))
            self.hosts.setdefault(data["host"], HostResult()).changed_items.append(
                f"{data.get('task', '?')}: {label}")

    def how_far(self) -> str:
        if not self.tasks:
            return "before its first task"
        return f"during task {len(self.tasks)}, '{self.tasks[-1]}'"

    def stats(self, data: dict[str, Any]) -> None:
        counts = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable",
                  "skipped": "skipped"}
        names = set().union(*(data.get(key, {}) for key in [*counts, "processed"]))
        for name in names:
            host = self.hosts.setdefault(name, HostResult())
            for key, attr in counts.items():
                setattr(host, attr, int(data.get(key, {}).get(name, 0)))


def run_playbook(playbook: Path, fleet: Fleet, stop: str | None = None, kit: str | None = None,
                 say: Callable[[str], None] = print, timeout_s: int = 1800) -> PlaybookResult:
    """Run a venue's playbook against the tour's kits through ansible-runner.

    + playbook: the venue's playbook file (its folder is the project: roles/ and files/ beside it work)
    + stop: only this stop's kits; its details (`nomadkit_venue`, …) become extra variables
    + kit: only this kit
    + say: where progress lines go
    + timeout_s: the whole run is stopped after this long, so a hung host cannot hang the tour
    """
    import ansible_runner

    playbook = playbook.resolve()
    if not playbook.is_file():
        raise UserError(f"{playbook}: no such playbook — give the path of a playbook YAML file")
    limit = limit_pattern(fleet.tour, stop, kit)
    folder = EventFolder(say)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nomadkit-ansible-") as private:
        runner = ansible_runner.run(
            private_data_dir=private,
            project_dir=str(playbook.parent),
            playbook=str(playbook),
            inventory=inventory(fleet),
            limit=limit,
            extravars=stop_vars(fleet.tour, stop) if stop else {},
            event_handler=folder,
            quiet=True,
            timeout=timeout_s,
            envvars=ansible_environment(),
        )
    if runner.status in ("timeout", "canceled"):
        raise PlaybookStopped.of(playbook.name, runner.status, timeout_s, time.monotonic() - started, folder)
    return PlaybookResult(playbook.name, runner.status, runner.rc, folder.hosts)


def ansible_environment() -> dict[str, str]:
    """Ansible's settings for runs from nomadkit: its own binaries first, no retry files, no colour."""
    return {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "ANSIBLE_RETRY_FILES_ENABLED": "False", "ANSIBLE_NOCOLOR": "True",
            "ANSIBLE_FORCE_COLOR": "False",
            # modules piped into the kit's python over the open connection instead of copied,
            # run and deleted: fewer round trips on a metered link (Debian's sudo has no requiretty)
            "ANSIBLE_PIPELINING": "True"}


def describe(result: PlaybookResult) -> str:
    """The per-kit summary a person reads after a run."""
    lines = [f"{result.playbook}: {'ok' if result.success else 'FAILED'} (ansible-runner {result.status})"]
    for name in sorted(result.hosts):
        h = result.hosts[name]
        lines.append(f"  {name:<10} ok={h.ok} changed={h.changed} failed={h.failed} "
                     f"unreachable={h.unreachable} skipped={h.skipped}")
        lines += [f"      ~ {change}" for change in h.changes()]
        lines += [f"      ! {failure}" for failure in h.failures]
    return "\n".join(lines)
