"""The benchmark runner's contract: every listed benchmark is a module with TITLE and run(quick),
and the document says "skipped: <reason>" for a benchmark that could not run."""

from __future__ import annotations

import importlib

import pytest

from bench.__main__ import BENCHMARKS, document
from bench.report import Result, Spread, Table, percentile, ratio, skipped


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_has_a_title_and_a_run_function(name: str) -> None:
    module = importlib.import_module(f"bench.bench_{name}")
    assert module.TITLE and callable(module.run)


def test_document_shows_tables_and_skip_reasons() -> None:
    ran = Result(title="Ran", measured="m", on="o", summary="fast",
                 tables=[Table("t", ["a", "b"], [["1", "2"]])])
    text = document({"ran": ran, "not": skipped("Not run", "no lab here")}, quick=True, wall_s=60)
    assert "- **Ran**: fast" in text and "| 1 | 2 |" in text
    assert "- **Not run**: skipped: no lab here" in text and "\nskipped: no lab here\n" in text


def test_spread_percentile_and_ratio() -> None:
    assert Spread.of([3.0, 1.0, 2.0]) == Spread(1.0, 2.0, 3.0, 3)
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([5.0], 50) == 5.0
    assert ratio(30.0, 1.0) == "×30.0" and ratio(1.0, 0) == "n/a"


def test_a_merged_result_is_marked_with_its_own_run() -> None:
    first = Result(title="Deploy", summary="slow", ran_at="2026-12-01 10:00")
    again = Result(title="Uploads", summary="fast", ran_at="2026-12-01 12:30",
                   tables=[Table("t", ["a"], [["1"]])])
    back = Result.from_dict(again.as_dict())
    assert back == again
    text = document({"kit_deploy": first, "uploads": back}, quick=False, wall_s=60,
                    written_at="2026-12-01 10:00", merged=["uploads"])
    assert "--only uploads --merge" in text and "--only kit_deploy" not in text
    assert "Re-measured" not in document({"kit_deploy": first, "uploads": back}, quick=False, wall_s=60,
                                         written_at="2026-12-01 10:00")
    long = document({"x": skipped("X", "failed: " + "word " * 100 + "\nsecond line")}, quick=False, wall_s=1)
    assert "second line" not in long and " …" in long


def test_the_document_says_how_long_each_benchmark_took_against_the_budget() -> None:
    quick = Result(title="Quick", summary="s", figures={"bench_wall_s": 120.0})  # no lab
    slow = Result(title="Slow", summary="s", figures={"bench_wall_s": 2400.0})  # boots kits
    text = document({"cdn": quick, "fleet": slow}, quick=False, wall_s=2520)
    assert "42.0 min, over the suite's 30-minute budget" in text
    assert "QEMU kits took 40.0 min" in text
    assert "| Quick | 2.0 |" in text and "| Slow | 40.0 |" in text
    assert "within the suite's" in document({"cdn": quick}, quick=False, wall_s=120)
    again = document({"cdn": quick, "fleet": slow}, quick=False, wall_s=300, merged=["fleet"])
    assert "QEMU kits took 0.0 min" in again, "a re-measured benchmark is not part of the run's time"
    assert "| Slow | 40.0 (re-measured on its own) |" in again


def test_the_fleet_takes_its_one_kit_figure_from_the_kit_deploy_run_when_it_has_one() -> None:
    from bench.bench_fleet import one_kit_from

    def first(wall_s: float, status: str = "ok") -> list[dict[str, object]]:
        return [{"run": "first_apply", "wall_s": wall_s, "per_kit": {"kit-1": {"status": status}}}]

    ran = Result(title="Kit deploy", figures={"pyinfra": first(401.5), "ansible": [],
                                              "ansible_error": "it failed"})
    assert one_kit_from({"kit_deploy": ran}) == {"pyinfra": 401.5}
    ran.figures["ansible"] = first(620.0, status="failed")
    assert one_kit_from({"kit_deploy": ran}) == {"pyinfra": 401.5}
    ran.figures["ansible"] = first(620.0)
    assert one_kit_from({"kit_deploy": ran}) == {"pyinfra": 401.5, "ansible": 620.0}
    assert one_kit_from({"kit_deploy": skipped("Kit deploy", "no lab")}) == {}
    assert one_kit_from({}) == {}


def deploy_runs(first_s: float, again_s: float, again_changed: int = 0,
                changes: list[str] | None = None) -> list[dict[str, object]]:
    kit = {"operations": 24, "status": "ok"}
    return [{"run": "first_apply", "wall_s": first_s, "per_kit": {"kit-1": {**kit, "changed": 20}}},
            {"run": "no_change_rerun", "wall_s": again_s,
             "per_kit": {"kit-1": {**kit, "changed": again_changed, "changes": changes or []}}}]


def test_an_ansible_rerun_that_changed_something_keeps_its_figures_and_says_what_changed() -> None:
    """The last full run lost every Ansible figure because its re-run changed 2 tasks, and did not
    say which: the first apply is still a figure, and the problem names the tasks."""
    from bench.bench_kit_deploy import AnsibleOutcome, compared, problems

    ours = deploy_runs(200, 50)
    theirs = deploy_runs(700, 900, again_changed=2, changes=["Files: /etc/x.conf", "nginx reloaded"])
    assert problems(ours) == []
    [problem] = problems(theirs)
    assert "no_change_rerun on kit-1" in problem and "Files: /etc/x.conf" in problem
    summary, tables = compared(ours, AnsibleOutcome(runs=theirs, problems=[problem]))
    assert [row[:3] for row in tables[0].rows] == [
        ["nomadkit (pyinfra)", "first apply", "200.0"], ["nomadkit (pyinfra)", "no-change re-run", "50.0"],
        ["Ansible (ansible-runner)", "first apply", "700.0"],
        ["Ansible (ansible-runner)", "no-change re-run", "900.0"]]
    assert "not clean: 1 problem" in summary and tables[1].rows == [[problem]]
    clean_summary, clean_tables = compared(ours, AnsibleOutcome(runs=deploy_runs(700, 90)))
    assert "not clean" not in clean_summary and len(clean_tables) == 1
    failed = compared(ours, AnsibleOutcome(error="RuntimeError: ansible-runner reached no kit"))
    assert "failed in this run: RuntimeError" in failed[1][0].rows[-1][1]


def test_the_ansible_playbook_writes_each_kit_file_in_one_task_only() -> None:
    """Two tasks writing one file undo each other on every run: a lineinfile on /etc/hosts and the
    Files loop putting the roles' whole /etc/hosts made each Ansible re-run change 2 tasks."""
    import yaml

    from bench.bench_kit_deploy import PLAYBOOK
    from nomadkit import ROOT
    from nomadkit.roles import kit_files
    from nomadkit.tour import load_tour

    tour = load_tour(ROOT / "tours" / "demo.yaml")
    files = {path for kit in tour.kits for path in kit_files(tour, kit, None)}
    [play] = yaml.safe_load(PLAYBOOK.read_text())
    written = {args.get("path") or args.get("dest") for task in play["tasks"] if task["name"] != "Files"
               for module, args in task.items() if module.startswith("ansible.builtin.")
               and isinstance(args, dict)}
    assert "/etc/hosts" in files and not written & files, written & files
