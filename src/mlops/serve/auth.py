"""The bearer token (``SCORER_API_TOKEN``), checked the same way over HTTP and gRPC."""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr

UNAUTHORIZED = "missing or invalid bearer token"


def token_digest(token: SecretStr | None) -> bytes | None:
    """What requests are checked against: the token's SHA-256, or None (no token, no check)."""
    return None if token is None else hashlib.sha256(token.get_secret_value().encode()).digest()


def bearer_matches(header: str | None, token_digest: bytes) -> bool:
    """Compare digests in constant time: neither the token nor its length leaks through timing."""
    scheme, _, credentials = (header or "").partition(" ")
    given = hashlib.sha256(credentials.strip().encode()).digest()
    return hmac.compare_digest(given, token_digest) and scheme.lower() == "bearer"
