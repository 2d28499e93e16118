"""Hard-negative mining: `mine_hard_negative_indices` against a brute-force numpy reference, and `labelspace mine`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labelspace.data import LabeledDataset, TripletDataset, load, save
from labelspace.data.builtin import demo
from labelspace.evaluation.knn import faiss_available
from labelspace.evaluation.mining import mine_hard_negative_indices, mine_hard_negatives
from labelspace.models import LabelspaceModel
from labelspace.models.testing import tiny_model_folder

BACKENDS = ["torch", "faiss"] if faiss_available() else ["torch"]


def _data(n: int = 90, dim: int = 12, num_labels: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(n, dim)).astype(np.float32)
    labels = (rng.random((n, num_labels)) < 0.25).astype(np.int64)
    labels[:3] = 0  # texts without labels: never anchors, negatives of everyone
    labels[3] = [0, 0, 0, 0, 1]  # a label only item 3 carries (made unique below): no positive
    labels[4:, 4] = 0
    return embeddings, labels


def _reference(
    embeddings: np.ndarray, labels: np.ndarray, num_negatives: int, range_min: int = 0, max_score: float | None = None
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Anchor -> (negative indices, their cosines), by sorting every other text of each anchor."""
    unit = embeddings.astype(np.float64) / np.linalg.norm(embeddings, axis=1, keepdims=True)
    cosine = unit @ unit.T
    shared = labels @ labels.T
    result = {}
    for anchor in range(len(labels)):
        has_positive = ((shared[anchor] > 0) & (np.arange(len(labels)) != anchor)).any()
        candidates = np.flatnonzero((shared[anchor] == 0) & (np.arange(len(labels)) != anchor))
        if max_score is not None:
            candidates = candidates[cosine[anchor, candidates] <= max_score]
        ranked = candidates[np.argsort(-cosine[anchor, candidates], kind="stable")][range_min:]
        if has_positive and len(ranked) >= num_negatives:
            result[anchor] = (ranked[:num_negatives], cosine[anchor, ranked[:num_negatives]])
    return result


def _assert_matches(mined, reference: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
    assert mined.anchors.tolist() == sorted(reference)
    for row, anchor in enumerate(mined.anchors):
        indices, scores = reference[anchor]
        np.testing.assert_allclose(mined.negative_scores[row], scores, atol=1e-5)
        # Indices must agree except where two candidates are (nearly) tied.
        gaps = np.abs(np.diff(scores)) if len(scores) > 1 else np.array([])
        if (gaps > 1e-5).all():
            assert mined.negatives[row].tolist() == indices.tolist(), anchor


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("num_negatives", "range_min"), [(1, 0), (3, 0), (2, 4)])
def test_negatives_are_the_most_similar_texts_sharing_no_label(backend, num_negatives, range_min):
    embeddings, labels = _data()
    mined = mine_hard_negative_indices(
        embeddings, labels, num_negatives=num_negatives, range_min=range_min, backend=backend, block_size=16
    )
    _assert_matches(mined, _reference(embeddings, labels, num_negatives, range_min))
    assert (labels[mined.anchors][:, None, :] * labels[mined.negatives]).sum(-1).max() == 0
    assert ((labels[mined.anchors] * labels[mined.positives]).sum(1) > 0).all()
    assert (mined.positives != mined.anchors).all()
    shares = (labels @ labels.T > 0) & ~np.eye(len(labels), dtype=bool)
    assert mined.without_positive == int((~shares.any(1)).sum()) and mined.num_anchors == len(labels)
    assert not set(range(4)) & set(mined.anchors.tolist())  # no label, or a label nobody else has
    assert mined.negatives.shape == (len(mined), num_negatives)


def test_range_min_skips_the_nearest_candidates():
    embeddings, labels = _data()
    top = mine_hard_negative_indices(embeddings, labels, num_negatives=5, backend="torch")
    skipped = mine_hard_negative_indices(embeddings, labels, num_negatives=2, range_min=3, backend="torch")
    assert skipped.anchors.tolist() == top.anchors.tolist()
    np.testing.assert_array_equal(skipped.negatives, top.negatives[:, 3:5])


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_score_drops_candidates_before_ranking(backend):
    embeddings, labels = _data()
    unfiltered = mine_hard_negative_indices(embeddings, labels, backend=backend)
    max_score = float(np.median(unfiltered.negative_scores))
    assert (unfiltered.negative_scores > max_score + 1e-3).any()  # the cap bites
    mined = mine_hard_negative_indices(embeddings, labels, num_negatives=2, max_score=max_score, backend=backend)
    assert (mined.negative_scores <= max_score + 1e-6).all()
    _assert_matches(mined, _reference(embeddings, labels, 2, max_score=max_score))


@pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")
@pytest.mark.parametrize("options", [{}, {"range_min": 2, "num_negatives": 3}, {"max_score": 0.2}])
def test_faiss_and_torch_give_the_same_triplets(options):
    embeddings, labels = _data(n=150, seed=3)
    faiss_mined = mine_hard_negative_indices(embeddings, labels, backend="faiss", block_size=32, **options)
    torch_mined = mine_hard_negative_indices(embeddings, labels, backend="torch", block_size=1000, **options)
    np.testing.assert_array_equal(faiss_mined.anchors, torch_mined.anchors)
    np.testing.assert_array_equal(faiss_mined.positives, torch_mined.positives)  # same seed, same draw
    np.testing.assert_allclose(faiss_mined.negative_scores, torch_mined.negative_scores, atol=1e-5)
    differ = faiss_mined.negatives != torch_mined.negatives
    assert differ.mean() < 0.02  # only where similarities tie


@pytest.mark.parametrize("strategy", ["most_similar", "least_similar"])
def test_positive_strategies(strategy):
    embeddings, labels = _data()
    mined = mine_hard_negative_indices(embeddings, labels, positive=strategy, backend="torch")
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    cosine = unit @ unit.T
    shares = (labels @ labels.T > 0) & ~np.eye(len(labels), dtype=bool)
    masked = np.where(shares, cosine, -np.inf if strategy == "most_similar" else np.inf)
    expected = masked.argmax(1) if strategy == "most_similar" else masked.argmin(1)
    np.testing.assert_array_equal(mined.positives, expected[mined.anchors])
    np.testing.assert_allclose(mined.positive_scores, cosine[mined.anchors, mined.positives], atol=1e-5)


def test_random_sampling_stays_in_the_range_and_is_seeded():
    embeddings, labels = _data()
    ranked = mine_hard_negative_indices(embeddings, labels, num_negatives=8, backend="torch")
    first = mine_hard_negative_indices(
        embeddings, labels, num_negatives=2, range_min=2, range_max=8, sampling="random", seed=5, backend="torch"
    )
    again = mine_hard_negative_indices(
        embeddings, labels, num_negatives=2, range_min=2, range_max=8, sampling="random", seed=5, backend="torch"
    )
    np.testing.assert_array_equal(first.negatives, again.negatives)
    for row in range(len(first)):
        window = ranked.negatives[row, 2:8].tolist()
        assert set(first.negatives[row].tolist()) <= set(window)
        assert len(set(first.negatives[row].tolist())) == 2
    assert (first.negatives != ranked.negatives[:, 2:4]).any()  # not simply the top of the window


def test_duplicate_texts_count_once_with_the_union_of_their_labels():
    embeddings = np.array([[1.0, 0.0], [0.95, 0.1], [0.9, -0.2], [0.95, 0.1], [0.0, 1.0], [0.1, -1.0]], np.float32)
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    texts = ["a", "dup", "a2", "dup", "b", "c"]  # "dup" carries label 0 in one row and label 1 in the other
    mined = mine_hard_negative_indices(embeddings, labels, texts, num_negatives=1, backend="torch")
    by_anchor = dict(zip(mined.anchors.tolist(), mined.negatives[:, 0].tolist(), strict=True))
    assert 3 not in mined.anchors.tolist() and 3 not in mined.negatives and 3 not in mined.positives
    assert by_anchor[0] == 5  # "dup" (row 1) shares label 0 through its duplicate: not a negative of "a"
    assert by_anchor[4] == 0  # "b" shares label 1 with "dup": its hardest negative is "a"
    plain = mine_hard_negative_indices(embeddings, labels, num_negatives=1, backend="torch")  # rows, not texts
    plain_by_anchor = dict(zip(plain.anchors.tolist(), plain.negatives[:, 0].tolist(), strict=True))
    assert plain_by_anchor[0] == 1 and plain_by_anchor[4] == 3


def test_max_anchors_and_bad_options():
    embeddings, labels = _data()
    mined = mine_hard_negative_indices(embeddings, labels, max_anchors=20, backend="torch")
    assert mined.num_anchors == 20 and len(mined) + mined.without_positive + mined.without_negatives == 20
    for options, message in [
        ({"num_negatives": 0}, "num_negatives"),
        ({"range_min": -1}, "range_min"),
        ({"range_min": 2, "range_max": 3, "num_negatives": 2}, "range_max"),
        ({"sampling": "hard"}, "sampling"),
        ({"positive": "any"}, "positive"),
        ({"backend": "annoy"}, "backend"),
        ({"max_score": float("nan")}, "max_score"),
    ]:
        with pytest.raises(ValueError, match=message):
            mine_hard_negative_indices(embeddings, labels, **options)
    with pytest.raises(ValueError, match="labels has 3 rows"):
        mine_hard_negative_indices(embeddings, labels[:3])


# ----------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("mine")
    encoder = tiny_model_folder(folder / "tiny")
    LabelspaceModel.from_pretrained(encoder).save(folder / "run" / "model")
    save(demo("dev"), folder / "dev.jsonl")
    return {"encoder": encoder, "run": folder / "run", "dev": folder / "dev.jsonl"}


@pytest.mark.parametrize("model_argument", ["encoder", "run"])
def test_mine_command_writes_triplets_that_load_back(run_cli, files, tmp_path, model_argument):
    out = tmp_path / "triplets.jsonl"
    code, stdout, stderr = run_cli(
        "mine",
        str(files[model_argument]),
        "--data",
        str(files["dev"]),
        "--out",
        str(out),
        "--negatives",
        "2",
        "--range-min",
        "1",
        "--quiet",
    )
    assert code == 0, stderr
    assert f"to {out}" in stdout
    triplets = load(out)
    assert isinstance(triplets, TripletDataset) and triplets.num_negatives == 2
    dev = load(files["dev"])
    label_of = {text: set(dev.label_names(i)) for i, text in enumerate(dev.texts)}
    for anchor, positive, negatives in (triplets[i] for i in range(len(triplets))):
        assert label_of[anchor] & label_of[positive] and anchor != positive
        assert all(not label_of[anchor] & label_of[negative] for negative in negatives)
    model = LabelspaceModel.from_pretrained(files["encoder"])
    expected = mine_hard_negatives(model, dev, num_negatives=2, range_min=1)
    assert triplets.anchors == expected.anchors and triplets.positives == expected.positives
    assert triplets.negatives == expected.negatives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["triplets.jsonl"]  # no temporary file left


def test_mine_command_errors_are_one_line(run_cli, files, tmp_path):
    def error(*args: str) -> str:
        code, _, stderr = run_cli("mine", *args, "--quiet")
        assert code == 2 and stderr.startswith("labelspace: error: ") and stderr.count("\n") == 1, stderr
        return stderr

    assert "--out" in error(str(files["run"]), "--data", str(files["dev"]), "--out", str(tmp_path / "t.txt"))
    assert "no such run or model folder" in error(
        str(tmp_path / "missing"), "--data", str(files["dev"]), "--out", str(tmp_path / "t.jsonl")
    )
    lonely = LabeledDataset.from_label_names(["one", "two", "three"], [["a"], ["b"], ["c"]])
    save(lonely, tmp_path / "lonely.jsonl")
    message = error(str(files["run"]), "--data", str(tmp_path / "lonely.jsonl"), "--out", str(tmp_path / "t.jsonl"))
    assert "no triplet mined" in message and "3 without a text sharing a label" in message
    assert "range_max" in error(
        str(files["run"]),
        "--data",
        str(files["dev"]),
        "--out",
        str(tmp_path / "t.jsonl"),
        "--range-max",
        "2",
        "--range-min",
        "2",
    )
    assert not (tmp_path / "t.jsonl").exists()


def test_mine_help_has_an_example(run_cli):
    code, stdout, _ = run_cli("mine", "--help")
    assert code == 0 and "Example: labelspace mine" in stdout
    assert "--range-min" in stdout and "--max-score" in stdout
