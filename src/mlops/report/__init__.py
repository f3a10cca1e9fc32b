"""The review report of a pipeline run: what a pull request changes about the model and its data.

``python -m mlops.report`` (``make report``) reads the stage outputs of the workspace and, through
``git show``, those committed on a base revision (main), and writes markdown: the task and why,
the task's metrics with each change's 95% interval (a change within it shown as no change),
params diff, the acceptance verdict and champion comparison, the plots drawn over the base's,
slices, the columns that are not features, data profile and validation, ONNX parity and resource
profile. Its images go next to it (``reports/pr/plots/``); CI keeps the folder as the run's
artifact and comments the text with CML (the images published only when the repository opts in).

``sources`` loads (files, git, DVC), ``compare`` computes (deltas, diffs, distribution shift),
``intervals`` bootstraps the changes, ``plots`` and ``overlays`` draw this run over the base,
``tasks`` knows what each task shows and whether two runs compare, ``sections`` renders (the
header and the order; the sections in ``metrics_section``, ``model_sections``, ``data_section``
and ``serving_section``, what they share in ``shared``); only ``sources`` and ``__main__`` touch
the file system.
"""
