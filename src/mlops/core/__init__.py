"""The core: what the production images and the training side share, written once.

The packaged model's files and their checks (``artifacts``), the decision threshold of a binary
classifier (``decision``), the drift statistics (``drift``), the user-fixable errors and the
one-line error shell of every command (``errors``), atomic file writes (``atomic``) and loopback
addresses (``network``). Standard library, NumPy and PyYAML only: the scorer and the sidecar
import nothing else of ``mlops`` (``make lint`` checks it; docs/architecture.md).
"""
