"""kNN label scores against a brute-force reference, backend agreement, and the head/kNN mix."""

from __future__ import annotations

import numpy as np
import pytest

from labelspace.data import LabelMatrix
from labelspace.evaluation import KNNClassifier, f1_score, hybrid_scores, tune_mixing_weight, tune_thresholds
from labelspace.evaluation.knn import faiss_available


def random_fit_data(seed: int, size: int = 120, dim: int = 6, num_labels: int = 5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(size, dim)), (rng.random((size, num_labels)) < 0.3).astype(np.int64)


def brute_force_proba(
    fitted, labels, queries, k, *, similarity="cosine", weighting="similarity", exclude_self=False
) -> np.ndarray:
    """Reference: full similarity matrix, full argsort, weights and votes, one query at a time."""
    if similarity == "cosine":
        fitted = fitted / np.linalg.norm(fitted, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    similarities = queries @ fitted.T
    if exclude_self:
        np.fill_diagonal(similarities, -np.inf)
    k = min(k, len(fitted) - int(exclude_self))
    scores = np.zeros((len(queries), labels.shape[1]))
    for row in range(len(queries)):
        neighbours = np.argsort(-similarities[row], kind="stable")[:k]
        weights = np.ones(k) if weighting == "uniform" else np.clip(similarities[row, neighbours], 0, None)
        if weights.sum() == 0:
            weights = np.ones(k)
        scores[row] = weights @ labels[neighbours] / weights.sum()
    return scores


def exact_similarities(fitted, queries, similarity="cosine", exclude_self=False) -> np.ndarray:
    """The float64 similarities of queries to fitted items (-inf for an item and itself with exclude_self)."""
    if similarity == "cosine":
        fitted = fitted / np.linalg.norm(fitted, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    similarities = queries @ fitted.T
    if exclude_self:
        np.fill_diagonal(similarities, -np.inf)
    return similarities


def similarity_tol(similarities) -> float:
    """How far float32 rounding may move a similarity: 1e-5 of the largest magnitude, ~100 float32 eps."""
    return 1e-5 * max(1.0, float(np.abs(similarities[np.isfinite(similarities)]).max()))


def boundary_ties(similarities, k) -> np.ndarray:
    """Rows whose k-th and (k+1)-th largest similarities are within similarity_tol: float32 rounding (the
    backend's, the CPU's kernels) may take either item as the k-th neighbour, and change the row's scores."""
    if k >= similarities.shape[1]:
        return np.zeros(len(similarities), dtype=bool)
    ordered = -np.sort(-similarities, axis=1)
    return ordered[:, k - 1] - ordered[:, k] <= similarity_tol(similarities)


def test_boundary_ties():
    similarities = np.array([[0.9, 0.5, 0.5 - 1e-7, 0.1], [0.9, 0.5, 0.4, 0.1]])
    assert boundary_ties(similarities, 2).tolist() == [True, False]
    assert boundary_ties(similarities, 1).tolist() == [False, False]
    assert boundary_ties(similarities, 4).tolist() == [False, False]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [1, 5, 200])
@pytest.mark.parametrize("weighting", ["similarity", "uniform"])
@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_predict_proba_matches_brute_force(seed, k, weighting, similarity):
    # the torch backend computes in float32, the reference in float64: rows where the two may pick different
    # k-th neighbours (boundary_ties) are left out
    fitted, labels = random_fit_data(seed)
    queries, _ = random_fit_data(seed + 100, size=40)
    knn = KNNClassifier(k=k, similarity=similarity, backend="torch", weighting=weighting, block_size=16)
    knn.fit(fitted, labels)
    for rows, exclude_self in ((queries, False), (fitted, True)):
        expected = brute_force_proba(
            fitted, labels, rows, k, similarity=similarity, weighting=weighting, exclude_self=exclude_self
        )
        clear = ~boundary_ties(exact_similarities(fitted, rows, similarity, exclude_self), k)
        assert clear.mean() >= 0.9
        np.testing.assert_allclose(
            knn.predict_proba(rows, exclude_self=exclude_self)[clear], expected[clear], atol=1e-5
        )


def test_scores_lie_in_unit_interval_and_count_votes():
    fitted, labels = random_fit_data(1)
    knn = KNNClassifier(k=7, backend="torch", weighting="uniform").fit(fitted, labels)
    scores = knn.predict_proba(fitted[:30])
    assert scores.min() >= 0 and scores.max() <= 1
    np.testing.assert_allclose(scores * 7, np.round(scores * 7), atol=1e-9)  # uniform: a count of votes over k


def test_exclude_self_drops_the_item_itself():
    fitted = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    labels = np.array([[1, 0], [0, 1], [1, 1]])
    knn = KNNClassifier(k=1, backend="torch").fit(fitted, labels)
    assert knn.predict_proba(fitted).tolist() == labels.astype(float).tolist()  # each item finds itself
    _, indices = knn.kneighbors(fitted, exclude_self=True)
    assert indices[:, 0].tolist() == [2, 2, 0]  # item 2 is equally close to 0 and 1: the first is kept
    assert knn.predict_proba(fitted, exclude_self=True)[:2].tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_all_negative_similarities_fall_back_to_uniform_weights():
    fitted = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    labels = np.array([[1, 0], [0, 1], [1, 1]])
    knn = KNNClassifier(k=2, backend="torch").fit(fitted, labels)
    opposite = np.array([[-1.0, 0.0]])  # neighbours 1 and 2 at similarity 0, neighbour 0 at -1
    np.testing.assert_allclose(knn.predict_proba(opposite), [[0.5, 1.0]])
    far = KNNClassifier(k=3, backend="torch").fit(fitted[:1], labels[:1])
    np.testing.assert_allclose(far.predict_proba(opposite), [[1.0, 0.0]])  # the only neighbour, at -1, still votes
    mixed = np.array([[0.6, 0.8]])  # neighbours 1 (0.8) and 0 (0.6): weighted votes
    np.testing.assert_allclose(knn.predict_proba(mixed), [[0.6 / 1.4, 0.8 / 1.4]], atol=1e-6)
    clamped = np.array([[-0.6, 0.8]])  # neighbours 1 (0.8) and 0 (-0.6 -> weight 0): only neighbour 1 votes
    np.testing.assert_allclose(knn.predict_proba(clamped), [[0.0, 1.0]], atol=1e-6)


def test_k_is_capped_and_inputs_accept_labelmatrix_and_torch():
    import torch

    fitted, labels = random_fit_data(2, size=4)
    knn = KNNClassifier(k=50, backend="torch").fit(torch.from_numpy(fitted), LabelMatrix.from_dense(labels))
    similarities, indices = knn.kneighbors(fitted, exclude_self=True)
    assert similarities.shape == indices.shape == (4, 3)
    assert not (indices == np.arange(4)[:, None]).any()
    assert (np.diff(similarities, axis=1) <= 1e-6).all()  # most similar first


@pytest.mark.skipif(not faiss_available(), reason="faiss is not installed (optional backend)")
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_faiss_and_torch_backends_agree(seed, similarity):
    fitted, labels = random_fit_data(seed, size=300, dim=16)
    queries, _ = random_fit_data(seed + 1, size=80, dim=16)
    with_faiss = KNNClassifier(k=9, similarity=similarity, backend="faiss").fit(fitted, labels)
    with_torch = KNNClassifier(k=9, similarity=similarity, backend="torch").fit(fitted, labels)
    # Both search in float32, each with its own kernels: neighbours whose similarities are closer than rounding
    # may come in either order, or (at the k-th place) be different items. Compare the float64 similarities of
    # the neighbours found, the indices where no near-tie allows a swap, the scores of rows without a k-th tie.
    for rows, exclude_self in ((queries, False), (fitted, True)):
        exact = exact_similarities(fitted, rows, similarity, exclude_self)
        tol = similarity_tol(exact)
        (faiss_similarities, faiss_indices), (torch_similarities, torch_indices) = (
            knn.kneighbors(rows, exclude_self=exclude_self) for knn in (with_faiss, with_torch)
        )
        found = np.take_along_axis(exact, faiss_indices, axis=1)
        np.testing.assert_allclose(found, np.take_along_axis(exact, torch_indices, axis=1), atol=tol, rtol=0)
        np.testing.assert_allclose(faiss_similarities, found, atol=tol, rtol=0)
        np.testing.assert_allclose(torch_similarities, found, atol=tol, rtol=0)
        ordered = -np.sort(-exact, axis=1)[:, :10]  # the 9 neighbours and the next item
        np.testing.assert_allclose(found, ordered[:, :9], atol=tol, rtol=0)  # the 9 most similar, in order
        tied_with_next = ordered[:, :-1] - ordered[:, 1:] <= tol
        swappable = tied_with_next.copy()
        swappable[:, 1:] |= tied_with_next[:, :-1]  # tied with the neighbour before
        assert swappable.mean() < 0.1
        np.testing.assert_array_equal(faiss_indices[~swappable], torch_indices[~swappable])
        clear = ~boundary_ties(exact, 9)
        assert clear.mean() >= 0.9
        np.testing.assert_allclose(
            with_faiss.predict_proba(rows, exclude_self=exclude_self)[clear],
            with_torch.predict_proba(rows, exclude_self=exclude_self)[clear],
            atol=1e-5,
        )


def test_auto_backend_resolves_to_an_installed_one():
    knn = KNNClassifier(backend="auto")
    assert knn.resolved_backend == ("faiss" if faiss_available() else "torch")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: KNNClassifier(k=0), "k must be"),
        (lambda: KNNClassifier(similarity="l2"), "similarity must be one of"),
        (lambda: KNNClassifier(backend="annoy"), "backend must be one of"),
        (lambda: KNNClassifier(weighting="rank"), "weighting must be one of"),
        (lambda: KNNClassifier().predict_proba(np.eye(2)), "call fit"),
        (lambda: KNNClassifier(backend="torch").fit(np.eye(3), np.eye(2)), "labels has 2 rows"),
        (lambda: KNNClassifier(backend="torch").fit(np.eye(3), np.eye(3)).predict_proba(np.eye(2)), "dimension 3"),
        (
            lambda: (
                KNNClassifier(backend="torch").fit(np.eye(3), np.eye(3)).predict_proba(np.eye(3)[:2], exclude_self=True)
            ),
            "needs 3 rows",
        ),
        (lambda: KNNClassifier(backend="torch").fit(np.eye(1), np.eye(1)).kneighbors(np.eye(1), True), "no neighbour"),
        (lambda: hybrid_scores([[0.5]], [[0.5, 0.5]], 0.5), "shape of y_true"),
        (lambda: hybrid_scores([[1.5]], [[0.5]], 0.5), r"probabilities in \[0, 1\]"),
        (lambda: hybrid_scores([[0.5]], [[0.5]], 1.5), "weight must be"),
        (lambda: tune_mixing_weight([[1]], [[0.5]], [[0.5]], metric="accuracy"), "metric must be one of"),
        (lambda: tune_mixing_weight([[1]], [[0.5]], [[0.5]], weights=[2.0]), "weights must be"),
    ],
)
def test_validation_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.skipif(faiss_available(), reason="faiss is installed")
def test_faiss_backend_without_faiss_says_how_to_install():
    with pytest.raises(ValueError, match="faiss-cpu"):
        KNNClassifier(backend="faiss")


def test_hybrid_scores_is_the_convex_mix():
    rng = np.random.default_rng(0)
    head, knn = rng.random((10, 3)), rng.random((10, 3))
    np.testing.assert_allclose(hybrid_scores(head, knn, 0.3), 0.3 * head + 0.7 * knn)
    np.testing.assert_array_equal(hybrid_scores(head, knn, 1.0), head)
    np.testing.assert_array_equal(hybrid_scores(head, knn, 0.0), knn)


def mixing_case(seed: int):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((300, 4)) < 0.3).astype(int)
    informative = np.clip(0.6 * y_true + rng.normal(0.2, 0.15, y_true.shape), 0, 1)
    noise = rng.random(y_true.shape)
    return y_true, informative, noise


@pytest.mark.parametrize("tune", [True, False])
def test_tune_mixing_weight_prefers_the_informative_side(tune):
    y_true, informative, noise = mixing_case(0)
    weight, score = tune_mixing_weight(y_true, informative, noise, tune_thresholds=tune)
    assert weight >= 0.8
    weight_knn, _ = tune_mixing_weight(y_true, noise, informative, tune_thresholds=tune)
    assert weight_knn <= 0.2
    assert score > 0.8


@pytest.mark.parametrize("metric", ["macro_f1", "micro_f1"])
def test_tune_mixing_weight_score_matches_direct_computation(metric):
    y_true, informative, noise = mixing_case(1)
    weights = [0.0, 0.25, 0.5, 0.75, 1.0]
    best_weight, best_score = tune_mixing_weight(y_true, informative, noise, metric=metric, weights=weights)
    average = "macro" if metric == "macro_f1" else "micro"
    expected = []
    for weight in weights:
        mixed = weight * informative + (1 - weight) * noise
        expected.append(f1_score(y_true, mixed, thresholds=tune_thresholds(y_true, mixed).thresholds, average=average))
    assert best_score == pytest.approx(max(expected))
    assert best_weight == weights[int(np.argmax(expected))]
