"""Synthetic data shaped like a real table, at any size: ``make data-synth ROWS=N``.

A model is fitted per stratum of the target (``data.target``) on a real table, by default the
bundled penguins, and rows are drawn from it. The strata are the target's classes, or, for a
regression target (``data.task``, decided by ``mlops.task.decide_task`` as the pipeline will),
``MAX_STRATA`` quantile bins of it; the regression target is then one more continuous column, so
it keeps its relation to the features: through the bins (which categories and values go with
high or low targets) and through each bin's covariance. ``make data-synth ROWS=N
TARGET=body_mass_g`` imitates penguins as a regression problem (body mass from the rest).

- stratum shares as in the source;
- continuous numeric columns (more than ``MAX_DISCRETE`` distinct values): a multivariate normal
  with the class's mean vector and covariance matrix, so correlated measurements stay correlated;
  clipped to the source's range widened by ``RANGE_MARGIN`` of its span (never below zero for a
  column that never was), then rounded to the source's resolution (body mass in steps of 25 g,
  bills to 0.1 mm);
- every other column (text, booleans, numbers with few values such as a year): the class's
  frequencies of its values;
- missing values: every row takes the pattern of missing columns of a random source row of its
  class, so gaps come at the source's rates and together (a bird never measured lacks all four
  measurements and its sex);
- category noise: a share (``--noise``) of the values of the text feature columns become a case or
  whitespace variant (``" Dream"``, ``"MALE"``), which validate accepts and clean normalises when
  ``clean.normalize_strings`` is on;
- drift (``--drift body_mass_g:2``): numeric columns shifted by k of their source standard
  deviations after clipping; a large shift leaves the schema's range, and validate then stops the
  pipeline, as it would on real data.

Rows are drawn in chunks of ``CHUNK_ROWS`` by one seeded generator, so memory stays flat and a seed
always gives the same table. The table goes to ``data.source`` (or ``--out``) as CSV, Parquet or
JSON lines, after the file's extension; Parquet is the one to use for millions of rows.

One module of about 480 lines, because it is one command with one model: fitting, drawing and
writing share the fitted ``TableModel`` and nothing else imports them.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.data.engines.pandas_engine.sources import read_files
from mlops.data.rules.sources import format_of
from mlops.params import DataParams, load_section
from mlops.profile import column_kind
from mlops.progress import Progress, describe_rate
from mlops.stage import StageError, parser, run
from mlops.task import DeclaredTask, Task, decide_task, numbers_in_text

MAX_DISCRETE = (
    20  # a numeric column with at most this many distinct values is drawn like a category
)
MAX_STRATA = 10  # quantile bins of a regression target
MIN_STRATUM_ROWS = 20  # source rows per bin: enough for the bin's covariance
RANGE_MARGIN = 0.25
MAX_DECIMALS = 6
CHUNK_ROWS = 250_000
DEFAULT_NOISE = 0.01
NOISE_VARIANTS: tuple[Callable[[pd.Series], pd.Series], ...] = (
    lambda values: values.str.upper(),
    lambda values: values.str.lower(),
    lambda values: " " + values,
    lambda values: values + "  ",
)


@dataclass(frozen=True)
class Distribution:
    values: np.ndarray
    probabilities: np.ndarray

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return self.values[rng.choice(len(self.values), size=size, p=self.probabilities)]


@dataclass(frozen=True)
class ClassModel:
    share: float
    mean: np.ndarray  # of the continuous columns
    covariance: np.ndarray
    discrete: dict[str, Distribution]
    missing_patterns: Distribution  # rows of booleans, one per column but the target


@dataclass(frozen=True)
class Resolution:
    step: float
    decimals: int

    def round(self, values: np.ndarray) -> np.ndarray:
        return np.round(np.round(values / self.step) * self.step, self.decimals)


@dataclass(frozen=True)
class TableModel:
    target: str
    columns: tuple[str, ...]  # every column in source order, the target included
    continuous: tuple[str, ...]  # a regression target among them
    noisy: tuple[str, ...]  # text feature columns that get case and whitespace variants
    integer: frozenset[str]  # integer columns that are never missing: written as integers
    text: frozenset[str]
    resolution: dict[str, Resolution]
    bounds: dict[str, tuple[float, float]]
    std: dict[str, float]
    classes: dict[str, ClassModel]  # per stratum: a class, or a quantile bin of a regression target
    task: Task = "classification"

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(column for column in self.columns if column != self.target)


# --- fitting -------------------------------------------------------------------------------------


def fit_table_model(
    frame: pd.DataFrame,
    target: str,
    exclude_columns: Sequence[str] = (),
    declared: DeclaredTask = "auto",
) -> TableModel:
    """The per-stratum model of ``frame`` (rows without a target value are left out of the fit;
    so are the values of a regression target that are not numbers)."""
    if target not in frame.columns:
        raise StageError(
            f"data.target '{target}' is not a column of the table to fit; "
            f"it has {list(frame.columns)}"
        )
    labelled = frame[frame[target].notna()]
    task = decide_task(labelled[target], declared).task
    if task == "regression":
        labelled = labelled.assign(**{target: numbers_in_text(labelled[target])})
        labelled = labelled[labelled[target].notna()]
    if labelled.empty:
        raise StageError(f"the table to fit has no rows with a value in '{target}'")
    features = [str(column) for column in frame.columns if column != target]
    continuous = [c for c in features if _is_continuous(labelled[c])]
    strata = labelled[target].map(str)
    if task == "regression":
        continuous.append(target)
        strata = target_strata(labelled[target])
    text = [c for c in features if column_kind(labelled[c]) == "categorical"]
    present = {c: labelled[c].dropna().to_numpy(dtype=np.float64) for c in continuous}
    classes = {
        str(name): _fit_class(rows, len(labelled), features, continuous, present)
        for name, rows in labelled.groupby(strata, sort=True)
    }
    return TableModel(
        target=target,
        columns=tuple(str(column) for column in frame.columns),
        continuous=tuple(continuous),
        noisy=tuple(c for c in text if c not in exclude_columns),
        integer=frozenset(
            c
            for c in features
            if pd.api.types.is_integer_dtype(labelled[c]) and not labelled[c].isna().any()
        ),
        text=frozenset(text),
        resolution={c: resolution(values) for c, values in present.items()},
        bounds={c: widened_bounds(values) for c, values in present.items()},
        std={
            c: float(np.std(values, ddof=1)) if values.size > 1 else 0.0
            for c, values in present.items()
        },
        classes=classes,
        task=task,
    )


def target_strata(target: pd.Series) -> pd.Series:
    """The quantile bin of each value of a regression target, as zero-padded names that sort:
    ``MAX_STRATA`` bins of equal counts, fewer for a small table (``MIN_STRATUM_ROWS`` each)."""
    count = max(1, min(MAX_STRATA, len(target) // MIN_STRATUM_ROWS))
    rank = target.rank(method="first").to_numpy(dtype=np.int64) - 1
    return pd.Series(rank * count // len(target), index=target.index).map("q{:02d}".format)


def _is_continuous(values: pd.Series) -> bool:
    return column_kind(values) == "numeric" and values.nunique() > MAX_DISCRETE


def _fit_class(
    rows: pd.DataFrame,
    total: int,
    features: list[str],
    continuous: list[str],
    present: Mapping[str, np.ndarray],
) -> ClassModel:
    complete = rows[continuous].dropna().to_numpy(dtype=np.float64)
    overall_mean = np.array([present[c].mean() if present[c].size else 0.0 for c in continuous])
    if len(complete) >= 2:
        mean, covariance = complete.mean(axis=0), np.cov(complete, rowvar=False, ddof=1)
    else:  # too few complete rows for a covariance: the class mean if any, the overall spread
        mean = np.where(np.isnan(rows[continuous].mean()), overall_mean, rows[continuous].mean())
        covariance = np.diag(
            [present[c].var(ddof=1) if present[c].size > 1 else 0.0 for c in continuous]
        )
    discrete = {c: _frequencies(rows[c]) for c in features if c not in continuous}
    return ClassModel(
        share=len(rows) / total,
        mean=np.asarray(mean, dtype=np.float64),
        covariance=np.atleast_2d(covariance),
        discrete=discrete,
        missing_patterns=_frequencies_of_rows(rows[features].isna().to_numpy()),
    )


def _frequencies(values: pd.Series) -> Distribution:
    counts = values.dropna().value_counts(sort=False)
    if counts.empty:  # never present in this class: the missing patterns always hide it
        return Distribution(np.array([np.nan], dtype=object), np.array([1.0]))
    return Distribution(counts.index.to_numpy(), (counts / counts.sum()).to_numpy(np.float64))


def _frequencies_of_rows(masks: np.ndarray) -> Distribution:
    patterns, counts = np.unique(masks, axis=0, return_counts=True)
    return Distribution(patterns, counts / counts.sum())


def resolution(values: np.ndarray) -> Resolution:
    """The grid the source's values lie on: the fewest decimals, then the largest common step."""
    for decimals in range(MAX_DECIMALS + 1):
        scaled = values * 10.0**decimals
        whole = np.round(scaled)
        if np.all(np.abs(scaled - whole) <= 1e-6 * np.maximum(1.0, np.abs(scaled))):
            step = int(np.gcd.reduce(np.abs(whole).astype(np.int64))) if whole.size else 1
            return Resolution(step=(step or 1) / 10.0**decimals, decimals=decimals)
    return Resolution(step=10.0**-MAX_DECIMALS, decimals=MAX_DECIMALS)


def widened_bounds(values: np.ndarray) -> tuple[float, float]:
    if values.size == 0:
        return (-np.inf, np.inf)
    low, high = float(values.min()), float(values.max())
    margin = RANGE_MARGIN * (high - low)
    return (max(low - margin, 0.0) if low >= 0 else low - margin, high + margin)


# --- drawing -------------------------------------------------------------------------------------


def parse_drift(text: str, model: TableModel) -> dict[str, float]:
    """``"body_mass_g:2,bill_length_mm:-1"`` as {column: shift in standard deviations}."""
    drift: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        column, _, amount = item.partition(":")
        if column not in model.continuous:
            raise StageError(
                f"--drift {item!r}: '{column}' is not a continuous numeric column; "
                f"drift applies to {list(model.continuous)}"
            )
        try:
            drift[column] = float(amount)
        except ValueError:
            raise StageError(
                f"--drift {item!r}: expected <column>:<standard deviations>, e.g. {column}:2"
            ) from None
    return drift


def draw_rows(
    model: TableModel,
    rows: int,
    rng: np.random.Generator,
    noise: float = DEFAULT_NOISE,
    drift: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """``rows`` rows of the source's columns, in its order, strata mixed at random."""
    names = list(model.classes)
    labels = np.asarray(names, dtype=object)[
        rng.choice(len(names), size=rows, p=[model.classes[n].share for n in names])
    ]
    measurements = np.empty((rows, len(model.continuous)))
    discrete = {
        c: np.empty(rows, dtype=object) for c in model.features if c not in model.continuous
    }
    missing = np.zeros((rows, len(model.features)), dtype=bool)
    for name in names:
        where = np.flatnonzero(labels == name)
        fitted = model.classes[name]
        measurements[where] = rng.multivariate_normal(
            fitted.mean, fitted.covariance, size=len(where), method="eigh"
        )
        for column, distribution in fitted.discrete.items():
            discrete[column][where] = distribution.draw(rng, len(where))
        missing[where] = fitted.missing_patterns.draw(rng, len(where))
    columns = _finish_measurements(model, measurements, drift or {})
    columns.update(discrete)
    if model.task == "classification":
        columns[model.target] = labels
    frame = pd.DataFrame({c: _typed(model, c, columns[c]) for c in model.columns})
    for position, column in enumerate(model.features):
        if missing[:, position].any():
            frame.loc[missing[:, position], column] = np.nan
    for column in model.noisy:
        frame[column] = add_noise(frame[column], rng, noise)
    return frame


def _finish_measurements(
    model: TableModel, measurements: np.ndarray, drift: Mapping[str, float]
) -> dict[str, np.ndarray]:
    """Clip to the widened source range, shift the drifted columns, round to the source grid."""
    columns = {}
    for position, column in enumerate(model.continuous):
        values = np.clip(measurements[:, position], *model.bounds[column])
        values = values + drift.get(column, 0.0) * model.std[column]
        columns[column] = model.resolution[column].round(values)
    return columns


def _typed(model: TableModel, column: str, values: np.ndarray) -> pd.Series:
    if column == model.target and model.task == "regression":
        return pd.Series(values, dtype=np.float64)
    if column in model.text or column == model.target:
        return pd.Series(values, dtype="str")
    if column in model.integer:
        return pd.Series(values.astype(np.int64))
    return pd.Series(values).infer_objects()


def add_noise(values: pd.Series, rng: np.random.Generator, share: float) -> pd.Series:
    """``share`` of the present values replaced by a case or whitespace variant of themselves."""
    chosen = (rng.random(len(values)) < share) & values.notna().to_numpy()
    variant = rng.integers(0, len(NOISE_VARIANTS), size=len(values))
    noisy = values.copy()
    for number, make_variant in enumerate(NOISE_VARIANTS):
        rows = chosen & (variant == number)
        noisy[rows] = make_variant(values[rows])
    return noisy


def synthetic_chunks(
    model: TableModel,
    rows: int,
    seed: int,
    noise: float = DEFAULT_NOISE,
    drift: Mapping[str, float] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    rng = np.random.default_rng(seed)
    for start in range(0, rows, chunk_rows):
        yield draw_rows(model, min(chunk_rows, rows - start), rng, noise, drift)


# --- writing -------------------------------------------------------------------------------------


@contextmanager
def table_writer(path: Path) -> Iterator[Callable[[pd.DataFrame], None]]:
    """A function appending chunks to ``path`` (format from its extension); the file appears
    complete when the block ends, never half-written."""
    kind = format_of(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        if kind == "parquet":
            with _parquet_writer(partial) as append:
                yield append
        else:
            with partial.open("w", encoding="utf-8") as file:
                yield _text_appender(file, kind)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def _parquet_writer(path: Path) -> Iterator[Callable[[pd.DataFrame], None]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer: Any = None

    def append(chunk: pd.DataFrame) -> None:
        nonlocal writer
        table = pa.Table.from_pandas(chunk, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table.cast(writer.schema))

    try:
        yield append
    finally:
        if writer is not None:
            writer.close()


def _text_appender(file: Any, kind: str) -> Callable[[pd.DataFrame], None]:
    first = True

    def append(chunk: pd.DataFrame) -> None:
        nonlocal first
        if kind == "csv":
            chunk.to_csv(file, header=first, index=False, lineterminator="\n")
        else:
            file.write(chunk.to_json(orient="records", lines=True))
            if not chunk.empty:
                file.write("\n")
        first = False

    return append


def write_synthetic(
    path: Path,
    model: TableModel,
    rows: int,
    seed: int,
    noise: float = DEFAULT_NOISE,
    drift: Mapping[str, float] | None = None,
) -> None:
    progress = Progress("synth", total=rows)
    with table_writer(path) as append:
        for chunk in synthetic_chunks(model, rows, seed, noise, drift):
            append(chunk)
            progress.advance(len(chunk))
    progress.done()


def output_path(out: Path | None, source: str, fitted: Path) -> Path:
    """``--out``, else ``data.source``; never the table the model is fitted on."""
    if out is None:
        if "://" in source:
            raise StageError(
                f"data.source is {source}, not a local file; pass --out (make data-synth OUT=...)"
            )
        out = Path(source)
    if out.resolve() == fitted.resolve():
        raise StageError(
            f"{out}: this is the table the generator is fitted on; write elsewhere: set "
            "data.source to e.g. data/synthetic.parquet in params.yaml, or pass OUT=<path>"
        )
    return out


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser("Write a synthetic table shaped like a real one, at any size.")
    arguments.add_argument("--fit", type=Path, required=True, help="the real table to imitate")
    arguments.add_argument("--rows", type=int, required=True, help="how many rows to write")
    arguments.add_argument("--out", type=Path, help="where to write (default: data.source)")
    arguments.add_argument("--seed", type=int, default=0)
    arguments.add_argument(
        "--noise", type=float, default=DEFAULT_NOISE, help="share of text values given a variant"
    )
    arguments.add_argument(
        "--drift", default="", help="column:k[,column:k]: shift by k standard deviations"
    )
    arguments.add_argument("--target", help="the target column (default: data.target)")
    arguments.add_argument(
        "--task",
        choices=["auto", "classification", "regression"],
        help="classification or regression (default: data.task)",
    )
    args = arguments.parse_args(argv)
    if args.rows < 1:
        raise StageError(f"--rows: expected a positive number of rows, got {args.rows}")
    if not 0 <= args.noise <= 1:
        raise StageError(f"--noise: expected a share between 0 and 1, got {args.noise}")
    data = load_section(args.params, "data", DataParams)
    out = output_path(args.out, data.source, args.fit)
    target = args.target or data.target
    model = fit_table_model(
        read_files(str(args.fit), "auto"), target, data.exclude_columns, args.task or data.task
    )
    drift = parse_drift(args.drift, model)
    started = time.perf_counter()
    write_synthetic(out, model, args.rows, args.seed, args.noise, drift)
    summary = describe_rate("synth", args.rows, time.perf_counter() - started)
    shifted = ", ".join(f"{c} {k:+g} sd" for c, k in drift.items()) or "none"
    kind = "classes" if model.task == "classification" else "quantile bins of the regression target"
    strata = f"{len(model.classes)} {kind} {target} like {args.fit}"
    print(f"{summary}; {strata}, drift: {shifted} -> {out}")


if __name__ == "__main__":
    sys.exit(run(main))
