"""The sidecar's engine: one background thread follows the logs, recomputes drift, performance and
the rollout comparison, sends the retrain signal and the rollout verdict, and saves its state; HTTP
handlers only read the last published snapshot.

Drift, data quality and the service's performance see the answered lines only (a shadow copy is
not what a client got, and would count its request twice); the rollout comparison sees both
roles' lines, and labels join every line of their ``(request_id, index)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mlops.core.errors import StageError
from mlops.monitor.detect import DriftReport, Thresholds, assess
from mlops.monitor.feedback import (
    Feedback,
    LabelledWindows,
    PerformanceReport,
    PerformanceRules,
    PredictionMemory,
    assess_performance,
    join_feedback,
    parse_feedback_line,
    remember_predictions,
)
from mlops.monitor.follow import LogFollower
from mlops.monitor.history import AlertEpisode, DriftHistory, Point
from mlops.monitor.labels import FEEDBACK_RESULTS, PENDING, LabelBuffer, LabelLog
from mlops.monitor.reference import Reference, check_feature_names, load_reference
from mlops.monitor.retrain import GitHubDispatcher, RetrainTrigger, retrain_payload
from mlops.monitor.rollout import RolloutReport, Scored, compare
from mlops.monitor.rollout_settings import load_rollout_rules
from mlops.monitor.scorer import ScorerCounters
from mlops.monitor.settings import MonitorSettings, env_name
from mlops.monitor.state import (
    FEEDBACK,
    PREDICTIONS,
    Counts,
    MonitorState,
    load_state,
    save_state,
    state_bytes,
)
from mlops.monitor.verdict import VERDICT_EVENT, VerdictTrigger, verdict_payload
from mlops.monitor.window import LoggedPrediction, SlidingWindow, parse_prediction

LOGGER = logging.getLogger(__name__)
FINAL_POLLS = 10  # at shutdown, read at most this many polls' worth (8 MiB each) of backlog
SCRAPE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Snapshot:
    """Everything the HTTP side shows, as of the last poll."""

    drift: DriftReport
    performance: PerformanceReport  # of the answered predictions
    rollout: RolloutReport
    counts: Counts
    read_lag_seconds: float | None  # wall clock minus the time of the newest record, when read
    unread_bytes: int
    last_poll: float | None
    history: tuple[Point, ...] = ()  # the drift check over time, oldest first
    alerts: tuple[AlertEpisode, ...] = ()  # newest first
    labels_pending: int = 0  # labels waiting for their prediction


def drift_thresholds(settings: MonitorSettings) -> Thresholds:
    """The drift check's floors and false-alarm rate from the settings."""
    return Thresholds(
        psi=settings.psi_threshold,
        prediction_psi=settings.prediction_psi_threshold,
        missing_rate=settings.missing_rate_threshold,
        out_of_range=settings.out_of_range_threshold,
        min_window_size=settings.min_window_size,
        feature_psi=settings.feature_psi_thresholds,
        false_alarm_rate=settings.false_alarm_rate,
    )


class Monitor:
    def __init__(
        self,
        settings: MonitorSettings,
        reference: Reference,
        state: MonitorState,
        dispatcher: GitHubDispatcher,
        clock: Callable[[], float] = time.time,
        challenger_reference: Reference | None = None,
    ) -> None:
        self.settings = settings
        self.reference = reference
        self.challenger_reference = challenger_reference
        self.thresholds = drift_thresholds(settings)
        self.performance_rules = PerformanceRules(
            tolerance=settings.performance_tolerance,
            rmse_tolerance=settings.rmse_tolerance,
            min_labelled=settings.min_feedback,
        )
        self._followers = {
            PREDICTIONS: LogFollower(settings.prediction_log, state.positions[PREDICTIONS]),
            FEEDBACK: LogFollower(settings.feedback_log, state.positions[FEEDBACK]),
        }
        self._window: SlidingWindow[LoggedPrediction] = SlidingWindow(
            settings.window_size, settings.window_seconds
        )
        self.rollout_rules = load_rollout_rules(
            settings.rollout_settings, env_name("rollout_settings")
        )
        window = self.rollout_rules.window
        self._rollout_window: SlidingWindow[Scored] = SlidingWindow(window.records, window.seconds)
        self._scorer = ScorerCounters(
            settings.scorer_url,
            settings.scorer_scrape_seconds,
            min(SCRAPE_TIMEOUT_SECONDS, settings.github_timeout_seconds),
        )
        self._verdicts = VerdictTrigger(
            hold_seconds=self.rollout_rules.hold_seconds,
            retry_seconds=settings.retrain_retry_seconds,
            champion=settings.champion_registry_version,
            challenger=settings.challenger_registry_version,
            sent=list(state.verdicts_sent),
        )
        self._memory = PredictionMemory(settings.prediction_memory)
        self._labelled = LabelledWindows(settings.performance_window)
        self._waiting = LabelBuffer(settings.label_buffer_size, settings.label_ttl_seconds)
        self.labels = LabelLog(settings.label_log, shipped=settings.ship_url is not None)
        self._counts = state.counts
        self._trigger = RetrainTrigger(
            hold_seconds=settings.alert_hold_seconds,
            cooldown_seconds=settings.retrain_cooldown_seconds,
            retry_seconds=settings.retrain_retry_seconds,
            last_sent=state.last_retrain,
        )
        self._dispatcher = dispatcher
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = True
        self._read_lag: float | None = None
        self._saved = b""
        self._history = DriftHistory(settings.history_interval_seconds)
        self._snapshot = self._publish(*self._assess()[:3], None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the HTTP side: never waits for a poll -------------------------------------------------

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def add_feedback(self, feedback: Sequence[Feedback]) -> tuple[int, int]:
        """Write labels received over HTTP to the label log (OSError if it cannot be written),
        then join them; ``(matched, pending)``: joined now, waiting for their prediction."""
        now = self._clock()
        self.labels.append(feedback, now)
        with self._lock:
            outcomes = join_feedback(feedback, self._memory, self._labelled, self._waiting, now)
            self._count_feedback(outcomes)
        return outcomes["matched"], outcomes[PENDING]

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def ready(self) -> bool:
        """Alive and polled recently (a stuck poll, e.g. on a hung volume, makes it unready)."""
        last = self._snapshot.last_poll
        stale_after = (
            10 * self.settings.poll_interval_seconds
            + 2 * self.settings.github_timeout_seconds  # the retrain signal and the verdict's
            + SCRAPE_TIMEOUT_SECONDS
        )
        return self.alive and last is not None and self._clock() - last < stale_after

    # -- the background thread ---------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="monitor-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling, read what is left (a last poll) and save the state (with the feedback
        received since)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.github_timeout_seconds + 5)
            if self._thread.is_alive():
                LOGGER.error("the polling thread did not stop in time; its last poll is unsaved")
                return
        try:
            for _ in range(FINAL_POLLS):  # what the scorer wrote last, before the final shipping
                if not self.poll():
                    break
        except Exception:
            LOGGER.exception("the last poll failed")
        try:
            self._save()
        except OSError as error:
            LOGGER.error("could not save the state to %s: %s", self.settings.state_file, error)
        for follower in self._followers.values():
            follower.close()

    def reading(self) -> int | None:
        """The inode of the prediction log file being read (every earlier one was read whole)."""
        return self._followers[PREDICTIONS].position.inode

    def _run(self) -> None:
        while not self._stop.is_set():
            more = False
            try:
                more = self.poll()
            except Exception:  # the sidecar must outlive any bad poll; the next one retries
                LOGGER.exception("poll failed")
                with self._lock:
                    self._counts.poll_errors += 1
            if not more:
                self._stop.wait(self.settings.poll_interval_seconds)

    def poll(self) -> bool:
        """Read what is new, recompute, signal, save; True if more data is waiting already."""
        now = self._clock()
        task = self.reference.task
        predictions = self._followers[PREDICTIONS].poll()
        records = [
            r for line in predictions.lines if (r := parse_prediction(line, task)) is not None
        ]
        feedback_read = self._followers[FEEDBACK].poll()
        feedback = [
            f for line in feedback_read.lines if (f := parse_feedback_line(line, task)) is not None
        ]
        self.labels.append(feedback, now)
        with self._lock:
            self._add_records(records, now)
            self._counts.logs[PREDICTIONS].add(predictions, len(records))
            self._counts.logs[FEEDBACK].add(feedback_read, len(feedback))
            self._count_feedback(
                join_feedback(feedback, self._memory, self._labelled, self._waiting, now)
            )
            self._count_feedback(Counter(expired=self._waiting.expire(now)))
        scraped = self._scorer.poll(now)
        drift, performance, rollout, changed = self._assess(scraped)
        if changed:
            self._history.record(drift, now)
        self._publish(drift, performance, rollout, now)  # before the signals: a slow API
        signalled = self._signal_retrain(drift, performance, now)  # delays no report
        if self._signal_verdict(rollout, now) or signalled:
            self._publish(drift, performance, rollout, now)
        self._save()
        return predictions.exhausted or feedback_read.exhausted

    def _add_records(self, records: list[LoggedPrediction], now: float) -> None:
        for record in records:
            if record.answered:
                self._window.add(record)
            self._rollout_window.add(Scored.of(record))
        matched = remember_predictions(records, self._memory, self._labelled, self._waiting)
        self._count_feedback(Counter(matched=matched))
        if records:
            self._read_lag = max(0.0, now - max(record.timestamp for record in records))
        sizes = (len(self._window), len(self._rollout_window))
        self._window.evict(now)
        self._rollout_window.evict(now)
        evicted = sizes != (len(self._window), len(self._rollout_window))
        self._changed = self._changed or bool(records) or evicted

    def _count_feedback(self, outcomes: Counter[str]) -> None:
        for result in FEEDBACK_RESULTS:
            self._counts.feedback[result] += outcomes[result]
        self._changed = self._changed or bool(outcomes["matched"])

    def _assess(
        self, scraped: bool = False
    ) -> tuple[DriftReport, PerformanceReport, RolloutReport, bool]:
        """Drift, performance and the rollout comparison of the current windows, recomputed only
        when they (or the scorer's counts) changed (the last value says whether they did)."""
        with self._lock:
            changed, self._changed = self._changed or scraped, False
            records = list(self._window) if changed else []
            pairs = self._labelled.answered.pairs() if changed else []
            scored = list(self._rollout_window) if changed else []
            role_pairs = self._labelled.role_pairs() if changed else {}
        if not changed:
            snapshot = self._snapshot
            return snapshot.drift, snapshot.performance, snapshot.rollout, False
        drift = assess(records, self.reference, self.thresholds)
        performance = assess_performance(pairs, self.reference, self.performance_rules)
        errors = self._scorer.over(min((r.timestamp for r in scored), default=None))
        rollout = compare(
            scored,
            role_pairs,
            errors,
            self.reference,
            self.rollout_rules,
            self.challenger_reference,
        )
        return drift, performance, rollout, True

    def _publish(
        self,
        drift: DriftReport,
        performance: PerformanceReport,
        rollout: RolloutReport,
        now: float | None,
    ) -> Snapshot:
        with self._lock:
            counts = self._counts.copy()
        self._snapshot = Snapshot(
            drift=drift,
            performance=performance,
            rollout=rollout,
            counts=counts,
            read_lag_seconds=self._read_lag,
            unread_bytes=self._followers[PREDICTIONS].unread_bytes(),
            last_poll=now,
            history=self._history.points(),
            alerts=self._history.episodes(),
            labels_pending=len(self._waiting),
        )
        return self._snapshot

    def _signal_retrain(
        self, drift: DriftReport, performance: PerformanceReport, now: float
    ) -> bool:
        if not self._trigger.due(drift.alert or performance.degraded, now):
            return False
        payload = retrain_payload(
            self.reference,
            drift,
            performance,
            self._trigger.alert_since,
            now,
            self.settings.ship_url,
        )
        outcome = self._dispatcher.send(payload)
        self._trigger.record(outcome, now)
        with self._lock:
            self._counts.retrain_requests[outcome] += 1
        return True

    def _signal_verdict(self, rollout: RolloutReport, now: float) -> bool:
        decision = self._verdicts.due(rollout, now)
        if decision is None:
            return False
        payload = verdict_payload(self.reference.model_name, decision, rollout)
        outcome = self._dispatcher.send(payload, VERDICT_EVENT)
        self._verdicts.record(decision, outcome, now)
        with self._lock:
            self._counts.verdict_dispatches[outcome] += 1
        return True

    def _save(self) -> None:
        with self._lock:
            state = MonitorState(
                positions={log: follower.position for log, follower in self._followers.items()},
                counts=self._counts.copy(),
                last_retrain=self._trigger.last_sent,
                verdicts_sent=list(self._verdicts.sent),
            )
        data = state_bytes(state)
        if data != self._saved:
            save_state(self.settings.state_file, data)
            self._saved = data


def build_monitor(settings: MonitorSettings) -> Monitor:
    """Load and check everything the sidecar needs; a problem stops start-up with one line."""
    reference = load_reference(settings.model_dir)
    check_feature_names(
        reference, settings.feature_psi_thresholds, env_name("feature_psi_thresholds")
    )
    dispatcher = GitHubDispatcher(
        settings.github_api_url,
        settings.github_repository,
        settings.github_token,
        settings.github_timeout_seconds,
    )
    challenger = None
    if settings.challenger_model_dir is not None:
        challenger = load_reference(settings.challenger_model_dir)
        if challenger.task != reference.task:
            raise StageError(
                f"{env_name('challenger_model_dir')}={settings.challenger_model_dir}: a "
                f"{challenger.task} model, but the champion ({settings.model_dir}) is a "
                f"{reference.task} model"
            )
    return Monitor(
        settings,
        reference,
        load_state(settings.state_file),
        dispatcher,
        challenger_reference=challenger,
    )
