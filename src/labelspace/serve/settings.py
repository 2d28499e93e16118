"""`ServeSettings`: every limit and default of the HTTP service in one place.

``labelspace serve`` builds one from its options; `labelspace.serve.create_app` reads nothing else (no
environment variable is read here: the command line reads ``LABELSPACE_API_KEY``).

Example:
    >>> settings = ServeSettings(max_texts_per_request=8, api_key="secret")
    >>> settings.max_texts_per_request, settings.batching, settings.limits()["max_batch_tokens"]
    (8, True, 8192)
    >>> ServeSettings(max_wait_ms=-1)
    Traceback (most recent call last):
    ...
    ValueError: max_wait_ms must be a number >= 0, got -1
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["API_KEY_ENV", "BACKENDS", "ServeSettings"]

#: The environment variable `labelspace serve` reads the API key from when ``--api-key`` is not given.
API_KEY_ENV = "LABELSPACE_API_KEY"
#: The backend names the server passes through to `labelspace.inference.Predictor.load`.
BACKENDS = ("torch", "onnx", "onnx-int8")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _non_negative(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


@dataclass(frozen=True)
class ServeSettings:
    """Limits and defaults of the HTTP service (see docs/serving.md).

    Args:
        host, port: where ``labelspace serve`` listens (the app itself does not read them).
        backend: ``torch``, ``onnx`` or ``onnx-int8`` (passed to `Predictor.load`; shown by ``/v1/info``).
        threads: CPU threads of the backend (None: all cores).
        model_path: the model or run folder served (shown by ``/v1/info``).
        max_batch_tokens: padded tokens of one forward pass (texts x longest text, capped at max_seq_length).
        max_wait_ms: how long the first text of a batch waits for others to join it.
        max_queue: texts waiting for inference; a request that would go past it gets 429.
        max_texts_per_request: texts in one request (more: 413 too_many_texts).
        max_text_chars: characters of one text (longer: 413 text_too_long, or cut there when ``truncate``).
        truncate: cut over-long texts at ``max_text_chars`` instead of refusing the request.
        max_body_bytes: bytes of a request body (more: 413).
        max_similar_k: the largest ``k`` of ``/v1/similar``.
        api_key: when set, /v1 routes need ``Authorization: Bearer <api_key>`` (401 otherwise).
        drain_timeout: seconds a shutdown (SIGTERM) waits for accepted requests before it exits.
        batching: gather texts of concurrent requests into one forward pass (False: each request runs alone).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "torch"
    threads: int | None = None
    model_path: str | None = None
    max_batch_tokens: int = 8192
    max_wait_ms: float = 5.0
    max_queue: int = 1024
    max_texts_per_request: int = 256
    max_text_chars: int = 20_000
    truncate: bool = False
    max_body_bytes: int = 4 * 1024 * 1024
    max_similar_k: int = 100
    api_key: str | None = None
    drain_timeout: float = 30.0
    batching: bool = True

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.threads is not None:
            _positive_int("threads", self.threads)
        for name in ("port", "max_batch_tokens", "max_queue", "max_texts_per_request", "max_text_chars"):
            _positive_int(name, getattr(self, name))
        _positive_int("max_body_bytes", self.max_body_bytes)
        _positive_int("max_similar_k", self.max_similar_k)
        _non_negative("max_wait_ms", self.max_wait_ms)
        _non_negative("drain_timeout", self.drain_timeout)
        if self.max_texts_per_request > self.max_queue:
            raise ValueError(
                f"max_texts_per_request ({self.max_texts_per_request}) must not exceed max_queue ({self.max_queue}):"
                " a request that large could never be queued"
            )
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must not be empty (leave it unset to serve without a key)")

    def limits(self) -> dict[str, Any]:
        """The limits a client may want to know (``/v1/info``); never the API key."""
        return {
            "max_batch_tokens": self.max_batch_tokens,
            "max_wait_ms": self.max_wait_ms,
            "max_queue": self.max_queue,
            "max_texts_per_request": self.max_texts_per_request,
            "max_text_chars": self.max_text_chars,
            "truncate": self.truncate,
            "max_body_bytes": self.max_body_bytes,
            "max_similar_k": self.max_similar_k,
            "batching": self.batching,
            "api_key_required": self.api_key is not None,
        }
