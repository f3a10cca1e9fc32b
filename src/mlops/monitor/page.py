"""``GET /``: one self-contained HTML page (no script, no CDN, no external file): with a challenger,
the roles compared and the verdict; per feature the reference and live distributions and the
drift score over time, the predictions likewise, the alert history, and a summary table. The
charts are inline SVG; hovering a bar or a point shows its numbers (an SVG ``title``).

Every name on it (model, features, classes, categories) comes from the user's data and is
HTML-escaped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape

from mlops.monitor.detect import Bin, FeatureDrift, PredictionDrift
from mlops.monitor.feedback import PerformanceReport
from mlops.monitor.history import AlertEpisode, Point
from mlops.monitor.reference import Reference
from mlops.monitor.rollout import RoleSummary, RolloutReport
from mlops.monitor.service import Snapshot

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem 2rem; color: #222;
       background: #fafafa; }
h1 small { color: #666; font-weight: normal; font-size: 60%; }
h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .6rem 0; background: #fff; }
th, td { padding: .3rem .7rem; border-bottom: 1px solid #e3e3e3; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.drifted, tr.fail { background: #fde2e1; }
.verdict { font-size: 1.2rem; }
.ok { color: #1a7f37; } .bad { color: #b42318; font-weight: 600; }
.cards { display: flex; flex-wrap: wrap; gap: 1rem; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .6rem .8rem;
        width: 340px; }
.card.drifted { border-color: #b42318; box-shadow: 0 0 0 1px #b42318; }
.card h3 { margin: 0 0 .3rem; font-size: 1rem; overflow-wrap: anywhere; }
.card p { margin: .2rem 0; font-size: .8rem; color: #444; }
svg { display: block; margin: .3rem 0; }
svg text { font-size: 9px; fill: #555; }
.bar-ref { fill: #c9ced6; } .bar-live { fill: #3b6fd4; } .drifted .bar-live { fill: #d1453b; }
.line { fill: none; stroke: #3b6fd4; stroke-width: 1.5; }
.floor { stroke: #999; stroke-dasharray: 4 3; }
.flag { fill: #d1453b; } .axis { stroke: #bbb; }
.legend span { display: inline-block; width: .8em; height: .8em; margin: 0 .3em 0 .8em;
               vertical-align: middle; }
"""
METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro F1", "mae": "MAE", "rmse": "RMSE"}
CHART_WIDTH, BARS_HEIGHT, LINE_HEIGHT, LABEL_ROOM = 320, 110, 64, 14
MAX_LABEL = 12  # characters of a category shown under its bars (the full name on hover)
EDGE_LABELS = 4  # numeric bins: at most this many of their edges written under the bars


def render_page(reference: Reference, snapshot: Snapshot, min_window_size: int) -> str:
    drift, performance = snapshot.drift, snapshot.performance
    features = sorted(drift.features, key=lambda f: (not f.drifted, -f.psi, f.name))
    waiting = drift.window_size < min_window_size
    status = (
        f"collecting: {drift.window_size} of {min_window_size} records needed before any alert"
        if waiting
        else _flag(drift.alert, "drift alert", "no drift")
    )
    level = features[0].level if features else drift.prediction.level
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>Drift monitor: {escape(reference.model_name)}</title><style>{STYLE}</style></head>
<body>
<h1>{escape(reference.model_name)} <small>version {escape(reference.model_version)},
{reference.task}</small></h1>
<p>Window: {drift.window_size} records. Status: {status}.
A check fails when its p-value is below {_number(level)} (the false-alarm rate shared by all
checks) and the change is at least its floor.</p>
<p class="legend"><span style="background:#c9ced6"></span>training (reference)
<span style="background:#3b6fd4"></span>live window <span style="background:#d1453b"></span>live,
drifted <span style="background:#999;height:2px"></span>the score's floor</p>
{_rollout(snapshot.rollout)}
<h2>Alerts</h2>
{_alerts(snapshot.alerts, snapshot.history)}
<h2>Predictions</h2>
{_predictions(reference, drift.prediction, snapshot.history)}
<p>{_performance(performance)}</p>
<h2>Features</h2>
<div class="cards">
{"".join(_feature_card(feature, snapshot.history) for feature in features)}
</div>
<h2>Summary</h2>
<table>
<tr><th>feature</th><th>kind</th><th>PSI</th><th>floor</th><th>p-value</th><th>missing</th>
<th>training missing</th><th>out of range / unseen</th><th>status</th></tr>
{"".join(_row(feature) for feature in features)}
</table>
<p><a href="/drift">JSON</a> · <a href="/performance">performance</a> ·
<a href="/rollout">rollout</a> ·
<a href="/metrics">Prometheus metrics</a></p>
</body></html>
"""


# --- sections -------------------------------------------------------------------------------------


def _rollout(report: RolloutReport) -> str:
    """The roles side by side, the shadow pairs' agreement, the verdict and every rule."""
    if report.verdict is None:
        return ""
    verdict = {
        "promote": '<span class="ok">promote</span>',
        "hold": "hold",
        "rollback": '<span class="bad">rollback</span>',
    }[report.verdict]
    if report.agreement is not None:
        pairs = f"; agreement {report.agreement:.1%} over {report.pairs} pairs"
    elif report.prediction_difference is not None:
        difference = _number(report.prediction_difference)
        pairs = f"; mean |difference| {difference} target scales over {report.pairs} pairs"
    else:
        pairs = ""
    window = report.window()
    rows = "".join(_role_row(summary) for summary in report.roles.values())
    checks = "".join(
        f'<tr class="{check.status}"><td>{check.rule}</td><td>{check.status}</td>'
        f"<td>{escape(check.detail)}</td></tr>\n"
        for check in report.checks
    )
    return f"""<h2>Rollout</h2>
<p class="verdict">Verdict on the challenger ({report.mode}): {verdict}.</p>
<p>Window: {window["start"]} to {window["end"]}{pairs}.</p>
<table class="roles"><tr><th>role</th><th>model version</th><th>records</th><th>latency p50</th>
<th>p95</th><th>prediction PSI</th><th>errors</th><th>labelled</th><th>performance</th></tr>
{rows}</table>
<table class="rules"><tr><th>rule</th><th>status</th><th>detail</th></tr>
{checks}</table>"""


def _role_row(summary: RoleSummary) -> str:
    counts = summary.counts
    errors = (
        "n/a"
        if counts is None or counts.error_rate is None
        else f"{counts.error_rate:.2%} of {counts.requests}"
    )
    measured = ", ".join(
        f"{METRIC_NAMES[name]} {_number(value)}" for name, value in summary.performance.items()
    )
    latency = [
        "n/a" if value is None else f"{value * 1000:.3g} ms"
        for value in (summary.latency_p50, summary.latency_p95)
    ]
    return (
        f"<tr><td>{summary.role}</td><td>{escape(', '.join(summary.model_versions))}</td>"
        f"<td>{summary.records}</td><td>{latency[0]}</td><td>{latency[1]}</td>"
        f"<td>{_number(summary.prediction_psi)}</td><td>{errors}</td>"
        f"<td>{summary.labelled}</td><td>{measured}</td></tr>\n"
    )


def _alerts(episodes: Sequence[AlertEpisode], history: Sequence[Point]) -> str:
    since = _time(history[0].time) if history else "the sidecar started"
    if not episodes:
        return f'<p class="ok">No alert since {since}.</p>'
    rows = []
    for episode in episodes:
        end = _time(episode.end) if episode.end is not None else '<span class="bad">ongoing</span>'
        flagged = [
            f"{escape(name)} ({', '.join(sorted(reasons))})"
            for name, reasons in sorted(episode.flagged.items())
        ]
        if episode.prediction:
            flagged.append("the predictions")
        rows.append(
            f"<tr><td>{_time(episode.start)}</td><td>{end}</td><td>{'; '.join(flagged)}</td></tr>"
        )
    return (
        f'<table class="alerts"><tr><th>from</th><th>to</th><th>what drifted</th></tr>\n'
        f"{''.join(rows)}</table>"
    )


def _predictions(
    reference: Reference, prediction: PredictionDrift, history: Sequence[Point]
) -> str:
    """A classifier's class mix (live against the reference), or a regressor's numbers; both
    with their score over time."""
    flag = _flag(prediction.drifted, "drifted", "stable")
    scores = [(p.time, p.prediction_score, p.prediction_flagged) for p in history]
    bars = _bars_chart("predictions", prediction.bins, prediction.drifted, prediction.edges)
    charts = bars + _line_chart("predictions", scores, prediction.threshold)
    card = f'<div class="card{" drifted" if prediction.drifted else ""}">{charts}</div>'
    if prediction.numeric:
        return (
            f"<p>Predictions: PSI {prediction.psi:.3f} ({flag}, p-value "
            f"{_number(prediction.p_value)}) on the bins of the predictions on the test split at "
            f"packaging; mean {_number(prediction.mean)} "
            f"(reference {_number(prediction.reference_mean)}).</p>\n{card}"
        )
    rows = "".join(
        f"<tr><td>{escape(label)}</td><td>{prediction.class_shares.get(label, 0.0):.1%}</td>"
        f"<td>{share:.1%}</td></tr>\n"
        for label, share in reference.class_shares.items()
    )
    return (
        f"<p>Predicted class mix: PSI {prediction.psi:.3f} ({flag}, p-value "
        f'{_number(prediction.p_value)}).</p>\n<div class="cards">{card}\n'
        f"<table><tr><th>class</th><th>predicted</th><th>training</th></tr>\n{rows}</table></div>"
    )


def _performance(performance: PerformanceReport) -> str:
    measured = ", ".join(
        f"{METRIC_NAMES[name]} {_number(value)} "
        f"(validation {_number(performance.reference.get(name))})"
        for name, value in performance.live.items()
    )
    flag = _flag(performance.degraded, "degraded", "within tolerance")
    return f"Labelled predictions: {performance.labelled}; {measured} ({flag})."


def _feature_card(feature: FeatureDrift, history: Sequence[Point]) -> str:
    scores = [
        (point.time, point.scores[feature.name], feature.name in point.flagged)
        for point in history
        if feature.name in point.scores
    ]
    status = _flag(feature.drifted, ", ".join(feature.reasons), "ok")
    outside = "unseen" if feature.kind == "categorical" else "out of range"
    return (
        f'<div class="card{" drifted" if feature.drifted else ""}" '
        f'data-feature="{escape(feature.name)}">\n'
        f"<h3>{escape(feature.name)} <small>{feature.kind}</small> {status}</h3>\n"
        f"<p>PSI {feature.psi:.3f} (floor {feature.threshold:g}), p-value "
        f"{_number(feature.p_value)}; missing {feature.missing_rate:.1%} (training "
        f"{feature.reference_missing_rate:.1%}); {outside} {feature.out_of_range_rate:.1%}</p>\n"
        f"{_bars_chart(feature.name, feature.bins, feature.drifted, feature.edges)}"
        f"{_line_chart(feature.name, scores, feature.threshold)}</div>\n"
    )


def _row(feature: FeatureDrift) -> str:
    status = _flag(feature.drifted, ", ".join(feature.reasons), "ok")
    return (
        f'<tr class="{"drifted" if feature.drifted else ""}">'
        f"<td>{escape(feature.name)}</td><td>{feature.kind}</td><td>{feature.psi:.3f}</td>"
        f"<td>{feature.threshold:g}</td><td>{_number(feature.p_value)}</td>"
        f"<td>{feature.missing_rate:.1%}</td><td>{feature.reference_missing_rate:.1%}</td>"
        f"<td>{feature.out_of_range_rate:.1%}</td><td>{status}</td></tr>\n"
    )


# --- charts ---------------------------------------------------------------------------------------


def _bars_chart(name: str, bins: Sequence[Bin], drifted: bool, edges: Sequence[float] = ()) -> str:
    """Reference and live shares side by side per bin or category; a category's name under its
    bars, or a few of the numeric bins' edges under the places they meet."""
    if not bins:
        return ""
    top = max(max(b.reference for b in bins), max(b.live for b in bins), 1e-9)
    step = CHART_WIDTH / len(bins)
    width = max(step * 0.42, 1.0)
    height = BARS_HEIGHT - LABEL_ROOM
    parts = []
    for position, item in enumerate(bins):
        x = position * step + step * 0.08
        label = escape(item.label)
        hover = f"{label}: training {item.reference:.1%}, live {item.live:.1%}"
        for offset, share, kind in ((0.0, item.reference, "ref"), (width, item.live, "live")):
            bar = share / top * (height - 2)
            parts.append(
                f'<rect class="bar-{kind}" x="{x + offset:.1f}" y="{height - bar:.1f}" '
                f'width="{width:.1f}" height="{bar:.1f}" data-share="{share:.4f}">'
                f"<title>{hover}</title></rect>"
            )
        if not edges and len(bins) <= 12:
            shown = escape(
                item.label if len(item.label) <= MAX_LABEL else item.label[:MAX_LABEL] + "…"
            )
            parts.append(
                f'<text x="{x + width:.1f}" y="{BARS_HEIGHT - 3}" text-anchor="middle">'
                f"{shown}<title>{label}</title></text>"
            )
    every = max(1, -(-len(edges) // EDGE_LABELS))
    for position in range(0, len(edges), every):
        parts.append(
            f'<text x="{(position + 1) * step:.1f}" y="{BARS_HEIGHT - 3}" '
            f'text-anchor="middle">{edges[position]:.4g}</text>'
        )
    return (
        f'<svg class="distribution{" drifted" if drifted else ""}" data-for="{escape(name)}" '
        f'data-bins="{len(bins)}" width="{CHART_WIDTH}" height="{BARS_HEIGHT}" '
        f'viewBox="0 0 {CHART_WIDTH} {BARS_HEIGHT}" role="img" '
        f'aria-label="training and live distribution of {escape(name)}">'
        f'<line class="axis" x1="0" y1="{height}" x2="{CHART_WIDTH}" y2="{height}"/>'
        f"{''.join(parts)}</svg>\n"
    )


def _line_chart(name: str, scores: Sequence[tuple[float, float, bool]], floor: float) -> str:
    """The score (PSI) over time, the floor dashed, the moments the check failed in red."""
    if len(scores) < 2:
        return '<p class="history">Score over time: from the second check on.</p>\n'
    first, last = scores[0][0], scores[-1][0]
    span = max(last - first, 1e-9)
    top = max(max(score for _, score, _ in scores), floor * 1.5, 1e-9)
    height = LINE_HEIGHT - 10

    def x(moment: float) -> float:
        return (moment - first) / span * (CHART_WIDTH - 4) + 2

    def y(score: float) -> float:
        return height - min(score, top) / top * (height - 4) + 2

    points = " ".join(f"{x(t):.1f},{y(s):.1f}" for t, s, _ in scores)
    flags = "".join(
        f'<circle class="flag" cx="{x(t):.1f}" cy="{y(s):.1f}" r="2.5">'
        f"<title>{_time(t)}: PSI {s:.3f}, drifted</title></circle>"
        for t, s, failed in scores
        if failed
    )
    return (
        f'<svg class="history" data-for="{escape(name)}" data-points="{len(scores)}" '
        f'width="{CHART_WIDTH}" height="{LINE_HEIGHT}" viewBox="0 0 {CHART_WIDTH} {LINE_HEIGHT}" '
        f'role="img" aria-label="drift score of {escape(name)} over time">'
        f'<line class="floor" x1="0" y1="{y(floor):.1f}" x2="{CHART_WIDTH}" y2="{y(floor):.1f}"/>'
        f'<polyline class="line" points="{points}"/>{flags}'
        f'<text x="2" y="{LINE_HEIGHT - 1}">{_time(first)}</text>'
        f'<text x="{CHART_WIDTH - 2}" y="{LINE_HEIGHT - 1}" text-anchor="end">{_time(last)}</text>'
        "</svg>\n"
    )


# --- text -----------------------------------------------------------------------------------------


def _time(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(moment))


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _flag(bad: bool, bad_text: str, good_text: str) -> str:
    return (
        f'<span class="bad">{escape(bad_text)}</span>'
        if bad
        else f'<span class="ok">{good_text}</span>'
    )
