"""The decision threshold of a binary classifier: the one rule that turns probabilities into labels.

A binary model with a decision threshold ``t`` (``signature.threshold``) predicts its positive
class when the probability of that class is at least ``t``, and the other class otherwise. The
scorer, the batch scorer, the parity gate and the champion comparison all call
``apply_threshold``, so they can never disagree on a label. Numpy only: the scorer imports it.

The comparison is made in float32, the precision of the ONNX model's probabilities: scikit-learn's
float64 probability of a row and onnxruntime's float32 one then meet the threshold the same way
whenever they round to the same float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


class DecisionError(ValueError):
    """The threshold cannot be applied: not a binary model, or the positive class is not a class."""


def apply_threshold(
    probabilities: npt.ArrayLike,
    classes: Sequence[str],
    positive_class: str,
    threshold: float,
) -> npt.NDArray[np.str_]:
    """The label of each row of ``probabilities`` (``[n, 2]``, columns in ``classes`` order):
    ``positive_class`` where its probability is at least ``threshold``, else the other class."""
    if len(classes) != 2:
        raise DecisionError(
            f"a decision threshold needs exactly two classes, the model has {list(classes)}"
        )
    if positive_class not in classes:
        raise DecisionError(
            f"the positive class {positive_class!r} is not one of the classes {list(classes)}"
        )
    positive = list(classes).index(positive_class)
    negative_class = classes[1 - positive]
    column = np.asarray(probabilities)[:, positive].astype(np.float32)
    return np.where(column >= np.float32(threshold), positive_class, negative_class)
