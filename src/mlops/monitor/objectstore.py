"""Where the shipper puts its files: an S3 bucket (AWS, MinIO, any S3-compatible store) or a
local directory (a mounted volume, tests).

S3 is spoken directly (a signed ``PUT`` per object, Signature Version 4, ``http.client``): the
sidecar's image has no boto3. Credentials come from the environment only, as the AWS tools read
them: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` (temporary
credentials), ``AWS_REGION`` or ``AWS_DEFAULT_REGION`` (default ``us-east-1``) and
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` for a store that is not AWS (path-style
addressing then). A ``PUT`` of the same key with the same bytes is harmless: that is what makes a
shipment that is repeated after a crash exactly-once.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlsplit

from mlops.core.atomic import atomic_write_bytes

DEFAULT_REGION = "us-east-1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class StoreError(Exception):
    """The store refused or could not be reached; the message says which and why."""


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (``a/b/c.parquet``), replacing what was there."""
        ...

    def describe(self, key: str) -> str:
        """Where ``key`` goes, for messages."""
        ...


@dataclass(frozen=True)
class DirectoryStore:
    root: Path

    def put(self, key: str, data: bytes) -> None:
        try:
            atomic_write_bytes(self.root / key, data)
        except OSError as error:
            raise StoreError(f"{self.describe(key)}: {error}") from None

    def describe(self, key: str) -> str:
        return str(self.root / key)


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    session_token: str | None
    region: str

    def __repr__(self) -> str:  # never the secret in a message
        return f"Credentials(access_key={self.access_key!r}, region={self.region!r})"


def credentials_from(environment: Mapping[str, str]) -> Credentials:
    missing = [
        name for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not environment.get(name)
    ]
    if missing:
        raise StoreError(f"shipping to S3 needs {' and '.join(missing)} in the environment")
    return Credentials(
        environment["AWS_ACCESS_KEY_ID"],
        environment["AWS_SECRET_ACCESS_KEY"],
        environment.get("AWS_SESSION_TOKEN") or None,
        environment.get("AWS_REGION") or environment.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
    )


@dataclass(frozen=True)
class S3Store:
    bucket: str
    prefix: str  # "" or "a/b/"
    credentials: Credentials
    endpoint: str | None  # e.g. http://127.0.0.1:9000; None: AWS
    timeout_seconds: float

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def put(self, key: str, data: bytes) -> None:
        scheme, host, path = self._address(self.prefix + key)
        headers = signed_headers("PUT", host, path, data, self.credentials, _now())
        connection_type = (
            http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_type(host, timeout=self.timeout_seconds)
        try:
            connection.request("PUT", path, body=data, headers=headers)
            response = connection.getresponse()
            detail = response.read(2000).decode(errors="replace")
        except OSError as error:
            raise StoreError(f"{self.describe(key)}: {type(error).__name__}: {error}") from None
        finally:
            connection.close()
        if response.status != 200:
            raise StoreError(f"{self.describe(key)}: HTTP {response.status}: {detail.strip()}")

    def _address(self, key: str) -> tuple[str, str, str]:
        """Scheme, host and the request's path (URI-encoded as signed)."""
        encoded = quote(key, safe="/-_.~")
        if self.endpoint is None:
            host = f"{self.bucket}.s3.{self.credentials.region}.amazonaws.com"
            return "https", host, f"/{encoded}"
        endpoint = urlsplit(self.endpoint)
        base = endpoint.path.rstrip("/")
        return endpoint.scheme, endpoint.netloc, f"{base}/{quote(self.bucket)}/{encoded}"


def signed_headers(
    method: str,
    host: str,
    path: str,
    payload: bytes,
    credentials: Credentials,
    moment: datetime.datetime,
) -> dict[str, str]:
    """The headers of an AWS Signature Version 4 request to S3 (no query string)."""
    amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {
        "host": host,
        "x-amz-content-sha256": hashlib.sha256(payload).hexdigest() if payload else EMPTY_SHA256,
        "x-amz-date": amz_date,
    }
    if credentials.session_token:
        headers["x-amz-security-token"] = credentials.session_token
    names = sorted(headers)
    canonical = "\n".join(
        [
            method,
            path,
            "",
            *(f"{name}:{headers[name].strip()}" for name in names),
            "",
            ";".join(names),
            headers["x-amz-content-sha256"],
        ]
    )
    scope = f"{day}/{credentials.region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{credentials.secret_key}".encode()
    for part in (day, credentials.region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    headers["content-length"] = str(len(payload))
    return headers


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def open_store(
    url: str, timeout_seconds: float, environment: Mapping[str, str] | None = None
) -> ObjectStore:
    """The store ``url`` names: ``s3://bucket/prefix`` or a local directory (path or
    ``file://``). Raises StoreError when S3 credentials are missing."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        return DirectoryStore(Path(parts.path if parts.scheme == "file" else url))
    environment = os.environ if environment is None else environment
    prefix = parts.path.strip("/")
    endpoint = environment.get("AWS_ENDPOINT_URL_S3") or environment.get("AWS_ENDPOINT_URL")
    return S3Store(
        bucket=parts.netloc,
        prefix=f"{prefix}/" if prefix else "",
        credentials=credentials_from(environment),
        endpoint=endpoint or None,
        timeout_seconds=timeout_seconds,
    )
