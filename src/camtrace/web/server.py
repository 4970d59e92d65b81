"""Serving the page with uvicorn, on the loopback interface unless asked otherwise."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import uvicorn

from camtrace.web.app import create_app

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def exposed(host: str) -> bool:
    """True when ``host`` reaches beyond this machine (not a loopback address)."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return True


def serve(
    host: str = "127.0.0.1", port: int = 8000, detectors: str | Path | None = None, workers: int = 2
) -> None:
    """Serve the page until interrupted; uploads are removed when it stops. On loopback
    only loopback Host headers are answered (no DNS rebinding)."""
    hosts = None if exposed(host) else [*LOOPBACK_NAMES, host]
    app = create_app(detectors, workers=workers, hosts=hosts)
    uvicorn.run(app, host=host, port=port, log_level="warning")
