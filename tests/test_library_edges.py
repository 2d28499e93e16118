"""Library edges (issue 10, item 11): bad names, lists as labels, empty batches, NaN embeddings, bad targets.

One rule each, the same for every metric loss and miner: a Python list as labels, an empty batch and
non-finite embeddings are a ValueError (the last naming the rows). The embedding-level text losses
refuse non-finite embeddings the same way (an empty batch keeps its zero loss there, tested in
test_text_losses*.py); head losses refuse targets outside [0, 1].
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labelspace.data.labels import LabelSet
from labelspace.losses import (
    AnglELoss,
    AsymmetricLoss,
    BCEHeadLoss,
    CircleLoss,
    ContrastiveLoss,
    CoSENTLoss,
    FastAPLoss,
    FocalLoss,
    MultipleNegativesRankingLoss,
    MultiSimilarityLoss,
    NTXentLoss,
    RegressionHeadLoss,
    SoftmaxHeadLoss,
    TripletLoss,
    TripletMarginLoss,
)
from labelspace.miners import BatchHardMiner, MultiSimilarityMiner, PairMarginMiner, TripletMarginMiner
from labelspace.relations import Relation

METRIC_LOSSES = [
    CircleLoss(),
    ContrastiveLoss(),
    ContrastiveLoss(positive_weighting="jaccard"),
    FastAPLoss(),
    MultiSimilarityLoss(),
    NTXentLoss(),
    TripletMarginLoss(),
    TripletMarginLoss(triplets_per_anchor=1),
]
MINERS = [BatchHardMiner(), MultiSimilarityMiner(), PairMarginMiner(), TripletMarginMiner()]
LOSSES_AND_MINERS = METRIC_LOSSES + MINERS
LABELS = [0, 0, 1, 1, 2, 2]


def batch(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(len(LABELS), 4, generator=torch.Generator().manual_seed(0)).to(dtype)


def with_bad_rows(embeddings: torch.Tensor) -> torch.Tensor:
    """Row 1 gets a NaN, row 4 an inf; the other rows stay finite."""
    bad = embeddings.clone()
    bad[1, 2] = float("nan")
    bad[4, 0] = float("inf")
    return bad


# ----------------------------------------------------------------------------- LabelSet


@pytest.mark.parametrize("names", ["abc", b"ab"])
def test_label_set_refuses_a_single_string(names):
    with pytest.raises(ValueError, match="not a single string"):
        LabelSet(names)


@pytest.mark.parametrize(
    ("names", "message"),
    [(["a", None], "NoneType None at position 1"), ([1, 2], "int 1 at position 0"), (["a", 2.5], "float 2.5")],
)
def test_label_names_must_be_strings(names, message):
    with pytest.raises(ValueError, match=f"label names must be non-empty strings, got {message}"):
        LabelSet(names)


def test_label_set_keeps_plain_strings_from_numpy():
    names = LabelSet(np.array(["b", "a"])).names
    assert names == ["b", "a"] and all(type(name) is str for name in names)
    with pytest.raises(ValueError, match="position 1"):
        LabelSet(["a", 1])


# ----------------------------------------------------------------------------- lists as labels


@pytest.mark.parametrize("module", LOSSES_AND_MINERS, ids=repr)
@pytest.mark.parametrize("labels", [LABELS, [[1, 0], [1, 1], [0, 1], [0, 1], [1, 0], [0, 0]], (0, 0, 1, 1, 2, 2)])
def test_python_lists_as_labels_are_refused(module, labels):
    kind = type(labels).__name__
    with pytest.raises(ValueError, match=rf"labels must be a torch.Tensor .* got {kind}; wrap it with torch.tensor"):
        module(batch(), labels)


def test_a_list_beside_an_indices_tuple_is_refused_too():
    indices = (torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([2, 3]), torch.tensor([2, 3]))
    expected = ContrastiveLoss()(batch(), None, indices)  # labels are not needed here ...
    assert torch.isfinite(expected)
    with pytest.raises(ValueError, match="got list"):  # ... but a list is a mistake, not ignored
        ContrastiveLoss()(batch(), LABELS, indices)


def test_relation_from_a_list_is_a_value_error():
    with pytest.raises(ValueError, match="got list"):
        Relation.from_labels(LABELS)


# ----------------------------------------------------------------------------- empty batch


@pytest.mark.parametrize("module", LOSSES_AND_MINERS, ids=repr)
@pytest.mark.parametrize("labels", [torch.zeros(0, dtype=torch.long), torch.zeros(0, 3, dtype=torch.long)])
def test_an_empty_batch_is_refused(module, labels):
    with pytest.raises(ValueError, match=r"the batch is empty \(embeddings has 0 rows\)"):
        module(torch.zeros(0, 4, requires_grad=True), labels)


def test_an_empty_batch_with_a_relation_is_refused():
    empty = Relation(torch.zeros(0, 0, dtype=torch.bool), torch.zeros(0, 0, dtype=torch.bool))
    for module in LOSSES_AND_MINERS:
        with pytest.raises(ValueError, match="the batch is empty"):
            module(torch.zeros(0, 4), empty)


# ----------------------------------------------------------------------------- NaN / inf embeddings


@pytest.mark.parametrize("module", LOSSES_AND_MINERS, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_non_finite_embeddings_name_their_rows(module, dtype):
    result = module(batch(dtype), torch.tensor(LABELS))  # the finite batch goes through
    assert all(torch.isfinite(t.float()).all() for t in (result if isinstance(result, tuple) else (result,)))
    with pytest.raises(ValueError, match=r"^embeddings rows 1, 4 are not finite \(NaN or inf\)$"):
        module(with_bad_rows(batch(dtype)), torch.tensor(LABELS))


@pytest.mark.parametrize("loss", METRIC_LOSSES, ids=repr)
def test_one_nan_row_is_refused_even_when_the_relation_ignores_it(loss):
    # Row 5 is related to nothing, so a loss could skip it and return a finite number: it must not.
    embeddings = batch()
    embeddings[5] = float("nan")
    positive = torch.zeros(6, 6, dtype=torch.bool)
    positive[0, 1] = positive[1, 0] = True
    negative = torch.zeros(6, 6, dtype=torch.bool)
    negative[0, 2] = negative[2, 0] = negative[1, 2] = negative[2, 1] = True
    relation = Relation(positive, negative, positive.float())
    assert torch.isfinite(loss(batch(), relation))  # the same batch without the NaN is fine
    with pytest.raises(ValueError, match=r"^embeddings row 5 is not finite"):
        loss(embeddings, relation)


def test_many_non_finite_rows_are_counted():
    embeddings = torch.full((30, 4), float("nan"))
    with pytest.raises(ValueError, match=r"rows 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 20 more are not finite"):
        NTXentLoss()(embeddings, torch.arange(30) % 3)


# ----------------------------------------------------------------------------- text losses


def text_columns(size: int = 4, count: int = 3) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(size, 8, generator=generator) for _ in range(count)]


RANKING_LOSSES = [MultipleNegativesRankingLoss(), TripletLoss()]
PAIR_LOSSES = [CoSENTLoss(), AnglELoss()]


@pytest.mark.parametrize("loss", RANKING_LOSSES, ids=repr)
@pytest.mark.parametrize(("column", "name"), [(0, "anchors"), (1, "positives"), (2, r"negatives\[0\]")])
def test_ranking_losses_name_the_non_finite_column_and_rows(loss, column, name):
    columns = text_columns()
    assert torch.isfinite(loss(*columns))
    columns[column][2, 5] = float("nan")
    with pytest.raises(ValueError, match=rf"^{name} row 2 is not finite"):
        loss(*columns)


@pytest.mark.parametrize("loss", PAIR_LOSSES, ids=repr)
def test_pair_losses_name_the_non_finite_rows(loss):
    first, second = text_columns(count=2)
    scores = torch.tensor([1.0, 0.0, 0.5, 0.2])
    assert torch.isfinite(loss(first, second, scores))
    second[0, 0], second[3, 1] = float("-inf"), float("nan")
    with pytest.raises(ValueError, match=r"^embeddings2 rows 0, 3 are not finite"):
        loss(first, second, scores)


# ----------------------------------------------------------------------------- head targets


UNIT_TARGET_LOSSES = [BCEHeadLoss(), BCEHeadLoss(label_smoothing=0.1), FocalLoss(), AsymmetricLoss()]


@pytest.mark.parametrize("loss", UNIT_TARGET_LOSSES, ids=repr)
@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_head_losses_refuse_targets_outside_the_unit_interval(loss, bad):
    logits = torch.zeros(2, 3)
    targets = torch.tensor([[0.0, 1.0, 0.3], [1.0, 0.0, 0.0]])
    assert torch.isfinite(loss(logits, targets))  # 0/1 and soft scores are fine
    targets[1, 2] = bad
    with pytest.raises(
        ValueError, match=r"targets must be 0/1 labels or soft scores in \[0, 1\], got .* row 1, column 2"
    ):
        loss(logits, targets)


def test_softmax_refuses_negative_scores_and_regression_takes_any_value():
    logits = torch.zeros(2, 3)
    votes = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 2.0]])  # vote counts above 1 are fine
    torch.testing.assert_close(SoftmaxHeadLoss()(logits, votes), torch.log(torch.tensor(3.0)))
    with pytest.raises(ValueError, match=r"class scores >= 0 .* got -1 at row 0, column 1"):
        SoftmaxHeadLoss()(logits, torch.tensor([[3.0, -1.0, 0.0], [0.0, 0.0, 2.0]]))
    targets = torch.tensor([[5.0, -2.0, 0.5], [1.5, 0.0, -0.1]])
    torch.testing.assert_close(RegressionHeadLoss()(logits, targets), F.mse_loss(logits, targets))
