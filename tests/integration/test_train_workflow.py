"""train.yml run for real: its ``run:`` steps in order, in a clone of the project with an origin.

The GitOps loop of a fresh fork, as GitHub would drive it (``uses:`` steps skipped, ``gh`` and
``cml`` replaced by stubs that record their calls):

1. a pull request against a main that has no metrics yet: the first-run report, commented as
   text (its images in the run's artifact), or with its images published once opted in;
2. its merge to main: the outputs pushed to the DVC remote, the model registered as v1.0.0
   (a GTO tag pushed to origin) and the release workflow dispatched;
3. a second pull request that changes a param: the report shows deltas against main with their
   intervals, the plots over main's, the params diff and the champion (v1.0.0) fetched from the
   registry for the acceptance test;
4. a pull request whose model is rejected: the job fails, the report says why;
5. retrain.yml on the sidecar's ``repository_dispatch``: re-ingest, reproduce, the report headed
   by the sidecar's reasons as the pull request's description.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import PROJECT_ROOT, copy_project, run
from workflows import (
    JobResult,
    WorkflowRun,
    filters_match,
    load_workflow,
    runner_environment,
    use_project_venv,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
REPOSITORY = "owner/project"
GH_STUB = '#!/usr/bin/env bash\nprintf "%s GH_TOKEN=%s\\n" "$*" "${GH_TOKEN:+set}" >> "$GH_CALLS"\n'
CML_STUB = '#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> "$CML_CALLS"\n'
RUN_ID = "4242"


@dataclass
class Fork:
    root: Path
    origin: Path
    storage: Path  # the DVC remote DVC_REMOTE_URL names on main
    environment: dict[str, str]
    gh_calls: Path
    cml_calls: Path

    def git(self, *arguments: str) -> str:
        return run(["git", *arguments], self.root).stdout.strip()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")


@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory) -> Fork:
    """The template as a fresh fork: no results committed, an origin, the project's .venv."""
    base = tmp_path_factory.mktemp("gitops")
    root = copy_project(base / "project")
    use_project_venv(root, PROJECT_ROOT / ".venv")
    committed_results = [p for p in ("dvc.lock", "reports") if (root / p).exists()]
    if committed_results:
        run(["git", "rm", "-r", "-q", "--ignore-unmatch", *committed_results], root)
        run(["git", "commit", "-q", "-m", "fork without results"], root)
    origin = base / "origin.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], base)
    run(["git", "remote", "add", "origin", str(origin)], root)
    run(["git", "push", "-q", "origin", "main"], root)
    stubs = base / "bin"
    stubs.mkdir()
    for name, stub in (("gh", GH_STUB), ("cml", CML_STUB)):
        (stubs / name).write_text(stub)
        (stubs / name).chmod(0o755)
    gh_calls, cml_calls = base / "gh_calls.txt", base / "cml_calls.txt"
    environment = runner_environment([stubs]) | {
        "GH_CALLS": str(gh_calls),
        "CML_CALLS": str(cml_calls),
    }
    storage = base / "dvc-remote"
    storage.mkdir()
    return Fork(root, origin, storage, environment, gh_calls, cml_calls)


def pull_request(fork: Fork, number: int, base_sha: str) -> dict[str, Any]:
    head = fork.head()
    return {
        "event_name": "pull_request",
        "ref": f"refs/pull/{number}/merge",
        "ref_name": f"{number}/merge",
        "ref_type": "branch",
        "sha": head,
        "repository": REPOSITORY,
        "run_id": RUN_ID,
        "actor": "developer",
        "base_ref": "main",
        "head_ref": f"feature-{number}",
        "event": {
            "pull_request": {
                "number": number,
                "base": {"sha": base_sha, "ref": "main"},
                "head": {"sha": head, "repo": {"full_name": REPOSITORY}},
            }
        },
    }


def push_to_main(fork: Fork, before: str) -> dict[str, Any]:
    return {
        "event_name": "push",
        "ref": "refs/heads/main",
        "ref_name": "main",
        "ref_type": "branch",
        "sha": fork.head(),
        "repository": REPOSITORY,
        "actor": "developer",
        "event": {"before": before},
    }


def train_run(
    fork: Fork,
    github: dict[str, Any],
    secrets: dict[str, str],
    variables: dict[str, str] | None = None,
) -> WorkflowRun:
    return WorkflowRun(
        load_workflow("train.yml"),
        fork.root,
        github,
        fork.environment,
        secrets,
        variables=variables,
    )


def assert_succeeded(job: JobResult) -> None:
    for step in job.steps:
        assert step.returncode == 0, f"{step.command} failed:\n{step.output[-4000:]}"


def edit_params(root: Path, old: str, new: str) -> None:
    path = root / "params.yaml"
    text = path.read_text()
    assert re.search(old, text, flags=re.MULTILINE), old
    path.write_text(re.sub(old, new, text, count=1, flags=re.MULTILINE))


@dataclass
class PullRequestRun:
    workflow: WorkflowRun
    train: JobResult
    comment: JobResult
    report: str
    summary: str


def open_pull_request(fork: Fork, number: int, old: str, new: str) -> PullRequestRun:
    base_sha = fork.head()
    fork.git("checkout", "-q", "-b", f"feature-{number}")
    edit_params(fork.root, old, new)
    fork.git("commit", "-q", "-m", f"change {new.strip()}", "--", "params.yaml")
    workflow = train_run(fork, pull_request(fork, number, base_sha), secrets={})
    train = workflow.run_job("train")
    comment = workflow.run_job("comment")
    report = (fork.root / "reports" / "pr" / "report.md").read_text()
    return PullRequestRun(workflow, train, comment, report, workflow.summary.read_text())


@pytest.fixture(scope="module")
def first_pull_request(fork: Fork) -> PullRequestRun:
    return open_pull_request(fork, 1, r"^  permutation_repeats: 5", "  permutation_repeats: 3")


@dataclass
class MainRun:
    train: JobResult
    register: JobResult


@pytest.fixture(scope="module")
def merged_to_main(fork: Fork, first_pull_request: PullRequestRun) -> MainRun:
    """The author commits the results, the pull request merges, train.yml runs on main."""
    results = ["dvc.lock", "reports"]
    fork.git("add", *results)
    fork.git("commit", "-q", "-m", "results of make repro", "--", *results)
    before = fork.git("rev-parse", "main")
    fork.git("checkout", "-q", "main")
    fork.git("merge", "-q", "--ff-only", "feature-1")
    fork.git("push", "-q", "origin", "main")
    secrets = {"DVC_REMOTE_URL": str(fork.storage), "GITHUB_TOKEN": "ghs_token_of_the_run"}
    workflow = train_run(fork, push_to_main(fork, before), secrets)
    train = workflow.run_job("train")
    return MainRun(train, workflow.run_job("register"))


@pytest.fixture(scope="module")
def second_pull_request(fork: Fork, merged_to_main: MainRun) -> PullRequestRun:
    return open_pull_request(fork, 2, r"^  model: random_forest", "  model: linear")


def test_a_pull_request_runs_the_steps_in_order_and_skips_main_only_ones(
    first_pull_request: PullRequestRun,
) -> None:
    train = first_pull_request.train
    assert_succeeded(train)
    assert train.commands() == [
        "make dvc-pull",
        "make champion",
        "make repro",
        "make report",
        "make report-summary",
    ]
    assert "DVC_REMOTE_URL is not set: skipping dvc pull" in train.steps[0].output
    assert any("push outputs" in name for name in train.skipped)
    assert any(name.startswith("keep the report and its images") for name in train.skipped)


def test_the_comment_is_the_text_and_links_the_images_kept_in_the_runs_artifact(
    fork: Fork, first_pull_request: PullRequestRun
) -> None:
    """CML publishes a comment's local images to a public host unless told not to."""
    comment = first_pull_request.comment
    assert_succeeded(comment)
    assert comment.commands() == [
        'cml comment update --target=pr --publish=false --watermark-title="mlops train report" '
        "reports/pr/summary.md"
    ]
    assert comment.skipped[-1].startswith("post the report with its images published")
    calls = fork.cml_calls.read_text().splitlines()
    assert calls == [
        "comment update --target=pr --publish=false --watermark-title=mlops train report "
        "reports/pr/summary.md"
    ]
    posted = (fork.root / "reports/pr/summary.md").read_text()
    assert "![" not in posted and "Confusion matrix" in posted
    run_page = f"https://github.com/{REPOSITORY}/actions/runs/{RUN_ID}"
    assert f"[the CI run]({run_page})" in posted
    assert set(re.findall(r"https?://[^\s)]+", posted)) == {run_page}


def test_a_repository_that_opts_in_publishes_the_images_in_the_comment(
    fork: Fork, first_pull_request: PullRequestRun
) -> None:
    github = first_pull_request.workflow.github
    opted_in = train_run(fork, github, secrets={}, variables={"CML_PUBLISH_IMAGES": "true"})
    comment = opted_in.run_job("comment")
    assert_succeeded(comment)
    assert comment.commands() == [
        'cml comment update --target=pr --publish --watermark-title="mlops train report" '
        "reports/pr/report.md"
    ]
    assert (
        fork.cml_calls.read_text()
        .splitlines()[-1]
        .endswith("--publish --watermark-title=mlops train report reports/pr/report.md")
    )


def test_the_first_report_has_no_base_metrics_but_everything_else(
    fork: Fork, first_pull_request: PullRequestRun
) -> None:
    report = first_pull_request.report
    assert "## Model report: penguins" in report
    assert "✅ **Accepted**" in report
    assert "which has no metrics yet: this is the first run" in report
    assert "| `evaluate.permutation_repeats` | `5` | `3` |" in report
    assert "no version of penguins is registered yet" in report
    # no slices section: evaluate.slice_column is null by default (tests/unit/report/)
    for section in ("### Acceptance test", "### Data", "### Serving"):
        assert section in report, section
    assert "✅ ONNX parity on" in report and "✅ Validation against the schema passed" in report
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert {Path(link).name for link in links} >= {"confusion_matrix.png", "roc.png"}
    report_dir = fork.root / "reports" / "pr"
    for link in links:  # next to the report: the artifact holds them, CML finds them
        assert link.startswith("plots/") and (report_dir / link).is_file(), link
    assert "Over `" not in report  # nothing to draw over on a first run


def test_the_job_summary_gets_the_report_without_images(
    first_pull_request: PullRequestRun,
) -> None:
    summary = first_pull_request.summary
    assert "## Model report: penguins" in summary and "![" not in summary
    assert "Confusion matrix" in summary


def test_main_pushes_to_the_remote_and_registers_the_accepted_model(
    fork: Fork, merged_to_main: MainRun
) -> None:
    assert_succeeded(merged_to_main.train)
    assert merged_to_main.train.commands()[-2:] == ["make dvc-push", "make registration-plan"]
    assert merged_to_main.train.outputs["register"] == "true"
    assert merged_to_main.train.outputs["version"] == "v1.0.0"
    assert re.fullmatch(r"[0-9a-f]{64}", merged_to_main.train.outputs["model-sha256"])
    assert any((fork.storage / "files").rglob("*")), "dvc push wrote nothing"
    assert any((fork.storage / "runs").rglob("*")), "the run cache was not pushed"

    assert_succeeded(merged_to_main.register)
    assert merged_to_main.register.commands() == ["make register", "make release-dispatch"]
    tags = run(["git", "ls-remote", "--tags", str(fork.origin)], fork.root).stdout
    assert "refs/tags/penguins@v1.0.0" in tags
    release_filters = load_workflow("release.yml")["on"]["push"]["tags"]
    assert filters_match(release_filters, "penguins@v1.0.0")
    calls = fork.gh_calls.read_text().splitlines()
    assert calls == ["workflow run release.yml --ref penguins@v1.0.0 GH_TOKEN=set"]


def test_a_second_pull_request_shows_deltas_params_and_the_champion(
    second_pull_request: PullRequestRun,
) -> None:
    report = second_pull_request.report
    assert_succeeded(second_pull_request.train)
    assert "| `train.model` | `random_forest` | `linear` |" in report
    assert "this is the first run" not in report
    metrics = report.split("### Metrics")[1].split("### Params")[0]
    interval = r"[+-][\d.e-]+ to [+-][\d.e-]+"
    assert re.search(
        rf"\| `macro_f1` \| [\d.]+ \| [\d.]+ \| (🟢|🔴|⚪) [+-][\d.e-]+ \| {interval} \|", metrics
    )
    assert "paired: both runs evaluated the same rows" in metrics  # main committed its results
    plots = report.split("### Plots")[1].split("###")[0]
    base = second_pull_request.workflow.github["event"]["pull_request"]["base"]["sha"]
    assert f"Over `{base[:7]}`: its curves dashed" in plots
    assert "![Change of the confusion matrix](plots/confusion_change.png)" in plots
    for name in ("roc.png", "confusion_change.png", "importance.png"):
        image = second_pull_request.workflow.workspace / "reports/pr/plots" / name
        assert image.read_bytes().startswith(b"\x89PNG"), name
    assert "Champion: v1.0.0" in report and "fetched into models/champion" in report
    assert "champion v1.0.0" in report or "| metric (test set) | candidate | champion" in report
    verdict = json.loads(
        (second_pull_request.workflow.workspace / "reports/accept/verdict.json").read_text()
    )
    assert verdict["champion"]["model_version"]
    assert any(check["name"] == "champion_macro_f1" for check in verdict["checks"])


def test_a_rejected_model_still_gets_its_report_and_fails_the_job(
    fork: Fork, second_pull_request: PullRequestRun
) -> None:
    """Thresholds no model can meet: repro fails, yet report and summary are written."""
    base_sha = fork.head()
    fork.git("checkout", "-q", "-b", "feature-3")
    edit_params(fork.root, r"^  min_accuracy: null", "  min_accuracy: 1.01")
    fork.git("commit", "-q", "-m", "impossible threshold", "--", "params.yaml")
    workflow = train_run(fork, pull_request(fork, 3, base_sha), secrets={})
    train = workflow.run_job("train")
    assert train.failed
    assert [step.command for step in train.steps if step.returncode != 0] == ["make repro"]
    assert train.commands()[-2:] == ["make report", "make report-summary"]
    report = (fork.root / "reports" / "pr" / "report.md").read_text()
    assert "❌ **Rejected**: failed `accuracy`" in report
    assert "`package` did not complete in this run" in report
    assert "| `accuracy` |" in report and "| 1.01 | ❌ |" in report
    assert "❌" in workflow.summary.read_text()


def test_the_sidecars_retrain_event_reingests_and_prepares_the_pull_request(
    fork: Fork, second_pull_request: PullRequestRun
) -> None:
    fork.git("checkout", "-q", "-f", "main")
    payload = {
        "model_name": "penguins",
        "model_version": "20261121-fa753576",
        "reasons": ["drift"],
        "window_size": 1000,
        "drifted_features": {"body_mass_g": {"psi": 0.31, "reasons": ["psi"]}},
    }
    github = {
        "event_name": "repository_dispatch",
        "ref": "refs/heads/main",
        "ref_name": "main",
        "ref_type": "branch",
        "sha": fork.head(),
        "repository": REPOSITORY,
        "actor": "mlops-monitor",
        "event": {"action": "retrain", "client_payload": payload},
    }
    workflow = WorkflowRun(load_workflow("retrain.yml"), fork.root, github, fork.environment)
    job = workflow.run_job("retrain")
    assert_succeeded(job)
    assert job.commands() == [
        "make dvc-pull",
        "make champion",
        "make retrain",
        "make report",
        "make report-summary",
        "make dvc-push",
    ]
    assert "Running stage 'ingest'" in job.steps[2].output
    pull_request = workflow.workflow["jobs"]["retrain"]["steps"][-1]["with"]
    body = (fork.root / pull_request["body-path"]).read_text()
    assert "### Why this retrain" in body and "| body_mass_g | 0.31 | psi |" in body
    assert "Compared with `HEAD`" in body and "![" not in body
    assert f"[the CI run](https://github.com/{REPOSITORY}/actions/runs/" in body  # its artifact
    for path in pull_request["add-paths"].split():
        assert (fork.root / path).exists(), path
