"""The sidecar's page as people see it: the real sidecar process, its page opened in a headless
Chromium (Debian's ``chromium``; scripts/install-test-deps.sh installs it), which must show per
feature the training and live distributions and the score over time, and the alert history.

The page is one self-contained document: the browser gets everything from the sidecar (no script,
no other host), and the charts are inline SVG, checked in the DOM the browser built and in the
pixels of its screenshot.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from monitor_fixtures import (
    FakeGitHub,
    Sidecar,
    prediction_lines,
    sidecar_for,
    wait_until,
    write_package,
)

AREA, TOWN, ROOMS = "Floor area (m²)", "Town / Stadt", "rooms [n]"
CLASSES = ["cheap", "dear"]
# The page's colours: training bars, live bars, live bars of a drifted feature.
REFERENCE_RGB, LIVE_RGB, DRIFTED_RGB = (0xC9, 0xCE, 0xD6), (0x3B, 0x6F, 0xD4), (0xD1, 0x45, 0x3B)
BROWSER_SECONDS = 60


def browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(
            "chromium is not installed (scripts/install-test-deps.sh: apt-get install chromium)"
        )
    return found


def flats(rows: int, seed: int) -> pd.DataFrame:
    generator = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            AREA: generator.normal(75.0, 20.0, rows).round(1),
            TOWN: generator.choice(["Köln", "Zürich", "Lyon"], rows, p=[0.5, 0.3, 0.2]),
            ROOMS: generator.integers(1, 6, rows).astype(float),
        }
    )
    frame.loc[generator.random(rows) < 0.05, ROOMS] = np.nan
    return frame


def labels(frame: pd.DataFrame) -> list[str]:
    return ["dear" if area > 80 else "cheap" for area in frame[AREA]]


@pytest.fixture
def sidecar(tmp_path: Path, github: FakeGitHub) -> Iterator[Sidecar]:
    train = flats(3000, seed=0)
    write_package(
        tmp_path / "package", train, {"accuracy": 0.9, "macro_f1": 0.9}, labels=labels(train)
    )
    logs = tmp_path / "logs"
    running = sidecar_for(
        logs,
        tmp_path / "package",
        logs / "predictions.jsonl",
        github,
        MONITOR_HISTORY_INTERVAL_SECONDS="0",
    )
    yield running
    running.kill()


def append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as file:
        file.write(data)


def chromium(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [browser(), "--headless=new", "--no-sandbox", "--disable-gpu"]
    command += ["--disable-dev-shm-usage", "--hide-scrollbars", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_SECONDS)


def svg_blocks(dom: str, kind: str) -> dict[str, str]:
    """The browser's ``<svg class="kind ...">`` elements by the name they are drawn for."""
    found = {}
    for match in re.finditer(
        rf'<svg class="{kind}[^"]*"[^>]*data-for="([^"]*)"[^>]*>(.*?)</svg>', dom, re.S
    ):
        found[match.group(1)] = match.group(0)
    return found


def pixels_near(image: Image.Image, colour: tuple[int, int, int]) -> int:
    data = np.asarray(image.convert("RGB"), dtype=np.int16)
    return int((np.abs(data - np.array(colour)).max(axis=2) <= 12).sum())


def test_the_page_shows_the_distributions_the_score_over_time_and_the_alerts(
    sidecar: Sidecar, tmp_path: Path
) -> None:
    log = Path(sidecar.environment["PREDICTION_LOG"])
    sidecar.start()
    calm = flats(300, seed=1)
    append(log, prediction_lines(calm.to_dict("records"), labels(calm), "calm"))
    wait_until(lambda: sidecar.records_read() == 300, 20, "300 records", sidecar)
    shifted = flats(300, seed=2)
    shifted[AREA] *= 1.4  # larger flats: the area alone drifts
    for part in range(3):  # three polls at least: three points of history while it drifts
        rows = shifted.iloc[part * 100 : (part + 1) * 100]
        append(log, prediction_lines(rows.to_dict("records"), labels(rows), f"big{part}"))
        wait_until(lambda n=part: sidecar.records_read() == 400 + 100 * n, 20, "records", sidecar)
    drift = sidecar.get("/drift").json()
    assert [name for name, f in drift["features"].items() if f["drifted"]] == [AREA], drift

    result = chromium("--virtual-time-budget=5000", "--dump-dom", f"{sidecar.url}/")
    dom = result.stdout
    assert "<svg" in dom, result.stderr[-2000:]
    distributions, histories = svg_blocks(dom, "distribution"), svg_blocks(dom, "history")

    # per feature and for the predictions: training and live shares, bar by bar
    assert set(distributions) == {AREA, TOWN, ROOMS, "predictions"}
    for name, block in distributions.items():
        bins = int(re.search(r'data-bins="(\d+)"', block).group(1))  # type: ignore[union-attr]
        assert block.count('class="bar-ref"') == block.count('class="bar-live"') == bins, name
        live = [
            float(share)
            for share in re.findall(r'class="bar-live"[^>]*data-share="([^"]+)"', block)
        ]
        assert sum(live) == pytest.approx(1.0, abs=1e-3), name
    assert distributions[TOWN].count("Köln") >= 1  # the categories, by name
    assert 'class="distribution drifted"' in distributions[AREA]
    assert "drifted" not in distributions[TOWN].split(">")[0]
    # the live area bars lie to the right of the training ones: more weight in the top bins
    area_live = [
        float(s)
        for s in re.findall(r'class="bar-live"[^>]*data-share="([^"]+)"', distributions[AREA])
    ]
    area_ref = [
        float(s)
        for s in re.findall(r'class="bar-ref"[^>]*data-share="([^"]+)"', distributions[AREA])
    ]
    assert sum(area_live[-3:]) > sum(area_ref[-3:]) + 0.1

    # the score over time, with the moments the area drifted marked
    assert set(histories) == {AREA, TOWN, ROOMS, "predictions"}
    for name, block in histories.items():
        assert int(re.search(r'data-points="(\d+)"', block).group(1)) >= 3, name  # type: ignore[union-attr]
        assert "<polyline" in block
    assert histories[AREA].count('class="flag"') >= 1
    assert histories[TOWN].count('class="flag"') == 0

    # the alert history names the feature and the check
    alerts = re.search(r'<table class="alerts">(.*?)</table>', dom, re.S)
    assert alerts is not None and "ongoing" in alerts.group(1)
    assert re.search(re.escape(AREA) + r" \([^)]*\bpsi\b", alerts.group(1))
    assert "the predictions" in alerts.group(1)  # the labels follow the area

    # and the browser drew them: bars in the three colours, in the screenshot
    screenshot = tmp_path / "page.png"
    shot = chromium(f"--screenshot={screenshot}", "--window-size=1400,2400", f"{sidecar.url}/")
    assert screenshot.is_file(), shot.stderr[-2000:]
    image = Image.open(screenshot)
    assert pixels_near(image, REFERENCE_RGB) > 2000
    assert pixels_near(image, LIVE_RGB) > 2000
    assert pixels_near(image, DRIFTED_RGB) > 300
    sidecar.stop()
