"""What survives a restart: the read positions, the counters, the time of the last retrain signal,
and the rollout verdicts sent (each is sent once).

Written atomically after every poll that changed it, so after a crash the positions and the counters
agree: the lines read since the last save are read, and counted, again exactly once.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.core.atomic import atomic_write_bytes
from mlops.core.errors import StageError
from mlops.monitor.follow import Position, ReadResult
from mlops.monitor.labels import FEEDBACK_RESULTS
from mlops.monitor.retrain import OUTCOMES
from mlops.monitor.verdict import Decision, decisions

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
LOGS = (PREDICTIONS, FEEDBACK)
VERSION = 1


@dataclass
class LogCounts:
    records: int = 0
    corrupt: int = 0
    rotations: int = 0
    truncations: int = 0
    lost_files: int = 0

    def add(self, result: ReadResult, records: int) -> None:
        self.records += records
        self.corrupt += result.corrupt + len(result.lines) - records
        self.rotations += result.rotations
        self.truncations += result.truncations
        self.lost_files += result.lost_files


@dataclass
class Counts:
    logs: dict[str, LogCounts] = field(default_factory=lambda: {log: LogCounts() for log in LOGS})
    feedback: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FEEDBACK_RESULTS, 0))
    retrain_requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    verdict_dispatches: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    poll_errors: int = 0

    def copy(self) -> Counts:
        return Counts(
            logs={log: dataclasses.replace(counts) for log, counts in self.logs.items()},
            feedback=dict(self.feedback),
            retrain_requests=dict(self.retrain_requests),
            verdict_dispatches=dict(self.verdict_dispatches),
            poll_errors=self.poll_errors,
        )


@dataclass
class MonitorState:
    positions: dict[str, Position] = field(
        default_factory=lambda: {log: Position() for log in LOGS}
    )
    counts: Counts = field(default_factory=Counts)
    last_retrain: float | None = None
    verdicts_sent: list[Decision] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "positions": {log: position.to_json() for log, position in self.positions.items()},
            "counts": dataclasses.asdict(self.counts),
            "last_retrain": self.last_retrain,
            "rollout_verdicts_sent": [list(decision) for decision in self.verdicts_sent],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> MonitorState:
        if raw.get("version") != VERSION:
            raise ValueError(f"version {raw.get('version')!r}, expected {VERSION}")
        state = cls()
        for log in LOGS:
            state.positions[log] = Position.from_json(raw["positions"].get(log, {}))
            state.counts.logs[log] = LogCounts(**raw["counts"]["logs"].get(log, {}))
        known = raw["counts"]["feedback"].items()  # an older sidecar counted "unmatched"
        state.counts.feedback.update({k: v for k, v in known if k in FEEDBACK_RESULTS})
        state.counts.retrain_requests.update(raw["counts"]["retrain_requests"])
        # a state from before the rollout verdict has neither of these
        state.counts.verdict_dispatches.update(raw["counts"].get("verdict_dispatches", {}))
        state.verdicts_sent = decisions(raw.get("rollout_verdicts_sent", []))
        state.counts.poll_errors = int(raw["counts"]["poll_errors"])
        state.last_retrain = raw.get("last_retrain")
        return state


def load_state(path: Path) -> MonitorState:
    """The persisted state, or a fresh one (read every log from its start) if there is none."""
    try:
        raw = json.loads(path.read_text())
        return MonitorState.from_json(raw)
    except FileNotFoundError:
        return MonitorState()
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise StageError(
            f"{path}: not a state file of this sidecar ({error!r}); move it away to start "
            "reading the logs from their beginning"
        ) from None


def state_bytes(state: MonitorState) -> bytes:
    return json.dumps(state.to_json(), indent=1).encode()


def save_state(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data)
