"""`ServeMetrics`: the Prometheus metrics of one app, in a registry of its own (two apps never share counts).

Example:
    >>> from prometheus_client.parser import text_string_to_metric_families
    >>> metrics = ServeMetrics()
    >>> metrics.request("/v1/predict")
    >>> metrics.failure("/v1/predict", "queue_full")
    >>> families = {family.name: family for family in text_string_to_metric_families(metrics.render().decode())}
    >>> [sample.value for sample in families["labelspace_request_failures"].samples if sample.name.endswith("_total")]
    [1.0]
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "ROUTES", "ServeMetrics", "route_label"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: The routes counted by name; any other path is counted as ``other`` (so a scan cannot grow the label set).
ROUTES = (
    "/v1/predict",
    "/v1/embed",
    "/v1/similar",
    "/v1/info",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/docs",
    "/openapi.json",
)
_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def route_label(path: str) -> str:
    """The ``route`` label of a request path: the path of a known route, else ``other``."""
    return path if path in ROUTES else "other"


class ServeMetrics:
    """Requests and failures by route and cause, queue size, batch sizes and the time split of a request."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "labelspace_requests", "HTTP requests received, by route.", ["route"], registry=registry
        )
        self.failures = Counter(
            "labelspace_request_failures",
            "Requests answered with an error, by route and cause (the error type of the response).",
            ["route", "cause"],
            registry=registry,
        )
        self.texts = Counter("labelspace_texts", "Texts accepted, by route.", ["route"], registry=registry)
        self.queue_texts = Gauge("labelspace_queue_texts", "Texts waiting for inference.", registry=registry)
        self.batch_size = Histogram(
            "labelspace_batch_size",
            "Texts in one forward pass.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=registry,
        )
        self.batch_tokens = Histogram(
            "labelspace_batch_tokens",
            "Padded tokens of one forward pass (texts x longest text).",
            buckets=(16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536),
            registry=registry,
        )
        self.tokenization_seconds = Histogram(
            "labelspace_tokenization_seconds",
            "Time to count the tokens of a request's texts.",
            buckets=_SECONDS,
            registry=registry,
        )
        self.queue_seconds = Histogram(
            "labelspace_queue_seconds",
            "Time a request's texts waited in the queue before their first batch started.",
            buckets=_SECONDS,
            registry=registry,
        )
        self.inference_seconds = Histogram(
            "labelspace_inference_seconds",
            "Time of one forward pass (scores, embeddings and decisions of a batch).",
            buckets=_SECONDS,
            registry=registry,
        )
        self.request_seconds = Histogram(
            "labelspace_request_seconds",
            "Time from a request's arrival to its response, by route.",
            ["route"],
            buckets=_SECONDS,
            registry=registry,
        )

    def request(self, path: str) -> None:
        self.requests.labels(route=route_label(path)).inc()

    def failure(self, path: str, cause: str) -> None:
        self.failures.labels(route=route_label(path), cause=cause).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric of this app."""
        return generate_latest(self.registry)
