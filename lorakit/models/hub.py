"""Is the Hugging Face hub reachable? Two quick checks, before any download is attempted.

:func:`lorakit.models.load_base` and the real E2E data (:mod:`lorakit.data.sources`) ask these
first, so that an offline machine falls back in seconds instead of waiting for timeouts.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` forbid network access."""
    return any(
        os.environ.get(k, "").strip().lower() in _TRUE
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def network_problem(timeout: float = 3.0) -> str | None:
    """``None`` if the Hugging Face hub answers a TCP connect within ``timeout`` s, else why not."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as err:
        return f"no network: cannot reach {host}:{port} ({type(err).__name__}: {err})"
