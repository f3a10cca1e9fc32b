"""``GET /``: one self-contained HTML page (no scripts, no CDN) showing the drift per feature.

Every name on it (model, features, classes) comes from the user's data and is HTML-escaped.
"""

from __future__ import annotations

from html import escape

from mlops.monitor.detect import FeatureDrift, PredictionDrift
from mlops.monitor.feedback import PerformanceReport
from mlops.monitor.reference import Reference
from mlops.monitor.service import Snapshot

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { padding: .35rem .8rem; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.drifted { background: #fde2e1; } .ok { color: #1a7f37; } .bad { color: #b42318; font-weight: 600; }
.bar { display: inline-block; height: .6rem; background: #8aa4d6; vertical-align: middle; }
"""
METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro F1", "mae": "MAE", "rmse": "RMSE"}


def render_page(reference: Reference, snapshot: Snapshot, min_window_size: int) -> str:
    drift, performance = snapshot.drift, snapshot.performance
    rows = sorted(drift.features, key=lambda feature: feature.psi, reverse=True)
    waiting = drift.window_size < min_window_size
    status = (
        f"collecting: {drift.window_size} of {min_window_size} records needed before any alert"
        if waiting
        else _flag(drift.alert, "drift alert", "no drift")
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>Drift monitor: {escape(reference.model_name)}</title><style>{STYLE}</style></head>
<body>
<h1>{escape(reference.model_name)} <small>version {escape(reference.model_version)},
{reference.task}</small></h1>
<p>Window: {drift.window_size} records. Status: {status}.</p>
{_predictions(reference, drift.prediction)}
<p>{_performance(performance)}</p>
<table>
<tr><th>feature</th><th>kind</th><th>PSI</th><th></th><th>threshold</th><th>missing</th>
<th>training missing</th><th>out of range / unseen</th><th>status</th></tr>
{"".join(_row(feature) for feature in rows)}
</table>
<p><a href="/drift">JSON</a> · <a href="/performance">performance</a> ·
<a href="/metrics">Prometheus metrics</a></p>
</body></html>
"""


def _predictions(reference: Reference, prediction: PredictionDrift) -> str:
    """A classifier's class mix (live against the reference), or a regressor's predicted numbers."""
    flag = _flag(prediction.drifted, "drifted", "stable")
    if prediction.numeric:
        return (
            f"<p>Predictions: PSI {prediction.psi:.3f} ({flag}) on the bins of the predictions "
            f"on the test split at packaging; mean {_number(prediction.mean)} "
            f"(reference {_number(prediction.reference_mean)}).</p>"
        )
    rows = "".join(
        f"<tr><td>{escape(label)}</td><td>{prediction.class_shares.get(label, 0.0):.1%}</td>"
        f"<td>{share:.1%}</td></tr>\n"
        for label, share in reference.class_shares.items()
    )
    return (
        f"<p>Predicted class mix: PSI {prediction.psi:.3f} ({flag}).</p>\n"
        f"<table><tr><th>class</th><th>predicted</th><th>training</th></tr>\n{rows}</table>"
    )


def _performance(performance: PerformanceReport) -> str:
    measured = ", ".join(
        f"{METRIC_NAMES[name]} {_number(value)} "
        f"(validation {_number(performance.reference.get(name))})"
        for name, value in performance.live.items()
    )
    flag = _flag(performance.degraded, "degraded", "within tolerance")
    return f"Labelled predictions: {performance.labelled}; {measured} ({flag})."


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _row(feature: FeatureDrift) -> str:
    width = min(feature.psi / feature.threshold, 2.0) * 50
    status = _flag(feature.drifted, ", ".join(feature.reasons), "ok")
    return (
        f'<tr class="{"drifted" if feature.drifted else ""}">'
        f"<td>{escape(feature.name)}</td><td>{feature.kind}</td><td>{feature.psi:.3f}</td>"
        f'<td><span class="bar" style="width:{width:.0f}px"></span></td>'
        f"<td>{feature.threshold:.3f}</td><td>{feature.missing_rate:.1%}</td>"
        f"<td>{feature.reference_missing_rate:.1%}</td><td>{feature.out_of_range_rate:.1%}</td>"
        f"<td>{status}</td></tr>\n"
    )


def _flag(bad: bool, bad_text: str, good_text: str) -> str:
    return (
        f'<span class="bad">{escape(bad_text)}</span>'
        if bad
        else f'<span class="ok">{good_text}</span>'
    )
