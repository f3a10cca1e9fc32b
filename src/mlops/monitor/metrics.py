"""The sidecar's Prometheus metrics, rendered at scrape time from the last published snapshot.

Labels are bounded by the model: ``feature`` (its feature names), ``class`` (a classifier's
classes), ``log``, ``result``, ``outcome``, ``role``, ``rule``, ``status`` and ``verdict`` (a few
fixed values). Request ids never become labels.
The prediction and performance metrics follow the model's task (``monitor_model_info{task}``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from mlops.core.artifacts import ROLES, Role
from mlops.monitor.detect import FeatureDrift, PredictionDrift
from mlops.monitor.reference import Reference
from mlops.monitor.rollout import STATUSES, VERDICTS, RolloutReport
from mlops.monitor.service import Snapshot
from mlops.monitor.ship import SHIPPED_LOGS, Shipper
from mlops.monitor.state import LogCounts


class MonitorCollector:
    def __init__(
        self,
        reference: Reference,
        snapshot: Callable[[], Snapshot],
        registry_versions: Mapping[Role, str | None] | None = None,
    ) -> None:
        self.reference = reference
        self.snapshot = snapshot
        self.registry_versions = registry_versions or {}

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot()
        yield InfoMetricFamily(
            "monitor_model",
            "The packaged model the sidecar compares traffic with.",
            value={
                "model_name": self.reference.model_name,
                "model_version": self.reference.model_version,
                "task": self.reference.task,
            },
        )
        yield from _log_counters(snapshot.counts.logs)
        yield from _other_counters(snapshot)
        yield from _drift_gauges(snapshot, sorted(self.reference.class_shares))
        yield from _performance_gauges(snapshot)
        yield from _reader_gauges(snapshot)
        yield GaugeMetricFamily(
            "monitor_feedback_pending",
            "Labels waiting for their prediction to be read (MONITOR_LABEL_TTL_SECONDS at most).",
            value=snapshot.labels_pending,
        )
        yield from _rollout_gauges(snapshot.rollout, self.registry_versions)
        dispatches = CounterMetricFamily(
            "monitor_rollout_verdict_dispatches",
            "Rollout verdicts sent as repository_dispatch, by outcome.",
            labels=["outcome"],
        )
        for outcome, value in snapshot.counts.verdict_dispatches.items():
            dispatches.add_metric([outcome], value)
        yield dispatches


def _log_counters(logs: dict[str, LogCounts]) -> Iterator[Metric]:
    fields = {
        "records": ("monitor_records_read", "Valid records read from the log."),
        "corrupt": ("monitor_corrupt_lines", "Lines skipped as corrupt (not a valid record)."),
        "rotations": ("monitor_log_rotations", "Log rotations followed."),
        "truncations": ("monitor_log_truncations", "Log truncations detected."),
        "lost_files": ("monitor_log_files_lost", "Files gone before being read to the end."),
    }
    for field, (name, documentation) in fields.items():
        family = CounterMetricFamily(name, documentation, labels=["log"])
        for log, counts in logs.items():
            family.add_metric([log], getattr(counts, field))
        yield family


def _other_counters(snapshot: Snapshot) -> Iterator[Metric]:
    counts = snapshot.counts
    feedback = CounterMetricFamily(
        "monitor_feedback", "Ground-truth labels received, by join result.", labels=["result"]
    )
    for result, value in counts.feedback.items():
        feedback.add_metric([result], value)
    yield feedback
    retrain = CounterMetricFamily(
        "monitor_retrain_requests", "Retrain signals, by outcome.", labels=["outcome"]
    )
    for outcome, value in counts.retrain_requests.items():
        retrain.add_metric([outcome], value)
    yield retrain
    yield CounterMetricFamily("monitor_poll_errors", "Polls that failed.", value=counts.poll_errors)


def _drift_gauges(snapshot: Snapshot, classes: list[str]) -> Iterator[Metric]:
    drift = snapshot.drift
    yield GaugeMetricFamily(
        "monitor_window_records", "Records in the drift window.", value=drift.window_size
    )
    per_feature: dict[str, tuple[str, Callable[[FeatureDrift], float]]] = {
        "monitor_feature_psi": ("PSI of the feature against training.", lambda f: f.psi),
        "monitor_feature_psi_threshold": (
            "The smallest PSI reported as drift (the floor).",
            lambda f: f.threshold,
        ),
        "monitor_feature_missing_ratio": ("Share of missing values.", lambda f: f.missing_rate),
        "monitor_feature_out_of_range_ratio": (
            "Share of values outside the training range or category set.",
            lambda f: f.out_of_range_rate,
        ),
        "monitor_feature_drifted": ("1 if the feature drifted.", lambda f: float(f.drifted)),
    }
    for name, (documentation, value) in per_feature.items():
        family = GaugeMetricFamily(name, documentation, labels=["feature"])
        for feature in drift.features:
            family.add_metric([feature.name], value(feature))
        yield family
    p_values = GaugeMetricFamily(
        "monitor_feature_p_value",
        "P-value of a check of the feature (psi, missing_rate, out_of_range) if nothing changed.",
        labels=["feature", "check"],
    )
    for feature in drift.features:
        for check, p_value in feature.p_values.items():
            p_values.add_metric([feature.name, check], p_value)
    yield p_values
    yield GaugeMetricFamily(
        "monitor_check_level",
        "A check fails when its p-value is below this: the false-alarm rate over the checks.",
        value=drift.prediction.level,
    )
    yield from _prediction_gauges(drift.prediction, classes)
    yield GaugeMetricFamily("monitor_drift_alert", "1 if anything drifted.", value=drift.alert)


def _prediction_gauges(prediction: PredictionDrift, classes: list[str]) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "monitor_prediction_psi",
        "PSI of the predictions against training: the class mix, or the predicted numbers.",
        value=prediction.psi,
    )
    if not prediction.numeric:
        shares = GaugeMetricFamily(
            "monitor_prediction_class_ratio", "Share of each predicted class.", labels=["class"]
        )
        for label in classes:  # the model's classes only: a label from a bad log line is no label
            shares.add_metric([label], prediction.class_shares.get(label, 0.0))
        yield shares
    means = {
        "monitor_prediction_mean": ("Mean prediction in the window.", prediction.mean),
        "monitor_reference_prediction_mean": (
            "Mean prediction on the test split at packaging.",
            prediction.reference_mean,
        ),
    }
    for name, (documentation, mean) in means.items():
        if mean is not None:  # a regressor's only
            yield GaugeMetricFamily(name, documentation, value=mean)
    yield GaugeMetricFamily(
        "monitor_prediction_p_value",
        "P-value of the predictions' distribution if nothing changed.",
        value=prediction.p_value,
    )
    yield GaugeMetricFamily(
        "monitor_prediction_drifted", "1 if the predictions drifted.", value=prediction.drifted
    )


# Per performance metric: the name of its gauge (a ratio, or in the target's units) and its meaning.
PERFORMANCE_GAUGES = {
    "accuracy": ("accuracy_ratio", "Accuracy"),
    "macro_f1": ("macro_f1_ratio", "Macro F1"),
    "mae": ("mae", "Mean absolute error (target units)"),
    "rmse": ("rmse", "Root mean squared error (target units)"),
}


def _performance_gauges(snapshot: Snapshot) -> Iterator[Metric]:
    performance = snapshot.performance
    yield GaugeMetricFamily(
        "monitor_labelled_records",
        "Labelled predictions in the performance window.",
        value=performance.labelled,
    )
    for metric, live in performance.live.items():
        suffix, meaning = PERFORMANCE_GAUGES[metric]
        if live is not None:
            yield GaugeMetricFamily(
                f"monitor_rolling_{suffix}", f"{meaning} on labelled traffic.", value=live
            )
        if metric in performance.reference:
            yield GaugeMetricFamily(
                f"monitor_reference_{suffix}",
                f"{meaning} of the packaged model on the validation set.",
                value=performance.reference[metric],
            )
    yield GaugeMetricFamily(
        "monitor_performance_degraded",
        "1 if rolling performance is worse than validation by more than the tolerance.",
        value=performance.degraded,
    )


def _rollout_gauges(
    report: RolloutReport, registry_versions: Mapping[Role, str | None]
) -> Iterator[Metric]:
    """The roles compared over the window (docs/monitoring.md, "Rollout"); the verdict, the
    rules and the challenger's numbers only while the window holds challenger records."""
    active = report.verdict is not None
    yield GaugeMetricFamily(
        "monitor_rollout_active", "1 while the window holds challenger records.", value=active
    )
    roles = report.roles
    info = {
        "mode": report.mode or "",
        **{f"{role}_model_version": ",".join(roles[role].model_versions) for role in ROLES},
        **{f"{role}_registry_version": registry_versions.get(role) or "" for role in ROLES},
    }
    yield InfoMetricFamily(
        "monitor_rollout", "The roles compared: their model and registry versions.", value=info
    )
    if report.verdict is not None:
        verdict = GaugeMetricFamily(
            "monitor_rollout_verdict",
            "1 for the verdict on the challenger: promote, hold or rollback.",
            labels=["verdict"],
        )
        for name in VERDICTS:
            verdict.add_metric([name], float(name == report.verdict))
        yield verdict
        rules = GaugeMetricFamily(
            "monitor_rollout_rule",
            "1 for what became of each rule of the verdict: pass, fail, wait (more data), skip.",
            labels=["rule", "status"],
        )
        for check in report.checks:
            for status in STATUSES:
                rules.add_metric([check.rule, status], float(status == check.status))
        yield rules
    yield from _role_gauges(report)
    yield GaugeMetricFamily(
        "monitor_rollout_pairs", "Shadow mode: records both roles scored.", value=report.pairs
    )
    if report.agreement is not None:
        yield GaugeMetricFamily(
            "monitor_rollout_agreement_ratio",
            "Shadow mode, a classifier: share of the pairs where both roles predict the same.",
            value=report.agreement,
        )
    if report.prediction_difference is not None:
        yield GaugeMetricFamily(
            "monitor_rollout_prediction_difference",
            "Shadow mode, a regressor: mean |difference| of the pairs, in target scales.",
            value=report.prediction_difference,
        )


def _role_gauges(report: RolloutReport) -> Iterator[Metric]:
    """Per role: records, latency, prediction PSI, requests and errors, labelled performance."""
    summaries = [report.roles[role] for role in ROLES]
    records = GaugeMetricFamily(
        "monitor_rollout_records", "Log lines in the rollout window.", labels=["role"]
    )
    latency = GaugeMetricFamily(
        "monitor_rollout_latency_seconds",
        "Latency (latency_seconds of the log lines) in the window.",
        labels=["role", "quantile"],
    )
    psi = GaugeMetricFamily(
        "monitor_rollout_prediction_psi",
        "PSI of the role's predictions against its own package's (the challenger's: with "
        "MONITOR_CHALLENGER_MODEL_DIR).",
        labels=["role"],
    )
    labelled = GaugeMetricFamily(
        "monitor_rollout_labelled_records", "Labelled records of the role.", labels=["role"]
    )
    requests = GaugeMetricFamily(
        "monitor_rollout_requests",
        "The scorer's requests of the role over the window (MONITOR_SCORER_URL), by outcome.",
        labels=["role", "outcome"],
    )
    errors = GaugeMetricFamily(
        "monitor_rollout_error_ratio",
        "The scorer's share of the role's requests that failed over the window.",
        labels=["role"],
    )
    for summary in summaries:
        records.add_metric([summary.role], summary.records)
        labelled.add_metric([summary.role], summary.labelled)
        for quantile, value in (("0.5", summary.latency_p50), ("0.95", summary.latency_p95)):
            if value is not None:
                latency.add_metric([summary.role, quantile], value)
        if summary.prediction_psi is not None:
            psi.add_metric([summary.role], summary.prediction_psi)
        counts = summary.counts
        if counts is not None:
            for outcome in ("ok", "error", "dropped"):
                requests.add_metric([summary.role, outcome], getattr(counts, outcome))
            if counts.error_rate is not None:
                errors.add_metric([summary.role], counts.error_rate)
    yield from (records, latency, psi, labelled, requests, errors)
    for metric, (suffix, meaning) in PERFORMANCE_GAUGES.items():
        family = GaugeMetricFamily(
            f"monitor_rollout_{suffix}",
            f"{meaning} of the role on labelled traffic.",
            labels=["role"],
        )
        for summary in summaries:
            value = summary.performance.get(metric)
            if value is not None:
                family.add_metric([summary.role], value)
        if family.samples:
            yield family


def _reader_gauges(snapshot: Snapshot) -> Iterator[Metric]:
    if snapshot.read_lag_seconds is not None:
        yield GaugeMetricFamily(
            "monitor_read_lag_seconds",
            "Age of the newest record when it was read.",
            value=snapshot.read_lag_seconds,
        )
    yield GaugeMetricFamily(
        "monitor_log_unread_bytes", "Bytes of the log not read yet.", value=snapshot.unread_bytes
    )
    if snapshot.last_poll is not None:
        yield GaugeMetricFamily(
            "monitor_last_poll_timestamp_seconds",
            "When the log was last polled.",
            value=snapshot.last_poll,
        )


class ShippingCollector:
    """The shipper's counts (continued across restarts) and what waits to be shipped."""

    def __init__(self, shipper: Shipper) -> None:
        self.shipper = shipper

    def collect(self) -> Iterator[Metric]:
        status = self.shipper.status()
        counters = {
            "segments": ("monitor_shipped_segments", "Closed log segments shipped."),
            "records": ("monitor_shipped_records", "Records shipped (in those segments)."),
            "objects": ("monitor_shipped_objects", "Parquet objects written to the store."),
            "corrupt": ("monitor_shipped_corrupt_lines", "Lines left out: not a record."),
        }
        for field, (name, documentation) in counters.items():
            family = CounterMetricFamily(name, documentation, labels=["log"])
            for log in SHIPPED_LOGS:
                family.add_metric([log], getattr(status.counts.logs[log], field))
            yield family
        yield CounterMetricFamily(
            "monitor_ship_failures", "Shipping passes that failed.", value=status.counts.failures
        )
        waiting = {
            "monitor_unshipped_segments": (
                "Closed segments not shipped yet.",
                status.waiting_segments,
            ),
            "monitor_unshipped_bytes": (
                "Bytes of closed segments not shipped yet.",
                status.waiting_bytes,
            ),
        }
        for name, (documentation, values) in waiting.items():
            gauge = GaugeMetricFamily(name, documentation, labels=["log"])
            for log in SHIPPED_LOGS:
                gauge.add_metric([log], values[log])
            yield gauge
        if status.counts.last_shipped is not None:
            yield GaugeMetricFamily(
                "monitor_last_shipment_timestamp_seconds",
                "When a segment was last shipped.",
                value=status.counts.last_shipped,
            )


def metrics_registry(
    reference: Reference,
    snapshot: Callable[[], Snapshot],
    shipper: Shipper | None = None,
    registry_versions: Mapping[Role, str | None] | None = None,
) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(MonitorCollector(reference, snapshot, registry_versions))
    if shipper is not None and shipper.store is not None:
        registry.register(ShippingCollector(shipper))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
