import os
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT
from mlops.monitor.settings import (
    ENV_PREFIX,
    MonitorSettings,
    env_name,
    load_settings,
    settings_help,
)
from mlops.stage import StageError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX) or name in ("PREDICTION_LOG", "MODEL_DIR"):
            monkeypatch.delenv(name)


def test_defaults_are_safe_and_match_the_contract() -> None:
    settings = load_settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8090)
    assert settings.prediction_log == Path("logs/predictions.jsonl")
    assert settings.model_dir == Path("models/package")
    assert settings.github_api_url == "https://api.github.com"
    assert settings.github_token is None
    assert settings.min_window_size > 30


def test_shared_names_and_json_thresholds_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREDICTION_LOG", "/var/log/scorer/predictions.jsonl")
    monkeypatch.setenv("MODEL_DIR", "/models/current")
    monkeypatch.setenv("MONITOR_FEATURE_PSI_THRESHOLDS", '{"body_mass_g": 0.3}')
    monkeypatch.setenv("MONITOR_WINDOW_SECONDS", "3600")
    settings = load_settings()
    assert settings.prediction_log == Path("/var/log/scorer/predictions.jsonl")
    assert settings.model_dir == Path("/models/current")
    assert settings.feature_psi_thresholds == {"body_mass_g": 0.3}
    assert settings.window_seconds == 3600


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"MONITOR_PORT": "70000"}, "MONITOR_PORT: Input should be less than or equal to 65535"),
        ({"MONITOR_HOST": "local host"}, "MONITOR_HOST: expected an IP address or a host name"),
        (
            {"MONITOR_PSI_THRESHOLD": "-1"},
            "MONITOR_PSI_THRESHOLD: Input should be greater than or equal to 0",
        ),
        ({"MONITOR_FALSE_ALARM_RATE": "0"}, "MONITOR_FALSE_ALARM_RATE: Input should be greater"),
        ({"MONITOR_FALSE_ALARM_RATE": "0.9"}, "MONITOR_FALSE_ALARM_RATE: Input should be less"),
        ({"MONITOR_FEATURE_PSI_THRESHOLDS": "body_mass_g=0.3"}, "expected a JSON object"),
        ({"MONITOR_FEATURE_PSI_THRESHOLDS": '{"x": -0.1}'}, "MONITOR_FEATURE_PSI_THRESHOLDS"),
        ({"MONITOR_MIN_WINDOW_SIZE": "5000"}, "no alert could ever fire"),
        ({"MONITOR_RETRAIN_COOLDOWN_SECONDS": "1"}, "MONITOR_RETRAIN_COOLDOWN_SECONDS"),
        ({"MONITOR_GITHUB_TOKEN": "secret-value"}, "MONITOR_GITHUB_REPOSITORY is not"),
        ({"MONITOR_GITHUB_API_URL": "http://api.example.com"}, "must be an https:// URL"),
        ({"MONITOR_GITHUB_REPOSITORY": "no-slash"}, "MONITOR_GITHUB_REPOSITORY"),
        ({"MONITOR_WINDOW_SIZ": "10"}, "unknown setting(s) ['MONITOR_WINDOW_SIZ']"),
        ({"MONITOR_STATE_FILE": "logs/predictions.jsonl"}, "must be different files"),
    ],
)
def test_invalid_or_unsafe_settings_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], message: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(StageError) as raised:
        load_settings()
    assert message in str(raised.value)


def test_the_token_never_appears_in_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_GITHUB_TOKEN", "very-secret-token")
    monkeypatch.setenv("MONITOR_GITHUB_API_URL", "ftp://example.com")
    with pytest.raises(StageError) as raised:
        load_settings()
    assert "very-secret-token" not in str(raised.value)
    monkeypatch.setenv("MONITOR_GITHUB_API_URL", "https://api.github.com")
    monkeypatch.setenv("MONITOR_GITHUB_REPOSITORY", "owner/repo")
    settings = load_settings()
    assert "very-secret-token" not in repr(settings)
    assert settings.github_token is not None
    assert settings.github_token.get_secret_value() == "very-secret-token"


def test_plain_http_is_allowed_to_this_machine_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_GITHUB_API_URL", "http://127.0.0.1:8000")
    assert load_settings().github_api_url == "http://127.0.0.1:8000"


def test_help_lists_every_variable() -> None:
    text = settings_help()
    for name in ("PREDICTION_LOG", "MODEL_DIR", "MONITOR_GITHUB_TOKEN", "MONITOR_WINDOW_SIZE"):
        assert name in text


def test_every_setting_is_documented() -> None:
    documented = (PROJECT_ROOT / "docs" / "monitoring.md").read_text()
    missing = [
        env_name(name)
        for name in MonitorSettings.model_fields
        if f"`{env_name(name)}`" not in documented
    ]
    assert missing == [], f"docs/monitoring.md does not describe {missing}"
