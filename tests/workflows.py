"""Read the GitHub workflows and run their jobs' ``run:`` steps locally, as a runner would.

The workflows keep every ``run:`` step a Make target or a repo script, so their logic runs here;
``uses:`` steps (GitHub's own actions) and whatever a test names are skipped. Conditions and
``${{ }}`` interpolations are evaluated with the subset of GitHub's expression language the
workflows use (contexts, literals, ``== != && || !``, parentheses and a few functions), with
GitHub's semantics: ``||`` and ``&&`` return an operand, string comparison ignores case, a
missing property is null.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

WORKFLOWS = Path(__file__).resolve().parents[1] / ".github" / "workflows"
STATUS_FUNCTIONS = ("success(", "failure(", "cancelled(", "always(")
TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>\d+(?:\.\d+)?)"
    r"|(?P<op>==|!=|&&|\|\||[!(),<>])|(?P<name>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_*][A-Za-z0-9_-]*)*))"
)


def load_workflow(name: str) -> dict[str, Any]:
    """A workflow as a mapping; YAML reads the key ``on`` as True, so it is renamed back."""
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return dict(workflow)


def all_workflows() -> dict[str, dict[str, Any]]:
    return {path.name: load_workflow(path.name) for path in sorted(WORKFLOWS.glob("*.yml"))}


# --- filter patterns ------------------------------------------------------------------------


def filter_regex(pattern: str) -> re.Pattern[str]:
    """GitHub's branch/tag filter pattern as a regex: ``*`` stops at ``/``, ``**`` does not,
    ``?`` and ``+`` repeat the preceding character, ``[...]`` is a character class."""
    out, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char in "?+":
            out.append(char)
        elif char == "[":
            end = pattern.index("]", index)
            out.append(pattern[index : end + 1])
            index = end
        else:
            out.append(re.escape(char))
        index += 1
    return re.compile("".join(out) + r"\Z")


def filters_match(patterns: list[str], name: str) -> bool:
    """Whether ``name`` passes a filter list (later ``!`` patterns exclude again)."""
    matched = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if filter_regex(pattern[1:]).match(name):
                matched = False
        elif filter_regex(pattern).match(name):
            matched = True
    return matched


# --- expressions ----------------------------------------------------------------------------


class Expression:
    def __init__(self, text: str, context: Mapping[str, Any], job_failed: bool = False) -> None:
        self.tokens = self._tokenize(text)
        self.position = 0
        self.context = context
        self.job_failed = job_failed

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str]]:
        tokens, index = [], 0
        while index < len(text):
            if text[index:].strip() == "":
                break
            match = TOKEN.match(text, index)
            if match is None or match.end() == index:
                raise ValueError(f"cannot parse expression {text!r} at {text[index:]!r}")
            kind = match.lastgroup or ""
            tokens.append((kind, match.group(kind)))
            index = match.end()
        return tokens

    def evaluate(self) -> Any:
        value = self._or()
        if self.position != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.position]} in expression")
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.tokens[self.position]
        if expected is not None and token[1] != expected:
            raise ValueError(f"expected {expected!r}, got {token[1]!r}")
        self.position += 1
        return token

    def _or(self) -> Any:
        value = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            value = value if truthy(value) else right
        return value

    def _and(self) -> Any:
        value = self._unary()
        while self._peek() == "&&":
            self._take()
            right = self._unary()
            value = right if truthy(value) else value
        return value

    def _unary(self) -> Any:
        if self._peek() == "!":
            self._take()
            return not truthy(self._unary())
        return self._comparison()

    def _comparison(self) -> Any:
        left = self._primary()
        if self._peek() in ("==", "!="):
            operator = self._take()[1]
            equal = loosely_equal(left, self._primary())
            return equal if operator == "==" else not equal
        return left

    def _primary(self) -> Any:
        kind, text = self._take()
        if text == "(":
            value = self._or()
            self._take(")")
            return value
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind == "number":
            return float(text)
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        if self._peek() == "(":
            return self._call(text)
        return lookup(self.context, text)

    def _call(self, name: str) -> Any:
        self._take("(")
        arguments = []
        while self._peek() != ")":
            arguments.append(self._or())
            if self._peek() == ",":
                self._take()
        self._take(")")
        functions: dict[str, Callable[..., Any]] = {
            "success": lambda: not self.job_failed,
            "failure": lambda: self.job_failed,
            "always": lambda: True,
            "cancelled": lambda: False,
            "toJSON": lambda value: json.dumps(value, indent=2),
            "contains": lambda haystack, needle: str(needle).lower() in str(haystack).lower(),
            "startsWith": lambda text, prefix: str(text).lower().startswith(str(prefix).lower()),
        }
        return functions[name](*arguments)


def truthy(value: Any) -> bool:
    return value not in (None, False, 0, 0.0, "")


def loosely_equal(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.lower() == right.lower()
    if type(left) is type(right):
        return bool(left == right)
    return _number(left) == _number(right)


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool | int | float):
        return float(value)
    try:
        return float(value) if str(value).strip() else 0.0
    except ValueError:
        return float("nan")


def lookup(context: Mapping[str, Any], path: str) -> Any:
    value: Any = context
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def evaluate(text: Any, context: Mapping[str, Any], job_failed: bool = False) -> Any:
    """An ``if:`` value: an expression, with or without ``${{ }}`` around it."""
    if isinstance(text, bool):
        return text
    stripped = str(text).strip()
    if stripped.startswith("${{") and stripped.endswith("}}"):
        stripped = stripped[3:-2]
    return Expression(stripped, context, job_failed).evaluate()


def condition_holds(text: Any, context: Mapping[str, Any], job_failed: bool) -> bool:
    if text is None:
        return not job_failed
    holds = truthy(evaluate(text, context, job_failed))
    if not any(function in str(text) for function in STATUS_FUNCTIONS):
        holds = holds and not job_failed  # GitHub adds success() && to a condition without one
    return holds


def interpolate(text: Any, context: Mapping[str, Any]) -> str:
    """A string with every ``${{ expression }}`` replaced by its value, as GitHub renders it."""

    def render(match: re.Match[str]) -> str:
        value = Expression(match.group(1), context).evaluate()
        if value is None:
            return ""
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return re.sub(r"\$\{\{(.*?)\}\}", render, str(text), flags=re.DOTALL)


# --- running jobs ---------------------------------------------------------------------------


@dataclass
class StepResult:
    name: str
    command: str
    returncode: int
    output: str


@dataclass
class JobResult:
    job: str
    ran: bool
    steps: list[StepResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    step_outputs: dict[str, dict[str, str]] = field(default_factory=dict)  # by step id

    @property
    def failed(self) -> bool:
        return any(step.returncode != 0 for step in self.steps)

    def commands(self) -> list[str]:
        return [step.command for step in self.steps]


def parse_output_file(text: str) -> dict[str, str]:
    """The ``key=value`` and ``key<<DELIMITER`` entries of a $GITHUB_OUTPUT file."""
    values: dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, index + 1)
            values[key] = "\n".join(lines[index + 1 : end])
            index = end + 1
            continue
        if "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
        index += 1
    return values


class WorkflowRun:
    """One run of a workflow for an event: jobs in the order asked, each job's steps in order."""

    def __init__(
        self,
        workflow: Mapping[str, Any],
        workspace: Path,
        github: Mapping[str, Any],
        environment: Mapping[str, str],
        secrets: Mapping[str, str] | None = None,
        inputs: Mapping[str, Any] | None = None,
        skip: Callable[[Mapping[str, Any]], bool] = lambda step: False,
        variables: Mapping[str, str] | None = None,
    ) -> None:
        self.workflow = workflow
        self.workspace = workspace
        self.github = dict(github)
        self.environment = dict(environment)
        self.secrets = dict(secrets or {})
        self.inputs = dict(inputs or {})
        self.variables = dict(variables or {})  # the repository's configuration variables
        self.skip = skip
        self.needs: dict[str, Any] = {}
        self.temp = workspace.parent / f"{workspace.name}-runner"
        self.temp.mkdir(exist_ok=True)
        self.summary = self.temp / "step_summary.md"
        self.summary.touch()

    def context(self, steps: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
        return {
            "github": {**self.github, "token": self.secrets.get("GITHUB_TOKEN", "")},
            "secrets": self.secrets,
            "inputs": self.inputs,
            "needs": self.needs,
            "steps": steps,
            "env": env,
            "vars": self.variables,
            "runner": {"os": "Linux", "temp": str(self.temp)},
        }

    def github_variables(self) -> dict[str, str]:
        github = self.github
        return {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": str(github["event_name"]),
            "GITHUB_REF": str(github["ref"]),
            "GITHUB_REF_NAME": str(github["ref_name"]),
            "GITHUB_REF_TYPE": str(github["ref_type"]),
            "GITHUB_SHA": str(github["sha"]),
            "GITHUB_REPOSITORY": str(github["repository"]),
            "GITHUB_RUN_ID": str(github.get("run_id") or "1"),
            "GITHUB_RUN_NUMBER": str(github.get("run_number") or "1"),
            "GITHUB_RUN_ATTEMPT": str(github.get("run_attempt") or "1"),
            "GITHUB_ACTOR": str(github.get("actor") or ""),
            "GITHUB_TRIGGERING_ACTOR": str(github.get("triggering_actor") or ""),
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_BASE_REF": str(github.get("base_ref") or ""),
            "GITHUB_HEAD_REF": str(github.get("head_ref") or ""),
            "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "RUNNER_TEMP": str(self.temp),
        }

    def run_job(self, job_id: str) -> JobResult:
        job = self.workflow["jobs"][job_id]
        base = self.context({}, {})
        result = JobResult(job_id, ran=condition_holds(job.get("if"), base, job_failed=False))
        if not result.ran:
            self.needs[job_id] = {"result": "skipped", "outputs": {}}
            return result
        env = {**self.environment, **self.github_variables()}
        for scope in (self.workflow.get("env", {}), job.get("env", {})):
            env.update({k: interpolate(v, self.context({}, env)) for k, v in scope.items()})
        steps: dict[str, Any] = {}
        for index, step in enumerate(job["steps"]):
            self._run_step(index, step, env, steps, result)
        context = self.context(steps, env)
        result.outputs = {k: interpolate(v, context) for k, v in job.get("outputs", {}).items()}
        outcome = "failure" if result.failed else "success"
        self.needs[job_id] = {"result": outcome, "outputs": result.outputs}
        return result

    def _run_step(
        self,
        index: int,
        step: Mapping[str, Any],
        env: dict[str, str],
        steps: dict[str, Any],
        result: JobResult,
    ) -> None:
        name = str(step.get("name") or step.get("uses") or step.get("run"))
        context = self.context(steps, env)
        if "uses" in step or self.skip(step):
            result.skipped.append(name)
            return
        if not condition_holds(step.get("if"), context, result.failed):
            result.skipped.append(name)
            return
        step_env = {**env, **{k: interpolate(v, context) for k, v in step.get("env", {}).items()}}
        output_file = self.temp / f"output-{result.job}-{index}"
        output_file.write_text("")
        step_env["GITHUB_OUTPUT"] = str(output_file)
        command = interpolate(step["run"], context)
        completed = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", command],
            cwd=self.workspace / step.get("working-directory", "."),
            env=step_env,
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )
        result.steps.append(
            StepResult(name, command, completed.returncode, completed.stdout + completed.stderr)
        )
        if "id" in step:
            outcome = "success" if completed.returncode == 0 else "failure"
            outputs = parse_output_file(output_file.read_text())
            steps[step["id"]] = {"outputs": outputs, "outcome": outcome, "conclusion": outcome}
            result.step_outputs[step["id"]] = outputs


def use_project_venv(root: Path, venv: Path) -> None:
    """Give a project copy the project's .venv, and make its lock look older than the venv's sync
    stamp, so the Make targets use the venv as it is instead of syncing it (over the network)."""
    (root / ".venv").symlink_to(venv)
    for name in ("pyproject.toml", "uv.lock"):
        os.utime(root / name, (0, 0))


def runner_environment(extra_path: list[Path]) -> dict[str, str]:
    """A clean environment like a runner's: PATH, HOME, locale; nothing of the test's own."""
    keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "UV_CACHE_DIR", "NODE_PATH")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env["PATH"] = os.pathsep.join([*map(str, extra_path), os.environ["PATH"]])
    return env
