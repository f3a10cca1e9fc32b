import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from mlops.serve.metrics import Counts, Histogram, MetricsMiddleware, ScorerMetrics


def exposition(metrics: ScorerMetrics) -> str:
    content, content_type = metrics.exposition(None)
    assert content_type.startswith("text/plain")
    return content.decode()


def test_requests_are_counted_by_route_template_not_raw_path() -> None:
    metrics = ScorerMetrics("tiny", "v1", "abc123")

    async def item(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok", status_code=201)

    app = Starlette(
        routes=[Route("/items/{name}", item, methods=["POST"])],
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
    )

    async def send_requests() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            statuses = [(await client.post(f"/items/{name}")).status_code for name in "abc"]
            statuses.append((await client.get("/elsewhere")).status_code)
            statuses.append((await client.get("/items/a")).status_code)
            return statuses

    assert asyncio.run(send_requests()) == [201, 201, 201, 404, 405]
    text = exposition(metrics)
    assert 'scorer_requests_total{method="POST",route="/items/{name}",status="201"} 3.0' in text
    assert 'scorer_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'scorer_requests_total{method="GET",route="/items/{name}",status="405"} 1.0' in text
    assert 'scorer_request_duration_seconds_count{route="/items/{name}"} 4.0' in text
    assert "/items/a" not in text


CHAMPION = ("champion", "v1")
CHALLENGER = ("challenger", "v2")


def series(name: str, model: tuple[str, str], **labels: str) -> str:
    """A sample's name and labels as the exposition writes them (labels sorted by name)."""
    labels |= {"role": model[0], "model_version": model[1]}
    return name + "{" + ",".join(f'{key}="{labels[key]}"' for key in sorted(labels)) + "}"


def test_answers_model_info_and_log_backlog_are_exported_by_role_and_version() -> None:
    metrics = ScorerMetrics("tiny", "v1", "abc123")
    metrics.serve_challenger("tiny", "v2", "def456")
    metrics.observe_answer("/predict", CHAMPION, 7, {"size": 2}, {"colour": 1}, 0.002)
    metrics.observe_answer("/predict", CHALLENGER, 3, {}, {}, 0.3)
    metrics.observe_model(CHALLENGER, "error")
    metrics.observe_model(CHALLENGER, "dropped")
    metrics.track_log_backlog(lambda: 42)
    text = exposition(metrics)
    assert f"{series('scorer_records_scored_total', CHAMPION, route='/predict')} 7.0" in text
    assert f"{series('scorer_records_scored_total', CHALLENGER, route='/predict')} 3.0" in text
    assert f"{series('scorer_out_of_range_values_total', CHAMPION, feature='size')} 2.0" in text
    assert f"{series('scorer_unknown_categories_total', CHAMPION, feature='colour')} 1.0" in text
    for model, outcome in [
        (CHAMPION, "ok"),
        (CHALLENGER, "ok"),
        (CHALLENGER, "error"),
        (CHALLENGER, "dropped"),
    ]:
        assert f"{series('scorer_model_requests_total', model, outcome=outcome)} 1.0" in text
    assert series("scorer_model_requests_total", CHAMPION, outcome="error") not in text
    latency = "scorer_model_latency_seconds"
    assert f"{series(latency + '_bucket', CHAMPION, le='0.0025')} 1.0" in text
    assert f"{series(latency + '_bucket', CHALLENGER, le='0.25')} 0.0" in text
    assert f"{series(latency + '_count', CHALLENGER)} 1.0" in text
    assert (
        'scorer_model_info{git_commit="abc123",model_name="tiny",model_version="v1",'
        'role="champion"} 1.0' in text
    )
    assert (
        'scorer_model_info{git_commit="def456",model_name="tiny",model_version="v2",'
        'role="challenger"} 1.0' in text
    )
    assert "scorer_prediction_log_pending_records 42.0" in text


def test_latency_buckets_are_cumulative_and_a_bound_counts_in_its_own_bucket() -> None:
    metrics = ScorerMetrics("tiny", "v1", "abc123")
    for seconds in (0.0004, 0.001, 0.001, 0.3, 7.0):
        metrics.observe_request("/predict", "POST", 200, seconds)
    text = exposition(metrics)

    def bucket(bound: str) -> str:
        return f'scorer_request_duration_seconds_bucket{{le="{bound}",route="/predict"}}'

    assert f"{bucket('0.0005')} 1.0" in text
    assert f"{bucket('0.001')} 3.0" in text  # le means "at most": 0.001 is in the 0.001 bucket
    assert f"{bucket('0.25')} 3.0" in text
    assert f"{bucket('0.5')} 4.0" in text
    assert f"{bucket('5.0')} 4.0" in text
    assert f"{bucket('+Inf')} 5.0" in text
    assert 'scorer_request_duration_seconds_count{route="/predict"} 5.0' in text
    total = next(
        line for line in text.splitlines() if line.startswith("scorer_request_duration_seconds_sum")
    )
    assert abs(float(total.rsplit(" ", 1)[1]) - 7.3024) < 1e-9
    assert 'scorer_requests_total{method="POST",route="/predict",status="200"} 5.0' in text


def test_workers_counts_add_up_in_a_scrape_of_any_of_them(tmp_path: Path) -> None:
    first, second = (ScorerMetrics("tiny", "v1", "abc123", shared=tmp_path) for _ in range(2))
    first.observe_request("/predict", "POST", 200, 0.002)
    first.observe_answer("/predict", CHAMPION, 3, {"size": 1}, {}, 0.002)
    second.observe_request("/predict", "POST", 200, 0.3)
    second.observe_request("/predict", "POST", 422, 0.001)
    second.observe_answer("/predict", CHAMPION, 5, {"size": 2}, {"colour": 1}, 0.3)
    second.observe_model(CHALLENGER, "dropped")
    second.track_log_backlog(lambda: 4)
    assert 'status="200"} 1.0' in exposition(first)  # nothing published yet
    second.publish()
    text = exposition(first)
    assert 'scorer_requests_total{method="POST",route="/predict",status="200"} 2.0' in text
    assert 'scorer_requests_total{method="POST",route="/predict",status="422"} 1.0' in text
    assert 'scorer_request_duration_seconds_count{route="/predict"} 3.0' in text
    assert 'scorer_request_duration_seconds_bucket{le="0.0025",route="/predict"} 2.0' in text
    assert f"{series('scorer_records_scored_total', CHAMPION, route='/predict')} 8.0" in text
    assert f"{series('scorer_out_of_range_values_total', CHAMPION, feature='size')} 3.0" in text
    assert f"{series('scorer_unknown_categories_total', CHAMPION, feature='colour')} 1.0" in text
    assert f"{series('scorer_model_requests_total', CHAMPION, outcome='ok')} 2.0" in text
    assert f"{series('scorer_model_latency_seconds_count', CHAMPION)} 2.0" in text
    assert f"{series('scorer_model_requests_total', CHALLENGER, outcome='dropped')} 1.0" in text
    assert "scorer_prediction_log_pending_records 4.0" in text
    assert text.count("scorer_model_info{") == 1
    first.observe_request("/predict", "POST", 200, 0.002)  # its own counts are always current
    assert 'status="200"} 3.0' in exposition(first)


def test_a_stopped_workers_counts_stay_but_not_its_log_backlog(tmp_path: Path) -> None:
    stopped = Counts(records=Counter({("/predict", *CHAMPION): 7}), log_pending=5)
    (tmp_path / "worker-999999999-0a0b0c0d.json").write_bytes(stopped.to_json())
    (tmp_path / "worker-1-garbled.json").write_bytes(b"{not json")  # skipped, with a warning
    text = exposition(ScorerMetrics("tiny", "v1", "abc123", shared=tmp_path))
    assert f"{series('scorer_records_scored_total', CHAMPION, route='/predict')} 7.0" in text
    assert "scorer_prediction_log_pending_records 0.0" in text


def test_counts_survive_their_json_form() -> None:
    counts = Counts(log_pending=2)
    counts.requests["/v2/models/{model_name}/infer", "POST", 400] += 3
    counts.latency["/predict"] = Histogram()
    counts.latency["/predict"].observe(0.02)
    counts.unknown_categories["island", *CHAMPION] += 1
    counts.records["/predict", *CHALLENGER] += 4
    counts.model_requests[*CHALLENGER, "dropped"] += 2
    counts.model_latency[CHALLENGER] = Histogram()
    counts.model_latency[CHALLENGER].observe(0.5)
    assert Counts.from_json(counts.to_json()) == counts


def test_a_failed_publication_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_text("")
    metrics = ScorerMetrics("tiny", "v1", "abc123", shared=tmp_path / "file")  # not a directory
    metrics.observe_request("/predict", "POST", 200, 0.002)
    metrics.publish()
    assert "could not share this worker's metrics" in caplog.text
    assert 'status="200"} 1.0' in exposition(metrics)
