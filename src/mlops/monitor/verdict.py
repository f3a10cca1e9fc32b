"""The verdict's signal: a ``repository_dispatch`` ``rollout-verdict`` (``rollout.yml`` acts on it,
``mlops.gitops.rollout.parse_verdict`` reads it), sent by the retrain signal's dispatcher.

Only a decisive verdict (``promote`` or ``rollback``) is sent, once it has lasted
``hold_seconds``, and once per (champion, challenger, verdict): the pairs sent are in the
sidecar's state, so a restart sends nothing again. The versions are the registry's (``vX.Y.Z``,
``MONITOR_CHAMPION_REGISTRY_VERSION`` and ``MONITOR_CHALLENGER_REGISTRY_VERSION``, set by the
deployment), not the packages' ``model_version``: without them the verdict is only logged and
exported.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mlops.monitor.retrain import Outcome
from mlops.monitor.rollout import RolloutReport

LOGGER = logging.getLogger(__name__)
VERDICT_EVENT = "rollout-verdict"  # mlops.gitops.rollout.VERDICT_EVENT (a test holds them equal)
MAX_REASONS = 20  # what rollout.yml keeps
REMEMBERED = 100  # verdicts kept in the state, newest last
Decision = tuple[str, str, str]  # (champion version, challenger version, verdict)


@dataclass
class VerdictTrigger:
    hold_seconds: float
    retry_seconds: float
    champion: str | None  # the registry versions; None: not set, nothing is sent
    challenger: str | None
    sent: list[Decision] = field(default_factory=list)  # persisted
    dry_runs: set[Decision] = field(default_factory=set)  # logged once; a token may come later
    pending: tuple[Decision, float] | None = None  # the decisive verdict and since when
    last_failure: float | None = None
    warned: bool = False

    def due(self, report: RolloutReport, now: float) -> Decision | None:
        """The decision to send now, if one is due."""
        if report.verdict not in ("promote", "rollback"):
            self.pending = None
            return None
        if self.champion is None or self.challenger is None:
            self._warn_unversioned(report)
            return None
        decision = (self.champion, self.challenger, report.verdict)
        if decision in self.sent or decision in self.dry_runs:
            return None
        if self.pending is None or self.pending[0] != decision:
            self.pending = (decision, now)
        held = now - self.pending[1] >= self.hold_seconds
        retrying = self.last_failure is not None and now - self.last_failure < self.retry_seconds
        return decision if held and not retrying else None

    def record(self, decision: Decision, outcome: Outcome, now: float) -> None:
        if outcome == "failed":
            self.last_failure = now
            return
        self.last_failure = None
        if outcome == "dry_run":
            self.dry_runs.add(decision)
        else:
            self.sent = [*self.sent, decision][-REMEMBERED:]

    def _warn_unversioned(self, report: RolloutReport) -> None:
        if not self.warned:
            LOGGER.warning(
                "rollout verdict %s (%s) not sent: MONITOR_CHAMPION_REGISTRY_VERSION and "
                "MONITOR_CHALLENGER_REGISTRY_VERSION must both be set (the registry versions the "
                "deployment runs)",
                report.verdict,
                "; ".join(report.reasons),
            )
            self.warned = True


def verdict_payload(model_name: str, decision: Decision, report: RolloutReport) -> dict[str, Any]:
    """The ``client_payload`` (docs/gitops.md): 6 keys, GitHub allows 10."""
    champion, challenger, verdict = decision
    return {
        "model_name": model_name,
        "champion_version": champion,
        "challenger_version": challenger,
        "verdict": verdict,
        "reasons": report.reasons[:MAX_REASONS],
        "window": report.window(),
    }


def decisions(raw: Iterable[Any]) -> list[Decision]:
    """The decisions a state file holds (three strings each)."""
    kept = []
    for item in raw:
        if not (isinstance(item, list | tuple) and len(item) == 3):
            expected = "[champion, challenger, verdict]"
            raise ValueError(f"rollout_verdicts_sent: {item!r} is not {expected}")
        kept.append((str(item[0]), str(item[1]), str(item[2])))
    return kept
