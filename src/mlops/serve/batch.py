"""Batch scoring (``make score INPUT=... OUTPUT=...``): a whole file through the served model.

Same packaged model, same checks as the HTTP service (``mlops.serve.checks``), one chunk at a
time so memory stays flat however large the file. Every input row ends up in exactly one place:
the output (with its prediction, a classifier's class probabilities, and any warnings) or the
rejected file (with its row number and the reasons), never dropped silently.

CSV is read with the standard library: an empty cell or a usual missing marker (``NA``, ``null``,
``NaN`` ...) is a missing value, a number column's text is parsed as a number. Parquet needs
pyarrow, which is imported only when a Parquet file is read or written.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from mlops.core.artifacts import ArtifactError
from mlops.core.errors import StageError, run
from mlops.serve.batches import Records
from mlops.serve.checks import check
from mlops.serve.errors import InputError
from mlops.serve.model import Scorer, load_scorer
from mlops.serve.schema import MISSING_MARKERS, FieldSpec, InputSchema, input_schema

DEFAULT_CHUNK_ROWS = 10_000
PREDICTION_COLUMN = "prediction"
WARNINGS_COLUMN = "warnings"


@dataclass(frozen=True)
class Chunk:
    first_row: int  # 1-based number of the chunk's first data row (the row after a CSV header is 1)
    rows: list[dict[str, Any]]
    broken: dict[int, str] = field(default_factory=dict)  # row index in the chunk -> why unreadable


@dataclass
class ScoredChunk:
    scored: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Summary:
    scored: int = 0
    rejected: int = 0


class RowWriter(Protocol):
    def write(self, rows: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


def added_columns(scorer: Scorer) -> list[str]:
    """What scoring adds to each row: the prediction (a label or a number), a classifier's
    ``probability_<class>`` per class, and the warnings."""
    probabilities = [] if scorer.regression else [f"probability_{c}" for c in scorer.classes]
    return [PREDICTION_COLUMN, *probabilities, WARNINGS_COLUMN]


def output_columns(input_columns: Sequence[str], scorer: Scorer) -> list[str]:
    added = added_columns(scorer)
    clashes = sorted(set(added) & set(input_columns))
    if clashes:
        raise StageError(f"the input already has column(s) {clashes}, which batch scoring writes")
    return [*input_columns, *added]


def require_features(columns: Sequence[str], schema: InputSchema, path: Path) -> None:
    missing = [name for name in schema.order if name not in columns]
    if missing:
        raise StageError(
            f"{path}: missing feature column(s) {missing}; the model reads {schema.order}"
        )


def csv_value(text: str, is_number: bool) -> Any:
    """A CSV cell as the model's JSON would carry it; text a number column cannot parse stays text,
    so validation rejects its row naming the value."""
    if text.strip() in MISSING_MARKERS:
        return None
    if not is_number:
        return text
    try:
        return float(text)
    except ValueError:
        return text


@dataclass
class Source:
    columns: list[str]
    chunks: Iterator[Chunk]
    arrow_schema: Any = None  # a Parquet input's column types, kept for a Parquet output


def read_csv(path: Path, schema: InputSchema, chunk_rows: int) -> Source:
    file = path.open(newline="", encoding="utf-8")
    reader = csv.reader(file)
    header = next(reader, None)
    if header is None:
        file.close()
        raise StageError(f"{path}: empty file; expected a header row naming the columns")
    require_features(header, schema, path)
    numeric = {spec.name for spec in schema.fields if spec.is_number}
    kinds = [name in numeric for name in header]

    def chunks() -> Iterator[Chunk]:
        with file:
            rows: list[dict[str, Any]] = []
            broken: dict[int, str] = {}
            first = 1
            for number, cells in enumerate(reader, start=1):
                if len(cells) != len(header):
                    broken[len(rows)] = f"has {len(cells)} cell(s); the header has {len(header)}"
                    cells = (cells + [""] * len(header))[: len(header)]
                rows.append(
                    {
                        name: csv_value(cell, kind)
                        for name, cell, kind in zip(header, cells, kinds, strict=True)
                    }
                )
                if len(rows) == chunk_rows:
                    yield Chunk(first, rows, broken)
                    first, rows, broken = number + 1, [], {}
            if rows:
                yield Chunk(first, rows, broken)

    return Source(header, chunks())


def pyarrow_modules(path: Path) -> tuple[Any, Any]:
    """``pyarrow`` and ``pyarrow.parquet``, imported only for a Parquet file: pyarrow is not in
    the serve extra (nor in the image), so without it the error says what to do."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise StageError(
            f"{path}: Parquet needs pyarrow, which this environment lacks "
            "(install the project's pipeline extra, or use .csv / .jsonl)"
        ) from None
    return pyarrow, pyarrow.parquet


def read_parquet(path: Path, schema: InputSchema, chunk_rows: int) -> Source:
    _, parquet = pyarrow_modules(path)
    try:
        source = parquet.ParquetFile(path)
    except Exception as error:  # pyarrow raises several types for an unreadable file
        raise StageError(f"{path}: not a readable Parquet file ({error})") from None
    header = list(source.schema_arrow.names)
    require_features(header, schema, path)

    def chunks() -> Iterator[Chunk]:
        first = 1
        for batch in source.iter_batches(batch_size=chunk_rows):
            rows = batch.to_pylist()
            yield Chunk(first, rows)
            first += len(rows)

    return Source(header, chunks(), source.schema_arrow)


def model_value(value: Any, spec: FieldSpec) -> Any:
    """A Parquet boolean is a number to the model, as the pipeline trained it."""
    if spec.is_number and type(value) is bool:
        return float(value)
    return value


def score_chunk(chunk: Chunk, scorer: Scorer, schema: InputSchema) -> ScoredChunk:
    """Validate the chunk's rows, set the invalid ones aside with their reasons, score the rest."""
    records = [
        {spec.name: model_value(row[spec.name], spec) for spec in schema.fields}
        for row in chunk.rows
    ]
    reasons = _invalid_rows(records, schema)
    for index, reason in chunk.broken.items():
        reasons[index] = [{"field": None, "message": reason}]
    kept = [index for index in range(len(records)) if index not in reasons]
    result = ScoredChunk(
        rejected=[
            {"row": chunk.first_row + index, "reasons": reasons[index], "values": chunk.rows[index]}
            for index in sorted(reasons)
        ]
    )
    if not kept:
        return result
    batch = check(Records([records[index] for index in kept]), schema)
    prediction = scorer.predict(batch.feed)
    for position, index in enumerate(kept):
        row = dict(chunk.rows[index])
        if scorer.regression:
            row[PREDICTION_COLUMN] = prediction.values[position]
        else:
            row[PREDICTION_COLUMN] = prediction.labels[position]
            for name, probability in zip(
                scorer.classes, prediction.probabilities[position], strict=True
            ):
                row[f"probability_{name}"] = probability
        warnings = batch.warnings.get(position, [])
        row[WARNINGS_COLUMN] = "; ".join(f"{w['field']}: {w['message']}" for w in warnings)
        result.scored.append(row)
    return result


def _invalid_rows(
    records: list[dict[str, Any]], schema: InputSchema
) -> dict[int, list[dict[str, Any]]]:
    try:
        check(Records(records), schema)
    except InputError as error:
        reasons: dict[int, list[dict[str, Any]]] = {}
        for issue in error.issues:
            reasons.setdefault(issue["index"] or 0, []).append(
                {"field": issue["field"], "message": issue["message"]}
            )
        return reasons
    return {}


class CsvWriter:
    def __init__(self, path: Path, columns: list[str]) -> None:
        self.file = path.open("w", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.file, columns)
        self.writer.writeheader()

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.writer.writerows(rows)

    def close(self) -> None:
        self.file.close()


class JsonLinesWriter:
    def __init__(self, path: Path) -> None:
        self.file = path.open("wb")

    def write(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.file.write(orjson.dumps(row, default=str, option=orjson.OPT_APPEND_NEWLINE))

    def close(self) -> None:
        self.file.close()


class ParquetWriter:
    """Writes each chunk as a row group, with column types fixed up front so every chunk agrees."""

    def __init__(self, path: Path, schema: Any) -> None:
        arrow, parquet = pyarrow_modules(path)
        self.schema = schema
        self.table_from = arrow.Table.from_pylist
        self.writer = parquet.ParquetWriter(path, schema)

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.writer.write_table(self.table_from(rows, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


def parquet_schema(source: Source, schema: InputSchema, scorer: Scorer, path: Path) -> Any:
    """The input's own column types (for a CSV input: features per the signature, the rest text),
    then the prediction (text or a number), a classifier's probability per class, the warnings."""
    arrow, _ = pyarrow_modules(path)

    if source.arrow_schema is not None:
        fields = list(source.arrow_schema)
    else:
        numbers = {spec.name for spec in schema.fields if spec.is_number}
        fields = [
            arrow.field(n, arrow.float64() if n in numbers else arrow.string())
            for n in source.columns
        ]
    for name in added_columns(scorer):
        number = name != WARNINGS_COLUMN and (scorer.regression or name != PREDICTION_COLUMN)
        fields.append(arrow.field(name, arrow.float64() if number else arrow.string()))
    return arrow.schema(fields)


def open_writer(path: Path, source: Source, schema: InputSchema, scorer: Scorer) -> RowWriter:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return CsvWriter(path, output_columns(source.columns, scorer))
    if suffix == ".jsonl":
        return JsonLinesWriter(path)
    if suffix == ".parquet":
        return ParquetWriter(path, parquet_schema(source, schema, scorer, path))
    raise StageError(f"{path}: unknown output format '{suffix}'; use .csv, .jsonl or .parquet")


def score_file(
    source: Path, output: Path, rejected: Path, scorer: Scorer, schema: InputSchema, chunk_rows: int
) -> Summary:
    """Score ``source`` in chunks; ``output`` and ``rejected`` appear complete or not at all."""
    if source.suffix.lower() == ".parquet":
        reader = read_parquet(source, schema, chunk_rows)
    elif source.suffix.lower() == ".csv":
        reader = read_csv(source, schema, chunk_rows)
    else:
        raise StageError(f"{source}: unknown input format '{source.suffix}'; use .csv or .parquet")
    output_columns(reader.columns, scorer)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".scoring-") as scratch:
        partial_output = Path(scratch) / f"output{output.suffix}"
        partial_rejected = Path(scratch) / "rejected.jsonl"
        writer = open_writer(partial_output, reader, schema, scorer)
        rejects = JsonLinesWriter(partial_rejected)
        summary = Summary()
        try:
            for chunk in reader.chunks:
                result = score_chunk(chunk, scorer, schema)
                writer.write(result.scored)
                rejects.write(result.rejected)
                summary.scored += len(result.scored)
                summary.rejected += len(result.rejected)
        finally:
            writer.close()
            rejects.close()
        partial_output.replace(output)
        if summary.rejected:
            partial_rejected.replace(rejected)
        else:
            rejected.unlink(missing_ok=True)
    return summary


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Score a CSV or Parquet file with the packaged model, in chunks."
    )
    parser.add_argument("--input", type=Path, required=True, help="a .csv or .parquet file")
    parser.add_argument(
        "--output", type=Path, required=True, help="a .csv, .jsonl or .parquet file"
    )
    parser.add_argument("--model-dir", type=Path, default=Path("models/package"))
    parser.add_argument(
        "--rejected", type=Path, help="rows that fail validation (default: <output>.rejected.jsonl)"
    )
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS)
    parser.add_argument("--unknown-category", choices=["score", "reject"], default="score")
    parser.add_argument("--out-of-range", choices=["flag", "reject", "ignore"], default="flag")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    arguments = parser.parse_args(argv)
    if arguments.chunk_rows < 1 or arguments.threads < 1:
        parser.error("--chunk-rows and --threads must be at least 1")
    return arguments


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    try:
        scorer = load_scorer(arguments.model_dir, arguments.threads)
    except ArtifactError as error:
        raise StageError(f"refusing to score: {error}") from None
    schema = input_schema(scorer.signature, arguments.unknown_category, arguments.out_of_range)
    rejected = arguments.rejected or arguments.output.with_name(
        arguments.output.name + ".rejected.jsonl"
    )
    if not arguments.input.is_file():
        raise StageError(f"{arguments.input}: file not found")
    summary = score_file(
        arguments.input, arguments.output, rejected, scorer, schema, arguments.chunk_rows
    )
    print(
        f"scored {summary.scored} row(s) of {arguments.input} into {arguments.output}",
        file=sys.stderr,
    )
    if summary.rejected:
        print(
            f"rejected {summary.rejected} row(s), with the reasons, into {rejected}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    sys.exit(run(main))
