import asyncio
import hashlib
import math
from typing import Any

import pytest
from starlette.responses import Response

from mlops.serve.app import ScoringResponse, bearer_matches, parse_json
from mlops.serve.errors import ClientError

TOKEN = "a-token-of-some-length"
DIGEST = hashlib.sha256(TOKEN.encode()).digest()


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"Bearer  {TOKEN} ", True),
        (f"Basic {TOKEN}", False),
        (TOKEN, False),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        ("Bearer ", False),
        ("", False),
        (None, False),
    ],
)
def test_only_the_exact_bearer_token_matches(header: str | None, matches: bool) -> None:
    assert bearer_matches(header, DIGEST) is matches


def test_json_is_parsed_strictly_but_non_finite_literals_reach_validation() -> None:
    assert parse_json(b'{"records": [{"x": 1.5}]}') == {"records": [{"x": 1.5}]}
    assert math.isnan(parse_json(b'{"x": NaN}')["x"])
    assert parse_json(b'{"x": -Infinity}')["x"] == -math.inf


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"x": 1,}',
        b"\xff",
        b'"\\ud800"',
        b"[" * 5000 + b"]" * 5000,
        b"[1" + b"0" * 400 + b"]",  # orjson reads big integers as floats, but not this big
    ],
)
def test_anything_else_that_is_not_json_is_a_400(body: bytes) -> None:
    with pytest.raises(ClientError) as caught:
        parse_json(body)
    assert caught.value.status == 400
    assert caught.value.message.startswith("malformed JSON")


@pytest.mark.parametrize("content", [b"{}", b'{"predictions": ["\xc3\xa9"]}' * 500])
def test_a_scoring_answer_sends_what_starlette_would_with_the_request_id(content: bytes) -> None:
    """The same messages as Starlette's own JSON response with the id and role headers
    appended."""

    def sent(response: Response) -> list[Any]:
        messages: list[Any] = []

        async def send(message: Any) -> None:
            messages.append(message)

        asyncio.run(response({"type": "http"}, None, send))  # type: ignore[arg-type]
        return messages

    expected = Response(content, media_type="application/json")
    expected.raw_headers.append((b"x-request-id", b"0123abcd"))
    expected.raw_headers.append((b"x-model-role", b"challenger"))
    assert sent(ScoringResponse(content, "0123abcd", "challenger")) == sent(expected)
