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

The rules are ``mlops.data.rules.rows`` (steps 1 and 2) and ``mlops.data.rules.cleaning`` (the
order of the steps, outliers, imputation, the summary); the engine ``spark.enabled`` picks
applies them (``mlops.data.engines``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlops.data.engines import CleanSettings, open_engine
from mlops.data.rules.cleaning import describe
from mlops.data.rules.schema import allowed_categories, load_schema, numeric_schema_columns
from mlops.params import CleanParams, DataParams, SparkParams, load_optional_section, load_section
from mlops.stage import parser, run, write_json


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser("Clean the raw table: coerce, normalise, de-duplicate, outliers, impute.")
    arguments.add_argument("--input", type=Path, required=True, help="raw Parquet table")
    arguments.add_argument("--schema", type=Path, required=True, help="pandera schema (YAML)")
    arguments.add_argument("--out", type=Path, required=True, help="cleaned Parquet table")
    arguments.add_argument("--summary", type=Path, required=True, help="JSON summary of changes")
    args = arguments.parse_args(argv)
    data = load_section(args.params, "data", DataParams)
    params = load_section(args.params, "clean", CleanParams)
    spark = load_optional_section(args.params, "spark", SparkParams)
    schema = load_schema(args.schema)
    settings = CleanSettings(
        target=data.target,
        exclude_columns=data.exclude_columns,
        categories=allowed_categories(schema),
        numeric_columns=numeric_schema_columns(schema),
    )
    with open_engine(spark) as engine:
        summary = engine.clean(args.input, args.out, params, settings)
    write_json(args.summary, summary)
    print(describe(summary))


if __name__ == "__main__":
    raise SystemExit(run(main))
