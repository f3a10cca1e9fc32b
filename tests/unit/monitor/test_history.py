"""The page's drift history: a point per interval at most, one whenever the verdict changes, and
the alert episodes with everything they flagged; bounded."""

from __future__ import annotations

from mlops.monitor.detect import DriftReport, FeatureDrift, PredictionDrift
from mlops.monitor.history import DriftHistory

START = 1_800_000_000.0


def report(psi: float, reasons: tuple[str, ...] = (), prediction: bool = False) -> DriftReport:
    features = (
        FeatureDrift("x", "numeric", psi, 0.02, 0.0, 0.0, 0.0, reasons),
        FeatureDrift("Town / Stadt", "categorical", 0.001, 0.02, 0.0, 0.0, 0.0, ()),
    )
    return DriftReport(500, features, PredictionDrift(0.01, 0.02, prediction, {}))


def test_a_point_per_interval_and_one_whenever_the_verdict_changes() -> None:
    history = DriftHistory(interval_seconds=60)
    history.record(report(0.01), START)
    history.record(report(0.02), START + 10)  # too soon, same verdict: left out
    history.record(report(0.03), START + 60)  # due
    history.record(report(0.5, ("psi",)), START + 65)  # the verdict changed: kept at once
    history.record(report(0.6, ("psi",)), START + 70)
    history.record(report(0.01), START + 75)  # changed back: kept
    points = history.points()
    assert [p.time - START for p in points] == [0, 60, 65, 75]
    assert [p.scores["x"] for p in points] == [0.01, 0.03, 0.5, 0.01]
    assert [p.alert for p in points] == [False, False, True, False]
    assert points[2].flagged == frozenset({"x"}) and points[2].scores["Town / Stadt"] == 0.001


def test_alert_episodes_start_end_and_gather_what_they_flagged() -> None:
    history = DriftHistory(interval_seconds=0)
    history.record(report(0.01), START)
    history.record(report(0.5, ("psi",)), START + 5)
    history.record(report(0.5, ("psi", "out_of_range"), prediction=True), START + 6)
    history.record(report(0.01), START + 30)
    history.record(report(0.4, ("missing_rate",)), START + 40)
    latest, first = history.episodes()  # newest first
    assert (first.start, first.end) == (START + 5, START + 30)
    assert first.flagged == {"x": {"psi", "out_of_range"}} and first.prediction
    assert (latest.start, latest.end) == (START + 40, None)  # still going on
    assert latest.flagged == {"x": {"missing_rate"}} and not latest.prediction


def test_the_history_is_bounded() -> None:
    history = DriftHistory(interval_seconds=0, points=5, episodes=2)
    for second in range(20):
        alert = ("psi",) if second % 2 else ()
        history.record(report(0.5 if alert else 0.0, alert), START + second)
    assert len(history.points()) == 5 and history.points()[-1].time == START + 19
    assert len(history.episodes()) == 2
