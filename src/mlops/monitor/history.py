"""What the drift check said over time, for the page: the scores at regular moments, and the alerts.

In memory, bounded, and since the sidecar started (Prometheus keeps the long history: every score
is a metric). A point is kept every ``interval_seconds`` at most, and whenever the alert or the set
of flagged features changes, so a short alert is never lost between two regular points.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlops.monitor.detect import DriftReport

# Points kept: 12 hours at one a minute.
HISTORY_POINTS = 720
# Alert episodes kept.
ALERT_EPISODES = 50


@dataclass(frozen=True)
class Point:
    """The check at one moment: per feature its score and whether it failed; the predictions'."""

    time: float
    window_size: int
    alert: bool
    scores: Mapping[str, float]
    flagged: frozenset[str]
    prediction_score: float = 0.0
    prediction_flagged: bool = False


@dataclass
class AlertEpisode:
    """An alert from its start to its end (None while it lasts), and everything it flagged."""

    start: float
    end: float | None = None
    flagged: dict[str, set[str]] = field(default_factory=dict)  # feature -> the checks that failed
    prediction: bool = False  # the predictions drifted


class DriftHistory:
    def __init__(
        self,
        interval_seconds: float,
        points: int = HISTORY_POINTS,
        episodes: int = ALERT_EPISODES,
    ) -> None:
        self.interval_seconds = interval_seconds
        self._points: deque[Point] = deque(maxlen=points)
        self._episodes: deque[AlertEpisode] = deque(maxlen=episodes)

    def record(self, report: DriftReport, now: float) -> None:
        """Keep ``report`` if a point is due or its verdict differs from the last point's."""
        point = point_of(report, now)
        if not self._points or _differs(point, self._points[-1], self.interval_seconds):
            self._points.append(point)
        self._follow_alert(report, now)

    def _follow_alert(self, report: DriftReport, now: float) -> None:
        episode = self._episodes[-1] if self._episodes else None
        ongoing = episode is not None and episode.end is None
        if report.alert and not ongoing:
            episode = AlertEpisode(start=now)
            self._episodes.append(episode)
        elif not report.alert and ongoing:
            assert episode is not None
            episode.end = now
        if report.alert and episode is not None:
            for feature in report.drifted_features:
                episode.flagged.setdefault(feature.name, set()).update(feature.reasons)
            episode.prediction = episode.prediction or report.prediction.drifted

    def points(self) -> tuple[Point, ...]:
        return tuple(self._points)

    def episodes(self) -> tuple[AlertEpisode, ...]:
        """The alerts, newest first (copies: the page reads them while polls go on)."""
        return tuple(
            AlertEpisode(
                e.start, e.end, {name: set(r) for name, r in e.flagged.items()}, e.prediction
            )
            for e in reversed(self._episodes)
        )


def _differs(point: Point, last: Point, interval_seconds: float) -> bool:
    """A point is due, or its verdict is not the last one's."""
    verdict = (point.alert, point.flagged, point.prediction_flagged)
    return point.time - last.time >= interval_seconds or verdict != (
        last.alert,
        last.flagged,
        last.prediction_flagged,
    )


def point_of(report: DriftReport, now: float) -> Point:
    return Point(
        time=now,
        window_size=report.window_size,
        alert=report.alert,
        scores={feature.name: feature.psi for feature in report.features},
        flagged=frozenset(feature.name for feature in report.drifted_features),
        prediction_score=report.prediction.psi,
        prediction_flagged=report.prediction.drifted,
    )
