"""The review report of a pipeline run: what a pull request changes about the model and its data.

``python -m mlops.report`` (``make report``) reads the stage outputs of the workspace and, through
``git show``, those committed on a base revision (main), and writes markdown: the task and why,
the task's metrics with deltas, params diff, the acceptance verdict and champion comparison,
plots, slices, the columns that are not features, data profile and validation, ONNX parity and
resource profile. CI posts it on the pull request with CML.

``sources`` loads (files, git, DVC), ``compare`` computes (deltas, diffs, distribution shift),
``tasks`` knows what each task shows and whether two runs compare, ``sections`` renders; only
``sources`` and ``__main__`` touch the file system.
"""
