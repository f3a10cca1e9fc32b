"""The retrain signal: a GitHub ``repository_dispatch`` once an alert has held, once per cool-down.

Without a token the sidecar only logs the request it would send. The token is sent to the API URL
only (redirects are not followed, so it never reaches another host) and is never logged.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import SecretStr

from mlops.monitor.detect import DriftReport
from mlops.monitor.feedback import PerformanceReport
from mlops.monitor.reference import Reference
from mlops.monitor.window import format_timestamp

LOGGER = logging.getLogger(__name__)
EVENT_TYPE = "retrain"
API_VERSION = "2022-11-28"
Outcome = Literal["sent", "failed", "dry_run"]
OUTCOMES: tuple[Outcome, ...] = ("sent", "failed", "dry_run")


@dataclass
class RetrainTrigger:
    """When to signal: the alert has held for ``hold_seconds``, the last signal is older than the
    cool-down, and the last failed attempt is older than ``retry_seconds``."""

    hold_seconds: float
    cooldown_seconds: float
    retry_seconds: float
    last_sent: float | None = None  # persisted, so a restart does not bypass the cool-down
    alert_since: float | None = None
    last_failure: float | None = None

    def due(self, alerting: bool, now: float) -> bool:
        if not alerting:
            self.alert_since = None
            return False
        if self.alert_since is None:
            self.alert_since = now
        return (
            now - self.alert_since >= self.hold_seconds
            and not _within(self.last_sent, self.cooldown_seconds, now)
            and not _within(self.last_failure, self.retry_seconds, now)
        )

    def record(self, outcome: Outcome, now: float) -> None:
        if outcome == "failed":
            self.last_failure = now
        else:
            self.last_sent, self.last_failure = now, None


def _within(moment: float | None, span: float, now: float) -> bool:
    return moment is not None and now - moment < span


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class GitHubDispatcher:
    def __init__(
        self, api_url: str, repository: str | None, token: SecretStr | None, timeout: float
    ) -> None:
        self.url = f"{api_url.rstrip('/')}/repos/{repository or '<owner>/<name>'}/dispatches"
        self.token = token
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_RefuseRedirects)

    def build_request(
        self, payload: dict[str, Any], event_type: str = EVENT_TYPE
    ) -> urllib.request.Request:
        body = json.dumps({"event_type": event_type, "client_payload": payload}).encode()
        headers = {
            "Accept": "application/vnd.github+json",
            "Content-Type": "application/json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "mlops-monitor",
        }
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token.get_secret_value()}"
        return urllib.request.Request(self.url, data=body, headers=headers, method="POST")

    def send(self, payload: dict[str, Any], event_type: str = EVENT_TYPE) -> Outcome:
        """Send the event; a failure is logged and reported, never raised."""
        request = self.build_request(payload, event_type)
        body = request.data.decode() if isinstance(request.data, bytes) else ""
        if self.token is None:
            LOGGER.warning(
                "%s signal (dry run, MONITOR_GITHUB_TOKEN is not set): would POST %s %s",
                event_type,
                self.url,
                body,
            )
            return "dry_run"
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            detail = error.read(500).decode(errors="replace")
            LOGGER.error(
                "%s signal refused: POST %s -> %s %s", event_type, self.url, error.code, detail
            )
            return "failed"
        except (OSError, ValueError) as error:
            LOGGER.error("%s signal failed: POST %s: %s", event_type, self.url, error)
            return "failed"
        LOGGER.warning("%s signal sent: POST %s -> %s %s", event_type, self.url, status, body)
        return "sent"


def retrain_payload(
    reference: Reference,
    drift: DriftReport,
    performance: PerformanceReport,
    alert_since: float | None,
    now: float,
    harvest_source: str | None = None,
) -> dict[str, Any]:
    """The ``client_payload``: what drifted and how the model performs, and where the labelled
    traffic ships (``MONITOR_SHIP_URL``; the retrain workflow harvests it). GitHub allows 10
    keys."""
    reasons = (["drift"] if drift.alert else []) + (["performance"] if performance.degraded else [])
    return {
        "model_name": reference.model_name,
        "model_version": reference.model_version,
        "reasons": reasons,
        "window_size": drift.window_size,
        "drifted_features": {
            feature.name: {"psi": round(feature.psi, 4), "reasons": list(feature.reasons)}
            for feature in drift.drifted_features
        },
        "prediction": {"psi": round(drift.prediction.psi, 4), "drifted": drift.prediction.drifted},
        "performance": performance.as_json(),
        "alert_since": format_timestamp(alert_since if alert_since is not None else now),
        "sent_at": format_timestamp(now),
        # a directory on the pod means nothing to CI: only an object store is passed on
        "harvest_source": harvest_source if (harvest_source or "").startswith("s3://") else None,
    }
