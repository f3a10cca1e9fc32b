import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from mlops.stage import StageError, atomic_write_bytes, read_json, run, write_json


def test_atomic_write_gives_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "out" / "file.bin", b"data")
    finally:
        os.umask(previous)
    path = tmp_path / "out" / "file.bin"
    assert path.read_bytes() == b"data"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_json(path, {"version": 1})
    with pytest.raises(TypeError):
        write_json(path, {"unserialisable": object()})
    assert json.loads(path.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_numpy_values_are_written_as_plain_json(tmp_path: Path) -> None:
    write_json(tmp_path / "m.json", {"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(2)})
    assert read_json(tmp_path / "m.json") == {"n": 3, "x": 0.5, "a": [0, 1]}


def test_read_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(StageError, match=r"bad\.json: not valid JSON"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(StageError, match=r"missing\.json: file not found"):
        read_json(tmp_path / "missing.json")


def test_run_turns_a_stage_error_into_one_line_and_exit_code_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def failing(argv: object) -> None:
        raise StageError("data/raw.parquet: column 'x' is missing")

    assert run(failing, []) == 1
    assert capsys.readouterr().err == "error: data/raw.parquet: column 'x' is missing\n"
    assert run(lambda argv: None, []) == 0
