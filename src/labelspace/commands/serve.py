"""``labelspace serve RUN``: the HTTP service of a trained model (`labelspace.serve.create_app`) on uvicorn.

One process with one worker holds the model once; the model loads in the background so ``/health/live`` and
``/health/ready`` answer at once. SIGTERM (or Ctrl-C) drains: the server stops accepting, answers what it
accepted (up to ``--drain-timeout``), then exits. A model that cannot be loaded stops the server with a
one-line error and exit status 2. More throughput: several replicas on other ports (or machines) behind a
load balancer that polls ``/health/ready`` (docs/serving.md).
"""

from __future__ import annotations

import importlib
import logging
import re
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from labelspace import serve
from labelspace.commands.common import (
    BackendOption,
    CommandError,
    ThreadsOption,
    console,
    load_predictor,
    resolve_model_folder,
)
from labelspace.serve import API_KEY_ENV, ServeSettings
from labelspace.serve.settings import BACKENDS

__all__ = ["SERVE_EPILOG", "SERVE_PACKAGES", "SETTING_FLAGS", "missing_serve_packages", "register", "run_server"]

SERVE_EPILOG = (
    "Example: labelspace serve runs/quickstart\n\n"
    "Example: labelspace serve runs/x --host 0.0.0.0 --port 8080 --backend onnx-int8 --threads 4 --api-key $KEY\n\n"
    "Then: curl -s localhost:8000/v1/predict -H 'Content-Type: application/json' "
    '-d \'{"texts": ["I was charged twice"]}\'\n\n'
    "Replicas: one process serves one model with one worker; for more throughput start several (--port 8001, "
    "--port 8002, ... or one per machine) behind a load balancer whose readiness probe is GET /health/ready. "
    "Docs: docs/serving.md"
)
#: What ``pip install labelspace[serve]`` brings and the server needs.
SERVE_PACKAGES = ("fastapi", "uvicorn", "prometheus_client")
#: The option of each `ServeSettings` field, to name options in errors.
SETTING_FLAGS = {
    "max_texts_per_request": "--max-texts",
    "max_queue": "--max-queue",
    "api_key": "--api-key",
    "threads": "--threads",
}


def missing_serve_packages() -> list[str]:
    """The packages of the ``serve`` extra that cannot be imported."""
    missing = []
    for name in SERVE_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def run_server(app: Any, settings: ServeSettings) -> str | None:
    """Run ``app`` on uvicorn at ``settings.host:port`` until SIGTERM / Ctrl-C; returns why the model could not
    be loaded, if it could not (the server then stops at once)."""
    import uvicorn

    service = app.state.service

    class DrainingServer(uvicorn.Server):
        """uvicorn's server, which also makes /health/ready answer 503 as soon as a signal asks it to stop (uvicorn
        then stops accepting connections and answers the requests it has), and stops when the model cannot load."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            service.mark_stopping()
            super().handle_exit(sig, frame)
            # uvicorn raises a caught signal again once it has shut down; a SIGTERM is the normal way to stop a
            # replica and was drained on purpose, so the process exits 0 instead of dying of the signal.
            captured = getattr(self, "_captured_signals", None)
            if sig == signal.SIGTERM and isinstance(captured, list) and sig in captured:
                captured.remove(sig)

        async def on_tick(self, counter: int) -> bool:
            if service.load_error is not None:
                self.should_exit = True
            return await super().on_tick(counter)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        workers=1,
        lifespan="on",
        timeout_graceful_shutdown=settings.drain_timeout,  # type: ignore[arg-type] - a float works
        log_level="info",
    )
    DrainingServer(config).run()
    return service.load_error


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the app."""

    @app.command("serve", epilog=SERVE_EPILOG)
    def serve_command(
        run: Annotated[Path, typer.Argument(help="Run folder (from 'labelspace train') or model folder.")],
        host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")] = (
            "127.0.0.1"
        ),
        port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8000,
        backend: BackendOption = "torch",
        threads: ThreadsOption = None,
        max_batch_tokens: Annotated[
            int, typer.Option("--max-batch-tokens", min=1, help="Padded tokens of one forward pass.")
        ] = 8192,
        max_wait_ms: Annotated[
            float, typer.Option("--max-wait-ms", min=0, help="How long a text waits for others to join its batch.")
        ] = 5.0,
        max_queue: Annotated[
            int, typer.Option("--max-queue", min=1, help="Texts waiting for inference; more: 429 with Retry-After.")
        ] = 1024,
        max_texts: Annotated[int, typer.Option("--max-texts", min=1, help="Texts in one request; more: 413.")] = 256,
        max_text_chars: Annotated[
            int, typer.Option("--max-text-chars", min=1, help="Characters of one text; more: 413 (or --truncate).")
        ] = 20_000,
        truncate: Annotated[
            bool, typer.Option("--truncate", help="Cut texts longer than --max-text-chars instead of refusing them.")
        ] = False,
        max_body_bytes: Annotated[
            int, typer.Option("--max-body-bytes", min=1, help="Bytes of a request body; more: 413.")
        ] = 4 * 1024 * 1024,
        api_key: Annotated[
            str | None,
            typer.Option(
                "--api-key",
                envvar=API_KEY_ENV,
                show_envvar=True,
                help="Require 'Authorization: Bearer KEY' on /v1 routes (health and metrics stay open).",
            ),
        ] = None,
        drain_timeout: Annotated[
            float,
            typer.Option("--drain-timeout", min=0, help="Seconds a shutdown waits for accepted requests."),
        ] = 30.0,
        no_batching: Annotated[
            bool, typer.Option("--no-batching", help="Run each request alone (no micro-batching; for comparisons).")
        ] = False,
    ) -> None:
        """Serve a model over HTTP: /v1/predict, /v1/embed, /v1/similar, /v1/info, /health/*, /metrics."""
        missing = missing_serve_packages()
        if missing:
            raise CommandError(
                f"labelspace serve needs {', '.join(missing)}, which is not installed: pip install 'labelspace[serve]'"
            )
        if backend not in BACKENDS:
            raise CommandError(f"--backend: expected one of {', '.join(BACKENDS)}; got {backend!r}")
        folder = resolve_model_folder(run)  # a missing or wrong folder fails now, not in the background
        try:
            settings = ServeSettings(
                host=host,
                port=port,
                backend=backend,
                threads=threads,
                model_path=str(folder),
                max_batch_tokens=max_batch_tokens,
                max_wait_ms=max_wait_ms,
                max_queue=max_queue,
                max_texts_per_request=max_texts,
                max_text_chars=max_text_chars,
                truncate=truncate,
                max_body_bytes=max_body_bytes,
                api_key=api_key or None,
                drain_timeout=drain_timeout,
                batching=not no_batching,
            )
        except ValueError as error:
            message = str(error)
            for name, flag in SETTING_FLAGS.items():
                message = re.sub(rf"\b{name}\b", flag, message)
            raise CommandError(message) from None

        def load() -> Any:
            return load_predictor(folder, backend=backend, threads=threads)[0]

        logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(name)s: %(message)s")
        console.print(f"labelspace serve: {folder} ({backend}) on http://{host}:{port}  docs: /docs", soft_wrap=True)
        load_error = run_server(serve.create_app(load, settings), settings)
        if load_error is not None:
            raise CommandError(f"{folder}: the model could not be served: {load_error}")
