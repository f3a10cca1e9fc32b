"""The rollout comparison and its verdict (``mlops.monitor.rollout``), the thresholds file
(``mlops.monitor.rollout_settings``), the scorer's counters (``mlops.monitor.scorer``) and the
verdict's dispatch payload, checked by the function the rollout workflow reads it with."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from mlops.core.artifacts import Role
from mlops.core.errors import StageError
from mlops.gitops.rollout import VERDICT_EVENT, parse_verdict
from mlops.monitor import rollout
from mlops.monitor.feedback import Pair
from mlops.monitor.reference import FeatureReference, Reference
from mlops.monitor.rollout import ErrorCounts, RequestCounts, RolloutReport, Scored, target_scale
from mlops.monitor.rollout_settings import RolloutRules, load_rollout_rules
from mlops.monitor.scorer import ScorerCounters, counts_since, increase, parse_counts
from mlops.monitor.verdict import VERDICT_EVENT as SENT_EVENT
from mlops.monitor.verdict import VerdictTrigger, verdict_payload
from mlops.monitor.window import Label
from monitor_fixtures import fake_scorer

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def compare(
    records: Sequence[Scored],
    labelled: Mapping[Role, Sequence[Any]],
    errors: ErrorCounts,
    reference: Reference,
    rules: RolloutRules,
) -> RolloutReport:
    """The comparison with a challenger package of the same reference (its predictions on the
    test split as the champion's), as a sidecar given MONITOR_CHALLENGER_MODEL_DIR."""
    return rollout.compare(records, labelled, errors, reference, rules, reference)


CLASSES = {"Adélie [A]": 0.5, "Gentoo / G": 0.5}
A, G = CLASSES
CLASSIFIER = Reference(
    "penguins", "champ-1", (), CLASSES, validation={"accuracy": 0.9}, predicted_rows=2000
)
RULES = RolloutRules.model_validate({"min_records": 100, "performance": {"min_labelled": 50}})
START = 1_800_000_000.0


def shadow(
    champion: Sequence[Label],
    challenger: Sequence[Label],
    latency: tuple[float, float] = (0.004, 0.003),
) -> list[Scored]:
    """Answered champion lines and their challenger copies, one per request."""
    records = []
    for n, (first, second) in enumerate(zip(champion, challenger, strict=True)):
        at = START + n
        records.append(Scored(at, f"r{n}", 0, "champion", False, "champ-1", first, latency[0]))
        records.append(Scored(at, f"r{n}", 0, "challenger", True, "chall-2", second, latency[1]))
    return records


def classes(count: int, seed: int) -> list[Label]:
    return list(np.random.default_rng(seed).choice(list(CLASSES), count))


def flipped(labels: Sequence[Label], every: int) -> list[Label]:
    """Every ``every``-th label changed to the other class."""
    return [(G if label == A else A) if n % every == 0 else label for n, label in enumerate(labels)]


NO_LABELS: dict[Role, list[Pair]] = {}


def test_an_equal_challenger_is_promoted_with_every_rule_in_the_reasons() -> None:
    predictions = classes(300, seed=1)
    report = compare(shadow(predictions, predictions), NO_LABELS, ErrorCounts(), CLASSIFIER, RULES)
    assert report.verdict == "promote" and report.mode == "shadow"
    assert (report.pairs, report.agreement) == (300, 1.0)
    statuses = {check.rule: check.status for check in report.checks}
    assert statuses == {
        "records": "pass",
        "agreement": "pass",
        "error_rate": "skip",
        "latency": "pass",
        "prediction_drift": "pass",
        "performance": "skip",
    }
    assert "error_rate: MONITOR_SCORER_URL is not set: error rates are not compared" in (
        report.reasons
    )
    assert report.roles["champion"].records == report.roles["challenger"].records == 300
    assert report.roles["challenger"].model_versions == ("chall-2",)
    assert report.roles["champion"].latency_p95 == pytest.approx(0.004)


def test_a_challenger_that_disagrees_is_rolled_back_naming_the_rule_value_and_threshold() -> None:
    predictions = classes(300, seed=2)
    worse = flipped(predictions, every=3)  # agrees on two records of three
    report = compare(shadow(predictions, worse), NO_LABELS, ErrorCounts(), CLASSIFIER, RULES)
    assert report.verdict == "rollback"
    assert report.agreement == pytest.approx(2 / 3)
    assert report.reasons == [
        "agreement: 0.6667 over 300 pairs, below shadow.min_agreement 0.8",
    ]
    # with labels required, disagreeing decides nothing: only labels can say which is right
    required = RULES.model_copy(
        update={"performance": RULES.performance.model_copy(update={"required": True})}
    )
    waiting = compare(shadow(predictions, worse), NO_LABELS, ErrorCounts(), CLASSIFIER, required)
    assert waiting.verdict == "hold"


def test_too_few_records_hold_whatever_the_rules_say() -> None:
    predictions = classes(60, seed=3)
    report = compare(
        shadow(predictions, flipped(predictions, 1)), NO_LABELS, ErrorCounts(), CLASSIFIER, RULES
    )
    assert report.verdict == "hold"
    assert report.reasons[0] == "records: champion 60 and challenger 60 records (min_records 100)"


def test_no_challenger_in_the_window_means_nothing_to_decide() -> None:
    records = [r for r in shadow(classes(200, 4), classes(200, 4)) if r.role == "champion"]
    report = compare(records, NO_LABELS, ErrorCounts(), CLASSIFIER, RULES)
    assert (report.verdict, report.mode, report.checks) == (None, None, ())
    assert report.as_json()["verdict"] is None and report.roles["champion"].records == 200


def test_labels_give_per_role_performance_and_decide_instead_of_the_agreement() -> None:
    """A better challenger disagrees wherever the champion is wrong: with labels for both roles,
    performance decides (promote); a worse one is rolled back, naming the metric."""
    truth = classes(300, seed=5)
    champion = flipped(truth, every=4)  # 75 % right
    better = flipped(truth, every=20)  # 95 % right: agrees with the champion on 80 %
    labelled: dict[Role, list[Pair]] = {
        "champion": list(zip(truth, champion, strict=True)),
        "challenger": list(zip(truth, better, strict=True)),
    }
    rules = RULES.model_copy(
        update={"shadow": RULES.shadow.model_copy(update={"min_agreement": 0.9})}
    )
    report = compare(shadow(champion, better), labelled, ErrorCounts(), CLASSIFIER, rules)
    assert report.verdict == "promote", report.reasons
    assert report.roles["challenger"].performance["accuracy"] == pytest.approx(0.95)
    assert report.roles["champion"].performance["accuracy"] == pytest.approx(0.75)
    assert report.roles["challenger"].labelled == 300
    agreement = next(check for check in report.checks if check.rule == "agreement")
    assert agreement.status == "skip" and "performance decides" in agreement.detail

    swapped: dict[Role, list[Pair]] = {
        "champion": labelled["challenger"],
        "challenger": labelled["champion"],
    }
    report = compare(shadow(better, champion), swapped, ErrorCounts(), CLASSIFIER, rules)
    assert report.verdict == "rollback"
    (reason,) = report.reasons
    assert reason.startswith("performance: challenger worse in accuracy, macro_f1 (accuracy 0.75")
    assert "performance.max_drop 0.02" in reason


def test_required_labels_hold_until_both_roles_have_them() -> None:
    predictions = classes(200, seed=6)
    required = RULES.model_copy(
        update={"performance": RULES.performance.model_copy(update={"required": True})}
    )
    report = compare(
        shadow(predictions, predictions), NO_LABELS, ErrorCounts(), CLASSIFIER, required
    )
    assert report.verdict == "hold"
    assert report.reasons == [
        "performance: champion 0 and challenger 0 labelled (performance.min_labelled 50)"
    ]


def regressor(std: float) -> Reference:
    prediction = FeatureReference(
        "prediction",
        "numeric",
        0.0,
        edges=(100.0, 200.0, 300.0),
        bin_shares=(0.25, 0.25, 0.25, 0.25),
        low=0.0,
        high=400.0,
        mean=200.0,
        std=std,
        rows=1000,
        present=1000,
    )
    return Reference(
        "prices", "champ-1", (), {}, {"mae": 5.0, "rmse": 7.0}, "regression", prediction, 1000
    )


def test_a_regressors_difference_is_measured_in_the_reference_predictions_scale() -> None:
    generator = np.random.default_rng(7)
    champion = [float(v) for v in generator.uniform(0.0, 400.0, 200)]
    close = [value + 10.0 for value in champion]  # 10 / 100 = 0.1 scales apart
    report = compare(shadow(champion, close), NO_LABELS, ErrorCounts(), regressor(100.0), RULES)
    assert report.prediction_difference == pytest.approx(0.1)
    assert report.agreement is None and report.verdict == "promote", report.reasons
    far = [value + 40.0 * (-1) ** n for n, value in enumerate(champion)]  # 0.4 scales
    report = compare(shadow(champion, far), NO_LABELS, ErrorCounts(), regressor(100.0), RULES)
    assert report.verdict == "rollback"
    assert report.reasons == [
        "prediction_difference: mean |difference| 0.4 target scales over 200 pairs, above "
        "shadow.max_prediction_difference 0.25"
    ]
    # the same numbers on a target ten times as spread are close
    assert (
        compare(shadow(champion, far), NO_LABELS, ErrorCounts(), regressor(1000.0), RULES).verdict
        == "promote"
    )
    assert target_scale(regressor(0.0)) == 400.0  # constant predictions: their range


def test_a_regressors_labels_compare_mae_and_rmse() -> None:
    generator = np.random.default_rng(8)
    truth = [float(v) for v in generator.uniform(0.0, 400.0, 200)]
    champion = [value + 5.0 for value in truth]
    worse = [value - 6.0 for value in truth]  # 20 % more error: above max_error_increase 0.1
    labelled: dict[Role, list[Pair]] = {
        "champion": list(zip(truth, champion, strict=True)),
        "challenger": list(zip(truth, worse, strict=True)),
    }
    report = compare(shadow(champion, worse), labelled, ErrorCounts(), regressor(100.0), RULES)
    assert report.verdict == "rollback"
    assert report.roles["challenger"].performance == {
        "mae": pytest.approx(6.0),
        "rmse": pytest.approx(6.0),
    }
    assert report.reasons[0].startswith("performance: challenger worse in mae, rmse (mae 6 vs 5")


def canary(count: int, latency: tuple[float, float] = (0.004, 0.004)) -> list[Scored]:
    """Every other request answered by the challenger; no shadow copies."""
    predictions = classes(count, seed=9)
    return [
        Scored(
            START + n,
            f"c{n}",
            0,
            "challenger" if n % 2 else "champion",
            False,
            "chall-2" if n % 2 else "champ-1",
            predictions[n],
            latency[n % 2],
        )
        for n in range(count)
    ]


def test_a_canary_compares_error_rates_from_the_scorers_counts() -> None:
    records = canary(400)
    healthy = ErrorCounts({"champion": RequestCounts(990, 10), "challenger": RequestCounts(495, 5)})
    report = compare(records, NO_LABELS, healthy, CLASSIFIER, RULES)
    assert report.mode == "canary" and report.pairs == 0 and report.verdict == "promote"
    statuses = {check.rule: check.status for check in report.checks}
    assert statuses["agreement"] == "skip" and statuses["error_rate"] == "pass"
    failing = ErrorCounts(
        {"champion": RequestCounts(990, 10), "challenger": RequestCounts(470, 30)}
    )
    report = compare(records, NO_LABELS, failing, CLASSIFIER, RULES)
    assert report.verdict == "rollback"
    assert report.reasons == [
        "error_rate: challenger 0.06 (30 of 500) vs champion 0.01 (10 of 1000): more than "
        "error_rate.max_increase 0.01 above"
    ]
    assert report.roles["challenger"].counts == RequestCounts(470, 30)
    unread = ErrorCounts(None, "the scorer's metrics at http://x/metrics cannot be read", True)
    report = compare(records, NO_LABELS, unread, CLASSIFIER, RULES)
    assert report.verdict == "hold"
    assert report.reasons == ["error_rate: the scorer's metrics at http://x/metrics cannot be read"]


def test_a_slower_challenger_is_rolled_back_beyond_both_latency_limits() -> None:
    report = compare(canary(400, (0.004, 0.020)), NO_LABELS, ErrorCounts(), CLASSIFIER, RULES)
    assert report.verdict == "rollback"
    assert report.reasons == [
        "latency: p95 challenger 20 ms vs champion 4 ms (above latency.max_p95_ratio 1.5, "
        "latency.min_p95_increase_seconds 0.005)"
    ]
    # five times slower, but by a millisecond: within the absolute slack
    report = compare(canary(400, (0.0002, 0.001)), NO_LABELS, ErrorCounts(), CLASSIFIER, RULES)
    assert report.verdict == "promote"


def test_a_challenger_whose_predictions_drift_is_rolled_back() -> None:
    predictions = classes(300, seed=10)
    skewed = [A if n % 10 else label for n, label in enumerate(predictions)]  # 95 % one class
    loose = RULES.model_copy(
        update={"shadow": RULES.shadow.model_copy(update={"min_agreement": 0.0})}
    )
    report = compare(shadow(predictions, skewed), NO_LABELS, ErrorCounts(), CLASSIFIER, loose)
    assert report.verdict == "rollback"
    (reason,) = report.reasons
    assert reason.startswith("prediction_drift: prediction PSI challenger ")
    assert reason.endswith("(more than prediction_drift.max_psi_increase 0.2 above)")
    # without the challenger's package the sidecar cannot tell drift from another model
    unknown = rollout.compare(
        shadow(predictions, skewed), NO_LABELS, ErrorCounts(), CLASSIFIER, loose
    )
    assert unknown.verdict == "promote"
    (drift,) = [check for check in unknown.checks if check.rule == "prediction_drift"]
    assert drift.status == "skip" and "MONITOR_CHALLENGER_MODEL_DIR" in drift.detail


# --- the thresholds file ------------------------------------------------------------------------


def test_the_repositorys_file_holds_exactly_the_defaults() -> None:
    assert load_rollout_rules(PROJECT_ROOT / "deploy" / "rollout.yaml") == RolloutRules()
    assert load_rollout_rules(None) == RolloutRules()


def write_rules(path: Path, change: dict[str, object]) -> Path:
    rules = yaml.safe_load((PROJECT_ROOT / "deploy" / "rollout.yaml").read_text())
    for dotted, value in change.items():
        *sections, key = dotted.split(".")
        target = rules
        for section in sections:
            target = target[section]
        if value is DELETE:
            del target[key]
        else:
            target[key] = value
    path.write_text(yaml.safe_dump(rules))
    return path


DELETE = object()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shadow.min_agreement": DELETE}, r"missing key\(s\) shadow\.min_agreement \(every key"),
        ({"latency": DELETE}, r"missing key\(s\) latency \(every key"),
        ({"shadow.min_agreemnt": 0.9}, r"shadow\.min_agreemnt: unknown key \(got 0\.9\)"),
        (
            {"shadow.min_agreement": 1.5},
            r"shadow\.min_agreement: Input should be less than or equal to 1",
        ),
        ({"min_records": "many"}, r"min_records: Input should be a valid integer"),
        ({"window.seconds": None}, None),
    ],
)
def test_a_bad_thresholds_file_stops_start_up_naming_the_file_and_the_key(
    tmp_path: Path, change: dict[str, object], message: str | None
) -> None:
    path = write_rules(tmp_path / "rollout rules.yaml", change)
    if message is None:
        assert load_rollout_rules(path).window.seconds is None
        return
    with pytest.raises(StageError, match=f"^{path}: .*{message}"):
        load_rollout_rules(path)


def test_a_missing_or_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        StageError, match=r"MONITOR_ROLLOUT_SETTINGS=.*nowhere\.yaml: cannot be read"
    ):
        load_rollout_rules(tmp_path / "nowhere.yaml")
    (tmp_path / "broken.yaml").write_text("window: [1,\n")
    with pytest.raises(StageError, match=r"broken\.yaml: not valid YAML"):
        load_rollout_rules(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(StageError, match=r"list\.yaml: expected a mapping"):
        load_rollout_rules(tmp_path / "list.yaml")


# --- the scorer's counters ----------------------------------------------------------------------


def test_counters_grow_across_a_reset_as_prometheus_increase_does() -> None:
    assert increase([10.0, 15.0, 3.0, 7.0]) == 5.0 + 3.0 + 4.0
    assert increase([4.0]) == 0.0


def test_the_scorers_counters_are_read_over_real_http_from_the_windows_start() -> None:
    with fake_scorer() as scorer:
        counters = ScorerCounters(scorer.url, interval_seconds=10, timeout_seconds=5)
        scorer.add("champion", "champ-1", "ok", 100)
        assert counters.poll(START)
        assert counters.over(START).by_role is None  # one scrape: no increase yet
        scorer.add("champion", "champ-1", "ok", 50)
        scorer.add("champion", "champ-1", "error", 2)
        scorer.add("challenger", "chall-2", "ok", 45)
        scorer.add("challenger", "chall-2", "error", 5)
        scorer.add("challenger", "chall-2", "dropped", 3)
        assert not counters.poll(START + 5)  # not due yet
        assert counters.poll(START + 10)
        counts = counters.over(START + 1)
        assert counts.by_role == {
            "champion": RequestCounts(50, 2, 0),
            "challenger": RequestCounts(45, 5, 3),
        }
        assert scorer.scrapes == 2
    assert counters.poll(START + 20)  # the scorer is gone: said, and the verdict waits
    gone = counters.over(START + 1)
    assert gone.by_role is None and gone.expected and "cannot be read" in gone.note
    assert ScorerCounters(None, 10, 5).over(None) == ErrorCounts()


def test_counts_since_starts_at_the_last_scrape_before_the_window() -> None:
    def scrape(at: float, ok: float) -> object:
        from mlops.monitor.scorer import Scrape

        return Scrape(at, {"champion": {"ok": ok}, "challenger": {"ok": ok / 10}})

    scrapes = [scrape(0, 100), scrape(10, 200), scrape(20, 350)]
    assert counts_since(scrapes, 15)["champion"] == RequestCounts(150)  # type: ignore[arg-type]
    assert counts_since(scrapes, None)["champion"] == RequestCounts(250)  # type: ignore[arg-type]
    text = 'scorer_model_requests_total{role="challenger",model_version="v",outcome="error"} 3\n'
    assert parse_counts(text)["challenger"]["error"] == 3.0
    with pytest.raises(ValueError):
        parse_counts("not { the format\n")


# --- the verdict's dispatch ---------------------------------------------------------------------


def test_the_payload_is_what_the_rollout_workflow_accepts() -> None:
    assert SENT_EVENT == VERDICT_EVENT
    predictions = classes(300, seed=11)
    report = compare(
        shadow(predictions, flipped(predictions, 2)), NO_LABELS, ErrorCounts(), CLASSIFIER, RULES
    )
    trigger = VerdictTrigger(
        hold_seconds=60, retry_seconds=30, champion="v1.2.0", challenger="v1.3.0"
    )
    assert trigger.due(report, START) is None  # the verdict must last hold_seconds
    decision = trigger.due(report, START + 60)
    assert decision == ("v1.2.0", "v1.3.0", "rollback")
    verdict = parse_verdict(verdict_payload("penguins", decision, report))
    assert (verdict.verdict, verdict.champion_version, verdict.challenger_version) == (
        "rollback",
        "v1.2.0",
        "v1.3.0",
    )
    assert verdict.reasons[0].startswith("agreement: 0.5 over 300 pairs")
    assert verdict.window["records"] == {"champion": 300, "challenger": 300}
    assert verdict.window["start"] == "2027-01-15T08:00:00Z" and verdict.window["mode"] == "shadow"
    trigger.record(decision, "failed", START + 60)
    assert trigger.due(report, START + 80) is None  # retried after retry_seconds
    assert trigger.due(report, START + 90) == decision
    trigger.record(decision, "sent", START + 90)
    assert trigger.due(report, START + 1000) is None  # once per decision
    assert trigger.sent == [decision]


def test_without_registry_versions_the_verdict_is_not_sent_and_a_warning_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    predictions = classes(300, seed=12)
    report = compare(shadow(predictions, predictions), NO_LABELS, ErrorCounts(), CLASSIFIER, RULES)
    trigger = VerdictTrigger(hold_seconds=0, retry_seconds=30, champion="v1.2.0", challenger=None)
    for moment in itertools.islice(itertools.count(START, 10), 5):
        assert trigger.due(report, moment) is None
    assert caplog.text.count("MONITOR_CHALLENGER_REGISTRY_VERSION must both be set") == 1
