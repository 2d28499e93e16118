"""The HTTP service of a labelspace model: `create_app(predictor_or_loader, settings) -> FastAPI`.

Contract (docs/serving.md has the long version with curl examples):

- ``create_app(predictor_or_loader, settings)``: ``predictor_or_loader`` is a `Predictor` or a callable that
  returns one (e.g. ``lambda: Predictor.load(run, backend="onnx")``); it is loaded, then warmed up with one
  prediction, in a background thread when the app starts (ASGI lifespan), so ``/health/live`` and
  ``/health/ready`` answer at once (a ready-made `Predictor` is only warmed up, before the app starts).
  ``settings`` is a `ServeSettings` (every limit and default).
  ``app.state.service`` is the `Service` (``mark_stopping()``: /health/ready 503, requests still served;
  ``begin_drain()``: /v1 503 too; ``ready``, ``load_error``, ``batcher``, ``metrics``). On SIGTERM ``labelspace
  serve`` calls ``mark_stopping()`` and uvicorn stops accepting connections and answers those in progress;
  the lifespan shutdown then drains the queue (up to ``drain_timeout``).
- ``labelspace serve RUN [--host 127.0.0.1] [--port 8000] [--backend torch|onnx|onnx-int8] [--threads N]
  [--max-batch-tokens 8192] [--max-wait-ms 5] [--max-queue 1024] [--max-texts 256] [--max-text-chars 20000]
  [--truncate] [--max-body-bytes 4194304] [--api-key KEY] [--drain-timeout 30] [--no-batching]`` runs it on
  uvicorn (one worker; ``LABELSPACE_API_KEY`` is read when ``--api-key`` is not given).

Routes (JSON in and out):

- ``POST /v1/predict`` ``{"texts": [str, ...], "top_k": int >= 1 (optional), "return_scores": bool (default
  true)}`` -> ``{"results": [{"labels": [...], "scores": {label: probability}}, ...]}``: one result per text,
  in order; labels after the saved thresholds and decision rule, most probable first; ``scores`` holds every
  label (or the ``top_k`` most probable), most probable first, and is left out when ``return_scores`` is false.
- ``POST /v1/embed`` ``{"texts": [...]}`` -> ``{"embeddings": [[float, ...], ...], "dimension": d}``.
- ``POST /v1/similar`` ``{"texts": [...], "k": int (default 5)}`` -> ``{"results": [{"neighbours": [{"index",
  "score", "labels", "text"}, ...]}, ...]}``; 409 when the model has no index (the message names
  ``labelspace index build RUN --data TRAIN_FILE``).
- ``GET /v1/info`` -> model name and path, labels, thresholds, decision rule, scoring mode, backend, limits.
- ``GET /health/live`` -> 200 while the process is up; ``GET /health/ready`` -> 503 until the model is loaded
  and warmed up (and again once a shutdown began), 200 after; ``GET /metrics`` -> Prometheus text.
  Health and metrics never need the API key.

Errors are always ``{"error": {"type": str, "message": str}}``:
400 ``invalid_json`` (malformed JSON body); 422 ``validation_error`` (missing field, wrong type, empty list,
unknown field, ``top_k`` or ``k`` below 1, ``k`` above ``max_similar_k``) and ``invalid_text`` (a lone surrogate such
as ``"\\ud800"``); 413 ``too_many_texts``, ``text_too_long`` (unless ``truncate``; the OpenAPI schema states both
limits as maxItems / maxLength) and ``body_too_large`` (Content-Length or the bytes actually read);
401 ``unauthorized`` (with ``WWW-Authenticate: Bearer``); 404 ``not_found``; 405 ``method_not_allowed``;
409 ``no_labels`` / ``no_index``; 429 ``queue_full`` (with ``Retry-After``); 503 ``not_ready``, ``draining``,
``model_load_failed``; 500 ``internal_error`` only for a bug (logged).

Micro-batching (`labelspace.serve.batching`): texts of concurrent requests wait in one asyncio queue; a worker
takes all that are waiting (after at most ``max_wait_ms`` for more), sorts them by token count and runs them
in batches of at most ``max_batch_tokens`` padded tokens, each one pass of `Predictor.scores_and_embeddings`
on a single inference thread, so the event loop (and the health checks) stays free.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labelspace import __version__
from labelspace.inference.predictor import Predictor
from labelspace.models.scoring import BUILD_INDEX_COMMAND
from labelspace.serve.metrics import CONTENT_TYPE, route_label
from labelspace.serve.service import ApiError, Service
from labelspace.serve.settings import ServeSettings

__all__ = ["ERROR_TYPES", "create_app"]

logger = logging.getLogger("labelspace.serve")

#: The ``type`` of an error answer for an HTTP status raised by the framework itself (routing, parsing).
ERROR_TYPES = {400: "invalid_json", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


# ----------------------------------------------------------------------------- request and response bodies

TEXTS_DESCRIPTION = (
    "The texts, at least one; at most max_texts_per_request (default 256, else 413) of at most max_text_chars "
    "characters each (default 20000, else 413 unless the server cuts them: --truncate). See GET /v1/info."
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: A positive integer, also written as an integral float (``5.0``, which JSON Schema counts as an integer); never a
#: string or a bool.
PositiveWholeNumber = Annotated[
    StrictInt, Field(ge=1), BeforeValidator(lambda value: int(value) if _integral_float(value) else value)
]


def _integral_float(value: Any) -> bool:
    return isinstance(value, float) and value.is_integer()


class PredictRequest(_Body):
    texts: list[StrictStr] = Field(min_length=1, description=TEXTS_DESCRIPTION)
    top_k: PositiveWholeNumber | None = Field(
        default=None, description="Return the scores of the top_k most probable labels only (default: all)."
    )
    return_scores: StrictBool = Field(default=True, description="Include each text's label scores.")


def limited_request(base: type[_Body], settings: ServeSettings) -> type[_Body]:
    """``base`` whose OpenAPI schema states this server's limits on ``texts`` (maxItems, and maxLength unless the
    server cuts long texts), so that clients and schema-driven tests know them; going past them is a 413 (checked
    by `Service.check_texts`), not a schema error. A ``k`` field gets the server's ``max_similar_k`` as its maximum
    (going past it is a 422)."""
    items: dict[str, Any] = {"type": "string"}
    if not settings.truncate:
        items["maxLength"] = settings.max_text_chars
    limits = {"maxItems": settings.max_texts_per_request, "items": items}
    texts = Field(min_length=1, description=TEXTS_DESCRIPTION, json_schema_extra=limits)
    fields: dict[str, Any] = {"texts": (list[StrictStr], texts)}
    if "k" in base.model_fields:
        description = f"Neighbours per text, at most max_similar_k ({settings.max_similar_k})."
        fields["k"] = (PositiveWholeNumber, Field(default=5, le=settings.max_similar_k, description=description))
    return create_model(base.__name__, __base__=base, **fields)


def _body_type(handler: Callable[..., Any], model: type[BaseModel]) -> Callable[..., Any]:
    """``handler`` with its ``body`` parameter typed as ``model`` (a class made at run time, see `limited_request`)."""
    handler.__annotations__["body"] = model
    return handler


class PredictResult(BaseModel):
    labels: list[str] = Field(description="Labels after the saved thresholds and decision rule, most probable first.")
    scores: dict[str, float] | None = Field(
        default=None, description="Label -> score, most probable first (left out when return_scores is false)."
    )


class PredictResponse(BaseModel):
    results: list[PredictResult]


class EmbedRequest(_Body):
    texts: list[StrictStr] = Field(min_length=1, description=TEXTS_DESCRIPTION)


class EmbedResponse(BaseModel):
    embeddings: list[list[float]] = Field(description="One embedding per text, normalised as the model was trained.")
    dimension: int


class SimilarRequest(_Body):
    texts: list[StrictStr] = Field(min_length=1, description=TEXTS_DESCRIPTION)
    k: PositiveWholeNumber = Field(default=5, description="Neighbours per text, at most max_similar_k (default 100).")


class Neighbour(BaseModel):
    index: int = Field(description="Position of the example in the model's index.")
    score: float = Field(description="Cosine similarity.")
    labels: list[str]
    text: str | None


class SimilarResult(BaseModel):
    neighbours: list[Neighbour]


class SimilarResponse(BaseModel):
    results: list[SimilarResult]


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}


V1_ERRORS = _errors(400, 401, 413, 422, 429, 503)


# ----------------------------------------------------------------------------- errors


def error_response(
    service: Service, path: str, status: int, type: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON error answer ``{"error": {"type", "message"}}``, counted as a failure of the route.

    A message naming part of the request (a field name) may hold a lone surrogate, which UTF-8 cannot carry:
    it is written as a backslash escape instead.
    """
    service.metrics.failure(path, type)
    printable = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": {"type": type, "message": printable}}, status_code=status, headers=headers)


def _validation_message(error: RequestValidationError) -> tuple[int, str, str]:
    """(status, type, message) of a request that does not fit its schema; a malformed JSON body is a 400."""
    problems = error.errors()
    if any(problem.get("type") == "json_invalid" for problem in problems):
        problem = next(problem for problem in problems if problem.get("type") == "json_invalid")
        detail = (problem.get("ctx") or {}).get("error", "")
        where = problem.get("loc", ("body", "?"))[-1]
        return 400, "invalid_json", f"the body is not valid JSON: {detail} (at character {where})"
    parts = []
    for problem in problems[:5]:  # the message, never the input: it may hold what JSON cannot carry back
        location = ".".join(str(part) for part in problem.get("loc", ()) if part != "body") or "body"
        parts.append(f"{location}: {problem.get('msg', 'invalid')}")
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return 422, "validation_error", "; ".join(parts) + more


# ----------------------------------------------------------------------------- the guard on /v1 routes


class GuardMiddleware:
    """Counts every request and times it; on /v1 routes refuses, before any parsing: a draining server (503),
    a missing or wrong API key (401) and a body over ``max_body_bytes`` (413, by Content-Length and by the
    bytes actually read)."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service
        key = service.settings.api_key
        self.expected_authorization = None if key is None else f"Bearer {key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        metrics = self.service.metrics
        metrics.request(path)
        started = time.perf_counter()
        try:
            if path.startswith("/v1/"):
                refusal = self._refusal(scope)
                if refusal is not None:
                    await refusal(scope, receive, send)
                    return
                if scope["method"] in ("POST", "PUT", "PATCH"):
                    body_or_refusal = await self._read_body(scope, receive)
                    if isinstance(body_or_refusal, Response):
                        await body_or_refusal(scope, receive, send)
                        return
                    if body_or_refusal is None:
                        return  # the client went away
                    receive = _replay(body_or_refusal, receive)
            await self.app(scope, receive, send)
        finally:
            metrics.request_seconds.labels(route=route_label(path)).observe(time.perf_counter() - started)

    def _refusal(self, scope: Scope) -> Response | None:
        service, path = self.service, scope["path"]
        if service.draining:
            return error_response(
                service,
                path,
                503,
                "draining",
                "the server is shutting down; send the request to another replica",
                {"Connection": "close"},
            )
        if self.expected_authorization is not None:
            given = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, key = given.partition(b" ")
            normalised = b"Bearer " + key.strip() if scheme.lower() == b"bearer" else b""
            if not hmac.compare_digest(normalised, self.expected_authorization):
                message = "a wrong API key" if given else "no API key"
                return error_response(
                    service,
                    path,
                    401,
                    "unauthorized",
                    f"this server needs an API key and the request has {message}: send 'Authorization: Bearer KEY'",
                    {"WWW-Authenticate": 'Bearer realm="labelspace"'},
                )
        return None

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | Response | None:
        limit = self.service.settings.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return self._too_large(scope["path"], int(declared))
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return self._too_large(scope["path"], None)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self, path: str, declared: int | None) -> Response:
        limit = self.service.settings.max_body_bytes
        size = f"{declared} bytes" if declared is not None else "more bytes than that"
        return error_response(
            self.service,
            path,
            413,
            "body_too_large",
            f"the request body has {size}; the limit is {limit} bytes (--max-body-bytes): send fewer texts at once",
            {"Connection": "close"},
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the client's later messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# ----------------------------------------------------------------------------- the app


def _info(service: Service, predictor: Predictor) -> dict[str, Any]:
    model, settings = predictor.model, service.settings
    path = settings.model_path
    names = predictor.label_names
    return {
        "model": {
            "name": _model_name(path),
            "path": path,
            "dimension": model.encoder.dimension,
            "max_seq_length": model.encoder.max_seq_length,
            "normalize": bool(model.encoder.normalize),
            "has_head": model.head is not None,
            "has_index": model.index is not None,
            "index_size": None if model.index is None else len(model.index),
        },
        "labels": names,
        "thresholds": dict(zip(names, predictor.thresholds.tolist(), strict=True)),
        "decision_rule": model.decision_rule,
        "top_k": model.top_k,
        "scoring": model.scoring.to_dict(),
        "backend": predictor.backend,
        "limits": settings.limits(),
        "version": __version__,
    }


def _model_name(path: str | None) -> str | None:
    """The run's name: the folder served, or the run folder above a ``model/`` folder."""
    if not path:
        return None
    parts = [part for part in path.replace("\\", "/").rstrip("/").split("/") if part]
    if len(parts) >= 2 and parts[-1] == "model":
        return parts[-2]
    return parts[-1] if parts else None


def _predict_results(job: Any, names: np.ndarray, top_k: int | None, return_scores: bool) -> list[dict[str, Any]]:
    labels = job.labels
    if not return_scores:
        return [{"labels": text_labels} for text_labels in labels]
    scores = job.scores
    shown = scores.shape[1] if top_k is None else min(top_k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :shown]
    values = np.take_along_axis(scores, order, axis=1).tolist()
    ranked_names = names[order].tolist()
    return [
        {"labels": text_labels, "scores": dict(zip(row_names, row_values, strict=True))}
        for text_labels, row_names, row_values in zip(labels, ranked_names, values, strict=True)
    ]


def create_app(predictor_or_loader: Predictor | Callable[[], Predictor], settings: ServeSettings) -> FastAPI:
    """The FastAPI app serving a model (see the module docstring for the routes, errors and batching).

    ``predictor_or_loader``: a `Predictor`, or a callable that returns one, run in a background thread when the
    app starts, followed by one warm-up prediction; ``/health/ready`` answers 200 after that (a `Predictor` given
    ready-made is warmed up before the app starts). The app may be started again after a shutdown.

    Example:
        >>> import tempfile, time
        >>> from starlette.testclient import TestClient
        >>> from labelspace.models import LabelspaceModel
        >>> from labelspace.models.testing import tiny_model_folder
        >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=["joy", "anger"])
        >>> model.set_thresholds(0.0)  # every label passes
        >>> with TestClient(create_app(Predictor(model), ServeSettings())) as client:
        ...     while client.get("/health/ready").status_code != 200:
        ...         time.sleep(0.01)
        ...     answer = client.post("/v1/predict", json={"texts": ["so happy"], "return_scores": False}).json()
        >>> sorted(answer["results"][0]["labels"])
        ['anger', 'joy']
    """
    service = Service(predictor_or_loader, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        await service.start()
        try:
            yield
        finally:
            drained = await service.stop()
            if not drained:
                logger.warning(
                    "labelspace serve: drain timeout (%ss) reached with requests unanswered", settings.drain_timeout
                )

    app = FastAPI(
        title="labelspace",
        version=__version__,
        description="Multi-label predictions, embeddings and nearest labelled examples of a labelspace model.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(GuardMiddleware, service=service)

    # -------------------------------------------------------------- error answers
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(service, request.url.path, error.status, error.type, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        status, type_, message = _validation_message(error)
        return error_response(service, request.url.path, status, type_, message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        type_ = ERROR_TYPES.get(error.status_code, "http_error")
        message = str(error.detail) if error.detail else type_
        if error.status_code == 400:
            message = f"the body could not be read as JSON: {message}"
        return error_response(service, request.url.path, error.status_code, type_, message, error.headers)

    @app.exception_handler(Exception)
    async def bug(request: Request, error: Exception) -> JSONResponse:
        logger.exception("labelspace serve: internal error on %s", request.url.path)
        return error_response(
            service,
            request.url.path,
            500,
            "internal_error",
            f"internal error ({type(error).__name__}): this is a bug in labelspace {__version__}; the server log "
            "has the traceback",
        )

    # -------------------------------------------------------------- health and metrics
    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        """200 while the process is up."""
        return {"status": "live"}

    @app.get("/health/ready", tags=["health"], responses=_errors(503))
    async def ready() -> dict[str, str]:
        """200 once the model is loaded and warmed up; 503 before (and once the server is shutting down)."""
        if service.stopping:
            raise ApiError(503, "draining", "the server is shutting down; send requests to another replica")
        service.require_ready()
        return {"status": "ready"}

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus text exposition: requests, failures, queue, batches, time split."""
        return PlainTextResponse(service.metrics.render(), media_type=CONTENT_TYPE)

    # -------------------------------------------------------------- the model
    @app.get("/v1/info", tags=["model"], responses=_errors(401, 503))
    async def info() -> dict[str, Any]:
        """Model name and path, labels, thresholds, decision rule, scoring mode, backend and limits."""
        return _info(service, service.require_ready())

    async def predict(body: PredictRequest) -> Response:
        """Labels (after the saved thresholds and decision rule) and label scores of each text, in order."""
        predictor = service.require_ready()
        if not predictor.model.predicts_labels:
            raise ApiError(409, "no_labels", "this model has no classification head nor kNN index: it only embeds")
        texts = service.check_texts(body.texts)
        job = await service.run(texts, "/v1/predict")
        names = np.asarray(predictor.label_names, dtype=object)
        return JSONResponse({"results": _predict_results(job, names, body.top_k, body.return_scores)})

    async def embed(body: EmbedRequest) -> Response:
        """One embedding per text, in order (normalised when the model normalises)."""
        service.require_ready()
        job = await service.run(service.check_texts(body.texts), "/v1/embed")
        return JSONResponse({"embeddings": job.embeddings.tolist(), "dimension": int(job.embeddings.shape[1])})

    async def similar(body: SimilarRequest) -> Response:
        """The k labelled examples of the model's index most similar to each text (cosine, best first)."""
        predictor = service.require_ready()
        if predictor.model.index is None:
            raise ApiError(
                409,
                "no_index",
                f"this model has no index of labelled examples; build one with `{BUILD_INDEX_COMMAND}` "
                "and restart the server",
            )
        texts = service.check_texts(body.texts)
        found = await service.run_exclusive(len(texts), lambda: predictor.similar(texts, body.k), "/v1/similar")
        return JSONResponse({"results": [{"neighbours": [example.to_dict() for example in row]} for row in found]})

    for path, handler, base, response, statuses in (
        ("/v1/predict", predict, PredictRequest, PredictResponse, _errors(409, *V1_ERRORS)),
        ("/v1/embed", embed, EmbedRequest, EmbedResponse, V1_ERRORS),
        ("/v1/similar", similar, SimilarRequest, SimilarResponse, _errors(409, *V1_ERRORS)),
    ):
        model = limited_request(base, settings)
        app.post(path, tags=["model"], response_model=response, responses=statuses)(_body_type(handler, model))
    return app
