"""Serving a challenger beside the champion: which of them answers a request, and whether the two
packages can be served side by side at all.

In ``canary`` mode a request is answered by the challenger with the share
``SCORER_CANARY_PERCENT``: sticky per client-chosen key (``X-Rollout-Key``, gRPC metadata
``x-rollout-key``): the key's bucket, ``int(sha256(key)[:8], 16) % 10000``, is the same in every
worker and every replica, so one customer always sees one model; without a key, at random per
request. In ``shadow`` mode the champion answers every request (a copy goes to the challenger,
``mlops.serve.shadow``). A request naming a model version (V2) is answered by that version.

The challenger must answer the same questions as the champion: the same model name and task,
the same features (names, types and ONNX inputs), a classifier the same classes in the same
order; and it must be another version, or its log lines and metrics could not be told apart.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from mlops.core.artifacts import ArtifactError, Manifest, Signature

BUCKETS = 10_000  # a key's bucket: hundredths of a percent
RolloutMode = Literal["shadow", "canary"]


def bucket_of(key: str) -> int:
    """The key's bucket in ``range(BUCKETS)``: the first 32 bits of its SHA-256, modulo."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % BUCKETS


def canary_takes(
    key: str | None, percent: float, draw: Callable[[int], int] = random.randrange
) -> bool:
    """Whether the challenger answers a canary request: its key's bucket (a random one without
    a key) below ``percent`` hundredths of ``BUCKETS``."""
    bucket = draw(BUCKETS) if key is None else bucket_of(key)
    return bucket < percent * 100


def incompatibility(
    champion: tuple[Signature, Manifest], challenger: tuple[Signature, Manifest]
) -> str | None:
    """What keeps the challenger from being served beside the champion, in one phrase; None if
    nothing does."""
    (ours, our_manifest), (theirs, their_manifest) = champion, challenger
    if their_manifest["model_name"] != our_manifest["model_name"]:
        return (
            f"its model name is {their_manifest['model_name']!r}, the champion's "
            f"{our_manifest['model_name']!r}"
        )
    if theirs["task"] != ours["task"]:
        return f"its task is {theirs['task']}, the champion's {ours['task']}"
    features = feature_difference(ours, theirs)
    if features is not None:
        return features
    if theirs["classes"] != ours["classes"]:
        return f"its classes are {theirs['classes']}, the champion's {ours['classes']}"
    return None


def is_the_champion(champion: Manifest, challenger: Manifest) -> bool:
    """Whether the challenger is the champion's own version: nothing to compare, so it is not
    served (compose's default challenger is the working tree's package, which is the image's
    until a change is reproduced)."""
    return champion["model_version"] == challenger["model_version"]


def feature_difference(ours: Signature, theirs: Signature) -> str | None:
    """The first difference between the two signatures' features: names, types, ONNX inputs."""
    mine = {feature["name"]: feature for feature in ours["features"]}
    other = {feature["name"]: feature for feature in theirs["features"]}
    missing, extra = sorted(mine.keys() - other.keys()), sorted(other.keys() - mine.keys())
    if missing or extra:
        parts = [f"lacks the champion's feature(s) {missing}"] if missing else []
        parts += [f"has feature(s) {extra} the champion lacks"] if extra else []
        return "it " + " and ".join(parts)
    for name, feature in mine.items():
        challenger = other[name]
        if challenger["type"] != feature["type"]:
            return (
                f"its feature {name!r} is a {challenger['type']}, the champion's a "
                f"{feature['type']}"
            )
        if challenger["input_name"] != feature["input_name"]:
            return (
                f"its feature {name!r} is the ONNX input {challenger['input_name']!r}, the "
                f"champion's {feature['input_name']!r}"
            )
    return None


def require_compatible(
    champion: tuple[Signature, Manifest], challenger: tuple[Signature, Manifest], directory: Path
) -> None:
    """ArtifactError naming the difference when the challenger cannot be served beside the
    champion (``incompatibility``)."""
    problem = incompatibility(champion, challenger)
    if problem is not None:
        raise ArtifactError(
            f"SCORER_CHALLENGER_DIR={directory}: the challenger cannot be served beside the "
            f"champion: {problem}"
        )
