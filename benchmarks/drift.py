"""Detection benchmark of the sidecar's drift check: how often it sees a drift, and how often it
raises a false alarm, in seeded windows of live records.

    python benchmarks/drift.py --output /tmp/drift.json           # the full run: a few minutes
    python benchmarks/drift.py --quick --output /tmp/drift.json   # target conditions, fewer windows

Two sources of records:

- ``synthetic``: ``mlops.data.synth`` fitted on data/penguins.csv. The reference is a training set
  of ``REFERENCE_ROWS`` rows drawn from the generator; every window is drawn afresh. The reference
  is a sample, as in production, and the windows come from the population it was drawn from.
- ``data``: data/penguins.csv itself (344 rows). The reference is the whole table; the windows are
  its rows drawn with replacement.

The reference is built with the package stage's code (``mlops.profile``: the cleaned table's
profile, and ``raw_statistics`` of the raw table) and read by the sidecar's (``build_reference``);
each window is judged by the sidecar's ``assess`` with its default settings. Conditions, applied to
one feature of every record of a window: none; the mean shifted by 0.25, 0.5 and 1 standard
deviation, or the spread scaled by 1.3 (each continuous numeric feature); the share of the least
frequent category raised by 20 or 40 points, or an unseen category in 5 % of the values (each
categorical feature); 10 % or 30 % of the values missing (every feature). A condition is detected
when the changed feature is flagged; every other flag (another feature, the predictions, or
anything in a window with no change) is a false alarm. The former rule (PSI above 0.2, a missing
rate 10 points above the training set's, after imputation, and 5 % out of range) is measured on
the same windows, against a reference without the raw statistics (a package from before them).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT / "src"))

from mlops.core import artifacts  # noqa: E402
from mlops.data.synth import draw_rows, fit_table_model  # noqa: E402
from mlops.monitor.detect import DriftReport, Thresholds, assess  # noqa: E402
from mlops.monitor.reference import Reference, build_reference  # noqa: E402
from mlops.monitor.service import drift_thresholds  # noqa: E402
from mlops.monitor.settings import MonitorSettings  # noqa: E402
from mlops.monitor.window import LoggedPrediction  # noqa: E402
from mlops.profile import profile_table, raw_statistics  # noqa: E402

SOURCE = PROJECT_ROOT / "data" / "penguins.csv"
TARGET = "species"
REFERENCE_ROWS = 20_000
REFERENCE_SIZES = (240, 2_000, 20_000)  # the reference-size study: 240 is penguins' train split
SIZES = (200, 1_000)
WINDOWS = 200  # per condition, feature, source and size
NONE_WINDOWS = 2_000  # windows without a change: a false-alarm rate of 1 % is 20 of them
QUICK_WINDOWS = 60
QUICK_NONE_WINDOWS = 300
TIMED_WINDOWS = 50
SEED = 20_260_101
SHIFTS = (0.25, 0.5, 1.0)
SCALE = 1.3
CATEGORY_MOVES = (0.2, 0.4)
UNSEEN_SHARE = 0.05
MISSING_SHARES = (0.1, 0.3)
UNSEEN_VALUE = "a category never seen"
# The category whose share is raised: the least frequent of those with at least this share (not a
# spelling variant of another, which the synthetic data has at 1 % among them).
COMMON_SHARE = 0.05
# The former rule, as the sidecar applied it before the significance tests.
FORMER = Thresholds(
    psi=0.2,
    prediction_psi=0.2,
    missing_rate=0.1,
    out_of_range=0.05,
    min_window_size=200,
    false_alarm_rate=math.inf,  # every p-value passes: the floors alone decide
)
# The targets, at 1,000 records (the conditions each is measured on, in the result rows).
TARGET_DETECTION = 0.9
TARGET_FALSE_ALARMS = 0.01
TARGET_CONDITIONS = ("shift +0.25 sd", "category +20 points", "missing 10 %")
QUICK_CONDITIONS = ("none", *TARGET_CONDITIONS)

Columns = dict[str, np.ndarray]


# --- the reference, as the package stage writes it and the sidecar reads it -----------------------


def impute(raw: pd.DataFrame) -> pd.DataFrame:
    """The clean stage's default: the median of a number, the most frequent value of a category."""
    cleaned = raw.copy()
    for name in cleaned.columns:
        column = cleaned[name]
        if pd.api.types.is_numeric_dtype(column):
            cleaned[name] = column.fillna(column.median())
        elif column.isna().any():
            cleaned[name] = column.fillna(column.mode().iloc[0])
    return cleaned


def reference_of(raw: pd.DataFrame, with_raw: bool = True) -> Reference:
    """The sidecar's reference of a training set ``raw`` (its target, the predictions of a
    perfect model): the cleaned table's profile, with the raw table's statistics unless
    ``with_raw`` is false (a package from before them)."""
    features = raw.drop(columns=[TARGET])
    cleaned = impute(features)
    profile: dict[str, Any] = profile_table(cleaned)
    if with_raw:
        profile["raw"] = raw_statistics(profile_table(features), list(features.columns))
        profile["predicted_rows"] = len(raw)
    profile["classes"] = raw[TARGET].value_counts(normalize=True).to_dict()
    signature: artifacts.Signature = {
        "model_name": "bench",
        "target": TARGET,
        "task": "classification",
        "features": [_feature(cleaned[name]) for name in cleaned.columns],
        "classes": sorted(profile["classes"]),
        "positive_class": None,
        "threshold": None,
    }
    manifest: Any = {"model_name": "bench", "model_version": "1", "metrics": {}, "files": {}}
    return build_reference(signature, json.loads(json.dumps(profile)), manifest)


def _feature(column: pd.Series) -> artifacts.Feature:
    numeric = pd.api.types.is_numeric_dtype(column)
    return {
        "name": str(column.name),
        "input_name": str(column.name),
        "type": "number" if numeric else "string",
        "nullable": True,
        "categories": None if numeric else sorted(column.dropna().astype(str).unique()),
        "min": float(column.min()) if numeric else None,
        "max": float(column.max()) if numeric else None,
    }


# --- sources of windows --------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    name: str
    description: str
    reference: Reference
    former_reference: Reference
    reference_rows: int
    continuous: tuple[str, ...]  # numeric features with more than a few values: shifted, scaled
    categorical: tuple[str, ...]
    moments: dict[str, tuple[float, float]]  # mean and standard deviation of the continuous ones
    draw: Callable[[int, np.random.Generator], pd.DataFrame]  # rows of live traffic


def synthetic_source(reference_rows: int = REFERENCE_ROWS) -> Source:
    table = pd.read_csv(SOURCE)
    model = fit_table_model(table, TARGET)
    reference_rng = np.random.default_rng(SEED)
    train = draw_rows(model, reference_rows, reference_rng)
    return Source(
        name="synthetic",
        description=(
            f"mlops.data.synth fitted on {SOURCE.name}; a reference of {reference_rows:,} rows "
            "drawn from it, every window drawn afresh"
        ),
        reference=reference_of(train),
        former_reference=reference_of(train, with_raw=False),
        reference_rows=reference_rows,
        continuous=tuple(c for c in model.continuous if c != TARGET),
        categorical=tuple(sorted(model.text - {TARGET})),
        moments=moments(train),
        draw=lambda rows, rng: draw_rows(model, rows, rng),
    )


def data_source() -> Source:
    table = pd.read_csv(SOURCE)
    features = table.drop(columns=[TARGET])
    return Source(
        name="data",
        description=(
            f"{SOURCE.name} itself ({len(table)} rows): the reference is the whole table, the "
            "windows are its rows drawn with replacement"
        ),
        reference=reference_of(table),
        former_reference=reference_of(table, with_raw=False),
        reference_rows=len(table),
        continuous=tuple(
            str(c)
            for c in features
            if pd.api.types.is_numeric_dtype(features[c]) and features[c].nunique() > 20
        ),
        categorical=tuple(
            str(c) for c in features if not pd.api.types.is_numeric_dtype(features[c])
        ),
        moments=moments(table),
        draw=lambda rows, rng: table.iloc[rng.integers(0, len(table), rows)].reset_index(drop=True),
    )


def moments(table: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation of every numeric column of the reference's table."""
    numeric = table.select_dtypes("number")
    return {
        str(name): (float(numeric[name].mean()), float(numeric[name].std())) for name in numeric
    }


def pool(source: Source, windows: int, size: int, seed: int) -> tuple[Columns, np.ndarray]:
    """``windows`` x ``size`` rows of live traffic: every feature as an array (NaN or None where
    missing), and the predictions (the target: a perfect model)."""
    frame = source.draw(windows * size, np.random.default_rng(seed))
    columns: Columns = {}
    for feature in source.reference.features:
        values = frame[feature.name]
        if feature.kind == "numeric":
            columns[feature.name] = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            columns[feature.name] = values.astype(object).where(values.notna(), None).to_numpy()
    return columns, frame[TARGET].astype(str).to_numpy()


# --- conditions -----------------------------------------------------------------------------------


Change = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Condition:
    name: str
    feature: str | None  # None: no change
    change: Change


def conditions(source: Source) -> list[Condition]:
    """Every condition on every feature it applies to; the first has no change."""
    found = [Condition("none", None, lambda values, rng: values)]
    reference = {feature.name: feature for feature in source.reference.features}
    for name in source.continuous:
        mean, deviation = source.moments[name]
        for shift in SHIFTS:
            found.append(Condition(f"shift +{shift:g} sd", name, _shift(shift * deviation)))
        found.append(Condition(f"scale x{SCALE:g}", name, _scale(mean, SCALE)))
    for name in source.categorical:
        shares = reference[name].category_shares
        common = [category for category, share in shares.items() if share >= COMMON_SHARE]
        rarest = min(common, key=lambda category: shares[category])
        for move in CATEGORY_MOVES:
            found.append(
                Condition(
                    f"category +{move * 100:.0f} points",
                    name,
                    _move(rarest, move / (1.0 - shares[rarest])),
                )
            )
        found.append(Condition(f"unseen {UNSEEN_SHARE * 100:.0f} %", name, _unseen(UNSEEN_SHARE)))
    for feature in source.reference.features:
        for share in MISSING_SHARES:
            found.append(Condition(f"missing {share * 100:.0f} %", feature.name, _missing(share)))
    return found


def _shift(amount: float) -> Change:
    return lambda values, rng: values + amount


def _scale(mean: float, factor: float) -> Change:
    return lambda values, rng: mean + factor * (values - mean)


def _move(category: str, chance: float) -> Change:
    """Each present value of another category becomes ``category`` with this chance."""

    def change(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        moved = values.copy()
        chosen = (rng.random(len(values)) < chance) & (values != None) & (values != category)  # noqa: E711
        moved[chosen] = category
        return moved

    return change


def _unseen(share: float) -> Change:
    def change(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        changed = values.copy()
        changed[(rng.random(len(values)) < share) & (values != None)] = UNSEEN_VALUE  # noqa: E711
        return changed

    return change


def _missing(share: float) -> Change:
    def change(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        changed = values.copy()
        chosen = rng.random(len(values)) < share
        changed[chosen] = np.nan if changed.dtype.kind == "f" else None
        return changed

    return change


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Windows judged, windows where the changed feature was flagged, windows with a false alarm."""

    windows: int = 0
    detected: int = 0
    false_alarms: int = 0

    def add(self, report: DriftReport, feature: str | None) -> None:
        flagged = {f.name for f in report.drifted_features}
        self.windows += 1
        self.detected += feature in flagged
        self.false_alarms += bool(flagged - {feature}) or report.prediction.drifted


def windows_of(
    columns: Columns, predictions: np.ndarray, size: int, condition: Condition, seed: int
) -> Iterator[list[LoggedPrediction]]:
    """The pool cut into windows of ``size`` records, the condition applied to each."""
    rng = np.random.default_rng(seed)
    names = list(columns)
    for start in range(0, len(predictions) - size + 1, size):
        part = {name: columns[name][start : start + size] for name in names}
        if condition.feature is not None:
            part[condition.feature] = condition.change(part[condition.feature], rng)
        yield records(part, predictions[start : start + size])


def records(columns: Columns, predictions: np.ndarray) -> list[LoggedPrediction]:
    """The window as the sidecar reads it from the log: NaN becomes null."""
    names = list(columns)
    rows = zip(*(_json_values(columns[name]) for name in names), strict=True)
    return [
        LoggedPrediction(0.0, f"r{i}", 0, dict(zip(names, row, strict=True)), str(label))
        for i, (row, label) in enumerate(zip(rows, predictions, strict=True))
    ]


def _json_values(values: np.ndarray) -> list[Any]:
    if values.dtype.kind == "f":
        return [None if value != value else float(value) for value in values.tolist()]
    return list(values)


def measure(
    source: Source,
    thresholds: Thresholds,
    sizes: Sequence[int],
    windows: int,
    none_windows: int,
    only: Sequence[str] | None = None,
    features: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """One result row per size, condition and changed feature (``only`` these conditions, on
    ``features`` only, if given). Every condition of a size is applied to the same windows."""
    rows = []
    chosen = [
        c
        for c in conditions(source)
        if (only is None or c.name in only) and (features is None or c.feature in (None, *features))
    ]
    for size in sizes:
        columns, predictions = pool(source, max(windows, none_windows), size, SEED + size)
        for number, condition in enumerate(chosen):
            count = (none_windows if condition.feature is None else windows) * size
            part = {name: values[:count] for name, values in columns.items()}
            new, former = Tally(), Tally()
            for window in windows_of(part, predictions[:count], size, condition, SEED + number):
                new.add(assess(window, source.reference, thresholds), condition.feature)
                former.add(assess(window, source.former_reference, FORMER), condition.feature)
            rows.append(
                {
                    "source": source.name,
                    "size": size,
                    "condition": condition.name,
                    "feature": condition.feature,
                    **dataclasses.asdict(new),
                    "former_detected": former.detected,
                    "former_false_alarms": former.false_alarms,
                }
            )
            print(_progress(rows[-1]), flush=True)
    return rows


def _progress(row: dict[str, Any]) -> str:
    rate = row["detected"] / row["windows"]
    alarms = row["false_alarms"] / row["windows"]
    return (
        f"  {row['source']:<9} {row['size']:>5} {row['condition']:<22} {row['feature'] or '-':<18}"
        f" detected {rate:6.1%}  false alarms {alarms:6.1%}"
    )


def reference_study(
    thresholds: Thresholds, windows: int, none_windows: int, feature: str = "body_mass_g"
) -> list[dict[str, Any]]:
    """At 1,000 records, against synthetic references of several sizes: false alarms, and the
    detection of a 0.25 sd shift, by the sidecar's tests and by the same tests taking the
    reference as exact (a one-sample test: what a test that ignores the reference's size does)."""
    rows = []
    for reference_rows in REFERENCE_SIZES:
        source = synthetic_source(reference_rows)
        exact = exact_reference(source.reference)
        shift = next(
            c for c in conditions(source) if c.name == "shift +0.25 sd" and c.feature == feature
        )
        for condition, count in ((conditions(source)[0], none_windows), (shift, windows)):
            columns, predictions = pool(source, count, 1_000, SEED + reference_rows)
            tallies = {"two-sample": Tally(), "one-sample": Tally()}
            for window in windows_of(columns, predictions, 1_000, condition, SEED):
                tallies["two-sample"].add(assess(window, source.reference, thresholds), feature)
                tallies["one-sample"].add(assess(window, exact, thresholds), feature)
            for test, tally in tallies.items():
                rows.append(
                    {
                        "reference_rows": reference_rows,
                        "condition": condition.name,
                        "test": test,
                        **dataclasses.asdict(tally),
                    }
                )
    return rows


def exact_reference(reference: Reference) -> Reference:
    """The reference with its sizes made enormous: its shares taken as the population's."""
    huge = 10**12
    return dataclasses.replace(
        reference,
        features=tuple(
            dataclasses.replace(f, rows=huge, present=huge - round(huge * f.missing_rate))
            for f in reference.features
        ),
        predicted_rows=huge,
    )


def timing(source: Source, thresholds: Thresholds, sizes: Sequence[int]) -> dict[str, float]:
    """Median milliseconds of one ``assess`` of an unchanged window, per size (the objects made
    so far frozen out of the garbage collector's way, as in a sidecar that has settled)."""
    found = {}
    for size in sizes:
        columns, predictions = pool(source, TIMED_WINDOWS, size, SEED)
        windows = list(windows_of(columns, predictions, size, conditions(source)[0], SEED))
        gc.collect()
        gc.freeze()
        seconds = []
        for window in windows:
            started = time.perf_counter()
            assess(window, source.reference, thresholds)
            seconds.append(time.perf_counter() - started)
        gc.unfreeze()
        found[str(size)] = round(statistics.median(seconds) * 1000, 3)
    return found


# --- the verdicts ---------------------------------------------------------------------------------


def verdicts(
    rows: Sequence[dict[str, Any]], source: str = "synthetic"
) -> dict[str, dict[str, Any]]:
    """The issue's targets on ``source``: at 1,000 records, the lowest detection of each target
    condition over the features it applies to; at every size, the share of unchanged windows
    flagged on anything (the condition ``none``); and whether detection at 1,000 is at least
    detection at 200 everywhere."""
    at = [row for row in rows if row["source"] == source]
    largest = [row for row in at if row["size"] == max(SIZES)]
    found: dict[str, dict[str, Any]] = {}
    for condition in TARGET_CONDITIONS:
        rates = [_rate(row, "detected") for row in largest if row["condition"] == condition]
        if rates:
            found[f"detection: {condition}"] = _goal(min(rates), TARGET_DETECTION, at_least=True)
    for row in at:
        if row["condition"] == "none":
            name = f"false alarms: unchanged windows of {row['size']:,}"
            found[name] = _goal(_rate(row, "false_alarms"), TARGET_FALSE_ALARMS, at_least=False)
    drops = monotonicity(at)
    found["detection at 1,000 below 200"] = {"value": len(drops), "target": 0, "met": not drops}
    return found


def monotonicity(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The conditions detected less often at 1,000 records than at 200."""
    by_key = {(r["condition"], r["feature"], r["size"]): r for r in rows if r["feature"]}
    drops = []
    for (condition, feature, size), row in by_key.items():
        smaller = by_key.get((condition, feature, min(SIZES)))
        if size == max(SIZES) and smaller and _rate(row, "detected") < _rate(smaller, "detected"):
            drops.append(f"{condition} on {feature}")
    return drops


def _rate(row: dict[str, Any], field: str) -> float:
    return row[field] / row["windows"] if row["windows"] else 0.0


def _goal(value: float, target: float, at_least: bool) -> dict[str, Any]:
    met = value >= target if at_least else value <= target
    return {"value": round(value, 4), "target": target, "met": met}


# --- the report -----------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section of a ``run``."""
    settings = result["settings"]
    sources = result["sources"]
    lines = [
        "## Drift detection",
        "",
        f"benchmarks/drift.py{' --quick (not for quoting)' if result['quick'] else ''}, "
        f"measured on {result['date']}, commit {result['commit']}, in {result['seconds']:.0f} s. "
        "Seeded windows of live records, each judged by the sidecar's own `assess` with its "
        f"default settings: a false-alarm rate of {settings['false_alarm_rate']:.1%} of unchanged "
        f"windows over all checks together, and the floors (PSI {settings['psi_floor']:g}, "
        f"missing values +{settings['missing_rate_floor'] * 100:g} points, "
        f"{settings['out_of_range_floor']:.0%} outside the range or unseen). Sources: "
        + "; ".join(f"**{name}**: {info['description']}" for name, info in sources.items())
        + ". A condition changes one feature in every record of a window; it is detected when "
        "that feature is flagged; a false alarm is any other flag (another feature, the "
        f"predictions). {result['windows']['per_condition']} windows per condition, "
        f"{result['windows']['none']} without a change. The former rule (PSI above 0.2, missing "
        "values 10 points above the training set's imputed rate, 5 % out of range) judged the "
        "same windows, against a package without the raw statistics.",
        "",
        _targets_table(result),
        "",
        "Detection, % of windows (the row `none`: false alarms):",
        "",
        _detection_table(result["results"]),
    ]
    if result.get("reference_study"):
        lines += ["", _reference_table(result["reference_study"])]
    timing = result["assess_ms"]
    lines += [
        "",
        "One `assess` of a window (median, all features and checks): "
        + ", ".join(f"{ms:.2f} ms at {int(size):,} records" for size, ms in timing.items())
        + ".",
    ]
    return "\n".join(lines)


def _targets_table(result: dict[str, Any]) -> str:
    lines = [
        f"| target (detection: at {max(SIZES):,} records) | synthetic | data | goal | |",
        "|---|---:|---:|---:|---|",
    ]
    for name, verdict in result["targets"].items():
        data = result["targets_data"].get(name, {})
        goal = verdict["target"]
        shown_goal = (
            f"≥ {goal:.0%}"
            if name.startswith("detection:")
            else (f"≤ {goal:.0%}" if name.startswith("false") else str(goal))
        )
        mark = "met" if verdict["met"] else "**missed**"
        lines.append(
            f"| {name} | {_shown(name, verdict['value'])} | {_shown(name, data.get('value'))} "
            f"| {shown_goal} | {mark} |"
        )
    return "\n".join(lines)


def _shown(name: str, value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.2%}" if name.startswith(("detection:", "false")) else str(value)


def _detection_table(rows: Sequence[dict[str, Any]]) -> str:
    columns = [(source, size) for source in ("synthetic", "data") for size in SIZES]
    header = [f"{source} {size:,}" for source, size in columns]
    header += [f"former rule, data {size:,}" for size in SIZES]
    lines = [
        "| condition | feature | " + " | ".join(header) + " |",
        "|---|---|" + "---:|" * len(header),
    ]
    keys = list(dict.fromkeys((row["condition"], row["feature"]) for row in rows))
    by_key = {(r["condition"], r["feature"], r["source"], r["size"]): r for r in rows}
    for condition, feature in keys:
        field = "false_alarms" if feature is None else "detected"
        cells = [
            _percent(by_key.get((condition, feature, source, size)), field)
            for source, size in columns
        ]
        cells += [
            _percent(by_key.get((condition, feature, "data", size)), f"former_{field}")
            for size in SIZES
        ]
        lines.append(f"| {condition} | {feature or ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _percent(row: dict[str, Any] | None, field: str) -> str:
    return "" if row is None else f"{row[field] / row['windows'] * 100:.1f}"


def _reference_table(rows: Sequence[dict[str, Any]]) -> str:
    """Why the reference's size is in the tests."""
    lines = [
        "The reference's size, at 1,000 records (synthetic; the shift on body_mass_g): the "
        "sidecar's two-sample tests against the same tests taking the reference as exact (as a "
        "test that ignores its size does):",
        "",
        "| reference rows | false alarms, two-sample | false alarms, one-sample "
        "| +0.25 sd detected, two-sample | +0.25 sd detected, one-sample |",
        "|---:|---:|---:|---:|---:|",
    ]
    by_key = {(r["reference_rows"], r["condition"], r["test"]): r for r in rows}
    for reference_rows in dict.fromkeys(r["reference_rows"] for r in rows):
        cells = [
            _percent(by_key.get((reference_rows, "none", test)), "false_alarms")
            for test in ("two-sample", "one-sample")
        ] + [
            _percent(by_key.get((reference_rows, "shift +0.25 sd", test)), "detected")
            for test in ("two-sample", "one-sample")
        ]
        lines.append(f"| {reference_rows:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(quick: bool = False) -> dict[str, Any]:
    settings = MonitorSettings()
    thresholds = drift_thresholds(settings)
    windows, none_windows = (
        (QUICK_WINDOWS, QUICK_NONE_WINDOWS) if quick else (WINDOWS, NONE_WINDOWS)
    )
    only = QUICK_CONDITIONS if quick else None
    started = time.perf_counter()
    commit, date = git_commit(), datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sources = [synthetic_source(), data_source()]
    assess_ms = timing(sources[0], thresholds, SIZES)  # first: the fewest objects alive
    rows = []
    for source in sources:
        rows += measure(source, thresholds, SIZES, windows, none_windows, only)
    result: dict[str, Any] = {
        "quick": quick,
        "date": date,
        "commit": commit,
        "settings": {
            "false_alarm_rate": thresholds.false_alarm_rate,
            "psi_floor": thresholds.psi,
            "prediction_psi_floor": thresholds.prediction_psi,
            "missing_rate_floor": thresholds.missing_rate,
            "out_of_range_floor": thresholds.out_of_range,
            "min_window_size": thresholds.min_window_size,
        },
        "sources": {
            s.name: {"description": s.description, "reference_rows": s.reference_rows}
            for s in sources
        },
        "windows": {"per_condition": windows, "none": none_windows},
        "results": rows,
        "targets": verdicts(rows),
        "targets_data": verdicts(rows, "data"),
        "assess_ms": assess_ms,
    }
    if not quick:
        result["reference_study"] = reference_study(thresholds, windows, none_windows)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def git_commit() -> str:
    """The commit measured, marked when the code differs from it."""
    found = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", "src", "benchmarks"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    commit = found.stdout.strip() or "unknown"
    return f"{commit} with uncommitted changes" if changed.stdout.strip() else commit


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the target conditions only")
    parser.add_argument("--output", type=Path, required=True, help="results (JSON)")
    parser.add_argument("--markdown", type=Path, help="also write the BENCHMARKS.md section here")
    arguments = parser.parse_args(argv)
    result = run(arguments.quick)
    if arguments.markdown:
        arguments.markdown.write_text(markdown(result) + "\n")
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(result, indent=2) + "\n")
    for name, verdict in result["targets"].items():
        mark = "met" if verdict["met"] else "MISSED"
        print(f"{name}: {verdict['value']} (target {verdict['target']}) {mark}")
    print(f"drift bench: {result['seconds']:.0f} s; wrote {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
