#!/usr/bin/env python3
"""A pass-through proxy in front of act's artifact server, so upload-artifact v7 works with act.

act (up to 0.2.89) decodes the artifact service's Twirp JSON strictly and refuses the fields newer
``@actions/artifact`` clients send (upload-artifact v7 sends ``mime_type``), and the blob client of
``@actions/artifact`` 6 drops the ``=`` padding of the signed URL's ``sig``, which act then refuses
(401). This drops the unknown fields, re-pads ``sig`` and forwards everything else byte for byte.
scripts/act.sh starts it and points ``ACTIONS_RUNTIME_URL``/``ACTIONS_RESULTS_URL`` at it; the
workflow tests reuse its forwarding in front of act's cache server (tests/act_runner.py).

Usage: act_proxy.py LISTEN_PORT UPSTREAM_PORT LOG_FILE (both ports on 127.0.0.1)
"""

from __future__ import annotations

import http.client
import http.server
import json
import re
import sys
from pathlib import Path

UNKNOWN_TO_ACT = {"mime_type", "mimeType"}
SIGNATURE = re.compile(r"([?&]sig=)([^&]*)")
HOP_BY_HOP = {"content-length", "connection", "transfer-encoding", "host"}


def strip_unknown_fields(path: str, body: bytes) -> tuple[bytes, list[str]]:
    """A Twirp JSON body without the fields act's decoder refuses, and the names dropped."""
    if "/twirp/" not in path or not body.startswith(b"{"):
        return body, []
    data = json.loads(body)
    dropped = sorted(UNKNOWN_TO_ACT & data.keys())
    for name in dropped:
        data.pop(name)
    return json.dumps(data).encode(), dropped


def repad_signature(path: str) -> str:
    """The path with the base64 padding of its ``sig`` parameter restored."""
    match = SIGNATURE.search(path)
    if match is None or len(match.group(2)) % 4 == 0:
        return path
    padding = "=" * (-len(match.group(2)) % 4)
    return path[: match.end(2)] + padding + path[match.end(2) :]


class ForwardingProxy(http.server.BaseHTTPRequestHandler):
    """Forwards every request to 127.0.0.1:``upstream_port``; ``rewrite`` may change it first."""

    protocol_version = "HTTP/1.1"
    upstream_port = 0
    log_file: Path | None = None

    def log_message(self, format: str, *args: object) -> None:
        """One line per request goes to ``log_file`` (in ``forward``), nothing to stderr."""

    def request_body(self) -> bytes:
        """The body, also when it comes in chunks (uploads are streamed)."""
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return b"".join(chunks)

    def rewrite(self, path: str, body: bytes) -> tuple[str, bytes, str]:
        """The request as sent upstream, and a note for the log."""
        return path, body, ""

    def answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def forward(self) -> None:
        path, body, note = self.rewrite(self.path, self.request_body())
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        # the client's Host: act signs upload URLs for the host it was asked on, this proxy
        headers["Host"] = self.headers.get("Host", "")
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=600)
        upstream.request(self.command, path, body=body, headers=headers)
        response = upstream.getresponse()
        self.answer(response.status, response.getheaders(), response.read())
        if self.log_file is not None:
            with self.log_file.open("a") as log:
                log.write(f"{self.command} {self.path.split('?')[0]} -> {response.status}{note}\n")

    def do_GET(self) -> None:
        self.forward()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET


class ArtifactProxy(ForwardingProxy):
    def rewrite(self, path: str, body: bytes) -> tuple[str, bytes, str]:
        body, dropped = strip_unknown_fields(path, body)
        padded = repad_signature(path)
        note = (f" dropped={dropped}" if dropped else "") + (" sig-padded" if padded != path else "")
        return padded, body, note


def serve(handler: type[ForwardingProxy], listen: int) -> http.server.ThreadingHTTPServer:
    return http.server.ThreadingHTTPServer(("127.0.0.1", listen), handler)


def main(argv: list[str]) -> None:
    listen, upstream, log_file = int(argv[0]), int(argv[1]), Path(argv[2])
    handler = type("Bound", (ArtifactProxy,), {"upstream_port": upstream, "log_file": log_file})
    serve(handler, listen).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
