"""The failures a user can fix, and the shell that reports them as one line instead of a traceback.

Standard library only: the scorer, the sidecar and the smoke test import it without the training
side (``mlops.params``, ``mlops.stage``) and without anything installed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence


class StageError(Exception):
    """A user-fixable failure; the message names the file, column or key, and what was expected."""


class ParamsError(ValueError):
    """params.yaml is missing a key, has an unknown key, or holds a value of the wrong type."""


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> int:
    """Run a command's ``main``; a known failure prints one line instead of a traceback."""
    try:
        main(argv)
    except (StageError, ParamsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
