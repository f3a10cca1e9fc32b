"""Schemathesis against the scorer's own OpenAPI document: every operation fuzzed from the schema
the document gives it (valid and invalid requests), every answer checked against the document.

Checked: no 5xx; every status, content type, header and body documented and conforming; requests
the schema calls invalid rejected; bearer auth not ignored. Valid requests must be accepted
everywhere but V2 inference, whose cross-field rules JSON Schema cannot state (every input as many
values as the others, each feature once, ``shape[0]`` equal to the data's length): the document
says them in words, and there a schema-valid request may still get a 400 naming the input.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from package_fixtures import regression_package
from serve_fixtures import running_scorer

TOKEN = "fuzz-test-token-0123456789"
EXAMPLES = 40  # per operation and phase: about 2,000 requests, under a minute here
CONFIG = """
[checks]
enabled = true  # every check schemathesis has
# 413 is how the server rejects a body or batch over its limits
negative_data_rejection.expected-statuses = ["400", "401", "404", "405", "413", "415", "422"]

[[operations]]
include-path-regex = "/infer$"
checks.positive_data_acceptance.enabled = false

[parameters]  # the served model, so that fuzzing reaches past the 404 for another name
"path.model_name" = "{name}"
"path.model_version" = "{version}"
"""


def test_schemathesis_finds_no_5xx_and_no_answer_the_document_does_not_describe(
    tmp_path: Path,
) -> None:
    package = regression_package(tmp_path / "regression")  # user-style column names
    config = tmp_path / "schemathesis.toml"
    manifest = json.loads((package / "manifest.json").read_text())
    config.write_text(CONFIG.format(name=manifest["model_name"], version=manifest["model_version"]))
    settings = {"SCORER_API_TOKEN": TOKEN, "SCORER_MAX_RECORDS": "50"}
    with running_scorer(package, tmp_path / "scorer", **settings) as scorer:
        command = [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(config),
            "run",
            f"{scorer.url}/openapi.json",
            "--max-examples",
            str(EXAMPLES),
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--seed",
            "17",
            "--no-color",
        ]
        finished = subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False
        )
        output = finished.stdout + finished.stderr
        assert "Traceback" not in scorer.output()
    generated = re.search(r"(\d+) generated", output)
    print(output[-2500:])  # the run's summary, in the test's output (pytest -s)
    assert generated is not None and int(generated.group(1)) > 1000, output[-3000:]
    assert finished.returncode == 0, output[-6000:]
