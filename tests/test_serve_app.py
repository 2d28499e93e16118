"""The HTTP service in process (issue 13): `labelspace.serve.create_app` behind httpx's ASGI transport, with the
app's lifespan run by hand (model loading, the batching worker, draining).

Expectations come from the Python `Predictor` on the same texts, from hand counts (batches, requests) and from
the limits set in `ServeSettings`. A *gated* backend holds a forward pass until the test opens the gate, which
makes "requests arrive while a batch runs" deterministic. The real-HTTP tests (uvicorn in a subprocess,
SIGTERM, schemathesis) are in tests/test_serve_http.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import labelspace.commands.serve as serve_command_module
from labelspace.inference.predictor import Predictor, TorchRunner
from labelspace.models import LabelspaceModel
from labelspace.models.scoring import LabelIndex
from labelspace.models.testing import tiny_model_folder
from labelspace.serve import ServeSettings, create_app

LABELS = ["billing", "bug", "praise"]
TEXTS = [
    "I was charged twice this month",
    "the app crashes on login 😡",
    "great support, thank you",
    "مرحبا بالعالم",  # right to left
    "zero\u200bwidth\u200djoiner",
    "",
]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """A saved tiny model with a head, uneven thresholds and the at_least_one rule (a run folder's model/)."""
    root = tmp_path_factory.mktemp("serve")
    model = LabelspaceModel.from_pretrained(tiny_model_folder(root / "tiny"), labels=LABELS, seed=0)
    model.set_thresholds([0.3, 0.5, 0.7])
    model.set_decision_rule("at_least_one")
    return model.save(root / "run" / "model")


@pytest.fixture(scope="module")
def predictor(model_folder) -> Predictor:
    return Predictor.load(model_folder.parent)


class GatedRunner:
    """The torch backend, which records each forward pass and waits for ``gate`` (open at first) before it."""

    name = "torch"

    def __init__(self, model: LabelspaceModel) -> None:
        self.inner = TorchRunner(model)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.calls: list[list[str]] = []

    def run(self, texts: list[str], **options: Any) -> tuple[np.ndarray, np.ndarray | None]:
        self.calls.append(list(texts))
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self.inner.run(texts, **options)


def gated(model_folder: Path) -> tuple[Predictor, GatedRunner]:
    model = Predictor.load(model_folder).model
    runner = GatedRunner(model)
    return Predictor(model, runner=runner), runner


@contextlib.asynccontextmanager
async def serving(app: Any, ready: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """The app started (lifespan) with an in-process client; waits for /health/ready unless ``ready=False``."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve.test", timeout=60) as client:
            if ready:
                await until(lambda: app.state.service.ready or app.state.service.load_error is not None)
                assert app.state.service.load_error is None, app.state.service.load_error
            yield client


async def until(condition: Callable[[], bool], timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.005)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition, read with prometheus_client's parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def assert_error(response: httpx.Response, status: int, type_: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
    assert body["error"]["type"] == type_ and body["error"]["message"], body
    return body["error"]["message"]


# ----------------------------------------------------------------------------- routes


def test_predict_embed_and_info_match_the_predictor(model_folder, predictor):
    expected_scores = predictor.predict_proba(TEXTS)
    expected_labels = predictor.predict(TEXTS)
    expected_embeddings = predictor.encode(TEXTS)
    settings = ServeSettings(model_path=str(model_folder))

    async def main() -> None:
        async with serving(create_app(lambda: Predictor.load(model_folder.parent), settings)) as client:
            response = await client.post("/v1/predict", json={"texts": TEXTS})
            assert response.status_code == 200, response.text
            results = response.json()["results"]
            assert [result["labels"] for result in results] == expected_labels
            assert all(result["labels"] for result in results)  # at_least_one: never empty
            for result, row in zip(results, expected_scores, strict=True):
                scores = result["scores"]
                assert list(scores) == [LABELS[i] for i in np.argsort(-row, kind="stable")]  # most probable first
                assert [scores[name] for name in LABELS] == pytest.approx(row.tolist(), abs=1e-5)

            top = (await client.post("/v1/predict", json={"texts": TEXTS[:2], "top_k": 2})).json()["results"]
            for result, row in zip(top, expected_scores[:2], strict=True):
                assert list(result["scores"]) == [LABELS[i] for i in np.argsort(-row, kind="stable")[:2]]
            bare = (await client.post("/v1/predict", json={"texts": TEXTS[:2], "return_scores": False})).json()
            assert bare == {"results": [{"labels": labels} for labels in expected_labels[:2]]}

            embedded = (await client.post("/v1/embed", json={"texts": TEXTS})).json()
            assert embedded["dimension"] == 32
            np.testing.assert_allclose(np.array(embedded["embeddings"]), expected_embeddings, atol=1e-5)

            info = (await client.get("/v1/info")).json()
            assert info["labels"] == LABELS and info["decision_rule"] == "at_least_one"
            assert info["thresholds"] == pytest.approx({"billing": 0.3, "bug": 0.5, "praise": 0.7})
            assert info["scoring"] == {"mode": "head", "head_weight": 1.0, "k": 10}
            assert info["backend"] == "torch" and info["model"]["name"] == "run"
            assert info["model"]["path"] == str(model_folder)
            assert info["limits"]["max_texts_per_request"] == 256 and info["limits"]["api_key_required"] is False

            schema = (await client.get("/openapi.json")).json()
            assert {"/v1/predict", "/v1/embed", "/v1/similar", "/v1/info"} <= set(schema["paths"])
            assert (await client.get("/docs")).status_code == 200

    run(main())


def test_the_saved_decision_rule_decides_the_labels(model_folder):
    model = Predictor.load(model_folder).model
    model.set_decision_rule("top_k", top_k=2)

    async def main() -> list[list[str]]:
        async with serving(create_app(Predictor(model), ServeSettings())) as client:
            response = await client.post("/v1/predict", json={"texts": TEXTS, "return_scores": False})
            return [result["labels"] for result in response.json()["results"]]

    labels = run(main())
    assert [len(row) for row in labels] == [2] * len(TEXTS)
    assert labels == Predictor(model).predict(TEXTS)


def test_similar_answers_409_without_an_index_and_the_neighbours_with_one(model_folder, predictor):
    async def ask(app: Any) -> httpx.Response:
        async with serving(app) as client:
            return await client.post("/v1/similar", json={"texts": TEXTS[:2], "k": 2})

    message = assert_error(run(ask(create_app(predictor, ServeSettings()))), 409, "no_index")
    assert "labelspace index build RUN --data TRAIN_FILE" in message

    model = Predictor.load(model_folder).model
    examples = ["refund my card", "it crashes", "love it", "TEXT four"]
    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    model.set_index(LabelIndex(model.encode(examples), labels, LABELS, texts=examples, precision="float32"))
    response = run(ask(create_app(Predictor(model), ServeSettings())))
    assert response.status_code == 200, response.text
    expected = Predictor(model).similar(TEXTS[:2], k=2)
    for result, row in zip(response.json()["results"], expected, strict=True):
        assert [n["index"] for n in result["neighbours"]] == [example.index for example in row]
        assert [n["score"] for n in result["neighbours"]] == pytest.approx([e.score for e in row], abs=1e-5)
        assert [n["text"] for n in result["neighbours"]] == [examples[example.index] for example in row]

    # a text of the index is its own nearest neighbour, with its own labels
    async def own() -> dict[str, Any]:
        async with serving(create_app(Predictor(model), ServeSettings())) as client:
            return (await client.post("/v1/similar", json={"texts": ["love it"], "k": 1})).json()

    (first,) = run(own())["results"][0]["neighbours"]
    assert first["index"] == 2 and first["labels"] == ["praise"] and first["score"] == pytest.approx(1.0, abs=1e-4)

    async def many() -> tuple[httpx.Response, httpx.Response]:  # k past the index size, past max_similar_k
        async with serving(create_app(Predictor(model), ServeSettings(max_similar_k=6))) as client:
            ask = client.post
            return await ask("/v1/similar", json={"texts": ["love it"], "k": 6}), await ask(
                "/v1/similar", json={"texts": ["love it"], "k": 7}
            )

    every, refused = run(many())
    assert len(every.json()["results"][0]["neighbours"]) == len(examples)
    assert "k" in assert_error(refused, 422, "validation_error")


# ----------------------------------------------------------------------------- batching


def test_concurrent_requests_share_one_forward_pass_and_get_their_own_results(model_folder, predictor):
    served, runner = gated(model_folder)
    requests = [TEXTS[i : i + 2] for i in range(0, 6, 2)] + [[TEXTS[0]], TEXTS[3:]]
    expected = [predictor.predict_proba(texts) for texts in requests]

    async def main() -> tuple[list[httpx.Response], str]:
        app = create_app(served, ServeSettings(max_wait_ms=0))
        async with serving(app) as client:
            runner.gate.clear()
            runner.entered.clear()
            runner.calls.clear()
            first = asyncio.create_task(client.post("/v1/predict", json={"texts": ["the first request"]}))
            await until(runner.entered.is_set)  # its forward pass has started and waits at the gate
            others = [asyncio.create_task(client.post("/v1/predict", json={"texts": texts})) for texts in requests]
            batcher = app.state.service.batcher
            await until(lambda: batcher.waiting_texts == sum(map(len, requests)))
            runner.gate.set()
            responses = await asyncio.gather(first, *others)
            return list(responses[1:]), (await client.get("/metrics")).text

    responses, metrics = run(main())
    assert len(runner.calls) == 2  # the first request alone, then every other text in one pass
    assert sorted(runner.calls[1]) == sorted(text for texts in requests for text in texts)
    for response, texts, scores in zip(responses, requests, expected, strict=True):
        results = response.json()["results"]
        assert len(results) == len(texts)
        for result, row in zip(results, scores, strict=True):
            assert [result["scores"][name] for name in LABELS] == pytest.approx(row.tolist(), abs=1e-5)
    values = metric_values(metrics)
    assert values[("labelspace_batch_size_count", ())] == 2
    assert values[("labelspace_batch_size_sum", ())] == 1 + sum(map(len, requests))


def test_batches_are_sorted_by_length_and_bounded_by_max_batch_tokens(model_folder, predictor):
    served, runner = gated(model_folder)
    words = [" ".join(["word"] * n) for n in (30, 1, 12, 3, 30)]  # 32, 3, 14, 5 and 32 tokens with [CLS], [SEP]
    expected = predictor.predict_proba(words)

    async def main() -> httpx.Response:
        async with serving(create_app(served, ServeSettings(max_batch_tokens=40, max_wait_ms=0))) as client:
            runner.calls.clear()
            return await client.post("/v1/predict", json={"texts": words})

    response = run(main())
    # sorted by tokens: 3, 5, 14 fit 3 x 14 = 42 > 40, so [3, 5] (2 x 5 = 10), then [14] (2 x 32 = 64 > 40), ...
    assert runner.calls == [[words[1], words[3]], [words[2]], [words[0]], [words[4]]]
    scores = [[result["scores"][name] for name in LABELS] for result in response.json()["results"]]
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_without_batching_each_request_runs_alone(model_folder):
    served, runner = gated(model_folder)

    async def main() -> list[httpx.Response]:
        app = create_app(served, ServeSettings(batching=False))
        async with serving(app) as client:
            runner.gate.clear()
            runner.entered.clear()
            runner.calls.clear()
            tasks = [asyncio.create_task(client.post("/v1/embed", json={"texts": [text]})) for text in TEXTS[:4]]
            await until(runner.entered.is_set)
            await until(lambda: app.state.service.batcher.waiting_texts == 3)
            runner.gate.set()
            return await asyncio.gather(*tasks)

    responses = run(main())
    assert all(response.status_code == 200 for response in responses)
    assert sorted(runner.calls) == sorted([text] for text in TEXTS[:4])


def test_a_full_queue_answers_429_with_retry_after(model_folder, predictor):
    served, runner = gated(model_folder)
    expected = predictor.predict(TEXTS[:4])

    async def main() -> tuple[httpx.Response, ...]:
        app = create_app(served, ServeSettings(max_queue=4, max_texts_per_request=4))
        async with serving(app) as client:
            runner.gate.clear()
            runner.entered.clear()
            first = asyncio.create_task(client.post("/v1/predict", json={"texts": ["in flight"]}))
            await until(runner.entered.is_set)
            waiting = asyncio.create_task(client.post("/v1/predict", json={"texts": TEXTS[:4]}))
            await until(lambda: app.state.service.batcher.waiting_texts == 4)
            refused = await client.post("/v1/predict", json={"texts": ["one too many"]})
            runner.gate.set()
            return refused, await first, await waiting, await client.post("/v1/embed", json={"texts": ["later"]})

    refused, first, waiting, later = run(main())
    message = assert_error(refused, 429, "queue_full")
    assert refused.headers["Retry-After"] == "1" and "--max-queue" in message
    assert first.status_code == 200 and later.status_code == 200
    assert [result["labels"] for result in waiting.json()["results"]] == expected


# ----------------------------------------------------------------------------- limits and errors


def test_bad_requests_get_the_right_4xx_with_a_json_error(predictor):
    settings = ServeSettings(max_texts_per_request=3, max_text_chars=50, max_body_bytes=2000)
    json_headers = {"Content-Type": "application/json"}

    async def main() -> dict[str, httpx.Response]:
        async with serving(create_app(predictor, settings)) as client:

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the bytes read count
                yield b'{"texts": ["'
                for _ in range(30):
                    yield b"x" * 100
                yield b'"]}'

            post = client.post
            return {
                "malformed": await post("/v1/predict", content=b'{"texts": ["a",', headers=json_headers),
                "not utf-8": await post("/v1/predict", content=b'{"texts": ["\xff"]}', headers=json_headers),
                "missing": await post("/v1/predict", json={}),
                "empty": await post("/v1/predict", json={"texts": []}),
                "not a list": await post("/v1/embed", json={"texts": "one text"}),
                "number": await post("/v1/predict", json={"texts": [1]}),
                "null": await post("/v1/predict", json={"texts": [None]}),
                "string top_k": await post("/v1/predict", json={"texts": ["a"], "top_k": "2"}),
                "zero top_k": await post("/v1/predict", json={"texts": ["a"], "top_k": 0}),
                "float top_k": await post("/v1/predict", json={"texts": ["a"], "top_k": 1.5}),
                "whole float top_k": await post("/v1/predict", json={"texts": ["a"], "top_k": 1.0}),
                "unknown field": await post("/v1/predict", json={"texts": ["a"], "topk": 2}),
                "k too big": await post("/v1/similar", json={"texts": ["a"], "k": 101}),
                "array body": await post("/v1/predict", json=["a"]),
                "surrogate": await post(
                    "/v1/predict", content=b'{"texts": ["ok", "\\ud800 alone"]}', headers=json_headers
                ),
                "too many": await post("/v1/predict", json={"texts": ["a", "b", "c", "d"]}),
                "too long": await post("/v1/embed", json={"texts": ["short", "x" * 51]}),
                "big body": await post("/v1/predict", json={"texts": ["y" * 40] * 60}),
                "streamed": await post("/v1/predict", content=chunks(), headers=json_headers),
                "no route": await client.get("/v2/nothing"),
                "wrong method": await client.get("/v1/predict"),
                "fine": await post("/v1/predict", json={"texts": ["a", "x" * 50, "😀"]}),
            }

    answers = run(main())
    assert "JSON" in assert_error(answers["malformed"], 400, "invalid_json")
    assert_error(answers["not utf-8"], 400, "invalid_json")
    for case in ("missing", "empty", "not a list", "number", "null"):
        assert "texts" in assert_error(answers[case], 422, "validation_error"), case
    assert "texts.0" in assert_error(answers["number"], 422, "validation_error")
    assert len(answers["whole float top_k"].json()["results"][0]["scores"]) == 1  # 1.0 is an integer in JSON
    for case in ("string top_k", "zero top_k", "float top_k"):
        assert "top_k" in assert_error(answers[case], 422, "validation_error"), case
    assert "topk" in assert_error(answers["unknown field"], 422, "validation_error")
    assert_error(answers["array body"], 422, "validation_error")
    assert "100" in assert_error(answers["k too big"], 422, "validation_error")
    assert "texts[1]" in assert_error(answers["surrogate"], 422, "invalid_text")
    assert "4 texts" in assert_error(answers["too many"], 413, "too_many_texts")
    assert "texts[1] has 51 characters" in assert_error(answers["too long"], 413, "text_too_long")
    assert "2000 bytes" in assert_error(answers["big body"], 413, "body_too_large")
    assert_error(answers["streamed"], 413, "body_too_large")
    assert_error(answers["no route"], 404, "not_found")
    assert_error(answers["wrong method"], 405, "method_not_allowed")
    assert answers["fine"].status_code == 200


def test_truncate_cuts_over_long_texts_at_max_text_chars(predictor):
    long_text = "the app crashes " * 10  # 160 characters

    async def main() -> httpx.Response:
        async with serving(create_app(predictor, ServeSettings(max_text_chars=40, truncate=True))) as client:
            return await client.post("/v1/embed", json={"texts": [long_text, "fine"]})

    response = run(main())
    assert response.status_code == 200, response.text
    expected = predictor.encode([long_text[:40], "fine"])
    np.testing.assert_allclose(response.json()["embeddings"], expected, atol=1e-5)
    assert not np.allclose(response.json()["embeddings"][0], predictor.encode([long_text])[0], atol=1e-3)


def test_an_api_key_guards_the_v1_routes_only(predictor):
    async def main() -> dict[str, httpx.Response]:
        async with serving(create_app(predictor, ServeSettings(api_key="s3cret"))) as client:
            body = {"texts": ["hello"]}
            return {
                "missing": await client.post("/v1/predict", json=body),
                "wrong": await client.post("/v1/predict", json=body, headers={"Authorization": "Bearer nope"}),
                "scheme": await client.get("/v1/info", headers={"Authorization": "Basic s3cret"}),
                "right": await client.post("/v1/predict", json=body, headers={"Authorization": "Bearer s3cret"}),
                "lower": await client.get("/v1/info", headers={"Authorization": "bearer s3cret"}),
                "live": await client.get("/health/live"),
                "ready": await client.get("/health/ready"),
                "metrics": await client.get("/metrics"),
            }

    answers = run(main())
    for case in ("missing", "wrong", "scheme"):
        assert "Authorization: Bearer" in assert_error(answers[case], 401, "unauthorized")
        assert answers[case].headers["WWW-Authenticate"].startswith("Bearer")
    assert "s3cret" not in answers["wrong"].text
    for case in ("right", "lower", "live", "ready", "metrics"):
        assert answers[case].status_code == 200, case
    assert answers["ready"].json() == {"status": "ready"}


# ----------------------------------------------------------------------------- life cycle


def test_ready_answers_503_until_the_model_is_loaded_and_warmed_up(model_folder):
    release = threading.Event()

    def slow_loader() -> Predictor:
        assert release.wait(60)
        return Predictor.load(model_folder)

    async def main() -> tuple[list[httpx.Response], httpx.Response]:
        app = create_app(slow_loader, ServeSettings())
        async with serving(app, ready=False) as client:
            before = [
                await client.get("/health/ready"),
                await client.get("/health/live"),
                await client.post("/v1/predict", json={"texts": ["too early"]}),
                await client.get("/v1/info"),
            ]
            release.set()
            await until(lambda: app.state.service.ready)
            return before, await client.get("/health/ready")

    before, after = run(main())
    assert "loading" in assert_error(before[0], 503, "not_ready")
    assert before[1].status_code == 200
    assert_error(before[2], 503, "not_ready")
    assert_error(before[3], 503, "not_ready")
    assert after.status_code == 200


def test_a_model_that_cannot_load_keeps_the_server_unready_with_the_reason(tmp_path):
    async def main() -> httpx.Response:
        app = create_app(lambda: Predictor.load(tmp_path / "missing"), ServeSettings())
        async with serving(app, ready=False) as client:
            await until(lambda: app.state.service.load_error is not None)
            return await client.get("/health/ready")

    message = assert_error(run(main()), 503, "model_load_failed")
    assert "missing" in message


def test_shutdown_answers_what_was_accepted_and_refuses_the_rest(model_folder, predictor):
    served, runner = gated(model_folder)
    expected = predictor.predict(TEXTS[:3])

    async def main() -> tuple[httpx.Response, ...]:
        app = create_app(served, ServeSettings(drain_timeout=30))
        service = app.state.service
        async with serving(app) as client:
            runner.gate.clear()
            runner.entered.clear()
            accepted = asyncio.create_task(client.post("/v1/predict", json={"texts": TEXTS[:3]}))
            await until(runner.entered.is_set)
            stopping = asyncio.create_task(service.stop())  # what the lifespan does on SIGTERM
            await until(lambda: service.draining)
            refused = await client.post("/v1/predict", json={"texts": ["late"]})
            unready = await client.get("/health/ready")
            live = await client.get("/health/live")
            runner.gate.set()
            assert await stopping is True  # everything accepted was answered in time
            return await accepted, refused, unready, live

    accepted, refused, unready, live = run(main())
    assert [result["labels"] for result in accepted.json()["results"]] == expected
    assert_error(refused, 503, "draining")
    assert_error(unready, 503, "draining")
    assert live.status_code == 200


def test_after_a_signal_ready_says_503_while_requests_that_arrive_are_still_served(predictor):
    """What `labelspace serve` does on SIGTERM (uvicorn itself stops accepting connections): the load balancer
    sees 503 at once, and a request already sent to this replica is not lost."""

    async def main() -> tuple[httpx.Response, httpx.Response]:
        app = create_app(predictor, ServeSettings())
        async with serving(app) as client:
            app.state.service.mark_stopping()
            return await client.get("/health/ready"), await client.post("/v1/predict", json={"texts": ["late"]})

    unready, served = run(main())
    assert_error(unready, 503, "draining")
    assert served.status_code == 200 and served.json()["results"][0]["labels"] == predictor.predict(["late"])[0]


def test_metrics_parse_and_count_what_was_sent(predictor):
    async def main() -> str:
        async with serving(create_app(predictor, ServeSettings())) as client:
            await client.post("/v1/predict", json={"texts": TEXTS[:2]})
            await client.post("/v1/predict", json={"texts": TEXTS[2:5]})
            await client.post("/v1/predict", json={"texts": []})
            await client.post("/v1/embed", json={"texts": ["one"]})
            await client.get("/nowhere")
            return (await client.get("/metrics")).text

    values = metric_values(run(main()))
    assert values[("labelspace_requests_total", (("route", "/v1/predict"),))] == 3
    assert values[("labelspace_requests_total", (("route", "/v1/embed"),))] == 1
    assert values[("labelspace_requests_total", (("route", "other"),))] == 1
    assert values[("labelspace_requests_total", (("route", "/metrics"),))] == 1
    failures = (("cause", "validation_error"), ("route", "/v1/predict"))
    assert values[("labelspace_request_failures_total", failures)] == 1
    assert values[("labelspace_request_failures_total", (("cause", "not_found"), ("route", "other")))] == 1
    assert values[("labelspace_texts_total", (("route", "/v1/predict"),))] == 5
    assert values[("labelspace_batch_size_sum", ())] == 6
    assert values[("labelspace_queue_texts", ())] == 0
    for name in ("tokenization", "queue", "inference"):
        assert values[(f"labelspace_{name}_seconds_count", ())] >= 3


def test_two_apps_keep_their_own_metrics(predictor):
    first, second = create_app(predictor, ServeSettings()), create_app(predictor, ServeSettings())
    first.state.service.metrics.request("/v1/predict")
    text = second.state.service.metrics.render().decode()
    assert metric_values(text).get(("labelspace_requests_total", (("route", "/v1/predict"),)), 0) == 0


# ----------------------------------------------------------------------------- the command line


def test_serve_help_shows_every_limit_and_how_to_run_replicas(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, stdout, _ = run_cli("serve", "--help")
    assert code == 0
    flags = "--host --port --backend --threads --max-batch-tokens --max-wait-ms --max-queue --max-texts "
    flags += "--max-text-chars --truncate --max-body-bytes --api-key --drain-timeout --no-batching"
    for flag in flags.split():
        assert flag in stdout, flag
    text = " ".join(stdout.split())
    assert "Example: labelspace serve" in text and "Replicas: " in text and "GET /health/ready" in text
    assert "LABELSPACE_API_KEY" in text


def test_serve_builds_the_app_from_its_options(run_cli, monkeypatch, model_folder):
    captured: dict[str, Any] = {}

    def fake_run_server(app: Any, settings: ServeSettings) -> None:
        captured.update(app=app, settings=settings)

    monkeypatch.setattr(serve_command_module, "run_server", fake_run_server)
    monkeypatch.setenv("LABELSPACE_API_KEY", "from-the-environment")
    options = ["--port", "8123", "--max-texts", "7", "--max-text-chars", "99", "--truncate", "--no-batching"]
    options += ["--max-wait-ms", "2", "--max-queue", "70", "--max-batch-tokens", "512", "--max-body-bytes", "5000"]
    code, _, stderr = run_cli("serve", str(model_folder.parent), *options, "--drain-timeout", "3")
    assert code == 0, stderr
    settings = captured["settings"]
    assert settings == ServeSettings(
        port=8123,
        model_path=str(model_folder),
        max_texts_per_request=7,
        max_text_chars=99,
        truncate=True,
        batching=False,
        max_wait_ms=2,
        max_queue=70,
        max_batch_tokens=512,
        max_body_bytes=5000,
        drain_timeout=3,
        api_key="from-the-environment",
    )

    async def main() -> tuple[httpx.Response, httpx.Response]:
        async with serving(captured["app"]) as client:
            key = {"Authorization": "Bearer from-the-environment"}
            return await client.get("/v1/info", headers=key), await client.get("/v1/info")

    info, refused = run(main())
    assert info.json()["labels"] == LABELS and info.json()["limits"]["max_texts_per_request"] == 7
    assert_error(refused, 401, "unauthorized")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-texts", "2000"], "--max-texts (2000) must not exceed --max-queue (1024)"),
        (["--backend", "tensorflow"], "--backend"),
    ],
)
def test_serve_refuses_bad_options_in_one_line(run_cli, model_folder, args, message):
    code, _, stderr = run_cli("serve", str(model_folder.parent), *args)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_serve_without_the_serve_extra_or_a_model_says_what_to_do(run_cli, monkeypatch, tmp_path, model_folder):
    code, _, stderr = run_cli("serve", str(tmp_path / "no-such-run"))
    assert code == 2 and "no-such-run" in stderr, stderr
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if it were not installed
    code, _, stderr = run_cli("serve", str(model_folder.parent))
    assert code == 2 and "uvicorn" in stderr and "pip install 'labelspace[serve]'" in stderr, stderr


def test_the_server_stops_with_the_reason_when_the_model_cannot_load(tmp_path):
    """uvicorn for real (port 0: any free port): a failed load ends `run_server` instead of serving 503s forever."""

    def broken() -> Predictor:
        raise ValueError(f"{tmp_path}/model: labelspace.json is damaged")

    settings = ServeSettings(port=1)  # not used: the config below asks for any free port
    app = create_app(broken, settings)
    reason = serve_command_module.run_server(app, dataclasses.replace(settings, port=free_port()))
    assert reason == f"{tmp_path}/model: labelspace.json is damaged"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_app_starts_again_after_a_shutdown(predictor):
    """Test harnesses (schemathesis over ASGI, TestClient) run the lifespan once per test on the same app."""
    app = create_app(predictor, ServeSettings())

    async def once() -> httpx.Response:
        async with serving(app) as client:
            return await client.post("/v1/predict", json={"texts": ["again"]})

    assert run(once()).status_code == 200
    assert app.state.service.draining  # the first shutdown drained
    second = run(once())
    assert second.status_code == 200 and second.json()["results"][0]["labels"] == predictor.predict(["again"])[0]


@pytest.mark.parametrize("truncate", [False, True])
def test_the_openapi_schema_states_the_limits_of_this_server(predictor, truncate):
    app = create_app(predictor, ServeSettings(max_texts_per_request=9, max_text_chars=77, truncate=truncate))
    schemas = app.openapi()["components"]["schemas"]
    for name in ("PredictRequest", "EmbedRequest", "SimilarRequest"):
        texts = schemas[name]["properties"]["texts"]
        assert texts["maxItems"] == 9 and texts["minItems"] == 1 and texts["items"]["type"] == "string"
        assert texts["items"].get("maxLength") == (None if truncate else 77)
    assert schemas["SimilarRequest"]["properties"]["k"]["maximum"] == 100
    for status in ("400", "413", "422", "429"):
        assert status in app.openapi()["paths"]["/v1/predict"]["post"]["responses"]
