"""Suite-wide guards: a run that collected or passed nothing is a failure, never a green CI."""

from __future__ import annotations

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = len(reporter.stats.get("passed", [])) if reporter else 0
    if exitstatus == 0 and (session.testscollected == 0 or passed == 0):
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
