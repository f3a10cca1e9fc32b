from pathlib import Path

import pytest

from mlops.core.network import is_loopback
from mlops.serve.settings import ServeSettings, SettingsError, describe, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SCORER_") or name in ("MODEL_DIR", "PREDICTION_LOG"):
            monkeypatch.delenv(name)


def test_defaults_serve_the_packaged_model_on_loopback() -> None:
    settings = load_settings()
    assert settings.model_dir == Path("models/package")
    assert settings.prediction_log == Path("logs/predictions.jsonl")
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.api_token is None
    assert (settings.unknown_category, settings.out_of_range) == ("score", "flag")


def test_every_setting_comes_from_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_DIR", "/models/current")
    monkeypatch.setenv("PREDICTION_LOG", "/var/log/scorer/predictions.jsonl")
    monkeypatch.setenv("SCORER_PORT", "9000")
    monkeypatch.setenv("SCORER_MAX_RECORDS", "50")
    monkeypatch.setenv("SCORER_UNKNOWN_CATEGORY", "reject")
    monkeypatch.setenv("SCORER_API_TOKEN", "s3cret-token-of-sixteen")
    settings = load_settings()
    assert settings.model_dir == Path("/models/current")
    assert settings.prediction_log == Path("/var/log/scorer/predictions.jsonl")
    assert (settings.port, settings.max_records, settings.unknown_category) == (9000, 50, "reject")
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "s3cret-token-of-sixteen"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "SCORER_PORT",
            "70000",
            "SCORER_PORT='70000': Input should be less than or equal to 65535",
        ),
        ("SCORER_PORT", "http", "SCORER_PORT='http'"),
        ("SCORER_MAX_RECORDS", "0", "SCORER_MAX_RECORDS='0'"),
        ("SCORER_MAX_BODY_BYTES", "10", "SCORER_MAX_BODY_BYTES='10'"),
        ("SCORER_OUT_OF_RANGE", "drop", "SCORER_OUT_OF_RANGE='drop'"),
        ("SCORER_LOG_BACKUPS", "0", "SCORER_LOG_BACKUPS='0'"),
        ("SCORER_HOST", "local host", "SCORER_HOST='local host'"),
        ("SCORER_ORT_THREADS", "0", "SCORER_ORT_THREADS='0'"),
        ("SCORER_WORKERS", "0", "SCORER_WORKERS='0'"),
    ],
)
def test_unsafe_values_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match="invalid settings") as caught:
        load_settings()
    assert message in str(caught.value)


def test_a_weak_token_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORER_API_TOKEN", "hunter2")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "at least 16 characters" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_an_empty_token_means_no_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORER_API_TOKEN", "")
    assert load_settings().api_token is None


def test_prediction_log_must_be_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PREDICTION_LOG", str(tmp_path))
    with pytest.raises(SettingsError, match=r"PREDICTION_LOG=.*is a directory"):
        load_settings()


def test_description_hides_the_token() -> None:
    text = describe(ServeSettings(api_token="a-very-secret-token-value"))
    assert "SCORER_API_TOKEN=set" in text and "a-very-secret" not in text


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("scorer", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_grpc_listens_on_a_port_of_its_own_or_not_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().grpc_port == 8081
    monkeypatch.setenv("SCORER_GRPC_PORT", "0")
    assert load_settings().grpc_port == 0
    monkeypatch.setenv("SCORER_GRPC_PORT", "8080")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "SCORER_GRPC_PORT=8080 is SCORER_PORT too" in str(caught.value)
    monkeypatch.setenv("SCORER_GRPC_PORT", "65536")
    with pytest.raises(SettingsError, match="SCORER_GRPC_PORT='65536'"):
        load_settings()


def test_extra_fields_are_refused_unless_told_to_ignore_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().extra_fields == "reject"
    monkeypatch.setenv("SCORER_EXTRA_FIELDS", "ignore")
    assert load_settings().extra_fields == "ignore"
    monkeypatch.setenv("SCORER_EXTRA_FIELDS", "keep")
    with pytest.raises(SettingsError, match="SCORER_EXTRA_FIELDS='keep'"):
        load_settings()


def test_the_champion_is_served_alone_unless_a_challenger_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings()
    assert settings.challenger_dir is None
    assert (settings.challenger_mode, settings.canary_percent) == ("shadow", 10.0)
    assert settings.shadow_queue == 64
    monkeypatch.setenv("SCORER_CHALLENGER_DIR", "")  # empty: unset, as compose leaves it
    assert load_settings().challenger_dir is None
    monkeypatch.setenv("SCORER_CHALLENGER_DIR", "/models/challenger")
    monkeypatch.setenv("SCORER_CHALLENGER_MODE", "canary")
    monkeypatch.setenv("SCORER_CANARY_PERCENT", "2.5")
    monkeypatch.setenv("SCORER_SHADOW_QUEUE", "8")
    settings = load_settings()
    assert settings.challenger_dir == Path("/models/challenger")
    assert (settings.challenger_mode, settings.canary_percent) == ("canary", 2.5)
    assert settings.shadow_queue == 8
    assert "SCORER_CHALLENGER_DIR=/models/challenger" in describe(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SCORER_CHALLENGER_MODE", "mirror"),
        ("SCORER_CANARY_PERCENT", "101"),
        ("SCORER_CANARY_PERCENT", "-1"),
        ("SCORER_CANARY_PERCENT", "nan"),
        ("SCORER_CANARY_PERCENT", "ten"),
        ("SCORER_SHADOW_QUEUE", "0"),
    ],
)
def test_rollout_settings_out_of_their_range_are_refused_naming_them(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert f"{name}={value!r}" in str(caught.value)


def test_the_champions_own_directory_is_no_challenger(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "package"))
    monkeypatch.setenv("SCORER_CHALLENGER_DIR", str(tmp_path / "package" / "."))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "is MODEL_DIR: a challenger is another packaged model" in str(caught.value)
