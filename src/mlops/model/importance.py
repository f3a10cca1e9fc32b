"""Permutation importance: how much the task's primary metric worsens when one feature column is
shuffled, over the original feature columns (before one-hot encoding), on the validation split.

It scores the model ``permutation_repeats`` times per feature, so on a large validation set it
runs on a seeded random sample of at most ``max_importance_rows`` rows: its error shrinks as one
over the square root of the rows, and past a few ten thousand rows more rows cost time, not
precision (its spread over the repeats is reported next to it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance

from mlops.model.features import TrainedModel
from mlops.params import EvaluateParams
from mlops.progress import step
from mlops.stage import StageError
from mlops.task import PrimaryMetric


def permutation_importances(
    model: TrainedModel,
    features: pd.DataFrame,
    actual: pd.Series,
    params: EvaluateParams,
    primary: PrimaryMetric,
) -> pd.DataFrame:
    """How much the task's primary metric worsens when one original feature column is shuffled
    (macro F1 or ROC AUC drops, RMSE rises), most important first."""
    if params.permutation_repeats < 1:
        raise StageError(
            f"evaluate.permutation_repeats: must be at least 1, got {params.permutation_repeats}"
        )
    rows = importance_rows(len(actual), params.max_importance_rows, params.seed)
    scoring = primary.scoring
    if scoring == "roc_auc" and actual.iloc[rows].nunique() < 2:
        scoring = "accuracy"  # ROC AUC needs both classes among the rows
    with step(
        f"evaluate: permutation importance ({len(rows):,} of {len(actual):,} rows)", len(rows)
    ):
        result = permutation_importance(
            model.pipeline,
            features.iloc[rows],
            actual.iloc[rows],
            scoring=scoring,
            n_repeats=params.permutation_repeats,
            random_state=params.seed,
        )
    table = pd.DataFrame(
        {
            "feature": list(features.columns),
            "importance": result.importances_mean,
            "std": result.importances_std,
        }
    )
    return table.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)


def importance_rows(total: int, max_rows: int, seed: int) -> np.ndarray:
    """Positions of the rows permutation importance scores: all, or a seeded random sample of
    ``max_rows`` in table order."""
    if max_rows < 1:
        raise StageError(f"evaluate.max_importance_rows: must be at least 1, got {max_rows}")
    if total <= max_rows:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=max_rows, replace=False))
