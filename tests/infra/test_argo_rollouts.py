"""The Argo Rollouts variant (deploy/argo-rollouts): valid against the Argo Rollouts API, holding
together with the base, and an analysis whose queries measure the canary's pods only.

The schema check: Argo Rollouts' CRDs are generated from its Go API types; the npm package
@kubernetes-models/argo-rollouts is generated from the same types (its version pinned by
deploy/argo-rollouts/schema-check/package-lock.json, installed with ``npm ci`` once per lock
under .tools/). The Rollout and the AnalysisTemplate are written out as typed TypeScript and
compiled with ``tsc``, which refuses an unknown field (what ``kubectl apply``'s strict field
validation refuses) or a missing required one, and each is given to the model's ``validate()``,
which checks the values (types, enums, formats). The built-in kinds of the variant go through
``kubernetes-validate --strict`` as the base's do. The PromQL of the analysis runs in
``promtool test rules`` on series of a canary and a stable ReplicaSet, and its Argo conditions
are applied to the values it gives.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import PROJECT_ROOT, run
from infra.tools import load_yaml_documents, require_tool

VARIANT = PROJECT_ROOT / "deploy" / "argo-rollouts"
CHECK = VARIANT / "schema-check"
RULES = PROJECT_ROOT / "deploy" / "prometheus" / "rules.yml"
KUBERNETES_VERSION = "1.30.0"
CUSTOM_KINDS = {"Rollout": "rollout.yaml", "AnalysisTemplate": "analysistemplate.yaml"}
MODELS = "@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1"
CANARY, STABLE = "6d4f9b7c8", "5c8d7f6b4"


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    """``kubectl kustomize deploy/argo-rollouts``, by kind."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the variant cannot be rendered")
    result = run([kubectl, "kustomize", str(VARIANT)], PROJECT_ROOT, check=False)
    assert result.returncode == 0, result.stderr
    return {document["kind"]: document for document in yaml.safe_load_all(result.stdout)}


def custom_resources() -> dict[str, dict[str, Any]]:
    return {kind: load_yaml_documents(VARIANT / name)[0] for kind, name in CUSTOM_KINDS.items()}


# --- the Argo Rollouts API --------------------------------------------------------------------


@pytest.fixture(scope="module")
def checker() -> Path:
    """The pinned models and TypeScript, installed once per lock file; or skip."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node and npm are not installed (apt-get install nodejs npm)")
    lock = (CHECK / "package-lock.json").read_bytes()
    home = PROJECT_ROOT / ".tools" / f"argo-rollouts-schema-{hashlib.sha256(lock).hexdigest()[:12]}"
    if not (home / "node_modules" / ".bin" / "tsc").is_file():
        home.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json", "tsconfig.json"):
            shutil.copy(CHECK / name, home / name)
        installed = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=home,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if installed.returncode != 0:
            pytest.skip(f"npm ci could not install the models: {installed.stderr.strip()[-300:]}")
    return home


def check(home: Path, resources: dict[str, dict[str, Any]]) -> str:
    """Type-check and validate the resources; the tools' complaints, empty when they pass."""
    generated = home / "generated"
    generated.mkdir(exist_ok=True)
    typed = [f'import type {{ I{kind} }} from "{MODELS}/{kind}";' for kind in resources]
    typed += [
        f"export const {kind.lower()}: I{kind} = {json.dumps(r)};" for kind, r in resources.items()
    ]
    (generated / "resources.ts").write_text("\n".join(typed) + "\n")
    (generated / "resources.json").write_text(json.dumps(resources))
    runtime = [f'import {{ {kind} }} from "{MODELS}/{kind}";' for kind in resources]
    runtime += [
        'import { readFileSync } from "node:fs";',
        'const resources = JSON.parse(readFileSync(new URL("resources.json", import.meta.url)));',
        f"const models = {{ {', '.join(resources)} }};",
        "let failed = 0;",
        "for (const [kind, resource] of Object.entries(resources)) {",
        "  try { new models[kind](resource).validate(); }",
        "  catch (error) { failed = 1; console.log(`${kind}: ${error.message}`); }",
        "}",
        "process.exit(failed);",
    ]
    (generated / "validate.mjs").write_text("\n".join(runtime) + "\n")
    tsc = [str(home / "node_modules" / ".bin" / "tsc"), "-p", str(home)]
    typecheck = subprocess.run(tsc, capture_output=True, text=True, timeout=300, cwd=home)
    node = ["node", str(generated / "validate.mjs")]
    values = subprocess.run(node, capture_output=True, text=True, timeout=120, cwd=home)
    return "".join(
        result.stdout + result.stderr for result in (typecheck, values) if result.returncode != 0
    )


def test_the_rollout_and_the_analysis_follow_the_argo_rollouts_api(checker: Path) -> None:
    assert check(checker, custom_resources()) == ""


@pytest.mark.parametrize(
    ("kind", "before", "after", "complaint"),
    [
        ("Rollout", '"workloadRef"', '"workloadReference"', "workloadReference"),
        ("AnalysisTemplate", '"successCondition"', '"successCriteria"', "successCriteria"),
        ("Rollout", '"replicas": 2', '"replicas": "two"', "replicas"),
        ("AnalysisTemplate", '"interval": "1m"', '"interval": 60', "interval"),
        ("Rollout", '"setWeight": 25', '"setWeight": "25%"', "setWeight"),
    ],
)
def test_the_check_refuses_an_unknown_field_and_a_wrong_value(
    checker: Path, kind: str, before: str, after: str, complaint: str
) -> None:
    resources = custom_resources()
    text = json.dumps(resources[kind])
    assert before in text
    resources[kind] = json.loads(text.replace(before, after, 1))
    assert complaint in check(checker, resources)


def test_the_variants_built_in_objects_validate(
    rendered: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    built_in = [document for kind, document in rendered.items() if kind not in CUSTOM_KINDS]
    assert {document["kind"] for document in built_in} == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    output = tmp_path / "built-in.yaml"
    output.write_text(yaml.safe_dump_all(built_in))
    validator = require_tool("kubernetes-validate")
    result = run(
        [validator, "--strict", "-k", KUBERNETES_VERSION, str(output)], PROJECT_ROOT, False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- holding together ---------------------------------------------------------------------------


def test_the_rollout_runs_the_deployments_pods_and_the_autoscaler_scales_it(
    rendered: dict[str, dict[str, Any]],
) -> None:
    rollout, deployment = rendered["Rollout"], rendered["Deployment"]
    reference = rollout["spec"]["workloadRef"]
    assert (reference["kind"], reference["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert deployment["spec"]["replicas"] == 0  # a template holder: the Rollout runs the pods
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert rollout["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert rendered["Service"]["spec"]["selector"].items() <= pod_labels.items()
    budget = rendered["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    assert budget.items() <= pod_labels.items()
    target = rendered["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert target == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "name": rollout["metadata"]["name"],
    }


def test_the_analysis_gets_every_argument_it_needs(rendered: dict[str, dict[str, Any]]) -> None:
    canary = rendered["Rollout"]["spec"]["strategy"]["canary"]
    template = rendered["AnalysisTemplate"]
    assert [t["templateName"] for t in canary["analysis"]["templates"]] == [
        template["metadata"]["name"]
    ]
    given = {arg["name"]: arg for arg in canary["analysis"]["args"]}
    needed = {arg["name"] for arg in template["spec"]["args"] if "value" not in arg}
    assert needed <= set(given)
    assert given["canary-hash"]["valueFrom"] == {"podTemplateHashValue": "Latest"}
    used = set(re.findall(r"\{\{args\.([\w-]+)\}\}", json.dumps(template["spec"]["metrics"])))
    assert used == {arg["name"] for arg in template["spec"]["args"]}
    weights = [step["setWeight"] for step in canary["steps"] if "setWeight" in step]
    assert weights == sorted(weights) and weights[-1] < 100


# --- the analysis's queries and conditions -----------------------------------------------------


def metrics() -> dict[str, dict[str, Any]]:
    template = custom_resources()["AnalysisTemplate"]
    return {metric["name"]: metric for metric in template["spec"]["metrics"]}


def query(metric: dict[str, Any]) -> str:
    text = str(metric["provider"]["prometheus"]["query"])
    return text.replace("{{args.canary-hash}}", CANARY)


def outcome(metric: dict[str, Any], value: float) -> str:
    """What Argo Rollouts makes of a measurement: its failure condition first, then success;
    neither (both are set): inconclusive. The conditions' expr syntax, in Python."""

    def holds(condition: str) -> bool:
        python = (
            condition.replace("&&", " and ").replace("||", " or ").replace("!isNaN", "not isNaN")
        )
        return bool(eval(python, {"__builtins__": {}}, {"result": value, "isNaN": math.isnan}))

    if holds(metric["failureCondition"]):
        return "failed"
    return "successful" if holds(metric["successCondition"]) else "inconclusive"


def series(labels: str, values: str) -> dict[str, str]:
    return {"series": "{" + labels + "}", "values": values}


def counters(pod_hash: str, ok_per_minute: int, errors_per_minute: int) -> list[dict[str, str]]:
    base = f'rollouts_pod_template_hash="{pod_hash}",route="/predict",method="POST"'
    return [
        {
            "series": f'scorer_requests_total{{{base},status="200"}}',
            "values": f"0+{ok_per_minute}x20",
        },
        {
            "series": f'scorer_requests_total{{{base},status="500"}}',
            "values": f"0+{errors_per_minute}x20",
        },
        # health checks are no scoring requests: a flood of them changes nothing
        {
            "series": f'scorer_requests_total{{rollouts_pod_template_hash="{pod_hash}",'
            'route="/health/ready",method="GET",status="200"}',
            "values": "0+600x20",
        },
    ]


def latency(pod_hash: str, fast: int, slow: int) -> list[dict[str, str]]:
    """Requests per minute under 50 ms and between 0.25 and 0.5 s."""
    labels = f'rollouts_pod_template_hash="{pod_hash}",route="/predict"'
    buckets = {"0.05": fast, "0.25": fast, "0.5": fast + slow, "+Inf": fast + slow}
    return [
        {
            "series": f'scorer_request_duration_seconds_bucket{{{labels},le="{le}"}}',
            "values": f"0+{count}x20",
        }
        for le, count in buckets.items()
    ]


def gauge(name: str, pod_hash: str, value: int) -> dict[str, str]:
    return {"series": f'{name}{{rollouts_pod_template_hash="{pod_hash}"}}', "values": f"{value}x20"}


def evaluate(
    input_series: list[dict[str, str]], expected: dict[str, float], tmp_path: Path
) -> None:
    """promtool evaluates each metric's query at 10 minutes and compares with ``expected``."""
    promtool = require_tool("promtool")
    (tmp_path / "empty.yml").write_text("groups: []\n")
    tests = {
        "rule_files": ["empty.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series,
                "promql_expr_test": [
                    {
                        "expr": query(metrics()[name]),
                        "eval_time": "10m",
                        "exp_samples": [{"value": value}],
                    }
                    for name, value in expected.items()
                ],
            }
        ],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = run([promtool, "test", "rules", "test.yml"], tmp_path, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_failing_canary_fails_and_the_stable_pods_do_not_count(tmp_path: Path) -> None:
    failing = {"error-rate": 0.05, "latency-p99": 0.4975, "prediction-drift": 1, "performance": 1}
    input_series = [
        *counters(CANARY, ok_per_minute=57, errors_per_minute=3),
        *counters(STABLE, ok_per_minute=600, errors_per_minute=0),
        *latency(CANARY, fast=0, slow=60),
        *latency(STABLE, fast=600, slow=0),
        gauge("monitor_prediction_drifted", CANARY, 1),
        gauge("monitor_prediction_drifted", STABLE, 0),
        gauge("monitor_performance_degraded", CANARY, 1),
        gauge("monitor_performance_degraded", STABLE, 0),
    ]
    evaluate(input_series, failing, tmp_path)
    assert {name: outcome(metrics()[name], value) for name, value in failing.items()} == {
        name: "failed" for name in failing
    }


def test_a_healthy_canary_passes_although_the_stable_pods_fail(tmp_path: Path) -> None:
    healthy = {"error-rate": 0.0, "latency-p99": 0.0495, "prediction-drift": 0, "performance": 0}
    input_series = [
        *counters(CANARY, ok_per_minute=60, errors_per_minute=0),
        *counters(STABLE, ok_per_minute=50, errors_per_minute=50),
        *latency(CANARY, fast=60, slow=0),
        *latency(STABLE, fast=0, slow=600),
        gauge("monitor_prediction_drifted", CANARY, 0),
        gauge("monitor_prediction_drifted", STABLE, 1),
        gauge("monitor_performance_degraded", CANARY, 0),
        gauge("monitor_performance_degraded", STABLE, 1),
    ]
    evaluate(input_series, healthy, tmp_path)
    assert {name: outcome(metrics()[name], value) for name, value in healthy.items()} == {
        name: "successful" for name in healthy
    }


def test_no_data_is_inconclusive_never_a_pass() -> None:
    """No traffic yet, or the sidecars not scraped: scalar() gives NaN, which pauses."""
    for metric in metrics().values():
        assert outcome(metric, math.nan) == "inconclusive", metric["name"]
        assert metric["inconclusiveLimit"] >= 1 and metric["failureLimit"] >= 1


def test_the_thresholds_are_the_alert_rules(tmp_path: Path) -> None:
    """The canary is held to what pages someone in production (deploy/prometheus/rules.yml)."""
    alerts = {
        rule["alert"]: rule["expr"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    }

    def threshold(text: str) -> float:
        return float(re.findall(r">\s*([0-9.]+)\s*$", text.strip())[-1])

    assert threshold(metrics()["error-rate"]["failureCondition"]) == threshold(
        alerts["ScorerHighErrorRate"]
    )
    assert threshold(metrics()["latency-p99"]["failureCondition"]) == threshold(
        alerts["ScorerHighLatency"]
    )
