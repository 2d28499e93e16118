"""Retrieval metrics: parity with pytorch-metric-learning's AccuracyCalculator, sklearn's NDCG, hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score

from labelspace.data import LabelMatrix
from labelspace.evaluation import retrieval_metrics

accuracy_calculator = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
inference = pytest.importorskip("pytorch_metric_learning.utils.inference")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")

PML_METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r", "mean_reciprocal_rank")
OURS_FOR_PML = {
    "precision_at_1": "precision_at_1",
    "r_precision": "r_precision",
    "mean_average_precision_at_r": "map_at_r",
    "mean_reciprocal_rank": "mrr",
}


def shares_a_label(query_labels: torch.Tensor, reference_labels: torch.Tensor) -> torch.Tensor:
    """PML label_comparison_fn: rows (broadcast over leading dims) share at least one label."""
    return ((query_labels > 0) & (reference_labels > 0)).any(-1)


def pml_calculator(multi_label: bool):
    return accuracy_calculator.AccuracyCalculator(
        include=PML_METRICS,
        k=None,  # full ranking: exact R-based metrics and MRR over all references
        label_comparison_fn=shares_a_label if multi_label else None,
        knn_func=inference.CustomKNN(pml_distances.CosineSimilarity()),
        device=torch.device("cpu"),
    )


def multi_hot(seed: int, size: int, num_labels: int, density: float = 0.2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.rand(size, num_labels, generator=generator) < density).long()
    labels[: max(1, size // 10)] = 0  # items without labels: never relevant, never evaluated
    return labels


def embeddings(seed: int, size: int, dim: int = 8) -> torch.Tensor:
    return torch.randn(size, dim, generator=torch.Generator().manual_seed(1000 + seed))


def assert_matches_pml(ours: dict, theirs: dict) -> None:
    for pml_name, our_name in OURS_FOR_PML.items():
        assert ours[our_name] == pytest.approx(theirs[pml_name], abs=1e-6), our_name


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("size", "num_labels"), [(30, 3), (120, 6), (300, 10)])
def test_self_retrieval_multi_label_matches_pml(seed, size, num_labels):
    vectors, labels = embeddings(seed, size), multi_hot(seed, size, num_labels)
    theirs = pml_calculator(multi_label=True).get_accuracy(vectors, labels)
    ours = retrieval_metrics(vectors, labels, block_size=37)
    assert_matches_pml(ours, theirs)
    assert ours["num_evaluated_queries"] <= size - max(1, size // 10)


@pytest.mark.parametrize("seed", range(5))
def test_separate_query_and_reference_multi_label_matches_pml(seed):
    queries, references = embeddings(seed, 70), embeddings(seed + 50, 160)
    query_labels, reference_labels = multi_hot(seed, 70, 5), multi_hot(seed + 50, 160, 5, density=0.15)
    theirs = pml_calculator(multi_label=True).get_accuracy(queries, query_labels, references, reference_labels)
    ours = retrieval_metrics(queries, query_labels, references, reference_labels, block_size=16)
    assert_matches_pml(ours, theirs)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("separate_reference", [False, True])
def test_single_label_matches_pml_defaults(seed, separate_reference):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 6, (100,), generator=generator)
    vectors = embeddings(seed, 100)
    calculator = pml_calculator(multi_label=False)
    if separate_reference:
        reference_labels = torch.randint(0, 6, (150,), generator=generator)
        references = embeddings(seed + 7, 150)
        theirs = calculator.get_accuracy(vectors, labels, references, reference_labels)
        ours = retrieval_metrics(vectors, labels, references, reference_labels)
    else:
        theirs = calculator.get_accuracy(vectors, labels)
        ours = retrieval_metrics(vectors, labels)
    assert_matches_pml(ours, theirs)


def test_hand_computed_example():
    # Dot similarity of 1-D embeddings ranks the references r0, r1, r2, r3.
    queries = np.array([[1.0], [1.0]])
    query_labels = np.array([[1, 0], [0, 0]])  # the second query has no label: left out
    references = np.array([[0.9], [0.8], [0.7], [0.6]])
    reference_labels = np.array([[0, 1], [1, 0], [0, 0], [1, 1]])  # relevant: r1 (Jaccard 1), r3 (Jaccard 0.5)
    options = {"similarity": "dot", "k": 2}
    overlap = retrieval_metrics(queries, query_labels, references, reference_labels, **options)
    assert overlap["num_queries"] == 2 and overlap["num_evaluated_queries"] == 1
    assert overlap["precision_at_1"] == 0.0
    assert overlap["precision_at_k"] == 0.5
    assert overlap["r_precision"] == 0.5  # R = 2, one relevant in the first two
    assert overlap["map_at_r"] == pytest.approx(0.25)  # (precision@2 = 1/2) / R
    assert overlap["mrr"] == 0.5
    assert overlap["ndcg_at_k"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    jaccard = retrieval_metrics(queries, query_labels, references, reference_labels, relevance="jaccard", **options)
    assert jaccard["ndcg_at_k"] == pytest.approx((1 / math.log2(3)) / (1 + 0.5 / math.log2(3)))
    for name in ("precision_at_1", "precision_at_k", "r_precision", "map_at_r", "mrr"):
        assert jaccard[name] == overlap[name]  # binary metrics: relevant = Jaccard > 0 = overlap
    deep = retrieval_metrics(
        queries, query_labels, references, reference_labels, relevance="jaccard", similarity="dot", k=4
    )
    assert deep["ndcg_at_k"] == pytest.approx((1 / math.log2(3) + 0.5 / math.log2(5)) / (1 + 0.5 / math.log2(3)))


def gains_and_scores(queries, query_labels, references, reference_labels, relevance):
    query_labels, reference_labels = np.asarray(query_labels, float), np.asarray(reference_labels, float)
    shared = query_labels @ reference_labels.T
    if relevance == "overlap":
        gains = (shared > 0).astype(float)
    else:
        union = query_labels.sum(1)[:, None] + reference_labels.sum(1)[None, :] - shared
        gains = np.where(union > 0, shared / np.maximum(union, 1), 0.0)
    normalized_queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    normalized_references = references / np.linalg.norm(references, axis=1, keepdims=True)
    return gains, normalized_queries @ normalized_references.T


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("relevance", ["overlap", "jaccard"])
@pytest.mark.parametrize("k", [1, 5, 20])
def test_ndcg_matches_sklearn(seed, relevance, k):
    queries, references = embeddings(seed, 40).double(), embeddings(seed + 9, 90).double()
    query_labels, reference_labels = multi_hot(seed, 40, 6, 0.25), multi_hot(seed + 9, 90, 6, 0.25)
    gains, similarities = gains_and_scores(
        queries.numpy(), query_labels.numpy(), references.numpy(), reference_labels.numpy(), relevance
    )
    evaluated = gains.sum(1) > 0
    expected = ndcg_score(gains[evaluated], similarities[evaluated], k=k)
    ours = retrieval_metrics(queries, query_labels, references, reference_labels, k=k, relevance=relevance)
    assert ours["ndcg_at_k"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_precision_at_k_and_mrr_match_brute_force(seed):
    queries, query_labels = embeddings(seed, 50).double(), multi_hot(seed, 50, 4, 0.2)
    gains, similarities = gains_and_scores(
        queries.numpy(), query_labels.numpy(), queries.numpy(), query_labels.numpy(), "overlap"
    )
    np.fill_diagonal(similarities, -np.inf)
    np.fill_diagonal(gains, 0.0)
    order = np.argsort(-similarities, axis=1)[:, :-1]  # the query itself comes last: dropped
    ranked = np.take_along_axis(gains, order, axis=1)
    evaluated = gains.sum(1) > 0
    ours = retrieval_metrics(queries, query_labels, k=7, block_size=11)
    assert ours["precision_at_k"] == pytest.approx(ranked[evaluated, :7].mean())
    first_relevant = np.argmax(ranked > 0, axis=1) + 1
    assert ours["mrr"] == pytest.approx(np.mean(1 / first_relevant[evaluated]))


def test_block_size_and_input_types_do_not_change_results():
    vectors, labels = embeddings(3, 90), multi_hot(3, 90, 5)
    expected = retrieval_metrics(vectors, labels, k=5)
    for block_size in (1, 8, 89, 90, 4096):
        assert retrieval_metrics(vectors, labels, k=5, block_size=block_size) == pytest.approx(expected, abs=1e-12)
    as_numpy = retrieval_metrics(vectors.numpy(), LabelMatrix.from_dense(labels.numpy()), k=5)
    assert as_numpy == pytest.approx(expected, abs=1e-12)


def test_exclude_self_with_an_explicit_reference_set():
    vectors, labels = embeddings(4, 60), multi_hot(4, 60, 4)
    extra_vectors, extra_labels = embeddings(5, 20), multi_hot(5, 20, 4)
    self_only = retrieval_metrics(vectors, labels)
    same_set = retrieval_metrics(vectors, labels, vectors, labels, exclude_self=True)
    assert same_set == pytest.approx(self_only, abs=1e-12)
    # PML's ref_includes_query: the references start with the queries.
    references = torch.cat([vectors, extra_vectors])
    reference_labels = torch.cat([labels, extra_labels])
    theirs = pml_calculator(multi_label=True).get_accuracy(
        vectors, labels, references, reference_labels, ref_includes_query=True
    )
    ours = retrieval_metrics(vectors, labels, references, reference_labels, exclude_self=True)
    assert_matches_pml(ours, theirs)


def test_cosine_ignores_scale_and_dot_does_not():
    vectors, labels = embeddings(6, 80), multi_hot(6, 80, 4)
    scaled = vectors * torch.rand(80, 1, generator=torch.Generator().manual_seed(0)).add(0.1) * 10
    assert retrieval_metrics(scaled, labels) == pytest.approx(retrieval_metrics(vectors, labels), abs=1e-9)
    references, reference_labels = embeddings(7, 100), multi_hot(7, 100, 4)
    gains, _ = gains_and_scores(
        vectors.numpy(), labels.numpy(), references.numpy(), reference_labels.numpy(), "overlap"
    )
    dot = vectors.double().numpy() @ references.double().numpy().T
    evaluated = gains.sum(1) > 0
    first = np.argmax(dot, axis=1)
    ours = retrieval_metrics(vectors.double(), labels, references.double(), reference_labels, similarity="dot")
    assert ours["precision_at_1"] == pytest.approx(gains[np.arange(80), first][evaluated].mean())


def test_no_relevant_reference_gives_nan():
    metrics = retrieval_metrics(np.eye(3), [[0, 0], [0, 0], [0, 0]])
    assert metrics["num_evaluated_queries"] == 0 and math.isnan(metrics["precision_at_1"])


def test_k_is_capped_at_the_references_available():
    metrics = retrieval_metrics(np.eye(3), [[1], [1], [1]], k=10)
    assert metrics["k"] == 2 and metrics["precision_at_k"] == 1.0 and metrics["ndcg_at_k"] == 1.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: retrieval_metrics(np.eye(3), [[1], [1]]), "query_labels has 2 rows"),
        (lambda: retrieval_metrics(np.eye(3), [[1], [1], [1]], np.eye(3)), "both reference_embeddings"),
        (lambda: retrieval_metrics(np.eye(3), [0, 1, 1], np.eye(2), [0, 1, 1]), "reference_labels has 3 rows"),
        (lambda: retrieval_metrics(np.eye(3), [0, 1, 1], np.ones((2, 2)), [0, 1]), "one dimension"),
        (lambda: retrieval_metrics(np.eye(3), [0, 1, 1], np.eye(3), [[0], [1], [1]]), "of one kind"),
        (lambda: retrieval_metrics(np.eye(3), [0, 1, 1], np.eye(3)[:2], [0, 1], exclude_self=True), "at least as many"),
        (lambda: retrieval_metrics(np.eye(3), [[2], [1], [1]]), "0/1"),
        (lambda: retrieval_metrics(np.eye(3), [0.5, 1.0, 1.0]), "integer class ids"),
        (lambda: retrieval_metrics(np.eye(3), [0, 1, 1], k=0), "k must be"),
        (lambda: retrieval_metrics(np.eye(3), [0, 1, 1], relevance="exact"), "relevance must be one of"),
        (lambda: retrieval_metrics(np.eye(3), [0, 1, 1], similarity="l2"), "similarity must be one of"),
        (lambda: retrieval_metrics(np.ones(3), [0, 1, 1]), "2-D"),
        (lambda: retrieval_metrics(np.eye(1), [0]), "no reference item"),
        (lambda: retrieval_metrics(np.full((2, 2), np.nan), [0, 1]), "finite"),
    ],
)
def test_validation_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
