"""``python -m mlops.report``: write the review report of the workspace against a base revision.

The retrain workflow passes the sidecar's event payload in ``RETRAIN_PAYLOAD`` (JSON); the report
then says why it retrained.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mlops.params import project_model_name
from mlops.report.compare import distribution_shift, metric_intervals
from mlops.report.inputs import Outputs, ReportInputs
from mlops.report.plots import plot_images
from mlops.report.sections import build_report
from mlops.report.sources import (
    committed_reader,
    evaluate_images,
    load_outputs,
    read_optional_json,
    read_raw_table,
    resolve_commit,
    retrain_trigger,
    run_url,
    stale_stages,
    workspace_reader,
    write_plot_images,
)
from mlops.report.tasks import comparable
from mlops.stage import parser, run, write_text


def base_label(revision: str, commit: str | None) -> str:
    """How tables name the base: the revision as given, or a short hash for a full one."""
    if commit is not None and len(revision) >= 12 and commit.startswith(revision):
        return commit[:7]
    return revision


def load_inputs(
    root: Path, params: Path, base_rev: str, report_dir: Path, raw: Path, champion: Path
) -> ReportInputs:
    """Everything the report shows; its images are written to ``report_dir``/plots."""
    current = load_outputs(workspace_reader(root), str(params))
    base_commit = resolve_commit(root, base_rev)
    base_name = base_label(base_rev, base_commit)
    base = Outputs()
    if base_commit is not None:
        base = load_outputs(committed_reader(root, base_commit), str(params), f" on {base_name}")
    compared = base if comparable(current, base) else None
    images = plot_images(evaluate_images(root), current, compared, base_name)
    base_profile = base.get("profile")
    frame = read_raw_table(raw) if base_profile is not None else None
    return ReportInputs(
        model_name=project_model_name(params),
        current=current,
        base=base,
        base_name=base_name,
        base_commit=base_commit,
        stale=stale_stages(root),
        shift=distribution_shift(frame, base_profile) if frame is not None and base_profile else {},
        plots=write_plot_images(report_dir / "plots", images),
        champion=read_optional_json(champion),
        trigger=retrain_trigger(os.environ.get("RETRAIN_PAYLOAD")),
        intervals=None if compared is None else metric_intervals(current, base, base_name),
        images_url=run_url(os.environ),
    )


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser("Write the review report of this run against a base revision.")
    arguments.add_argument("--base-rev", default="main", help="revision to compare with")
    arguments.add_argument("--out", type=Path, required=True, help="the report, with images")
    arguments.add_argument("--summary", type=Path, help="the report without images")
    arguments.add_argument("--raw", type=Path, default=Path("data/raw.parquet"))
    arguments.add_argument("--champion", type=Path, default=Path("reports/pr/champion.json"))
    options = arguments.parse_args(argv)
    inputs = load_inputs(
        Path.cwd(),
        options.params,
        options.base_rev,
        options.out.parent,
        options.raw,
        options.champion,
    )
    write_text(options.out, build_report(inputs, images=True))
    if options.summary is not None:
        write_text(options.summary, build_report(inputs, images=False))
    print(f"report written to {options.out}")


if __name__ == "__main__":
    raise SystemExit(run(main))
