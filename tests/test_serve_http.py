"""`labelspace serve` for real (issue 13): the CLI in a subprocess on a free port of 127.0.0.1, a real HTTP client.

The in-process tests of the app (httpx's ASGI transport, a gated backend) are in tests/test_serve_app.py; these
check what only a real server shows: the command line, uvicorn's HTTP parsing (bodies, chunked uploads, bytes
that are not UTF-8), the API key read from the environment, readiness before the model is loaded, SIGTERM with
requests in flight, the Prometheus text over the wire and a schemathesis run over the served OpenAPI schema.

Expectations are independent of the server: the Python `Predictor` on the same texts (labels exactly, scores
within 1e-5), the limits the test starts the server with, and the requests the test itself sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from labelspace.data.builtin import demo
from labelspace.inference.predictor import Predictor
from labelspace.models import LabelspaceModel
from labelspace.models.scoring import LabelIndex
from labelspace.models.testing import tiny_model_folder

API_KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_TEXTS = 8
MAX_TEXT_CHARS = 400
MAX_BODY_BYTES = 8192
START_TIMEOUT_S = 120.0
TOLERANCE = 1e-5

#: Valid texts a tokenizer may trip over: emoji (a ZWJ family, skin tones), right-to-left scripts and marks,
#: zero-width characters, combining accents, a NUL character, empty and blank texts.
ODD_TEXTS = [
    "great support 😀👍🏽🎉",
    "👨\u200d👩\u200d👧 family plan",
    "مرحبا، تم خصم المبلغ مرتين",  # Arabic (right to left)
    "\u200fשלום, the app crashes\u200e",  # Hebrew between RLM / LRM marks
    "zero\u200bwidth\u200c\u200djoiner\ufeff",
    "cafe\u0301 re\u0301sume\u0301",
    "nul\u0000byte",
    "",
    "   ",
]

#: A child interpreter that runs `labelspace serve` with `Predictor.load` held until a file exists: the
#: server is up (live) while its model is not loaded yet, for as long as the test wants.
GATED_SERVE = """
import sys, time
from pathlib import Path
from labelspace.inference.predictor import Predictor
from labelspace.cli import main

release = Path(sys.argv[1])
load = Predictor.load.__func__

def held_load(cls, *args, **kwargs):
    while not release.exists():
        time.sleep(0.02)
    return load(cls, *args, **kwargs)

Predictor.load = classmethod(held_load)
main(sys.argv[2:])
"""


# ----------------------------------------------------------------------------- the server in a subprocess


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (the OS picks it; released for the server to take)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """``labelspace serve RUN OPTIONS`` (or ``prefix`` + the same arguments) in a subprocess on a free port."""

    def __init__(
        self,
        run: Path,
        *options: str,
        logs: Path,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        arguments = ["serve", str(run), "--host", "127.0.0.1", "--port", str(self.port), "--threads", "1", *options]
        command = [*(prefix or [sys.executable, "-m", "labelspace.cli"]), *arguments]
        environment = {
            key: value for key, value in os.environ.items() if key not in ("LABELSPACE_API_KEY", "LABELSPACE_DEBUG")
        }
        environment.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
        environment.setdefault("OMP_NUM_THREADS", "1")
        environment.update(env or {})
        logs.mkdir(parents=True, exist_ok=True)
        self.log = logs / f"serve-{self.port}.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment)

    def output(self) -> str:
        """What the server printed so far (stdout and stderr)."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, path: str, status: int = 200, timeout: float = START_TIMEOUT_S) -> httpx.Response:
        """Poll ``GET path`` until it answers ``status``; fails with the server's output on timeout or exit."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"the server exited with {self.process.returncode} before {path} answered:\n{self.output()}"
                )
            try:
                response = httpx.get(self.url + path, timeout=5)
                if response.status_code == status:
                    return response
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.TransportError as error:
                last = repr(error)
            time.sleep(0.05)
        pytest.fail(
            f"{path} did not answer {status} within {timeout:.0f} s (last: {last}); server output:\n{self.output()}"
        )

    def stop(self) -> int:
        """SIGTERM, then SIGKILL when it does not exit; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A run folder (run/model) of a tiny model: demo labels, a head, uneven tuned-looking thresholds and an
    index of labelled demo examples (for /v1/similar)."""
    root = tmp_path_factory.mktemp("serve-http")
    train = demo("train")
    labels = train.label_set.names
    model = LabelspaceModel.from_pretrained(tiny_model_folder(root / "tiny"), labels=labels, seed=0)
    model.set_thresholds(np.linspace(0.47, 0.53, len(labels)))
    texts = list(train.texts[:40])
    index = LabelIndex(
        model.encode(texts, show_progress_bar=False),
        train.labels.to_dense()[:40],
        labels,
        texts=texts,
        precision="float32",
    )
    model.set_index(index)
    model.save(root / "run" / "model")
    return root / "run"


@pytest.fixture(scope="module")
def predictor(run_folder) -> Predictor:
    """The Python Predictor of the served run: what every answer is compared with."""
    return Predictor.load(run_folder, threads=1)


@pytest.fixture(scope="module")
def server(run_folder, tmp_path_factory) -> Iterator[ServerProcess]:
    """The served run with small limits and the API key from LABELSPACE_API_KEY; stopped at the end."""
    server = ServerProcess(
        run_folder,
        "--max-texts",
        str(MAX_TEXTS),
        "--max-text-chars",
        str(MAX_TEXT_CHARS),
        "--max-body-bytes",
        str(MAX_BODY_BYTES),
        logs=tmp_path_factory.mktemp("serve-logs"),
        env={"LABELSPACE_API_KEY": API_KEY},
    )
    try:
        server.wait_for("/health/live")
        server.wait_for("/health/ready")
        yield server
    finally:
        server.stop()
    assert "Traceback" not in server.output(), server.output()


@pytest.fixture
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
        yield client


# ----------------------------------------------------------------------------- helpers


def assert_error(response: httpx.Response, status: int, error_type: str) -> str:
    """The answer is ``status`` with the JSON error shape and ``error_type``; returns the message."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
    assert body["error"]["type"] == error_type, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"].strip(), body
    return body["error"]["message"]


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value}, read with prometheus_client's own parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(url + "/metrics", timeout=30)
    assert response.status_code == 200, response.text
    return metric_values(response.text)


def assert_matches_predictor(results: list[dict[str, Any]], texts: list[str], predictor: Predictor) -> None:
    """Labels exactly as the Predictor's; every label's score within TOLERANCE of its score, most probable first."""
    probabilities = predictor.predict_proba(texts)
    expected_labels = predictor.label_lists(probabilities)
    names = predictor.label_names
    assert len(results) == len(texts)
    for row, (result, labels) in enumerate(zip(results, expected_labels, strict=True)):
        assert result["labels"] == labels, (texts[row], result["labels"], labels)
        scores = result["scores"]
        assert sorted(scores) == sorted(names)
        served = np.array([scores[name] for name in names])
        np.testing.assert_allclose(served, probabilities[row], atol=TOLERANCE, rtol=0)
        assert list(scores.values()) == sorted(scores.values(), reverse=True)  # most probable first


# ----------------------------------------------------------------------------- answers equal the Predictor's


def test_predictions_equal_the_python_predictor(http, predictor):
    texts = list(demo("test").texts[:MAX_TEXTS])
    response = http.post("/v1/predict", json={"texts": texts})
    assert response.status_code == 200, response.text
    assert_matches_predictor(response.json()["results"], texts, predictor)
    # the decisions are not trivial: some texts get labels, and not every label is chosen for every text
    chosen = [len(result["labels"]) for result in response.json()["results"]]
    assert 0 < sum(chosen) < len(texts) * len(predictor.label_names), chosen


def test_concurrent_single_text_requests_each_get_their_own_predictions(server, predictor):
    """Many clients at once: the micro-batcher mixes their texts (and padding) but each gets its own answer."""
    texts = list(demo("test").texts[:24])

    async def send() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60) as client:
            return await asyncio.gather(*(client.post("/v1/predict", json={"texts": [text]}) for text in texts))

    responses = asyncio.run(send())
    assert [response.status_code for response in responses] == [200] * len(texts)
    assert_matches_predictor([response.json()["results"][0] for response in responses], texts, predictor)


def test_top_k_and_return_scores_shape_the_scores(http, predictor):
    text = demo("test").texts[0]
    probabilities = predictor.predict_proba([text])[0]
    top = http.post("/v1/predict", json={"texts": [text], "top_k": 2}).json()["results"][0]
    best = [predictor.label_names[i] for i in np.argsort(-probabilities, kind="stable")[:2]]
    assert list(top["scores"]) == best
    bare = http.post("/v1/predict", json={"texts": [text], "return_scores": False}).json()["results"][0]
    assert bare == {"labels": predictor.predict([text])[0]}


def test_embed_and_similar_equal_the_python_predictor(http, predictor):
    texts = ["I was charged twice", "the app crashes on start"]
    embedded = http.post("/v1/embed", json={"texts": texts})
    assert embedded.status_code == 200, embedded.text
    expected = predictor.encode(texts)
    assert embedded.json()["dimension"] == expected.shape[1]
    np.testing.assert_allclose(np.array(embedded.json()["embeddings"]), expected, atol=TOLERANCE, rtol=0)

    similar = http.post("/v1/similar", json={"texts": texts, "k": 3})
    assert similar.status_code == 200, similar.text
    for result, examples in zip(similar.json()["results"], predictor.similar(texts, k=3), strict=True):
        assert [n["index"] for n in result["neighbours"]] == [example.index for example in examples]
        assert [n["labels"] for n in result["neighbours"]] == [example.labels for example in examples]
        assert [n["text"] for n in result["neighbours"]] == [example.text for example in examples]
        np.testing.assert_allclose(
            [n["score"] for n in result["neighbours"]], [example.score for example in examples], atol=TOLERANCE
        )


def test_info_shows_the_served_model_and_limits(http, predictor):
    info = http.get("/v1/info").json()
    assert info["labels"] == predictor.label_names
    names = predictor.label_names
    saved = np.linspace(0.47, 0.53, len(names)).tolist()  # what run_folder saved
    assert info["thresholds"] == pytest.approx(dict(zip(names, saved, strict=True)))
    assert info["backend"] == "torch" and info["scoring"]["mode"] == "head"
    limits = info["limits"]
    assert (limits["max_texts_per_request"], limits["max_text_chars"], limits["max_body_bytes"]) == (
        MAX_TEXTS,
        MAX_TEXT_CHARS,
        MAX_BODY_BYTES,
    )
    assert limits["api_key_required"] is True
    assert API_KEY not in json.dumps(info)


def test_odd_unicode_texts_are_valid_and_predicted_like_the_predictor(http, predictor):
    response = http.post("/v1/predict", json={"texts": ODD_TEXTS[:MAX_TEXTS]})
    assert response.status_code == 200, response.text
    assert_matches_predictor(response.json()["results"], ODD_TEXTS[:MAX_TEXTS], predictor)
    rest = http.post("/v1/predict", json={"texts": ODD_TEXTS[MAX_TEXTS:]})
    assert rest.status_code == 200, rest.text
    assert_matches_predictor(rest.json()["results"], ODD_TEXTS[MAX_TEXTS:], predictor)
    # a surrogate pair escaped in JSON is one valid character (U+1F600)
    pair = http.post(
        "/v1/predict", content=b'{"texts": ["ok \\ud83d\\ude00"]}', headers={"Content-Type": "application/json"}
    )
    assert pair.status_code == 200, pair.text
    assert_matches_predictor(pair.json()["results"], ["ok \U0001f600"], predictor)


# ----------------------------------------------------------------------------- bad requests: a 4xx, never a 500

JSON = {"Content-Type": "application/json"}


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


BAD_REQUESTS = [
    # (id, method, path, raw body, headers, status, error type)
    ("truncated-json", "POST", "/v1/predict", b'{"texts": ["a"', JSON, 400, "invalid_json"),
    ("not-json", "POST", "/v1/predict", b"texts=hello", JSON, 400, "invalid_json"),
    ("deeply-nested-json", "POST", "/v1/predict", b"[" * 3000 + b"]" * 3000, JSON, 400, "invalid_json"),
    ("not-utf8", "POST", "/v1/predict", b'{"texts": ["caf\xe9 \xff"]}', JSON, 400, "invalid_json"),
    ("lone-high-surrogate", "POST", "/v1/predict", b'{"texts": ["\\ud800"]}', JSON, 422, "invalid_text"),
    ("lone-low-surrogate", "POST", "/v1/embed", b'{"texts": ["ok", "a\\udfffb"]}', JSON, 422, "invalid_text"),
    ("half-a-pair", "POST", "/v1/similar", b'{"texts": ["end \\ud83d"], "k": 2}', JSON, 422, "invalid_text"),
    ("empty-body", "POST", "/v1/predict", b"", JSON, 422, "validation_error"),
    ("not-an-object", "POST", "/v1/predict", body(["a", "b"]), JSON, 422, "validation_error"),
    ("missing-texts", "POST", "/v1/predict", body({}), JSON, 422, "validation_error"),
    ("texts-a-string", "POST", "/v1/predict", body({"texts": "hello"}), JSON, 422, "validation_error"),
    ("texts-numbers", "POST", "/v1/predict", body({"texts": [1, 2]}), JSON, 422, "validation_error"),
    ("texts-null", "POST", "/v1/predict", body({"texts": [None]}), JSON, 422, "validation_error"),
    ("texts-nested", "POST", "/v1/embed", body({"texts": [["a"]]}), JSON, 422, "validation_error"),
    ("empty-list", "POST", "/v1/predict", body({"texts": []}), JSON, 422, "validation_error"),
    ("empty-list-embed", "POST", "/v1/embed", body({"texts": []}), JSON, 422, "validation_error"),
    ("top-k-string", "POST", "/v1/predict", body({"texts": ["a"], "top_k": "2"}), JSON, 422, "validation_error"),
    ("top-k-zero", "POST", "/v1/predict", body({"texts": ["a"], "top_k": 0}), JSON, 422, "validation_error"),
    ("top-k-float", "POST", "/v1/predict", body({"texts": ["a"], "top_k": 1.5}), JSON, 422, "validation_error"),
    (
        "return-scores-string",
        "POST",
        "/v1/predict",
        body({"texts": ["a"], "return_scores": "no"}),
        JSON,
        422,
        "validation_error",
    ),
    ("unknown-field", "POST", "/v1/predict", body({"texts": ["a"], "text": "b"}), JSON, 422, "validation_error"),
    ("k-zero", "POST", "/v1/similar", body({"texts": ["a"], "k": 0}), JSON, 422, "validation_error"),
    ("k-too-large", "POST", "/v1/similar", body({"texts": ["a"], "k": 10**6}), JSON, 422, "validation_error"),
    (
        "text-plain",
        "POST",
        "/v1/predict",
        body({"texts": ["a"]}),
        {"Content-Type": "text/plain"},
        422,
        "validation_error",
    ),
    (
        "text-too-long",
        "POST",
        "/v1/predict",
        body({"texts": ["ok", "x" * (MAX_TEXT_CHARS + 1)]}),
        JSON,
        413,
        "text_too_long",
    ),
    (
        "emoji-text-too-long",
        "POST",
        "/v1/embed",
        body({"texts": ["😀" * (MAX_TEXT_CHARS + 1)]}),
        JSON,
        413,
        "text_too_long",
    ),
    ("too-many-texts", "POST", "/v1/predict", body({"texts": ["a"] * (MAX_TEXTS + 1)}), JSON, 413, "too_many_texts"),
    (
        "body-too-large",
        "POST",
        "/v1/predict",
        body({"texts": ["a" * (MAX_BODY_BYTES + 10)]}),
        JSON,
        413,
        "body_too_large",
    ),
    ("wrong-method", "GET", "/v1/predict", b"", {}, 405, "method_not_allowed"),
    ("unknown-route", "POST", "/v1/nowhere", body({"texts": ["a"]}), JSON, 404, "not_found"),
]


@pytest.mark.parametrize(
    ("method", "path", "content", "headers", "status", "error_type"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
def test_bad_requests_get_the_right_4xx_with_a_json_error(http, method, path, content, headers, status, error_type):
    response = http.request(method, path, content=content, headers=headers)
    assert_error(response, status, error_type)


def test_a_chunked_body_over_the_limit_is_refused_while_it_is_read(http):
    """No Content-Length to trust: the server counts the bytes it reads (413, not a 500 or a hang)."""

    def chunks() -> Iterator[bytes]:
        yield b'{"texts": ["'
        for _ in range(4 * MAX_BODY_BYTES // 1024):
            yield b"a" * 1024
        yield b'"]}'

    response = http.post("/v1/predict", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "body_too_large")


def test_the_server_still_answers_after_the_bad_requests(http, predictor):
    response = http.post("/v1/predict", json={"texts": ["still here"]})
    assert response.status_code == 200, response.text
    assert_matches_predictor(response.json()["results"], ["still here"], predictor)


# ----------------------------------------------------------------------------- the API key


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-key", f"Bearer {API_KEY}x", f"Bearer {API_KEY[:-1]}", f"Basic {API_KEY}", API_KEY, "Bearer"],
    ids=["missing", "wrong", "longer", "shorter", "basic-scheme", "no-scheme", "empty"],
)
@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("POST", "/v1/predict", {"texts": ["a"]}),
        ("POST", "/v1/embed", {"texts": ["a"]}),
        ("POST", "/v1/similar", {"texts": ["a"], "k": 1}),
        ("GET", "/v1/info", None),
    ],
)
def test_v1_routes_need_the_api_key(server, method, path, payload, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = httpx.request(method, server.url + path, json=payload, headers=headers, timeout=30)
    message = assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert API_KEY not in message and API_KEY not in response.text


def test_the_bearer_scheme_is_case_insensitive(server):
    response = httpx.get(server.url + "/v1/info", headers={"Authorization": f"bearer {API_KEY}"}, timeout=30)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/metrics", "/openapi.json"])
def test_health_metrics_and_schema_stay_open_without_a_key(server, path):
    assert httpx.get(server.url + path, timeout=30).status_code == 200


# ----------------------------------------------------------------------------- metrics


def test_metrics_parse_and_count_what_was_sent(server, http):
    before = scrape(server.url)
    sent_texts = 0
    for size in (1, 3, 2):
        assert http.post("/v1/predict", json={"texts": ["count me"] * size}).status_code == 200
        sent_texts += size
    assert http.post("/v1/predict", json={"texts": []}).status_code == 422
    assert http.post("/v1/predict", json={"texts": ["a"] * (MAX_TEXTS + 1)}).status_code == 413
    assert httpx.post(server.url + "/v1/predict", json={"texts": ["no key"]}, timeout=30).status_code == 401
    assert http.post("/v1/embed", json={"texts": ["one", "two"]}).status_code == 200
    assert http.get("/v1/info").status_code == 200
    after = scrape(server.url)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("labelspace_requests_total", route="/v1/predict") == 6
    assert delta("labelspace_requests_total", route="/v1/embed") == 1
    assert delta("labelspace_requests_total", route="/v1/info") == 1
    assert delta("labelspace_requests_total", route="/metrics") == 1  # the second scrape counts itself
    failures = {
        "validation_error": 1,
        "too_many_texts": 1,
        "unauthorized": 1,
    }
    for cause, count in failures.items():
        assert delta("labelspace_request_failures_total", route="/v1/predict", cause=cause) == count, cause
    assert delta("labelspace_texts_total", route="/v1/predict") == sent_texts
    assert delta("labelspace_texts_total", route="/v1/embed") == 2
    assert delta("labelspace_batch_size_sum") == sent_texts + 2  # every accepted text ran in exactly one batch
    assert after[("labelspace_queue_texts", ())] == 0
    for name in ("tokenization", "queue", "inference"):
        assert delta(f"labelspace_{name}_seconds_count") >= 4, name


# ----------------------------------------------------------------------------- life cycle


def test_ready_is_503_until_the_model_is_loaded(run_folder, predictor, tmp_path):
    """The model load is held (by the child, until a file exists): live answers, ready and /v1 say 503."""
    release = tmp_path / "release"
    server = ServerProcess(run_folder, logs=tmp_path, prefix=[sys.executable, "-c", GATED_SERVE, str(release)])
    try:
        server.wait_for("/health/live")
        not_ready = httpx.get(server.url + "/health/ready", timeout=30)
        assert "loading" in assert_error(not_ready, 503, "not_ready")
        assert not_ready.headers.get("retry-after") == "1"
        assert_error(httpx.post(server.url + "/v1/predict", json={"texts": ["early"]}, timeout=30), 503, "not_ready")
        assert_error(httpx.get(server.url + "/v1/info", timeout=30), 503, "not_ready")
        assert httpx.get(server.url + "/metrics", timeout=30).status_code == 200
        release.touch()
        server.wait_for("/health/ready")
        response = httpx.post(server.url + "/v1/predict", json={"texts": ["on time"]}, timeout=30)
        assert response.status_code == 200, response.text
        assert_matches_predictor(response.json()["results"], ["on time"], predictor)
    finally:
        server.stop()
    assert "Traceback" not in server.output(), server.output()


def test_sigterm_answers_all_50_requests_in_flight_and_refuses_new_ones(run_folder, predictor, tmp_path):
    """50 single-text requests wait in the queue (the batch waits --max-wait-ms for more); the queue is full
    (--max-queue 50: one more gets 429 + Retry-After); SIGTERM; new connections are refused while the 50 still
    wait, all 50 are answered, the server exits 0."""
    count = 50
    server = ServerProcess(
        run_folder,
        "--api-key",
        API_KEY,
        "--max-wait-ms",
        "5000",
        "--max-queue",
        str(count),
        "--max-texts",
        "8",
        "--drain-timeout",
        "60",
        logs=tmp_path,
    )
    texts = [f"request number {i}: {demo('test').texts[i]}" for i in range(count)]
    try:
        server.wait_for("/health/ready")

        async def scenario() -> tuple[list[httpx.Response], httpx.Response, float, list[httpx.Response], int]:
            limits = httpx.Limits(max_connections=count + 10)
            async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=120, limits=limits) as client:
                in_flight = [asyncio.create_task(client.post("/v1/predict", json={"texts": [t]})) for t in texts]
                deadline = time.monotonic() + 60
                while True:  # accepted: the server counted their texts into the queue
                    values = metric_values((await client.get("/metrics")).text)
                    if values.get(("labelspace_texts_total", (("route", "/v1/predict"),)), 0) >= count:
                        break
                    assert time.monotonic() < deadline, f"never accepted {count} texts:\n{server.output()}"
                    await asyncio.sleep(0.02)
                queued = values[("labelspace_queue_texts", ())]
                full = await client.post("/v1/predict", json={"texts": ["one too many"]})
                server.process.send_signal(signal.SIGTERM)
                # new connections, each its own: refused once uvicorn closed its listening socket; one that got in
                # before that is answered (200, 429 while the queue is full, or 503 draining), never left hanging
                late: list[httpx.Response] = []
                refused_while_draining = None
                async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=30) as fresh:
                    while refused_while_draining is None:
                        assert time.monotonic() < deadline, f"new connections still accepted:\n{server.output()}"
                        try:
                            late.append(
                                await fresh.post(
                                    "/v1/predict", json={"texts": ["too late"]}, headers={"Connection": "close"}
                                )
                            )
                        except httpx.ConnectError:
                            refused_while_draining = sum(not task.done() for task in in_flight)
                        await asyncio.sleep(0.02)
                return await asyncio.gather(*in_flight), full, queued, late, refused_while_draining

        answered, full, queued, late, refused_while_draining = asyncio.run(scenario())
        assert queued == count  # SIGTERM came while all 50 were still waiting for their batch
        assert_error(full, 429, "queue_full")
        assert full.headers["retry-after"].isdigit()
        assert refused_while_draining > 0  # new connections were refused while accepted requests still waited
        assert [response.status_code for response in answered] == [200] * count
        assert_matches_predictor([response.json()["results"][0] for response in answered], texts, predictor)
        for response in late:  # got in before the listening socket closed: answered, or the queue is still full
            if response.status_code == 429:
                assert_error(response, 429, "queue_full")
            elif response.status_code != 200:
                assert_error(response, 503, "draining")
        assert server.process.wait(timeout=60) == 0, server.output()
    finally:
        server.stop()
    assert "drain timeout" not in server.output(), server.output()


# ----------------------------------------------------------------------------- schemathesis


SCHEMATHESIS_EXAMPLES = 30


def test_schemathesis_finds_no_server_error(server):
    """Requests generated from the served /openapi.json, valid and invalid ones (``SCHEMATHESIS_EXAMPLES`` per
    operation and mode): never a 5xx, and every error answer has the JSON error shape."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {operation.path for operation in operations}
    assert {"/v1/predict", "/v1/embed", "/v1/similar", "/v1/info"} <= paths, paths
    seen: dict[int, int] = {}
    for operation in operations:
        strategy = st.one_of(
            operation.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=2 * SCHEMATHESIS_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def no_server_error(case: Any) -> None:
            response = case.call(base_url=server.url, headers=AUTH, timeout=60)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            described = f"{case.method} {case.formatted_path} body={getattr(case, 'body', None)!r:.300}"
            assert response.status_code < 500, f"{described} -> {response.status_code} {response.text[:500]}"
            if response.status_code >= 400:
                error = response.json()["error"]
                assert isinstance(error["type"], str) and error["message"], described

        no_server_error()
    # both valid and invalid requests were sent: some were answered, some refused
    assert seen.get(200, 0) > 0 and any(400 <= status < 500 for status in seen), seen
    assert httpx.get(server.url + "/health/ready", timeout=30).status_code == 200
