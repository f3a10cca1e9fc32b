"""Clean stage: coerce, normalise, de-duplicate, treat outliers and impute, per ``clean`` params.

The steps run in this order, each on the result of the one before:

1. coerce the columns the schema declares numeric (stray text becomes missing and is counted);
2. normalise strings: trim, collapse inner whitespace, blank to missing, case variants to the
   schema's spelling of an allowed category;
3. drop exact duplicate rows (after 1 and 2, so rows differing only in case or spacing count);
4. clip or drop outliers of numeric columns (before imputing, so they do not skew a mean);
5. impute missing values, per column kind or per-column override.

The target column is never touched: rows without a class reach the label stage as they came.
Excluded columns (``data.exclude_columns``) are only type-coerced.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera import dtypes

from mlops.data.schema import allowed_categories, load_schema
from mlops.params import (
    CleanParams,
    DataParams,
    ImputeParams,
    OutlierParams,
    SparkParams,
    load_optional_section,
    load_section,
)
from mlops.profile import column_kind
from mlops.progress import step
from mlops.stage import StageError, parser, run, write_json
from mlops.tables import read_table, write_table

NUMERIC_STRATEGIES = ("mean", "median", "constant", "drop", "none")
CATEGORICAL_STRATEGIES = ("most_frequent", "constant", "drop", "none")
VALUE_CHANGES = ("normalised", "coerced", "imputed", "clipped")
CHANGES = (*VALUE_CHANGES, "dropped")  # dropped: rows dropped because of the column
_WHITESPACE = re.compile(r"\s+")

Counts = dict[str, int]


def clean_table(
    frame: pd.DataFrame,
    params: CleanParams,
    *,
    target: str,
    exclude_columns: Sequence[str] = (),
    categories: Mapping[str, Sequence[str]] | None = None,
    numeric_columns: Sequence[str] = (),
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The cleaned table and a summary of what changed (row counts and per-column counts)."""
    changes = new_changes(frame.columns)
    protected = {target, *exclude_columns}
    cleaned, row_changes = clean_rows(
        frame, params, target=target, protected=protected, categories=categories,
        numeric_columns=numeric_columns,
    )  # fmt: skip
    for change, counts in row_changes.items():
        record_changes(changes, change, counts)
    rows_in = len(cleaned)
    if params.drop_duplicates:
        cleaned = cleaned.drop_duplicates()
    rows_unique = len(cleaned)
    numeric = [c for c in _features(cleaned, protected) if _kind(cleaned[c]) == "numeric"]
    cleaned, clipped, outlier_drops = treat_outliers(cleaned, numeric, params.outliers)
    record_changes(changes, "clipped", clipped)
    record_changes(changes, "dropped", outlier_drops)
    rows_inlying = len(cleaned)
    cleaned, imputed, missing_drops = impute(cleaned, _features(cleaned, protected), params.impute)
    record_changes(changes, "imputed", imputed)
    record_changes(changes, "dropped", missing_drops)
    summary = clean_summary(changes, rows_in, rows_unique, rows_inlying, len(cleaned))
    return cleaned.reset_index(drop=True), summary


def clean_rows(
    frame: pd.DataFrame,
    params: CleanParams,
    *,
    target: str,
    protected: set[str],
    categories: Mapping[str, Sequence[str]] | None = None,
    numeric_columns: Sequence[str] = (),
) -> tuple[pd.DataFrame, dict[str, Counts]]:
    """Steps 1 and 2, which look at one row at a time: coerce, then normalise strings."""
    cleaned, coerced = coerce_numeric(
        frame, [c for c in numeric_columns if c in frame.columns and c != target]
    )
    if not params.normalize_strings:
        return cleaned, {"coerced": coerced}
    text_columns = [c for c in _features(cleaned, protected) if _kind(cleaned[c]) == "text"]
    cleaned, normalised = normalise_strings(cleaned, text_columns, categories or {})
    return cleaned, {"coerced": coerced, "normalised": normalised}


def new_changes(columns: Iterable[object]) -> dict[str, Counts]:
    return {str(column): dict.fromkeys(CHANGES, 0) for column in columns}


def clean_summary(
    changes: dict[str, Counts], rows_in: int, rows_unique: int, rows_inlying: int, rows_out: int
) -> dict[str, Any]:
    return {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "duplicates_dropped": rows_in - rows_unique,
        "rows_dropped_outliers": rows_unique - rows_inlying,
        "rows_dropped_missing": rows_inlying - rows_out,
        "columns": changes,
    }


def coerce_numeric(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[pd.DataFrame, Counts]:
    """Make ``columns`` numeric; count the present values that could not be read as numbers."""
    result = frame.copy()
    coerced: Counts = {}
    for column in columns:
        values = frame[column]
        if _kind(values) == "numeric":
            continue
        numbers = pd.to_numeric(map_text(values, _strip), errors="coerce")
        coerced[column] = int((values.notna() & numbers.isna()).sum())
        result[column] = numbers
    return result, coerced


def normalise_strings(
    frame: pd.DataFrame, columns: Sequence[str], categories: Mapping[str, Sequence[str]]
) -> tuple[pd.DataFrame, Counts]:
    """Trim and collapse whitespace, blank to missing, and case variants to the allowed spelling."""
    result = frame.copy()
    normalised: Counts = {}
    for column in columns:
        canonical = {str(value).casefold(): str(value) for value in categories.get(column, [])}
        values = frame[column]
        cleaned = map_text(values, partial(_normalise, canonical=canonical))
        normalised[column] = int((values.notna() & (cleaned != values)).sum())
        result[column] = cleaned
    return result, normalised


def map_text(values: pd.Series, function: Callable[[Any], Any]) -> pd.Series:
    """``function`` applied to the present values; once per distinct value when they are all
    text (a category column repeats a few values millions of times)."""
    if pd.api.types.infer_dtype(values, skipna=True) != "string":
        return values.map(function, na_action="ignore")
    distinct = values.dropna().unique()
    return values.map(dict(zip(distinct, map(function, distinct), strict=True)))


def treat_outliers(
    frame: pd.DataFrame, columns: Sequence[str], params: OutlierParams
) -> tuple[pd.DataFrame, Counts, Counts]:
    """Clip outliers to their bounds, or drop their rows; returns (frame, clipped, dropped)."""
    if params.method == "none":
        return frame, {}, {}
    result = frame.copy()
    outside: dict[str, pd.Series] = {}
    for column in columns:
        bounds = outlier_bounds(frame[column], params.method, params.threshold)
        if bounds is None:
            continue
        lower, upper = bounds
        outside[column] = (frame[column] < lower) | (frame[column] > upper)
        if params.action == "clip":
            result[column] = frame[column].clip(lower=lower, upper=upper)
    counts = {column: int(mask.sum()) for column, mask in outside.items()}
    if params.action == "clip":
        return result, counts, {}
    any_outside = pd.concat(outside.values(), axis=1).any(axis=1) if outside else None
    if any_outside is not None:
        result = result[~any_outside]
    return result, {}, counts


def outlier_bounds(values: pd.Series, method: str, threshold: float) -> tuple[float, float] | None:
    """(lower, upper) beyond which a value is an outlier; None if the column has too few values."""
    present = values.dropna().astype(float)
    if len(present) < 2:
        return None
    if method == "iqr":
        first, third = present.quantile([0.25, 0.75])
        return iqr_bounds(first, third, threshold)
    return zscore_bounds(present.mean(), present.std(), threshold)


def iqr_bounds(first: float, third: float, threshold: float) -> tuple[float, float]:
    """``threshold`` interquartile ranges below the first quartile and above the third."""
    spread = third - first
    return first - threshold * spread, third + threshold * spread


def zscore_bounds(mean: float, deviation: float, threshold: float) -> tuple[float, float] | None:
    """``threshold`` standard deviations either side of the mean; None without any spread."""
    if not deviation > 0:
        return None
    return mean - threshold * deviation, mean + threshold * deviation


def impute(
    frame: pd.DataFrame, columns: Sequence[str], params: ImputeParams
) -> tuple[pd.DataFrame, Counts, Counts]:
    """Fill or drop missing values per column; returns (frame, imputed, dropped).

    Rows are dropped first (every ``drop`` column), so fill statistics describe the rows kept.
    """
    strategies = imputation_strategies(frame, columns, params)
    result = frame
    dropped: Counts = {}
    for column in [c for c, strategy in strategies.items() if strategy == "drop"]:
        missing_rows = result[column].isna()
        dropped[column] = int(missing_rows.sum())
        result = result[~missing_rows]
    result = result.copy()
    imputed: Counts = {}
    for column, strategy in strategies.items():
        missing = int(result[column].isna().sum())
        if strategy in ("drop", "none") or missing == 0:
            continue
        result[column] = _fill(result[column], strategy, params.fill_value, column)
        imputed[column] = missing
    return result, imputed, dropped


def imputation_strategies(
    frame: pd.DataFrame, columns: Sequence[str], params: ImputeParams
) -> dict[str, str]:
    """The strategy of every imputable column, checking each per-column override."""
    for column in params.columns:
        if column not in frame.columns:
            raise StageError(
                f"clean.impute.columns.{column}: no such column; "
                f"the table has {list(frame.columns)}"
            )
        if column not in columns:
            raise StageError(
                f"clean.impute.columns.{column}: '{column}' is the target or an excluded column "
                "(data.target, data.exclude_columns), which are never imputed"
            )
    strategies = {}
    for column in columns:
        kind = _kind(frame[column])
        if kind == "other":
            continue
        numeric = kind == "numeric"
        allowed = NUMERIC_STRATEGIES if numeric else CATEGORICAL_STRATEGIES
        strategy = params.columns.get(column, params.numeric if numeric else params.categorical)
        if strategy not in allowed:
            raise StageError(
                f"clean.impute.columns.{column}: '{strategy}' does not apply to the "
                f"{'numeric' if numeric else 'categorical'} column '{column}'; "
                f"expected one of {list(allowed)}"
            )
        strategies[column] = strategy
    return strategies


def _fill(values: pd.Series, strategy: str, fill_value: str | float, column: str) -> pd.Series:
    present = values.dropna()
    statistic = _statistic(present, strategy) if len(present) else None
    numeric = _kind(values) == "numeric"
    value = imputation_value(strategy, statistic, len(present), fill_value, column, numeric)
    if pd.api.types.is_integer_dtype(values) and not float(value).is_integer():
        values = values.astype("float64")
    return values.fillna(value)


def _statistic(present: pd.Series, strategy: str) -> Any:
    if strategy == "mean":
        return float(present.astype(float).mean())
    if strategy == "median":
        return float(present.astype(float).median())
    if strategy == "most_frequent":
        return present.mode().iloc[0]
    return None


def imputation_value(
    strategy: str,
    statistic: Any,
    present: int,
    fill_value: str | float,
    column: str,
    numeric: bool,
) -> Any:
    """What fills ``column``'s gaps: the ``statistic`` its strategy names (mean, median or most
    frequent value of its ``present`` values), or the constant ``fill_value``."""
    if strategy == "constant":
        return _constant_for(numeric, fill_value, column)
    if present == 0:
        raise StageError(
            f"column '{column}' has no values to compute its {strategy} from; set "
            f"clean.impute.columns.{column} to none, drop or constant, or drop the column at "
            "ingest (data.drop_columns)"
        )
    return statistic


def _constant_for(numeric: bool, fill_value: str | float, column: str) -> str | float:
    if not numeric:
        return str(fill_value)
    if isinstance(fill_value, str):
        raise StageError(
            f"clean.impute.fill_value: {fill_value!r} is not a number, but the numeric column "
            f"'{column}' is imputed with constant; set a number or another strategy for it"
        )
    return fill_value


def _features(frame: pd.DataFrame, protected: set[str]) -> list[str]:
    return [str(column) for column in frame.columns if column not in protected]


def _kind(values: pd.Series) -> str:
    """numeric, text (normalised; imputed as categories), boolean, or other (e.g. dates)."""
    kind = column_kind(values)
    return {"categorical": "text", "datetime": "other"}.get(kind, kind)


def _strip(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _normalise(value: object, canonical: Mapping[str, str]) -> object:
    if not isinstance(value, str):
        return value
    text = _WHITESPACE.sub(" ", value).strip()
    if not text:
        return np.nan
    return canonical.get(text.casefold(), text)


def record_changes(changes: dict[str, Counts], change: str, counts: Counts) -> None:
    for column, count in counts.items():
        changes[column][change] += count


def numeric_schema_columns(schema: pa.DataFrameSchema) -> list[str]:
    """Columns the schema declares with a numeric (not boolean) dtype."""
    return [
        str(name)
        for name, column in schema.columns.items()
        if column.dtype is not None
        and dtypes.is_numeric(column.dtype)
        and not dtypes.is_bool(column.dtype)
    ]


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser("Clean the raw table: coerce, normalise, de-duplicate, outliers, impute.")
    arguments.add_argument("--input", type=Path, required=True, help="raw Parquet table")
    arguments.add_argument("--schema", type=Path, required=True, help="pandera schema (YAML)")
    arguments.add_argument("--out", type=Path, required=True, help="cleaned Parquet table")
    arguments.add_argument("--summary", type=Path, required=True, help="JSON summary of changes")
    args = arguments.parse_args(argv)
    data = load_section(args.params, "data", DataParams)
    params = load_section(args.params, "clean", CleanParams)
    engine = load_optional_section(args.params, "spark", SparkParams)
    schema = load_schema(args.schema)
    settings: dict[str, Any] = {
        "target": data.target,
        "exclude_columns": data.exclude_columns,
        "categories": allowed_categories(schema),
        "numeric_columns": numeric_schema_columns(schema),
    }
    if engine.enabled:
        from mlops.data import spark

        with spark.session(engine) as session:
            summary = spark.clean(
                session, args.input, args.out, params, **settings,
                relative_error=engine.relative_error,
            )  # fmt: skip
    else:
        raw = read_table(args.input)
        with step("clean", len(raw)):
            cleaned, summary = clean_table(raw, params, **settings)
        write_table(args.out, cleaned)
    write_json(args.summary, summary)
    print(describe(summary))


def describe(summary: dict[str, Any]) -> str:
    """One line for the log: rows in and out, and how many values each step changed."""
    columns = summary["columns"].values()
    values = ", ".join(f"{sum(c[change] for c in columns)} {change}" for change in VALUE_CHANGES)
    return (
        f"clean: {summary['rows_in']} -> {summary['rows_out']} rows "
        f"({summary['duplicates_dropped']} duplicate, {summary['rows_dropped_outliers']} outlier "
        f"and {summary['rows_dropped_missing']} incomplete rows dropped); values {values}"
    )


if __name__ == "__main__":
    raise SystemExit(run(main))
