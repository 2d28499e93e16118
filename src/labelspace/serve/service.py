"""`Service`: what the HTTP routes stand on: the Predictor (loaded in the background), readiness, draining,
token counting, the checks on a request's texts and the micro-batcher.

Kept apart from the FastAPI app so that each rule has one place: the app only turns HTTP into calls of this
and `ApiError`s into JSON errors.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from labelspace.inference.predictor import Predictor
from labelspace.serve.batching import Job, MicroBatcher, QueueFull, Stopped
from labelspace.serve.metrics import ServeMetrics
from labelspace.serve.settings import ServeSettings

__all__ = ["WARM_UP_TEXT", "ApiError", "Service", "TokenCounter"]

logger = logging.getLogger("labelspace.serve")

WARM_UP_TEXT = "labelspace warm-up"
RETRY_AFTER_SECONDS = "1"


class ApiError(Exception):
    """An error answer: HTTP ``status``, a short ``type`` and a ``message`` for people (plus ``headers``)."""

    def __init__(self, status: int, type: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.headers = headers or {}


class TokenCounter:
    """Token counts of texts (special tokens included, capped at ``max_length``): what a text costs in a batch.

    Uses a private copy of the model's tokenizer on a thread of its own: a fast tokenizer must not be used by
    two threads at once, and the inference thread tokenises with the original.
    """

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = copy.deepcopy(tokenizer)
        self.max_length = int(max_length)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labelspace-tokenizer")

    def count(self, texts: list[str]) -> np.ndarray:
        encoded = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(texts))


def _infer_function(predictor: Predictor) -> Callable[[list[str]], tuple[Any, Any, Any]]:
    """One forward pass of a batch: scores, embeddings and label lists (scores and labels None without labels)."""
    if not predictor.model.predicts_labels:

        def embed_only(texts: list[str]) -> tuple[Any, Any, Any]:
            return None, predictor.encode(texts, batch_size=len(texts), show_progress_bar=False), None

        return embed_only

    def infer(texts: list[str]) -> tuple[Any, Any, Any]:
        scores, embeddings = predictor.scores_and_embeddings(texts, batch_size=len(texts), show_progress_bar=False)
        return scores, embeddings, predictor.label_lists(scores)

    return infer


class Service:
    """The model behind the routes, its state (loading, ready, draining) and the checks on requests."""

    def __init__(self, predictor_or_loader: Predictor | Callable[[], Predictor], settings: ServeSettings) -> None:
        if isinstance(predictor_or_loader, Predictor):
            predictor = predictor_or_loader
            self._loader: Callable[[], Predictor] = lambda: predictor
            self._loaded = True
        elif callable(predictor_or_loader):
            self._loader = predictor_or_loader
            self._loaded = False
        else:
            raise TypeError(
                f"create_app needs a Predictor or a callable returning one, got {type(predictor_or_loader).__name__}"
            )
        self.settings = settings
        self.metrics = ServeMetrics()
        self.predictor: Predictor | None = None
        self.batcher: MicroBatcher | None = None
        self.counter: TokenCounter | None = None
        self.ready = False
        self.draining = False
        self.stopping = False
        self.load_error: str | None = None
        self.executor: ThreadPoolExecutor | None = None
        self._load_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        """Start loading and warming up the model in the background and return at once; a Predictor given
        ready-made is only warmed up, which `start` waits for. The app may start again after `stop`."""
        self.predictor, self.batcher, self.counter, self.load_error = None, None, None, None
        self.ready = self.draining = self.stopping = False
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labelspace-inference")
        if self._loaded:
            await self._load()
            return
        self._load_task = asyncio.get_running_loop().create_task(self._load(), name="labelspace-load")

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            predictor = await loop.run_in_executor(self.executor, self._loader)
            if not isinstance(predictor, Predictor):
                raise TypeError(f"the loader returned {type(predictor).__name__}, not a Predictor")
            infer = _infer_function(predictor)
            encoder = predictor.model.encoder
            self.counter = TokenCounter(encoder.tokenizer, encoder.max_seq_length)
            await loop.run_in_executor(self.counter.executor, self.counter.count, [WARM_UP_TEXT])
            await loop.run_in_executor(self.executor, infer, [WARM_UP_TEXT])
        except Exception as error:
            self.load_error = " ".join(str(error).split()) or type(error).__name__
            logger.error("labelspace serve: the model could not be loaded: %s", self.load_error, exc_info=True)
            return
        self.predictor = predictor
        settings = self.settings
        self.batcher = MicroBatcher(
            infer,
            executor=self.executor,
            max_batch_tokens=settings.max_batch_tokens,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_queue,
            batching=settings.batching,
            metrics=self.metrics,
        )
        self.batcher.start()
        self.ready = True
        logger.info("labelspace serve: model loaded and warmed up (backend %s)", predictor.backend)

    def mark_stopping(self) -> None:
        """Report not ready (/health/ready 503, so a load balancer stops sending) but keep serving what reaches
        the app: after SIGTERM uvicorn closes the listening socket itself, and what still arrives was sent before."""
        self.stopping = True

    def begin_drain(self) -> None:
        """Refuse new /v1 requests (503) and report not ready; what was accepted is still served."""
        self.stopping = True
        self.draining = True

    async def stop(self) -> bool:
        """Drain (up to ``drain_timeout``) and stop; returns whether every accepted request was answered."""
        self.begin_drain()
        drained = True
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        if self.batcher is not None:
            drained = await self.batcher.stop(self.settings.drain_timeout)
        self.ready = False
        for executor in (self.executor, None if self.counter is None else self.counter.executor):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
        return drained

    # ------------------------------------------------------------------ checks
    def require_ready(self) -> Predictor:
        """The Predictor, or the 503 that says why there is none yet (or any more)."""
        if self.draining:
            raise ApiError(503, "draining", "the server is shutting down; send the request to another replica")
        if self.load_error is not None:
            raise ApiError(503, "model_load_failed", f"the model could not be loaded: {self.load_error}")
        if not self.ready or self.predictor is None:
            raise ApiError(
                503,
                "not_ready",
                "the model is still loading; retry when /health/ready answers 200",
                {"Retry-After": "1"},
            )
        return self.predictor

    def check_texts(self, texts: list[str]) -> list[str]:
        """The texts of a request within the limits (cut when ``truncate``), or the 413 / 422 that says why not."""
        settings = self.settings
        if len(texts) > settings.max_texts_per_request:
            raise ApiError(
                413,
                "too_many_texts",
                f"{len(texts)} texts in one request; the limit is {settings.max_texts_per_request} (--max-texts): "
                "split them over several requests",
            )
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        too_long = np.flatnonzero(lengths > settings.max_text_chars)
        if too_long.size:
            if not settings.truncate:
                first = int(too_long[0])
                raise ApiError(
                    413,
                    "text_too_long",
                    f"texts[{first}] has {int(lengths[first])} characters; the limit is {settings.max_text_chars} "
                    "(--max-text-chars); shorten it, or start the server with --truncate to cut long texts",
                )
            texts = list(texts)
            for position in too_long.tolist():
                texts[position] = texts[position][: settings.max_text_chars]
        try:
            "".join(texts).encode("utf-8")
        except UnicodeEncodeError:
            for position, text in enumerate(texts):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as error:
                    raise ApiError(
                        422,
                        "invalid_text",
                        f"texts[{position}] holds a lone surrogate (U+{ord(text[error.start]):04X} at character "
                        f"{error.start}), which is not a character: send valid Unicode (UTF-16 pairs in \\u escapes)",
                    ) from None
        return texts

    # ------------------------------------------------------------------ running
    async def run(self, texts: list[str], route: str) -> Job:
        """Count the tokens of ``texts``, queue them and wait for their scores, embeddings and labels."""
        if self.batcher is None or self.counter is None:
            raise ApiError(503, "not_ready", "the model is still loading; retry when /health/ready answers 200")
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        tokens = await loop.run_in_executor(self.counter.executor, self.counter.count, texts)
        self.metrics.tokenization_seconds.observe(time.perf_counter() - started)
        try:
            job = self.batcher.submit(texts, tokens)
        except QueueFull as error:
            raise ApiError(429, "queue_full", str(error), {"Retry-After": RETRY_AFTER_SECONDS}) from None
        except Stopped as error:
            raise ApiError(503, "draining", str(error)) from None
        self.metrics.texts.labels(route=route).inc(len(texts))
        try:
            return await job.future
        except Stopped as error:
            raise ApiError(503, "draining", str(error)) from None

    async def run_exclusive(self, count: int, function: Callable[[], Any], route: str) -> Any:
        """Run ``function`` alone on the inference thread (``count`` texts against the queue limit)."""
        if self.batcher is None:
            raise ApiError(503, "not_ready", "the model is still loading; retry when /health/ready answers 200")
        try:
            result = await self.batcher.run_exclusive(count, function)
        except QueueFull as error:
            raise ApiError(429, "queue_full", str(error), {"Retry-After": RETRY_AFTER_SECONDS}) from None
        self.metrics.texts.labels(route=route).inc(count)
        return result
