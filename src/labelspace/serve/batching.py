"""Micro-batching: texts of concurrent requests run together, sorted by length, in token-bounded batches.

A request's texts become a `Job` in one asyncio queue. A worker task takes every job waiting (after waiting at
most ``max_wait_ms`` from the oldest one's arrival for others to join, unless a full batch already waits),
sorts their texts by token count and cuts them into batches whose padded size (texts x longest text) stays
within ``max_batch_tokens``; each batch is one call of ``infer`` on the inference thread, so the event loop
stays free. Each text's scores, embedding and labels go back to its job; a job's future resolves when all its
texts are done, so every request gets its own results in its own order. Jobs taken in one round are all served
before the next round starts, so a long text cannot be starved by a stream of short ones.

With ``batching=False`` the worker takes one job at a time (a request never shares a forward pass).

Example:
    >>> import asyncio, concurrent.futures
    >>> import numpy as np
    >>> calls = []
    >>> def infer(texts):  # scores = text lengths, embeddings = 1s, labels = the texts themselves
    ...     calls.append(list(texts))
    ...     return np.array([[len(t)] for t in texts], float), np.ones((len(texts), 2)), [[t] for t in texts]
    >>> async def main():
    ...     batcher = MicroBatcher(infer, executor=concurrent.futures.ThreadPoolExecutor(1), max_wait_ms=50)
    ...     batcher.start()
    ...     first = batcher.submit(["ccc", "a"], np.array([5, 3]))
    ...     second = batcher.submit(["bb"], np.array([4]))
    ...     jobs = await asyncio.gather(first.future, second.future)
    ...     await batcher.stop(timeout=1)
    ...     return [job.labels for job in jobs]
    >>> asyncio.run(main())
    [[['ccc'], ['a']], [['bb']]]
    >>> calls  # one forward pass, shortest first
    [['a', 'bb', 'ccc']]
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labelspace.serve.metrics import ServeMetrics

__all__ = ["InferFunction", "Job", "MicroBatcher", "QueueFull", "Stopped", "token_batches"]

logger = logging.getLogger("labelspace.serve")

#: texts -> (N x L scores or None, N x d embeddings, N label lists or None), run on the inference thread.
InferFunction = Callable[[list[str]], tuple[Any, Any, Any]]


class QueueFull(Exception):
    """The queue holds too many texts to take a request's texts (the server answers 429)."""


class Stopped(Exception):
    """The batcher stopped (shutdown) before a job was served (the server answers 503)."""


@dataclass(eq=False)
class Job:
    """One request's texts, their token counts and, once served, their scores, embeddings and labels."""

    texts: list[str]
    tokens: np.ndarray
    future: asyncio.Future[Job]
    enqueued: float
    scores: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    labels: list[Any] = field(default_factory=list)
    remaining: int = 0
    started: bool = False


def token_batches(tokens: np.ndarray, max_batch_tokens: int) -> list[np.ndarray]:
    """Positions of ``tokens`` sorted by token count and cut into batches of at most ``max_batch_tokens`` padded
    tokens (size x longest); a text longer than the budget runs alone.

    Example:
        >>> [batch.tolist() for batch in token_batches(np.array([9, 2, 3, 2]), 8)]
        [[1, 3], [2], [0]]
    """
    order = np.argsort(tokens, kind="stable")
    ordered = tokens[order]
    batches, start = [], 0
    for end in range(1, len(order) + 1):
        if end == len(order) or (end - start + 1) * int(ordered[end]) > max_batch_tokens:
            batches.append(order[start:end])
            start = end
    return batches


class MicroBatcher:
    """Gathers texts of concurrent requests into token-bounded batches run on ``executor`` (see the module)."""

    def __init__(
        self,
        infer: InferFunction,
        *,
        executor: Executor,
        max_batch_tokens: int = 8192,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
        batching: bool = True,
        metrics: ServeMetrics | None = None,
    ) -> None:
        self.infer = infer
        self.executor = executor
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.batching = batching
        self.metrics = metrics
        self._pending: deque[Job] = deque()
        self._waiting_texts = 0
        self._waiting_tokens = 0
        self._busy = 0  # rounds and exclusive calls running
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ state
    @property
    def waiting_texts(self) -> int:
        """Texts accepted and not yet in a forward pass."""
        return self._waiting_texts

    def _set_waiting(self, texts: int, tokens: int) -> None:
        self._waiting_texts += texts
        self._waiting_tokens += tokens
        if self.metrics is not None:
            self.metrics.queue_texts.set(self._waiting_texts)
        self._update_idle()

    def _update_idle(self) -> None:
        if self._pending or self._busy:
            self._idle.clear()
        else:
            self._idle.set()

    def _reserve(self, count: int) -> None:
        if self._waiting_texts + count > self.max_queue:
            raise QueueFull(
                f"the server is busy: {self._waiting_texts} texts are waiting and the queue holds {self.max_queue}"
                f" (--max-queue); {count} more do not fit, retry shortly"
            )

    # ------------------------------------------------------------------ submitting
    def submit(self, texts: list[str], tokens: np.ndarray) -> Job:
        """Queue ``texts`` (with their token counts); await ``job.future`` for the served `Job`.

        Raises `QueueFull` when the waiting texts would pass ``max_queue``, `Stopped` after `stop`.
        """
        if self._task is None or self._task.done():
            raise Stopped("the server is shutting down")
        self._reserve(len(texts))
        loop = asyncio.get_running_loop()
        job = Job(list(texts), np.asarray(tokens, dtype=np.int64), loop.create_future(), loop.time())
        job.remaining = len(texts)
        self._pending.append(job)
        self._set_waiting(len(texts), int(job.tokens.sum()))
        self._arrived.set()
        return job

    async def run_exclusive(self, count: int, function: Callable[[], Any]) -> Any:
        """Run ``function`` alone on the inference thread, counting ``count`` texts against the queue."""
        self._reserve(count)
        self._set_waiting(count, 0)
        self._busy += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, function)
        finally:
            self._busy -= 1
            self._set_waiting(-count, 0)

    # ------------------------------------------------------------------ the worker
    def start(self) -> None:
        """Start the worker task (in the running event loop)."""
        self._task = asyncio.get_running_loop().create_task(self._work(), name="labelspace-batcher")

    async def stop(self, timeout: float) -> bool:
        """Serve what was accepted for up to ``timeout`` s, then stop; jobs left fail with `Stopped`.

        Returns whether everything accepted was served in time.
        """
        drained = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            drained = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(Stopped("the server shut down before this request was served"))
        return drained

    async def _gather(self) -> list[Job]:
        """Wait for work, then up to ``max_wait`` for more; take the jobs of one round."""
        loop = asyncio.get_running_loop()
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        if self.batching and self.max_wait > 0:
            deadline = self._pending[0].enqueued + self.max_wait
            while self._waiting_tokens < self.max_batch_tokens and (remaining := deadline - loop.time()) > 0:
                self._arrived.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)
        jobs = list(self._pending) if self.batching else [self._pending[0]]
        for _ in jobs:
            self._pending.popleft()
        self._busy += 1
        self._set_waiting(-sum(len(job.texts) for job in jobs), -sum(int(job.tokens.sum()) for job in jobs))
        return [job for job in jobs if not job.future.done()]  # a cancelled request is not run

    async def _work(self) -> None:
        while True:
            jobs = await self._gather()
            try:
                await self._run_round(jobs)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a bug of the backend: every job of the round gets it (logged by the app)
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
            finally:
                self._busy -= 1
                self._update_idle()

    async def _run_round(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        loop = asyncio.get_running_loop()
        owners = np.repeat(np.arange(len(jobs)), [len(job.texts) for job in jobs])
        positions = np.concatenate([np.arange(len(job.texts)) for job in jobs])
        tokens = np.concatenate([job.tokens for job in jobs])
        for batch in token_batches(tokens, self.max_batch_tokens):
            batch_owners, batch_positions = owners[batch], positions[batch]
            texts = [jobs[owner].texts[position] for owner, position in zip(batch_owners, batch_positions, strict=True)]
            now = loop.time()
            for owner in np.unique(batch_owners):
                job = jobs[owner]
                if not job.started:
                    job.started = True
                    if self.metrics is not None:
                        self.metrics.queue_seconds.observe(now - job.enqueued)
            if self.metrics is not None:
                self.metrics.batch_size.observe(len(texts))
                self.metrics.batch_tokens.observe(len(texts) * int(tokens[batch].max()))
            try:
                scores, embeddings, labels = await loop.run_in_executor(self.executor, self.infer, texts)
            except Exception as error:
                for owner in np.unique(batch_owners):
                    if not jobs[owner].future.done():
                        jobs[owner].future.set_exception(error)
                continue
            finally:
                if self.metrics is not None:
                    self.metrics.inference_seconds.observe(loop.time() - now)
            self._deliver(jobs, batch_owners, batch_positions, scores, embeddings, labels)

    @staticmethod
    def _deliver(
        jobs: list[Job], owners: np.ndarray, positions: np.ndarray, scores: Any, embeddings: Any, labels: Any
    ) -> None:
        """Copy each row of a batch's outputs to its job; resolve the jobs that are complete."""
        for owner in np.unique(owners):
            job = jobs[owner]
            rows = np.flatnonzero(owners == owner)
            where = positions[rows]
            if job.embeddings is None:
                job.embeddings = np.empty((len(job.texts), embeddings.shape[1]), dtype=embeddings.dtype)
                if scores is not None:
                    job.scores = np.empty((len(job.texts), scores.shape[1]), dtype=scores.dtype)
                job.labels = [None] * len(job.texts)
            job.embeddings[where] = embeddings[rows]
            if scores is not None and job.scores is not None:
                job.scores[where] = scores[rows]
            if labels is not None:
                for row, position in zip(rows.tolist(), where.tolist(), strict=True):
                    job.labels[position] = labels[row]
            job.remaining -= len(rows)
            if job.remaining == 0 and not job.future.done():
                job.future.set_result(job)
