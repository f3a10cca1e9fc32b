"""The pull request report's intervals: the bootstrap of the metric changes on a large split.

    python benchmarks/report.py             # 100,000-row splits: binary, 10 classes, regression
    python benchmarks/report.py --quick     # 2,000 rows

The evaluate stage keeps the predictions of at most 10,000 validation rows, so the bootstrap's
work is bounded whatever the split's size; its cost grows with the number of classes (a ROC AUC
per class). Each case: this run against a base that evaluated the same rows (paired) and one that
evaluated other rows (unpaired), every metric the report shows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlops.report.intervals import RowPredictions, change_intervals, metric_values

SAMPLE_ROWS = 10_000  # the evaluate stage's PREDICTION_ROWS
ROWS, QUICK_ROWS = 100_000, 2_000
CASES = (("binary", 2), ("10 classes", 10), ("regression", 0))


def predictions(rows: int, classes: int, seed: int, keys: np.ndarray) -> RowPredictions:
    """A sample of ``min(rows, SAMPLE_ROWS)`` of a ``rows``-row split, as predictions.csv holds."""
    rng = np.random.default_rng(seed)
    sample = min(rows, SAMPLE_ROWS)
    if classes == 0:
        actual = rng.normal(300, 40, sample)
        guess = actual + rng.normal(0, 20, sample)
        return RowPredictions(keys[:sample], actual, guess, None, (), None, rows)
    names = tuple(f"class {index}" for index in range(classes))
    truth_rng = np.random.default_rng(0)  # the same rows' actual classes on both sides
    actual = np.asarray(names, dtype=object)[truth_rng.integers(0, classes, sample)]
    logits = rng.normal(size=(sample, classes))
    logits[np.arange(sample), [names.index(name) for name in actual]] += 1.5
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    predicted = np.asarray(names, dtype=object)[probabilities.argmax(axis=1)]
    positive = names[1] if classes == 2 else None
    return RowPredictions(keys[:sample], actual, predicted, probabilities, names, positive, rows)


def measure(rows: int) -> list[dict[str, Any]]:
    keys = np.asarray([f"{index:016x}" for index in range(min(rows, SAMPLE_ROWS))], dtype=object)
    results = []
    for name, classes in CASES:
        current = predictions(rows, classes, 1, keys)
        for pairing, base in (
            ("paired", predictions(rows, classes, 2, keys)),
            ("unpaired", predictions(rows, classes, 2, keys[::-1])),
        ):
            changes = {metric: 0.0 for metric in metric_values(current, np.ones((current.rows, 1)))}
            started = time.perf_counter()
            intervals = change_intervals(current, base, changes)
            seconds = time.perf_counter() - started
            results.append(
                {
                    "case": f"{name}, {pairing}",
                    "rows": rows,
                    "sample_rows": current.rows,
                    "metrics": len(intervals.bounds),
                    "resamples": intervals.resamples,
                    "seconds": round(seconds, 2),
                }
            )
            print(f"report intervals: {results[-1]}", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 rows instead of 100,000")
    arguments = parser.parse_args(argv)
    print(json.dumps(measure(QUICK_ROWS if arguments.quick else ROWS), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
