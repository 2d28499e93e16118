"""Text losses on embeddings: parity with sentence-transformers, multi-label masking, degenerate batches."""

from __future__ import annotations

import doctest
import math

import pytest
import torch
import torch.nn.functional as F

from labelspace.losses import text
from labelspace.losses.text import AnglELoss, CoSENTLoss, MultipleNegativesRankingLoss
from labelspace.losses.text import pairs as text_pairs
from labelspace.losses.text import ranking as text_ranking
from labelspace.losses.text.ranking import shares_label
from labelspace.relations import RelationRule

st = pytest.importorskip("sentence_transformers")
st_losses = pytest.importorskip("sentence_transformers.sentence_transformer.losses")
st_util = pytest.importorskip("sentence_transformers.util")

ANCHORS = [
    "the cat sat on the mat",
    "stocks fell sharply today",
    "i love this song so much",
    "the weather is cold and rainy",
    "she scored the winning goal",
    "how do i reset my password",
]
POSITIVES = [
    "a cat is sitting on a rug",
    "markets dropped at the close",
    "this track is my favourite",
    "it is chilly and wet outside",
    "her goal won the match",
    "steps to change a forgotten password",
]
NEGATIVES = [
    "a dog runs in the park",
    "the bakery sells fresh bread",
    "i hate waiting in line",
    "the desert is hot and dry",
    "he missed the penalty kick",
    "my password is very strong",
]
NEGATIVES_2 = [
    "mats are sold at the store",
    "bonds rose slightly",
    "the concert was cancelled",
    "snow is forecast for sunday",
    "the referee blew the whistle",
    "how do i delete my account",
]
SCORES = [0.9, 0.1, 0.7, 0.4, 0.4, 1.0]  # includes a tie


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from labelspace.models.testing import tiny_model_folder

    folder = tiny_model_folder(tmp_path_factory.mktemp("tiny-text-losses") / "tiny")
    encoder = st.SentenceTransformer(str(folder), device="cpu")
    encoder.eval()  # no dropout: both sides must see the same embeddings
    return encoder


def features(model, columns):
    return [model.tokenize(texts) for texts in columns]


def embed(model, columns):
    with torch.no_grad():
        return [model(feature)["sentence_embedding"] for feature in features(model, columns)]


def leaves(tensors):
    return [tensor.detach().clone().double().requires_grad_(True) for tensor in tensors]


def value_and_grads(fn, tensors):
    inputs = leaves(tensors)
    value = fn(*inputs)
    grads = torch.autograd.grad(value, inputs)
    return value.detach(), grads


def assert_close(ours, theirs, atol=1e-5):
    assert torch.allclose(ours.double(), theirs.double(), atol=atol, rtol=0), (ours, theirs)


# ---- MultipleNegativesRankingLoss: parity -----------------------------------------------------------------------


@pytest.mark.parametrize("columns", [2, 3, 4], ids=["pairs", "one-negative", "two-negatives"])
@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_mnrl_parity_with_sentence_transformers(model, columns, similarity):
    texts = [ANCHORS, POSITIVES, NEGATIVES, NEGATIVES_2][:columns]
    fct = st_util.cos_sim if similarity == "cosine" else st_util.dot_score
    theirs_module = st_losses.MultipleNegativesRankingLoss(model, scale=20.0, similarity_fct=fct)
    ours_module = MultipleNegativesRankingLoss(scale=20.0, similarity=similarity)
    with torch.no_grad():
        theirs = theirs_module(features(model, texts), torch.zeros(len(ANCHORS)))
        ours = ours_module(*embed(model, texts))
    assert_close(ours, theirs)

    embeddings = embed(model, texts)
    ours_value, ours_grads = value_and_grads(lambda *e: ours_module(*e), embeddings)
    theirs_value, theirs_grads = value_and_grads(
        lambda *e: theirs_module.compute_loss_from_embeddings(list(e), None), embeddings
    )
    assert_close(ours_value, theirs_value)
    for ours_grad, theirs_grad in zip(ours_grads, theirs_grads, strict=True):
        assert_close(ours_grad, theirs_grad)


def test_mnrl_defaults_match_sentence_transformers(model):
    theirs = st_losses.MultipleNegativesRankingLoss(model)
    ours = MultipleNegativesRankingLoss()
    assert ours.scale == theirs.scale == 20.0
    assert ours.similarity == "cosine" and theirs.similarity_fct is st_util.cos_sim
    assert theirs.directions == ("query_to_doc",) and theirs.hardness_mode is None


def test_mnrl_parity_random_embeddings_other_scale(model):
    g = torch.Generator().manual_seed(3)
    embeddings = [torch.randn(9, 17, generator=g, dtype=torch.float64) for _ in range(3)]
    theirs_module = st_losses.MultipleNegativesRankingLoss(model, scale=7.5)
    ours_value, ours_grads = value_and_grads(MultipleNegativesRankingLoss(scale=7.5), embeddings)
    theirs_value, theirs_grads = value_and_grads(
        lambda *e: theirs_module.compute_loss_from_embeddings(list(e), None), embeddings
    )
    assert_close(ours_value, theirs_value, atol=1e-10)
    for ours_grad, theirs_grad in zip(ours_grads, theirs_grads, strict=True):
        assert_close(ours_grad, theirs_grad, atol=1e-10)


# ---- MultipleNegativesRankingLoss: label masking ----------------------------------------------------------------


def logsumexp(values):
    return math.log(sum(math.exp(v) for v in values))


def test_mnrl_label_masking_by_hand():
    # dot similarity, scale 1, anchors the identity: sim(a_i, p_j) = S[i][j] and sim(a_i, n_j) = T[i][j].
    S = [[2.0, 1.0, 0.0], [0.5, 1.0, 3.0], [1.0, 0.0, -1.0]]
    T = [[0.3, -0.2, 0.1], [0.0, 0.4, -0.5], [0.2, 0.6, 0.0]]
    anchors = torch.eye(3, dtype=torch.float64)
    positives = torch.tensor(S, dtype=torch.float64).T.contiguous()
    negatives = torch.tensor(T, dtype=torch.float64).T.contiguous()
    labels = torch.tensor([0, 0, 1])  # items 0 and 1 share a label; item 2 stands alone
    loss = MultipleNegativesRankingLoss(scale=1.0, similarity="dot")

    # row 0 masks p_1, row 1 masks p_0, row 2 masks nothing; hard negatives are never masked
    expected_pairs = [
        -S[0][0] + logsumexp([S[0][0], S[0][2]]),
        -S[1][1] + logsumexp([S[1][1], S[1][2]]),
        -S[2][2] + logsumexp(S[2]),
    ]
    expected_with_negatives = [
        -S[0][0] + logsumexp([S[0][0], S[0][2], *T[0]]),
        -S[1][1] + logsumexp([S[1][1], S[1][2], *T[1]]),
        -S[2][2] + logsumexp([*S[2], *T[2]]),
    ]
    unmasked = [-S[i][i] + logsumexp(S[i]) for i in range(3)]
    assert float(loss(anchors, positives, labels=labels)) == pytest.approx(sum(expected_pairs) / 3, abs=1e-12)
    assert float(loss(anchors, positives, negatives, labels=labels)) == pytest.approx(
        sum(expected_with_negatives) / 3, abs=1e-12
    )
    assert float(loss(anchors, positives)) == pytest.approx(sum(unmasked) / 3, abs=1e-12)

    # the same with a multi-hot matrix: items 0 and 1 share label 1, item 2 has label 2 only
    multi_hot = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    assert float(loss(anchors, positives, negatives, labels=multi_hot)) == pytest.approx(
        sum(expected_with_negatives) / 3, abs=1e-12
    )
    logits = loss.logits(anchors, positives, negatives, labels=multi_hot)
    assert torch.isinf(logits[0, 1]) and torch.isinf(logits[1, 0])
    assert torch.isfinite(logits[:, 3:]).all() and torch.isfinite(logits.diagonal()).all()


def test_mnrl_jaccard_relation_masks_candidates_above_neg_threshold():
    # label sets: {a,b}, {a}, {a,b,c}, {c}, {b,c,d}; Jaccard by hand (symmetric):
    # J01 = 1/2, J02 = 2/3, J03 = 0, J04 = 1/4, J12 = 1/3, J13 = 0, J14 = 0, J23 = 1/3, J24 = 1/2, J34 = 1/3
    labels = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0], [0, 0, 1, 0], [0, 1, 1, 1]])
    above = {(0, 1), (0, 2), (1, 2), (2, 3), (2, 4), (3, 4)}  # Jaccard > 0.3
    expected = torch.tensor([[(min(i, j), max(i, j)) in above for j in range(5)] for i in range(5)])
    g = torch.Generator().manual_seed(0)
    anchors, positives, negatives = (torch.randn(5, 6, generator=g, dtype=torch.float64) for _ in range(3))
    relation = RelationRule("jaccard", pos_threshold=0.6, neg_threshold=0.3)
    loss = MultipleNegativesRankingLoss(scale=1.0, similarity="dot", relation=relation)
    logits = loss.logits(anchors, positives, negatives, labels=labels)
    assert torch.equal(torch.isinf(logits[:, :5]), expected)  # the own positive (diagonal) stays
    assert torch.isfinite(logits[:, 5:]).all()  # hard negatives carry no labels: never masked
    raw = (anchors @ torch.cat([positives, negatives]).T).tolist()
    by_hand = [
        -raw[i][i] + logsumexp([v for j, v in enumerate(raw[i]) if j >= 5 or not expected[i, j]]) for i in range(5)
    ]
    assert float(loss(anchors, positives, negatives, labels=labels)) == pytest.approx(sum(by_hand) / 5, abs=1e-12)
    # the default (overlap) masks every pair sharing a label, e.g. 0 and 4 (J = 1/4) too
    overlap = MultipleNegativesRankingLoss(scale=1.0, similarity="dot").logits(anchors, positives, labels=labels)
    assert torch.isinf(overlap[0, 4]) and torch.isfinite(overlap[1, 4])
    assert torch.equal(
        torch.isinf(MultipleNegativesRankingLoss(relation="jaccard").logits(anchors, positives, labels=labels)),
        torch.isinf(overlap),  # neg_threshold 0: every pair with a shared label is masked, as with overlap
    )
    with pytest.raises(ValueError, match="relation must be one of overlap, jaccard, exact"):
        MultipleNegativesRankingLoss(relation="cosine")


def test_shares_label_is_a_deprecated_alias_of_the_rule():
    labels = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0]])
    with pytest.warns(DeprecationWarning, match="false_negative_mask"):
        mask = shares_label(labels)
    assert torch.equal(mask, RelationRule().false_negative_mask(labels))


def test_shares_label_multi_hot():
    labels = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0]])
    expected = torch.tensor(
        [[True, True, True, False], [True, True, False, False], [True, False, True, False], [False] * 4]
    )
    assert torch.equal(shares_label(labels), expected)
    assert torch.equal(shares_label(labels.bool()), expected)
    assert torch.equal(shares_label(labels.float()), expected)
    with pytest.raises(ValueError, match="1-D class ids"):
        shares_label(torch.zeros(2, 2, 2))


def test_mnrl_one_d_labels_equal_one_hot():
    g = torch.Generator().manual_seed(1)
    embeddings = [torch.randn(8, 12, generator=g, dtype=torch.float64) for _ in range(3)]
    ids = torch.tensor([0, 2, 0, 1, 2, 3, 1, 0])
    one_hot = F.one_hot(ids, num_classes=5)
    loss = MultipleNegativesRankingLoss()
    for columns in (2, 3):
        by_ids, grads_ids = value_and_grads(lambda *e: loss(*e, labels=ids), embeddings[:columns])
        by_hot, grads_hot = value_and_grads(lambda *e: loss(*e, labels=one_hot), embeddings[:columns])
        plain = loss(*embeddings[:columns])
        assert_close(by_ids, by_hot, atol=1e-12)
        for a, b in zip(grads_ids, grads_hot, strict=True):
            assert_close(a, b, atol=1e-12)
        assert by_ids < plain  # masking removes terms from every denominator that had a shared label


def test_mnrl_all_unique_labels_mask_nothing():
    g = torch.Generator().manual_seed(2)
    embeddings = [torch.randn(5, 6, generator=g) for _ in range(3)]
    loss = MultipleNegativesRankingLoss()
    assert_close(loss(*embeddings, labels=torch.arange(5)), loss(*embeddings), atol=0)
    assert_close(loss(*embeddings, labels=torch.eye(5)), loss(*embeddings), atol=0)


@pytest.mark.parametrize("columns", [2, 3])
@pytest.mark.parametrize("labels", [torch.zeros(6, dtype=torch.long), torch.ones(6, 3)], ids=["ids", "multi-hot"])
def test_mnrl_no_nan_when_everything_but_the_positive_is_masked(columns, labels):
    g = torch.Generator().manual_seed(4)
    embeddings = leaves([torch.randn(6, 10, generator=g) for _ in range(columns)])
    value = MultipleNegativesRankingLoss()(*embeddings, labels=labels)
    assert torch.isfinite(value)
    if columns == 2:
        assert float(value.detach()) == 0.0  # every row's softmax holds only its positive
    value.backward()
    for tensor in embeddings:
        assert torch.isfinite(tensor.grad).all()


def test_mnrl_degenerate_and_invalid_inputs():
    loss = MultipleNegativesRankingLoss()
    empty = torch.zeros(0, 4, requires_grad=True)
    value = loss(empty, torch.zeros(0, 4))
    assert float(value.detach()) == 0.0 and value.requires_grad
    one = loss(torch.randn(1, 4), torch.randn(1, 4))
    assert float(one) == pytest.approx(0.0, abs=1e-6)
    half = loss(torch.randn(4, 8).half(), torch.randn(4, 8).half(), labels=torch.tensor([0, 0, 1, 1]))
    assert torch.isfinite(half)
    with pytest.raises(ValueError, match="anchors' shape"):
        loss(torch.randn(4, 8), torch.randn(3, 8))
    with pytest.raises(ValueError, match="anchors' shape"):
        loss(torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 7))
    with pytest.raises(ValueError, match="2-D"):
        loss(torch.randn(8), torch.randn(8))
    with pytest.raises(ValueError, match="one row per anchor"):
        loss(torch.randn(4, 8), torch.randn(4, 8), labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="scale"):
        MultipleNegativesRankingLoss(scale=0.0)
    with pytest.raises(ValueError, match="similarity"):
        MultipleNegativesRankingLoss(similarity="euclidean")


# ---- CoSENTLoss / AnglELoss -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CoSENTLoss", "AnglELoss"])
def test_pair_losses_parity_with_sentence_transformers(model, name):
    theirs_module = getattr(st_losses, name)(model)
    ours_module = getattr(text, name)()
    assert ours_module.scale == theirs_module.scale == 20.0
    scores = torch.tensor(SCORES)
    with torch.no_grad():
        theirs = theirs_module(features(model, [ANCHORS, POSITIVES]), scores)
        ours = ours_module(*embed(model, [ANCHORS, POSITIVES]), scores)
    assert_close(ours, theirs)

    embeddings = embed(model, [ANCHORS, POSITIVES])
    ours_value, ours_grads = value_and_grads(lambda a, b: ours_module(a, b, scores), embeddings)
    theirs_value, theirs_grads = value_and_grads(
        lambda a, b: theirs_module.compute_loss_from_embeddings([a, b], scores), embeddings
    )
    assert_close(ours_value, theirs_value)
    for ours_grad, theirs_grad in zip(ours_grads, theirs_grads, strict=True):
        assert_close(ours_grad, theirs_grad)


@pytest.mark.parametrize("name", ["CoSENTLoss", "AnglELoss"])
@pytest.mark.parametrize("dim", [16, 7], ids=["even", "odd"])
@pytest.mark.parametrize("kind", ["float", "int-ties", "bool"])
def test_pair_losses_parity_random(model, name, dim, kind):
    g = torch.Generator().manual_seed(dim)
    embeddings = [torch.randn(12, dim, generator=g, dtype=torch.float64) for _ in range(2)]
    if kind == "float":
        scores = torch.rand(12, generator=g, dtype=torch.float64)
    elif kind == "int-ties":
        scores = torch.randint(0, 4, (12,), generator=g)
    else:
        scores = torch.randint(0, 2, (12,), generator=g).bool()
    theirs_module = getattr(st_losses, name)(model, scale=5.0)
    ours_module = getattr(text, name)(scale=5.0)
    ours_value, ours_grads = value_and_grads(lambda a, b: ours_module(a, b, scores), embeddings)
    theirs_value, theirs_grads = value_and_grads(
        lambda a, b: theirs_module.compute_loss_from_embeddings([a, b], scores), embeddings
    )
    assert_close(ours_value, theirs_value, atol=1e-10)
    for ours_grad, theirs_grad in zip(ours_grads, theirs_grads, strict=True):
        assert_close(ours_grad, theirs_grad, atol=1e-10)


def test_angle_similarity_matches_sentence_transformers():
    g = torch.Generator().manual_seed(5)
    for dim in (6, 9):
        x, y = torch.randn(5, dim, generator=g), torch.randn(5, dim, generator=g)
        assert_close(text_pairs.pairwise_angle_similarity(x, y), st_util.pairwise_angle_sim(x, y), atol=1e-6)
        assert_close(text_pairs.pairwise_cosine_similarity(x, y), st_util.pairwise_cos_sim(x, y), atol=1e-6)


def test_cosent_by_hand():
    # sims: cos = 1, 0, -1 for pairs with gold scores 0.2, 0.5, 0.9 (so every ordered pair is misranked)
    left = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    right = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    scores = torch.tensor([0.2, 0.5, 0.9])
    sims = [1.0, 0.0, -1.0]
    s = 2.0
    terms = [0.0] + [s * (sims[j] - sims[i]) for i in range(3) for j in range(3) if scores[i] > scores[j]]
    assert float(CoSENTLoss(scale=s)(left, right, scores)) == pytest.approx(logsumexp(terms), abs=1e-6)
    # equal gold scores: nothing to rank, log(1) = 0, and a finite zero gradient
    left.requires_grad_(True)
    value = CoSENTLoss()(left, right, torch.ones(3))
    value.backward()
    assert float(value.detach()) == 0.0 and torch.isfinite(left.grad).all()


def test_pair_losses_invalid_inputs():
    for loss in (CoSENTLoss(), AnglELoss()):
        with pytest.raises(ValueError, match="one per pair"):
            loss(torch.randn(4, 6), torch.randn(4, 6), torch.rand(3))
        with pytest.raises(ValueError, match="same shape"):
            loss(torch.randn(4, 6), torch.randn(3, 6), torch.rand(4))
        with pytest.raises(ValueError, match="2-D"):
            loss(torch.randn(6), torch.randn(6), torch.rand(1))
        half = loss(torch.randn(4, 6).half(), torch.randn(4, 6).half(), torch.rand(4))
        assert torch.isfinite(half) and half.dtype == torch.float32


def test_docstring_examples_run():
    for module in (text, text_ranking, text_pairs):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__
