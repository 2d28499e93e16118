"""Load test of `labelspace serve`: micro-batching vs none vs a hand-written FastAPI server vs ONNX int8.

16 concurrent clients (asyncio + httpx, one keep-alive connection each) send single-text
``POST /v1/predict`` requests on loopback for 30 s, cycling through the demo test texts
(`labelspace.data.builtin.demo("test")`, each client from its own offset). For each server the script
reports throughput (answered requests per second), p50 and p99 latency, and errors (any answer other
than 200, or a transport error). Four servers, each in its own subprocess, one after the other, all
with the same ``--threads``:

- (a) ``labelspace serve RUN`` with micro-batching (the default);
- (b) ``labelspace serve RUN --no-batching``;
- (c) a plain FastAPI app, the naive server users write by hand: per request,
  sentence-transformers ``SentenceTransformer(model folder).encode`` of the texts, then the saved
  head and the saved per-label thresholds (written by this script to a temporary file, run with
  uvicorn);
- (d) ``labelspace serve RUN --backend onnx-int8``; when the run has no int8 graph yet, the script
  first runs ``labelspace export RUN --format onnx --quantize int8 --dev DEMO_DEV`` (the int8 graph's
  thresholds re-tuned on the demo dev split).

A warm-up (``--warmup`` seconds of the same load) runs before each measurement and is left out.
The script ends with a markdown table and says which goals of issue 13 hold: (a) >= 3x (c) in
throughput with a p99 below (c)'s, (d) >= 5x (c), zero errors in every run.

RUN is a run folder trained on the demo set with MiniLM, e.g. the quickstart's::

    labelspace quickstart                      # writes runs/quickstart/ (a few minutes on a CPU)

or one trained with ``labelspace train`` on the demo files that come with the package::

    DEMO=$(python -c "from labelspace.data.builtin.demo import demo_path; print(demo_path('train').parent)")
    labelspace train --model minilm --train $DEMO/train.jsonl --dev $DEMO/dev.jsonl --out runs/demo

Usage:
    python bench/serve_load.py --run runs/quickstart [--seconds 30] [--clients 16] [--threads 4]
        [--warmup 5] [--only a,b,c,d] [--server-cpus 0-3] [--client-cpus 4-7] [--json results.json]

Run it on an idle machine; ``--server-cpus`` / ``--client-cpus`` pin the servers and the load generator
to separate cores (``taskset`` lists) so that the clients do not steal the servers' CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

from labelspace.data.builtin import demo
from labelspace.data.builtin.demo import demo_path

SERVERS = {
    "a": "labelspace serve (micro-batching)",
    "b": "labelspace serve --no-batching",
    "c": "plain FastAPI + sentence-transformers encode",
    "d": "labelspace serve --backend onnx-int8",
}
READY_TIMEOUT_S = 300.0
REQUEST_TIMEOUT_S = 60.0

# The naive server: what a user writes by hand around sentence-transformers. It answers the same
# request and response shapes as `labelspace serve` so that the same clients drive both.
NAIVE_APP = '''
"""Hand-written FastAPI server: sentence-transformers encode + the saved head + thresholds, per request."""
import json
import os
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

from labelspace.models.heads import ClassificationHead

FOLDER = Path(os.environ["NAIVE_MODEL_FOLDER"])
torch.set_num_threads(int(os.environ["NAIVE_THREADS"]))
CONFIG = json.loads((FOLDER / "labelspace.json").read_text(encoding="utf-8"))
LABELS = CONFIG["labels"]
THRESHOLDS = np.asarray(CONFIG["thresholds"], dtype=np.float32)
model = SentenceTransformer(str(FOLDER), device="cpu")
head = ClassificationHead.load(FOLDER).eval()
app = FastAPI()


class PredictRequest(BaseModel):
    texts: list[str]


@app.get("/health/ready")
def ready():
    return {"status": "ready"}


@app.post("/v1/predict")
def predict(request: PredictRequest):
    embeddings = model.encode(request.texts, convert_to_tensor=True)
    with torch.inference_mode():
        probabilities = torch.sigmoid(head(embeddings)).numpy()
    results = []
    for row in probabilities:
        order = np.argsort(-row)
        results.append({
            "labels": [LABELS[i] for i in order if row[i] >= THRESHOLDS[i]],
            "scores": {LABELS[i]: float(row[i]) for i in order},
        })
    return {"results": results}
'''


@dataclass
class Measurement:
    """What one server did under load (latencies in milliseconds)."""

    server: str
    description: str
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    throughput: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    error_examples: list[str] = field(default_factory=list)
    skipped: str | None = None


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def parse_cpus(text: str | None) -> set[int] | None:
    """``"0-3,6"`` -> {0, 1, 2, 3, 6} (a ``taskset -c`` list); None stays None."""
    if not text:
        return None
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def model_folder(run: Path) -> Path:
    """RUN/model when RUN is a run folder, else RUN itself (a model folder holds labelspace.json)."""
    return run if (run / "labelspace.json").is_file() else run / "model"


def labelspace_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "labelspace.cli", *args]


def has_int8_graph(run: Path) -> bool:
    """Whether the run already holds an int8 ONNX graph (any ``*int8*.onnx`` under the run folder)."""
    return any(run.rglob("*int8*.onnx"))


def export_int8(run: Path, environment: dict[str, str]) -> str | None:
    """Run ``labelspace export RUN --format onnx --quantize int8 --dev DEMO_DEV``; None on success, else why not."""
    # the demo dev split re-tunes the int8 graph's thresholds for its own scores
    command = labelspace_command(
        "export", str(run), "--format", "onnx", "--quantize", "int8", "--dev", str(demo_path("dev"))
    )
    print(f"exporting the int8 graph: {' '.join(command[2:])}", flush=True)
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        return f"`labelspace export` failed (exit {result.returncode}): {result.stderr.strip()[-500:]}"
    return None


class ServerProcess:
    """A server in its own subprocess (pinned to ``cpus``), its output in a log file; stopped with SIGTERM."""

    def __init__(self, command: Sequence[str], port: int, log: Path, environment: dict[str, str], cpus) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.command = list(command)
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                self.command,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=environment,
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
            )

    def tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-2000:]

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{' '.join(self.command)} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{' '.join(self.command)} not ready after {timeout:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def client(
    http: httpx.AsyncClient, texts: list[str], offset: int, stop_at: float, latencies: list[float], errors: list[str]
) -> None:
    """One client: single-text predict requests back to back until ``stop_at`` (a perf_counter time)."""
    position = offset
    while time.perf_counter() < stop_at:
        text = texts[position % len(texts)]
        position += 1
        started = time.perf_counter()
        try:
            response = await http.post("/v1/predict", json={"texts": [text]})
        except httpx.HTTPError as error:
            errors.append(f"{type(error).__name__}: {error}")
            continue
        elapsed = time.perf_counter() - started
        if response.status_code == 200 and len(response.json().get("results", [])) == 1:
            latencies.append(elapsed)
        else:
            errors.append(f"HTTP {response.status_code}: {response.text[:200]}")


async def load(url: str, texts: list[str], clients: int, seconds: float, headers: dict[str, str]):
    """``clients`` concurrent clients for ``seconds``: (latencies in seconds, errors, wall seconds)."""
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=REQUEST_TIMEOUT_S, headers=headers) as http:
        started = time.perf_counter()
        stop_at = started + seconds
        step = max(1, len(texts) // clients)
        await asyncio.gather(*(client(http, texts, i * step, stop_at, latencies, errors) for i in range(clients)))
        wall = time.perf_counter() - started
    return latencies, errors, wall


def measure(server: ServerProcess, key: str, texts: list[str], options: argparse.Namespace) -> Measurement:
    """Warm up, then drive ``server`` with the configured load; the warm-up is not counted."""
    headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
    if options.warmup > 0:
        asyncio.run(load(server.url, texts, options.clients, options.warmup, headers))
    latencies, errors, wall = asyncio.run(load(server.url, texts, options.clients, options.seconds, headers))
    result = Measurement(key, SERVERS[key], requests=len(latencies), errors=len(errors), seconds=wall)
    result.throughput = len(latencies) / wall
    if latencies:
        milliseconds = np.asarray(latencies) * 1000.0
        result.p50_ms = float(np.percentile(milliseconds, 50))
        result.p99_ms = float(np.percentile(milliseconds, 99))
    result.error_examples = sorted(set(errors))[:5]
    return result


def server_command(key: str, run: Path, port: int, threads: int, app_folder: Path) -> list[str]:
    common = ["--host", "127.0.0.1", "--port", str(port), "--threads", str(threads)]
    if key == "a":
        return labelspace_command("serve", str(run), *common)
    if key == "b":
        return labelspace_command("serve", str(run), *common, "--no-batching")
    if key == "d":
        return labelspace_command("serve", str(run), *common, "--backend", "onnx-int8")
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "naive_app:app",
        "--app-dir",
        str(app_folder),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def table(results: list[Measurement]) -> str:
    lines = [
        "| server | requests/s | p50 ms | p99 ms | requests | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        name = f"({result.server}) {result.description}"
        if result.skipped:
            lines.append(f"| {name} | skipped: {result.skipped} | | | | |")
        else:
            lines.append(
                f"| {name} | {result.throughput:.1f} | {result.p50_ms:.1f} | {result.p99_ms:.1f} "
                f"| {result.requests} | {result.errors} |"
            )
    return "\n".join(lines)


def goals(results: list[Measurement]) -> list[str]:
    """One line per goal of issue 13: held, missed, or not measured."""
    measured = {result.server: result for result in results if not result.skipped}
    naive = measured.get("c")
    lines = []

    def verdict(held: bool) -> str:
        return "HELD" if held else "MISSED"

    batched, int8 = measured.get("a"), measured.get("d")
    if batched and naive and naive.throughput > 0:
        ratio = batched.throughput / naive.throughput
        held = ratio >= 3.0 and batched.p99_ms < naive.p99_ms
        lines.append(
            f"- (a) >= 3x (c) throughput with p99 below (c)'s: {verdict(held)} "
            f"({ratio:.2f}x; p99 {batched.p99_ms:.1f} ms vs {naive.p99_ms:.1f} ms)"
        )
    else:
        lines.append("- (a) >= 3x (c) throughput with p99 below (c)'s: not measured")
    if int8 and naive and naive.throughput > 0:
        ratio = int8.throughput / naive.throughput
        lines.append(f"- (d) >= 5x (c) throughput: {verdict(ratio >= 5.0)} ({ratio:.2f}x)")
    else:
        lines.append("- (d) >= 5x (c) throughput: not measured")
    if measured:
        failing = [f"({result.server}) {result.errors}" for result in measured.values() if result.errors]
        detail = f" (errors: {', '.join(failing)})" if failing else ""
        lines.append(f"- zero errors in every run: {verdict(not failing)}{detail}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="run folder trained on the demo (e.g. runs/quickstart)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring (not counted)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads of every server")
    parser.add_argument("--only", default="a,b,c,d", help="which servers to run, e.g. a,c")
    parser.add_argument("--server-cpus", default=None, help="taskset list for the servers, e.g. 0-3")
    parser.add_argument("--client-cpus", default=None, help="taskset list for the load generator, e.g. 4-7")
    parser.add_argument("--api-key", default=None, help="API key the labelspace servers are started with")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    options = parser.parse_args()

    run = options.run.resolve()
    if not (model_folder(run) / "labelspace.json").is_file():
        parser.error(f"--run {run}: neither a run folder (RUN/model/labelspace.json) nor a model folder")
    keys = [key.strip() for key in options.only.split(",") if key.strip()]
    unknown = [key for key in keys if key not in SERVERS]
    if unknown:
        parser.error(f"--only: unknown server(s) {', '.join(unknown)} (expected some of {', '.join(SERVERS)})")
    client_cpus = parse_cpus(options.client_cpus)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    server_cpus = parse_cpus(options.server_cpus)

    texts = list(demo("test").texts)
    environment = {key: value for key, value in os.environ.items() if key != "LABELSPACE_API_KEY"}
    environment.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": str(options.threads),
            "NAIVE_MODEL_FOLDER": str(model_folder(run)),
            "NAIVE_THREADS": str(options.threads),
        }
    )
    if options.api_key:
        environment["LABELSPACE_API_KEY"] = options.api_key

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; run {run}; {options.clients} clients, "
        f"{options.seconds:g} s (+{options.warmup:g} s warm-up) per server, --threads {options.threads}; "
        f"{len(texts)} demo test texts, one per request",
        flush=True,
    )
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="labelspace-serve-load-") as scratch:
        scratch_path = Path(scratch)
        (scratch_path / "naive_app.py").write_text(NAIVE_APP, encoding="utf-8")
        for key in keys:
            if key == "d" and not has_int8_graph(run):
                problem = export_int8(run, environment)
                if problem:
                    print(f"({key}) skipped: {problem}", flush=True)
                    results.append(Measurement(key, SERVERS[key], skipped=problem.splitlines()[0][:120]))
                    continue
            port = free_port()
            command = server_command(key, run, port, options.threads, scratch_path)
            print(f"({key}) {SERVERS[key]}: starting {' '.join(command[2:])}", flush=True)
            server = ServerProcess(command, port, scratch_path / f"server_{key}.log", environment, server_cpus)
            try:
                server.wait_ready()
                result = measure(server, key, texts, options)
            finally:
                server.stop()
            print(
                f"({key}) {result.throughput:.1f} requests/s, p50 {result.p50_ms:.1f} ms, "
                f"p99 {result.p99_ms:.1f} ms, {result.errors} errors",
                flush=True,
            )
            for example in result.error_examples:
                print(f"    error: {example}", flush=True)
            results.append(result)

    print()
    print(table(results))
    print()
    print("Goals of issue 13:")
    print("\n".join(goals(results)))
    if options.json:
        options.json.write_text(json.dumps([asdict(result) for result in results], indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
