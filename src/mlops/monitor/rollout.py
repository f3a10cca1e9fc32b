"""The champion and its challenger compared over the same window, and the verdict on the
challenger: ``promote``, ``hold`` or ``rollback`` (the rules and their thresholds:
``mlops.monitor.rollout_settings``, docs/monitoring.md).

The window is the last lines of the prediction log, both roles together (``window.records``, of
those the last ``window.seconds``), so both roles are measured over the same span of traffic: in
a canary the challenger answers its share of it, in shadow mode it scores a copy of every request
the champion answers. Per role: records, latency p50/p95 (``latency_seconds``), the PSI of its
predictions against the packaged reference, its error rate from the scorer's counters, and its
performance on the labelled ones. In shadow mode also the pairs both roles scored: how often
they agree (a classifier) or how far apart they are (a regressor, in the scale of the reference's
predictions).

Pure: the caller reads the log, the labels and the scorer; this module only decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mlops.core.artifacts import ROLES, Role
from mlops.monitor.detect import measure_classes, measure_numeric
from mlops.monitor.feedback import METRIC_FUNCTIONS, Pair
from mlops.monitor.reference import PERFORMANCE_METRICS, Reference
from mlops.monitor.rollout_settings import RolloutRules
from mlops.monitor.window import Label, LoggedPrediction, format_timestamp

VerdictName = Literal["promote", "hold", "rollback"]
VERDICTS: tuple[VerdictName, ...] = ("promote", "hold", "rollback")
Mode = Literal["shadow", "canary"]
# What became of a rule: it holds, it broke, it needs more data, or it does not apply.
Status = Literal["pass", "fail", "wait", "skip"]
STATUSES: tuple[Status, ...] = ("pass", "fail", "wait", "skip")
RULES = (
    "records",
    "agreement",  # a classifier's; a regressor's is "prediction_difference"
    "error_rate",
    "latency",
    "prediction_drift",
    "performance",
)
# Classification metrics get worse downwards, regression errors upwards.
HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "mae": False, "rmse": False}


@dataclass(frozen=True, slots=True)
class Scored:
    """What the comparison keeps of a log line (not its features: the window is long)."""

    timestamp: float
    request_id: str
    index: int
    role: Role
    shadow: bool
    model_version: str
    prediction: Label
    latency_seconds: float | None

    @classmethod
    def of(cls, record: LoggedPrediction) -> Scored:
        return cls(
            record.timestamp,
            record.request_id,
            record.index,
            record.role,
            record.shadow,
            record.model_version,
            record.prediction,
            record.latency_seconds,
        )


@dataclass(frozen=True)
class RequestCounts:
    """A role's requests as the scorer counted them over the window."""

    ok: int = 0
    error: int = 0  # the model failed: a 5xx answered, or an exception on a shadow copy
    dropped: int = 0  # shadow copies not scored (the queue was full)

    @property
    def requests(self) -> int:
        return self.ok + self.error

    @property
    def error_rate(self) -> float | None:
        return self.error / self.requests if self.requests else None


@dataclass(frozen=True)
class ErrorCounts:
    """The scorer's counters over the window, per role, or why there are none (``note``)."""

    by_role: Mapping[Role, RequestCounts] | None = None
    note: str = "MONITOR_SCORER_URL is not set: error rates are not compared"
    expected: bool = False  # the scorer is configured: without its counts the verdict waits


@dataclass(frozen=True)
class RoleSummary:
    role: Role
    model_versions: tuple[str, ...]
    records: int
    shadow: int  # of the records, shadow copies
    latency_p50: float | None
    latency_p95: float | None
    prediction_psi: float | None
    counts: RequestCounts | None
    labelled: int
    performance: Mapping[str, float | None]

    def as_json(self) -> dict[str, Any]:
        counts = self.counts
        return {
            "model_versions": list(self.model_versions),
            "records": self.records,
            "shadow": self.shadow,
            "latency_p50_seconds": self.latency_p50,
            "latency_p95_seconds": self.latency_p95,
            "prediction_psi": self.prediction_psi,
            "requests": None if counts is None else counts.requests,
            "errors": None if counts is None else counts.error,
            "dropped": None if counts is None else counts.dropped,
            "error_rate": None if counts is None else counts.error_rate,
            "labelled": self.labelled,
            "performance": dict(self.performance),
        }


@dataclass(frozen=True)
class Check:
    """One rule: what became of it and why, with the values and the threshold."""

    rule: str
    status: Status
    detail: str

    @property
    def reason(self) -> str:
        return f"{self.rule}: {self.detail}"


@dataclass(frozen=True)
class RolloutReport:
    verdict: VerdictName | None  # None: no challenger in the window, nothing to decide
    mode: Mode | None
    roles: Mapping[Role, RoleSummary]
    pairs: int = 0  # shadow mode: the records both roles scored
    agreement: float | None = None  # a classifier's share of equal predictions over the pairs
    prediction_difference: float | None = None  # a regressor's mean |difference| / the scale
    checks: tuple[Check, ...] = ()
    window_start: float | None = None  # the oldest line's time
    window_end: float | None = None

    @property
    def reasons(self) -> list[str]:
        """What decided: the broken rules for a rollback, the missing data for a hold, every
        rule for a promotion (rules that do not apply say why)."""
        shown: dict[str, tuple[Status, ...]] = {"rollback": ("fail",), "hold": ("wait", "fail")}
        wanted = shown.get(self.verdict or "", STATUSES)
        return [check.reason for check in self.checks if check.status in wanted]

    def window(self) -> dict[str, Any]:
        """The window compared, as the verdict's dispatch carries it."""
        return {
            "start": format_timestamp(self.window_start),
            "end": format_timestamp(self.window_end),
            "mode": self.mode,
            "records": {role: summary.records for role, summary in self.roles.items()},
            "pairs": self.pairs,
            "labelled": {role: summary.labelled for role, summary in self.roles.items()},
        }

    def as_json(self) -> dict[str, Any]:
        """``GET /rollout``."""
        return {
            "verdict": self.verdict,
            "mode": self.mode,
            "reasons": self.reasons,
            "window": self.window(),
            "roles": {role: summary.as_json() for role, summary in self.roles.items()},
            "agreement": self.agreement,
            "prediction_difference": self.prediction_difference,
            "checks": [
                {"rule": c.rule, "status": c.status, "detail": c.detail} for c in self.checks
            ],
        }


def compare(
    records: Sequence[Scored],
    labelled: Mapping[Role, Sequence[Pair]],
    errors: ErrorCounts,
    reference: Reference,
    rules: RolloutRules,
    challenger_reference: Reference | None = None,
) -> RolloutReport:
    """The roles over the window, and the verdict (``hold`` until each role has
    ``min_records``; ``rollback`` when a rule breaks; ``promote`` when every rule holds).
    ``reference`` is the champion's package's; each role's prediction drift is measured against
    its own package's predictions on its test split, so without ``challenger_reference`` the
    challenger's is not measured (a better model predicts otherwise than the champion did)."""
    by_role: dict[Role, list[Scored]] = {role: [] for role in ROLES}
    for record in records:
        by_role[record.role].append(record)
    own = {"champion": reference, "challenger": challenger_reference}
    roles = {
        role: summarise(role, by_role[role], labelled.get(role, ()), errors, reference, own[role])
        for role in ROLES
    }
    start = min((r.timestamp for r in records), default=None)
    end = max((r.timestamp for r in records), default=None)
    if not by_role["challenger"]:
        return RolloutReport(None, None, roles, window_start=start, window_end=end)
    mode: Mode = "shadow" if any(r.shadow for r in by_role["challenger"]) else "canary"
    predicted = pairs(by_role["champion"], by_role["challenger"]) if mode == "shadow" else []
    agreement, difference = shadow_measures(predicted, reference)
    checks = (
        records_check(roles, rules),
        agreement_check(mode, len(predicted), agreement, difference, roles, rules),
        error_rate_check(roles, errors, rules),
        latency_check(roles, rules),
        prediction_drift_check(roles, rules, challenger_reference is not None),
        performance_check(roles, reference, rules),
    )
    return RolloutReport(
        decide(checks), mode, roles, len(predicted), agreement, difference, checks, start, end
    )


def decide(checks: Sequence[Check]) -> VerdictName:
    statuses = {check.rule: check.status for check in checks}
    if statuses.get("records") == "wait" or statuses.get("performance") == "wait":
        return "hold"  # performance waits only when required: nothing is decided without it
    if "fail" in statuses.values():
        return "rollback"
    return "hold" if "wait" in statuses.values() else "promote"


# --- per role ---------------------------------------------------------------------------------


def summarise(
    role: Role,
    records: Sequence[Scored],
    labelled: Sequence[Pair],
    errors: ErrorCounts,
    reference: Reference,
    own_reference: Reference | None,
) -> RoleSummary:
    """``reference``: the champion's package (performance); ``own_reference``: the role's own
    package (prediction drift), None when the sidecar was not given it."""
    latencies = [r.latency_seconds for r in records if r.latency_seconds is not None]
    p50, p95 = np.percentile(latencies, [50, 95]).tolist() if latencies else (None, None)
    counts = None if errors.by_role is None else errors.by_role.get(role, RequestCounts())
    return RoleSummary(
        role=role,
        model_versions=tuple(sorted({r.model_version for r in records if r.model_version})),
        records=len(records),
        shadow=sum(r.shadow for r in records),
        latency_p50=p50,
        latency_p95=p95,
        prediction_psi=(
            None
            if own_reference is None
            else prediction_psi(own_reference, [r.prediction for r in records])
        ),
        counts=counts,
        labelled=len(labelled),
        performance=performance(reference, labelled),
    )


def prediction_psi(reference: Reference, predictions: Sequence[Label]) -> float | None:
    """The PSI of the predictions against the packaged model's on the test split."""
    if not predictions:
        return None
    if reference.prediction is None:
        return measure_classes(reference, predictions).psi
    return measure_numeric(reference.prediction, predictions).psi


def performance(reference: Reference, labelled: Sequence[Pair]) -> dict[str, float | None]:
    names = PERFORMANCE_METRICS[reference.task]
    return {name: METRIC_FUNCTIONS[name](labelled) if labelled else None for name in names}


# --- shadow mode: the pairs ---------------------------------------------------------------------


def pairs(champion: Sequence[Scored], challenger: Sequence[Scored]) -> list[tuple[Label, Label]]:
    """(champion's, challenger's) prediction of every record both scored: the answered line and
    its shadow copy, by ``(request_id, index)``."""
    answered = {(r.request_id, r.index): r.prediction for r in champion if not r.shadow}
    return [
        (answered[key], r.prediction)
        for r in challenger
        if r.shadow and (key := (r.request_id, r.index)) in answered
    ]


def shadow_measures(
    predicted: Sequence[tuple[Label, Label]], reference: Reference
) -> tuple[float | None, float | None]:
    """(agreement, prediction difference): one of them, by the task; None without pairs."""
    if not predicted:
        return None, None
    if reference.task == "classification":
        agreeing = sum(str(first) == str(second) for first, second in predicted)
        return agreeing / len(predicted), None
    total = sum(abs(float(first) - float(second)) for first, second in predicted)
    return None, total / len(predicted) / target_scale(reference)


def target_scale(reference: Reference) -> float:
    """What a regressor's differences are measured in: the standard deviation of the packaged
    model's predictions on the test split (its target as the model sees it); the range of
    those predictions if they do not vary, else 1 (the target's units)."""
    numbers = reference.prediction
    if numbers is None:
        return 1.0
    if numbers.std is not None and numbers.std > 0:
        return numbers.std
    if numbers.low is not None and numbers.high is not None and numbers.high > numbers.low:
        return numbers.high - numbers.low
    return 1.0


# --- the rules ----------------------------------------------------------------------------------


def records_check(roles: Mapping[Role, RoleSummary], rules: RolloutRules) -> Check:
    champion, challenger = roles["champion"].records, roles["challenger"].records
    detail = (
        f"champion {champion} and challenger {challenger} records (min_records {rules.min_records})"
    )
    enough = min(champion, challenger) >= rules.min_records
    return Check("records", "pass" if enough else "wait", detail)


def agreement_check(
    mode: Mode,
    paired: int,
    agreement: float | None,
    difference: float | None,
    roles: Mapping[Role, RoleSummary],
    rules: RolloutRules,
) -> Check:
    """Shadow mode without enough labels: the challenger should mostly agree with the champion.
    With labels for both, their performance decides instead (a better challenger disagrees
    wherever the champion is wrong)."""
    rule = "agreement" if difference is None else "prediction_difference"
    if mode == "canary":
        return Check(rule, "skip", "canary: no request is scored by both roles")
    if _labelled_enough(roles, rules):
        return Check(rule, "skip", "both roles have labels: their performance decides")
    if paired < rules.min_records:
        return Check(
            rule, "wait", f"{paired} pairs scored by both roles (min_records {rules.min_records})"
        )
    if difference is None:
        floor = rules.shadow.min_agreement
        value = agreement or 0.0
        broke = value < floor
        relation = "below" if broke else "at least"
        detail = f"{value:.4g} over {paired} pairs, {relation} shadow.min_agreement {floor:g}"
        return Check(rule, "fail" if broke else "pass", detail)
    limit = rules.shadow.max_prediction_difference
    broke = difference > limit
    relation = "above" if broke else "within"
    detail = (
        f"mean |difference| {difference:.4g} target scales over {paired} pairs, {relation} "
        f"shadow.max_prediction_difference {limit:g}"
    )
    return Check(rule, "fail" if broke else "pass", detail)


def error_rate_check(
    roles: Mapping[Role, RoleSummary], errors: ErrorCounts, rules: RolloutRules
) -> Check:
    champion, challenger = roles["champion"].counts, roles["challenger"].counts
    if champion is None or challenger is None:
        return Check("error_rate", "wait" if errors.expected else "skip", errors.note)
    if challenger.error_rate is None:
        return Check("error_rate", "wait", "the scorer counted no challenger request yet")
    base = champion.error_rate or 0.0
    limit = rules.error_rate.max_increase
    broke = challenger.error_rate - base > limit
    detail = (
        f"challenger {challenger.error_rate:.4g} ({challenger.error} of {challenger.requests}) "
        f"vs champion {base:.4g} ({champion.error} of {champion.requests}): "
        f"{'more than' if broke else 'at most'} error_rate.max_increase {limit:g} above"
    )
    return Check("error_rate", "fail" if broke else "pass", detail)


def latency_check(roles: Mapping[Role, RoleSummary], rules: RolloutRules) -> Check:
    champion, challenger = roles["champion"].latency_p95, roles["challenger"].latency_p95
    if champion is None or challenger is None:
        return Check("latency", "skip", "the log lines carry no latency_seconds")
    ratio, slack = rules.latency.max_p95_ratio, rules.latency.min_p95_increase_seconds
    broke = challenger > champion * ratio and challenger - champion > slack
    detail = (
        f"p95 challenger {challenger * 1000:.3g} ms vs champion {champion * 1000:.3g} ms "
        f"({'above' if broke else 'within'} latency.max_p95_ratio {ratio:g}, "
        f"latency.min_p95_increase_seconds {slack:g})"
    )
    return Check("latency", "fail" if broke else "pass", detail)


def prediction_drift_check(
    roles: Mapping[Role, RoleSummary], rules: RolloutRules, measured: bool = True
) -> Check:
    if not measured:
        detail = "not measured: no challenger package given (MONITOR_CHALLENGER_MODEL_DIR)"
        return Check("prediction_drift", "skip", detail)
    champion, challenger = roles["champion"].prediction_psi, roles["challenger"].prediction_psi
    if champion is None or challenger is None:
        return Check("prediction_drift", "wait", "a role has no prediction in the window")
    limit = rules.prediction_drift.max_psi_increase
    broke = challenger - champion > limit
    detail = (
        f"prediction PSI challenger {challenger:.4g} vs champion {champion:.4g} "
        f"({'more than' if broke else 'at most'} prediction_drift.max_psi_increase {limit:g} "
        "above)"
    )
    return Check("prediction_drift", "fail" if broke else "pass", detail)


def performance_check(
    roles: Mapping[Role, RoleSummary], reference: Reference, rules: RolloutRules
) -> Check:
    champion, challenger = roles["champion"], roles["challenger"]
    if not _labelled_enough(roles, rules):
        detail = (
            f"champion {champion.labelled} and challenger {challenger.labelled} labelled "
            f"(performance.min_labelled {rules.performance.min_labelled})"
        )
        return Check("performance", "wait" if rules.performance.required else "skip", detail)
    worse, measured = [], []
    for metric in PERFORMANCE_METRICS[reference.task]:
        ours, theirs = challenger.performance[metric], champion.performance[metric]
        if ours is None or theirs is None:
            continue
        measured.append(f"{metric} {ours:.4g} vs {theirs:.4g}")
        if _worse(metric, ours, theirs, rules):
            worse.append(metric)
    if reference.task == "classification":
        allowed = f"performance.max_drop {rules.performance.max_drop:g}"
    else:
        allowed = f"performance.max_error_increase {rules.performance.max_error_increase:g}"
    labels = f"{challenger.labelled} and {champion.labelled} labelled"
    if worse:
        detail = (
            f"challenger worse in {', '.join(worse)} ({'; '.join(measured)}, {labels}; {allowed})"
        )
        return Check("performance", "fail", detail)
    return Check("performance", "pass", f"{'; '.join(measured)} ({labels}; {allowed})")


def _worse(metric: str, challenger: float, champion: float, rules: RolloutRules) -> bool:
    if HIGHER_IS_BETTER[metric]:
        return challenger < champion - rules.performance.max_drop
    return challenger > champion * (1 + rules.performance.max_error_increase)


def _labelled_enough(roles: Mapping[Role, RoleSummary], rules: RolloutRules) -> bool:
    return min(summary.labelled for summary in roles.values()) >= rules.performance.min_labelled
