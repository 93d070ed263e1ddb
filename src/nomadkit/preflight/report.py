"""The preflight report: every check's verdict with its evidence, as JSON and as Markdown.

The report is what a tour manager reads an hour before doors open, and what they show later
when someone asks "was it ready?": so it is signed with the tour's key, and it never holds a
secret (evidence is scrubbed of known secret values before it is written).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

Verdict = Literal["pass", "warn", "fail", "skip"]
ICONS = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}


@dataclass(frozen=True)
class CheckResult:
    """One check on one kit (or on the tour's cloud when `kit` is None).

    + id: stable check id (`failover.drill`), what scripts key on
    + verdict: pass / warn / fail / skip (skip always says why in `hint`)
    + evidence: measured values that justify the verdict
    + hint: what to do when the verdict is not pass
    """

    id: str
    title: str
    kit: str | None
    verdict: Verdict
    evidence: dict[str, Any]
    duration_s: float
    hint: str | None = None


@dataclass
class Report:
    """A whole preflight run for one stop."""

    tour: str
    stop: str
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    results: list[CheckResult] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def go(self) -> bool:
        """GO only when no check failed; warnings are shown but do not stop the show."""
        return bool(self.results) and not any(r.verdict == "fail" for r in self.results)

    def counts(self) -> dict[str, int]:
        return {v: sum(r.verdict == v for r in self.results) for v in ICONS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "tour": self.tour, "stop": self.stop, "started_at": self.started_at,
            "duration_s": round(self.duration_s, 1), "verdict": "GO" if self.go else "NO-GO",
            "counts": self.counts(), "checks": [asdict(r) for r in self.results],
        }

    def canonical(self) -> bytes:
        """The exact bytes that are signed (sorted keys, no whitespace)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    def to_markdown(self) -> str:
        verdict = "GO" if self.go else "NO-GO"
        c = self.counts()
        lines = [
            f"# Preflight {self.tour} / {self.stop}: **{verdict}**", "",
            f"Started {self.started_at}, took {self.duration_s:.0f} s. "
            f"{c['pass']} passed, {c['warn']} warnings, {c['fail']} failed, {c['skip']} skipped.", "",
            "| verdict | check | kit | took | evidence / what to do |", "|---|---|---|---|---|",
        ]
        for r in self.results:
            evidence = ", ".join(f"{k}={_short(v)}" for k, v in r.evidence.items())
            detail = f"{evidence}" + (f" — **{r.hint}**" if r.hint else "")
            lines.append(f"| {ICONS[r.verdict]} | `{r.id}` {r.title} | {r.kit or 'cloud'} | "
                         f"{r.duration_s:.1f} s | {detail.replace('|', '/')} |")
        return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def scrub(value: Any, secrets: list[str]) -> Any:
    """Replace every known secret value inside evidence before anything is written."""
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            if secret and len(secret) >= 4:
                value = value.replace(secret, "[secret]")
    return value


def write(report: Report, directory: Path, signature: str | None) -> dict[str, Path]:
    """Write report.json, report.md and (when the tour key is available) report.sig."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / "report.json", "markdown": directory / "report.md"}
    paths["json"].write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    paths["markdown"].write_text(report.to_markdown())
    if signature:
        paths["signature"] = directory / "report.sig"
        paths["signature"].write_text(signature + "\n")
    return paths
