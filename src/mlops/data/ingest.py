"""Stage ``ingest``: read ``data.source`` into one table and write it as ``data/raw.parquet``.

A source is a local file, a directory (its files, in name order), a glob, an ``http(s)://`` URL
or an ``s3://`` URI (anything fsspec opens), or a SQLAlchemy database URL read with
``data.query``. Credentials and endpoints come from the environment (``AWS_*`` for S3, the URL
for a database); nothing secret belongs in params.yaml.

With ``--harvest``, the rows the harvest stage wrote (labelled inference data,
``mlops.data.harvest``) follow the source's rows, in its columns and types.

Every way a source can be unusable ends in a ``StageError`` naming the source and the problem.
The engine ``spark.enabled`` picks reads it (``mlops.data.engines``): pandas reads every kind of
source above, Spark reads files (paths, directories, globs, ``hdfs://``, ``s3a://``, ...).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from mlops.data.engines import open_engine
from mlops.params import DataParams, SparkParams, load_optional_section, load_section
from mlops.stage import parser, run


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--out", type=Path, required=True, help="raw table (Parquet)")
    arguments.add_argument("--harvest", type=Path, help="harvested rows to append (Parquet)")
    args = arguments.parse_args(argv)
    params = load_section(args.params, "data", DataParams)
    with open_engine(load_optional_section(args.params, "spark", SparkParams)) as engine:
        rows, columns = engine.ingest(params, args.out, args.harvest)
    source = params.source + (f" and {args.harvest}" if args.harvest else "")
    print(f"ingest: {rows} rows x {columns} columns from {source}")


if __name__ == "__main__":
    sys.exit(run(main))
