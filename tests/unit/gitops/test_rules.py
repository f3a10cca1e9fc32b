"""The pure rules of mlops.gitops: versions, the registration plan, release naming, outputs."""

from datetime import UTC, datetime
from typing import Any

import pytest

from conftest import PROJECT_ROOT
from mlops.core.errors import StageError
from mlops.gitops.outputs import github_outputs
from mlops.gitops.release import (
    Roles,
    check_registered_model,
    companion_image,
    deployment_roles,
    release_info,
    release_version,
    should_deploy,
    tag_model_name,
)
from mlops.gitops.rollout import State
from mlops.gitops.versions import (
    RegisteredVersion,
    next_version,
    recorded_sha256,
    registration_plan,
    signature_changed,
    tag_message,
)

SHA = "a" * 64
OTHER_SHA = "b" * 64


def manifest(sha256: str = SHA) -> dict[str, Any]:
    return {
        "model_name": "penguins",
        "model_version": "20261121-0123abcd",
        "files": {"model.onnx": sha256, "signature.json": "c" * 64},
    }


def signature(**changes: Any) -> dict[str, Any]:
    base = {
        "model_name": "penguins",
        "target": "species",
        "features": [
            {"name": "island", "type": "string", "categories": ["Biscoe", "Dream"]},
            {"name": "bill_length_mm", "type": "number", "min": 30.0, "max": 60.0},
        ],
        "classes": ["Adelie", "Gentoo"],
    }
    return {**base, **changes}


def test_versions_start_at_one_and_bump_minor_or_major() -> None:
    assert next_version(None, breaking=False) == "v1.0.0"
    assert next_version("v1.4.2", breaking=False) == "v1.5.0"
    assert next_version("v1.4.2", breaking=True) == "v2.0.0"


def test_a_malformed_version_is_refused() -> None:
    with pytest.raises(StageError, match=r"vMAJOR\.MINOR\.PATCH"):
        next_version("1.4", breaking=False)


def test_new_categories_do_not_break_clients_but_a_new_feature_or_class_does() -> None:
    wider = signature(
        features=[
            {"name": "island", "type": "string", "categories": ["Biscoe", "Dream", "Torgersen"]},
            {"name": "bill_length_mm", "type": "number", "min": 20.0, "max": 70.0},
        ]
    )
    assert not signature_changed(wider, signature())
    assert signature_changed(signature(classes=["Adelie", "Chinstrap", "Gentoo"]), signature())
    assert signature_changed(signature(features=signature()["features"][:1]), signature())
    assert signature_changed(signature(target="sex"), signature())


def test_the_tag_message_records_the_model_hash() -> None:
    message = tag_message("penguins", "v1.0.0", SHA)
    assert recorded_sha256(message) == SHA
    assert recorded_sha256("Registering artifact penguins version v1.0.0") is None


def test_an_accepted_model_is_registered_as_the_next_version() -> None:
    latest = RegisteredVersion("v1.2.0", "f" * 40, tag_message("penguins", "v1.2.0", OTHER_SHA))
    plan = registration_plan({"passed": True}, manifest(), latest, breaking=False)
    assert (plan.register, plan.version, plan.model_sha256) == (True, "v1.3.0", SHA)
    first = registration_plan({"passed": True}, manifest(), None, breaking=False)
    assert (first.register, first.version) == (True, "v1.0.0")


def test_nothing_is_registered_when_rejected_missing_or_unchanged() -> None:
    assert not registration_plan({"passed": False}, manifest(), None, False).register
    assert not registration_plan(None, manifest(), None, False).register
    assert not registration_plan({"passed": True}, None, None, False).register
    latest = RegisteredVersion("v1.2.0", "f" * 40, tag_message("penguins", "v1.2.0", SHA))
    unchanged = registration_plan({"passed": True}, manifest(), latest, breaking=False)
    assert not unchanged.register
    assert "unchanged since v1.2.0" in unchanged.reason


def test_a_release_is_named_by_its_tag() -> None:
    def no_stage(tag: str) -> str:
        raise AssertionError(tag)

    assert release_version("penguins@v1.2.0", "tag", no_stage) == ("v1.2.0", "")
    assert release_version("penguins#prod#3", "tag", lambda tag: "v1.1.0") == ("v1.1.0", "prod")
    assert release_version("main", "branch", no_stage) == (None, "")
    with pytest.raises(StageError, match="neither a version"):
        release_version("v1.2.0", "tag", no_stage)


def test_release_info_labels_the_image_with_commit_version_and_model_hash() -> None:
    """The build arguments are the ones the Dockerfile turns into OCI labels."""
    created = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
    info = release_info(
        manifest(), "v1.2.0", "prod", "ghcr.io/Owner/Repo", "0123456789abcdef" * 2, "src", created
    )
    assert info["image"] == "ghcr.io/owner/repo"
    assert info["image-tag"] == "ghcr.io/owner/repo:penguins-v1.2.0"
    assert info["tags"].splitlines()[1:] == [
        "ghcr.io/owner/repo:sha-0123456789ab",
        "ghcr.io/owner/repo:penguins-prod",
    ]
    build_args = dict(line.split("=", 1) for line in info["build-args"].splitlines())
    assert build_args == {
        "SOURCE": "src",
        "REVISION": "0123456789abcdef" * 2,
        "VERSION": "v1.2.0",
        "CREATED": "2026-11-21T06:00:00Z",
        "MODEL_NAME": "penguins",
        "MODEL_VERSION": "20261121-0123abcd",
        "MODEL_SHA256": SHA,
    }
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    for name in build_args:
        assert f"ARG {name}" in dockerfile, name
    unregistered = release_info(manifest(), None, "", "ghcr.io/o/r", "0" * 40, "src", created)
    assert unregistered["version"] == "20261121-0123abcd"


def test_a_release_ships_only_the_model_its_version_tag_registered() -> None:
    registered = tag_message("penguins", "v1.2.0", SHA)
    assert check_registered_model(manifest(), "penguins", "v1.2.0", registered) == (
        f"model.onnx sha256 {SHA} is the one 'penguins@v1.2.0' registered"
    )
    with pytest.raises(StageError, match=rf"sha256 {OTHER_SHA}\) is not the model 'penguins@v1"):
        check_registered_model(manifest(OTHER_SHA), "penguins", "v1.2.0", registered)
    with pytest.raises(StageError, match=r"'penguins@v1\.2\.0' records no model\.onnx sha256"):
        check_registered_model(manifest(), "penguins", "v1.2.0", "registered by hand")
    with pytest.raises(StageError, match=r"version tag 'penguins@v1\.2\.0' not found"):
        check_registered_model(manifest(), "penguins", "v1.2.0", None)
    churn = tag_message("churn", "v1.2.0", SHA)
    with pytest.raises(
        StageError, match=r"version of model 'churn', but the packaged .* 'penguins'"
    ):
        check_registered_model(manifest(), "churn", "v1.2.0", churn)
    assert tag_model_name("penguins@v1.2.0") == tag_model_name("penguins#prod#3") == "penguins"
    assert tag_model_name("main") is None


def test_only_a_stage_of_production_or_a_request_deploys_and_only_with_a_cluster() -> None:
    for stage in ("prod", "canary", "shadow"):  # the champion, or a challenger beside it
        assert should_deploy(stage, requested=False, kubeconfig_set=True), stage
        assert not should_deploy(stage, requested=True, kubeconfig_set=False), stage
    assert should_deploy("", requested=True, kubeconfig_set=True)
    assert should_deploy("staging", requested=True, kubeconfig_set=True)
    assert not should_deploy("", requested=False, kubeconfig_set=True)
    assert not should_deploy("staging", requested=False, kubeconfig_set=True)


def state(champion: str | None, challenger: str | None = None, mode: str | None = None) -> State:
    return State(champion, f"penguins#prod#{champion}", challenger, mode, (), ())


def test_a_challengers_release_deploys_it_beside_the_champion() -> None:
    roles, why = deployment_roles("v1.1.0", "canary", state("v1.0.0", "v1.1.0", "canary"))
    assert roles == Roles("challenger", "v1.0.0", "v1.1.0", "canary")
    assert why == "production: the champion v1.0.0 with the canary challenger v1.1.0"
    shadow, _ = deployment_roles("v1.1.0", "shadow", state("v1.0.0", "v1.1.0", "shadow"))
    assert shadow == Roles("challenger", "v1.0.0", "v1.1.0", "shadow")


def test_a_champions_release_keeps_the_challenger_the_stages_hold() -> None:
    """Production serves what the stages say now: a new champion (by hand) keeps the running
    challenger beside it; a challenger promoted to prod has left its stage and serves alone."""
    beside, _ = deployment_roles("v1.2.0", "prod", state("v1.2.0", "v1.1.0", "shadow"))
    assert beside == Roles("champion", "v1.2.0", "v1.1.0", "shadow")
    promoted, why = deployment_roles("v1.1.0", "prod", state("v1.1.0"))
    assert promoted == Roles("champion", "v1.1.0") and why == "production: the champion v1.1.0"
    requested, _ = deployment_roles("v1.1.0", "", state("v1.0.0", "v1.1.0", "canary"))
    assert requested == Roles("champion", "v1.1.0")  # it cannot challenge itself


def test_the_release_of_a_challenger_tag_no_longer_in_force_deploys_nothing() -> None:
    """A canary tag released after its withdrawal (a re-run, a queued release) would put back a
    challenger the registry no longer has."""
    roles, why = deployment_roles("v1.1.0", "canary", state("v1.0.0"))
    assert roles is None
    assert why.startswith("v1.1.0 is no longer the canary challenger (the challenger now: none)")
    moved, why = deployment_roles("v1.1.0", "canary", state("v1.0.0", "v1.1.0", "shadow"))
    assert moved is None and "(the challenger now: v1.1.0 in shadow)" in why
    orphan, why = deployment_roles("v1.1.0", "canary", state(None, "v1.1.0", "canary"))
    assert orphan is None and why == "no version is in prod: a challenger needs a champion"


def test_the_other_roles_image_is_the_deployed_one_else_its_versions_release_tag() -> None:
    challenger = Roles("challenger", "v1.0.0", "v1.1.0", "canary")
    pinned = "ghcr.io/o/r@sha256:" + "d" * 64
    assert companion_image(challenger, pinned, "ghcr.io/O/R", "penguins") == pinned
    assert companion_image(challenger, None, "ghcr.io/O/R", "penguins") == (
        "ghcr.io/o/r:penguins-v1.0.0"
    )
    champion = Roles("champion", "v1.2.0", "v1.1.0", "shadow")
    assert companion_image(champion, None, "ghcr.io/o/r", "penguins") == (
        "ghcr.io/o/r:penguins-v1.1.0"
    )
    assert companion_image(Roles("champion", "v1.2.0"), None, "ghcr.io/o/r", "penguins") == ""


def test_multi_line_outputs_are_delimited_for_github() -> None:
    text = github_outputs({"version": "v1.0.0", "tags": "a\nb"})
    lines = text.splitlines()
    assert lines[0] == "version=v1.0.0"
    assert lines[1].startswith("tags<<EOF_") and lines[2:4] == ["a", "b"]
    assert lines[4] == lines[1].split("<<")[1]
