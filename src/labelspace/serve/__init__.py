"""The HTTP service (layer 5): `create_app` builds the FastAPI app of a model, `ServeSettings` holds its limits.

FastAPI, uvicorn and prometheus_client come with the ``serve`` extra (``pip install labelspace[serve]``);
importing this package does not need them, `create_app` does.

Example:
    >>> from labelspace.serve import ServeSettings
    >>> ServeSettings().max_texts_per_request
    256
"""

from __future__ import annotations

from typing import Any

from labelspace.serve.settings import API_KEY_ENV, ServeSettings

__all__ = ["API_KEY_ENV", "ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from labelspace.serve.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
