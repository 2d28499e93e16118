"""labelspace.objectives: named components of the model-level losses, relations in the cached and GIST
losses, and the deprecated import paths of the names that moved out of labelspace.losses."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from labelspace import objectives
from labelspace.data import LabeledDataset
from labelspace.data.batch import TextBatch, make_batch
from labelspace.losses import BCEHeadLoss, ContrastiveLoss, MultipleNegativesRankingLoss, MultiSimilarityLoss
from labelspace.objectives import (
    CachedGISTEmbedLoss,
    CachedMultipleNegativesRankingLoss,
    CombinedLoss,
    GISTEmbedLoss,
    ModelLoss,
    as_model_loss,
)
from labelspace.relations import RelationRule

# Jaccard of LABELS' pairs: (0, 5) is 1.0, (0, 1), (1, 5), (2, 3), (3, 4) are 0.5, the rest 0.
LABELS = torch.tensor(
    [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
    dtype=torch.float32,
)
# Under this rule only (0, 5) is not a negative: the same mask as overlap on class ids where 0 and 5 share an id.
STRICT_JACCARD = RelationRule("jaccard", pos_threshold=0.9, neg_threshold=0.5)
SAME_MASK_IDS = torch.tensor([0, 1, 2, 3, 4, 0, 6, 7])
ANCHORS = ["a cat on a mat", "stocks fell", "i love this song", "cold rain", "a winning goal", "reset password",
           "late train", "fresh bread"]  # fmt: skip
POSITIVES = ["a cat on a rug", "markets dropped", "my favourite track", "wet and chilly", "her goal won",
             "change my password", "delayed commute", "a warm loaf"]  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from labelspace.models.testing import tiny_model_folder

    return tiny_model_folder(tmp_path_factory.mktemp("tiny-objectives") / "tiny", seed=0)


@pytest.fixture(scope="module")
def labeled():
    texts = ["a b", "b c", "c d", "d e", "e f", "f g"]
    return LabeledDataset.from_label_names(texts, [["x"], ["x", "y"], ["y"], ["y", "z"], ["z"], ["x"]])


@pytest.fixture
def model64(folder, labeled):
    from labelspace.models import LabelspaceModel

    return LabelspaceModel.from_pretrained(folder, labels=labeled.label_set).eval().double()


@pytest.fixture
def model(folder):
    from labelspace.models import LabelspaceModel

    return LabelspaceModel.from_pretrained(folder).eval()


def grads_of(loss: nn.Module, model: nn.Module, batch: TextBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    value = loss(model, batch)
    value.backward()
    grads = {name: p.grad.clone() for name, p in model.encoder.model.named_parameters() if p.grad is not None}
    return value.detach(), grads


def assert_same(first, second, atol: float = 1e-5) -> None:
    (value, grads), (other_value, other_grads) = first, second
    torch.testing.assert_close(value, other_value, rtol=1e-5, atol=atol)
    assert grads.keys() == other_grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], other_grads[name], rtol=1e-4, atol=atol, msg=name)


# ---- components ---------------------------------------------------------------------------------------------------


def test_combined_components_are_the_weighted_losses_and_sum_to_forward(model64, labeled):
    batch = make_batch(labeled, list(range(len(labeled))))
    parts = [(MultiSimilarityLoss(), 0.7), (BCEHeadLoss(), 0.25), (MultiSimilarityLoss(alpha=1.0, beta=20.0), 2.0)]
    combined = CombinedLoss(parts + [(ContrastiveLoss(), 0.0)])
    components = combined.components(model64, batch)
    assert list(components) == ["MultiSimilarityLoss", "BCEHeadLoss", "MultiSimilarityLoss_2", "ContrastiveLoss"]
    assert combined.names() == list(components)
    for (loss, weight), component in zip(parts, components.values(), strict=False):
        alone = as_model_loss(loss)(model64, batch)  # the same loss by itself, weighted by hand
        assert component.dtype == torch.float64
        torch.testing.assert_close(component, weight * alone, rtol=1e-12, atol=1e-12)
    assert float(components["ContrastiveLoss"].detach()) == 0.0
    assert float(components["MultiSimilarityLoss"].detach()) != float(components["MultiSimilarityLoss_2"].detach())
    total = combined(model64, batch)
    torch.testing.assert_close(total, sum(components.values()), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(objectives.sum_components(components), total, rtol=1e-12, atol=1e-12)


def test_components_keep_the_gradient_of_the_loss(model64, labeled):
    batch = make_batch(labeled, list(range(len(labeled))))
    combined = CombinedLoss([(MultiSimilarityLoss(), 0.5), (BCEHeadLoss(), 2.0)])
    model64.zero_grad(set_to_none=True)
    objectives.sum_components(combined.components(model64, batch)).backward()
    from_parts = {name: p.grad.clone() for name, p in model64.named_parameters() if p.grad is not None}
    model64.zero_grad(set_to_none=True)
    combined(model64, batch).backward()
    assert from_parts and from_parts.keys() == {n for n, p in model64.named_parameters() if p.grad is not None}
    for name, grad in from_parts.items():
        torch.testing.assert_close(grad, dict(model64.named_parameters())[name].grad, rtol=1e-12, atol=1e-12)


def test_single_losses_have_one_component_named_after_them(model):
    batch = TextBatch("pairs", [ANCHORS[:4], POSITIVES[:4]])
    losses = {
        "MultipleNegativesRankingLoss": as_model_loss(MultipleNegativesRankingLoss()),
        "CachedMultipleNegativesRankingLoss": CachedMultipleNegativesRankingLoss(mini_batch_size=3),
    }
    for name, loss in losses.items():
        with torch.no_grad():
            parts = loss.components(model, batch)
            value = loss(model, batch)
        assert list(parts) == [name]
        torch.testing.assert_close(parts[name], value)


def test_a_subclass_implements_forward_or_components():
    class Forward(ModelLoss):
        def forward(self, model, batch, cache=None):
            return torch.tensor(2.0)

    class Parts(ModelLoss):
        def components(self, model, batch, cache=None):
            return {"a": torch.tensor(1.5), "b": torch.tensor(-0.5)}

    batch = TextBatch("pairs", [["a"], ["b"]])
    parts = Forward().components(None, batch)
    assert list(parts) == ["Forward"] and float(parts["Forward"]) == 2.0
    assert float(Parts()(None, batch)) == 1.0
    with pytest.raises(NotImplementedError, match="forward\\(\\) or components\\(\\)"):
        ModelLoss()(None, batch)
    with pytest.raises(NotImplementedError, match="forward\\(\\) or components\\(\\)"):
        ModelLoss().components(None, batch)


def test_last_values_is_deprecated_and_unweighted(model64, labeled):
    batch = make_batch(labeled, list(range(len(labeled))))
    combined = CombinedLoss([(MultiSimilarityLoss(), 0.5), (BCEHeadLoss(), 0.0)])
    components = combined.components(model64, batch)
    with pytest.warns(DeprecationWarning, match="components"):
        values = combined.last_values
    head = float(as_model_loss(BCEHeadLoss())(model64, batch).detach())
    assert values == pytest.approx(
        {"MultiSimilarityLoss": 2 * float(components["MultiSimilarityLoss"].detach()), "BCEHeadLoss": head}
    )
    assert head > 0
    with pytest.raises(AttributeError):
        combined.last_values = {}


# ---- relations in the model-calling losses -----------------------------------------------------------------------


def test_cached_mnrl_masks_what_the_relation_says(model):
    batch = TextBatch("pairs", [ANCHORS, POSITIVES], labels=LABELS)
    cached = CachedMultipleNegativesRankingLoss(mini_batch_size=3, relation=STRICT_JACCARD)
    plain = as_model_loss(MultipleNegativesRankingLoss(relation=STRICT_JACCARD))
    jaccard = grads_of(cached, model, batch)
    assert_same(jaccard, grads_of(plain, model, batch))
    # Independent reading of the mask: overlap on class ids where only items 0 and 5 share an id.
    ids = TextBatch("pairs", [ANCHORS, POSITIVES], labels=SAME_MASK_IDS)
    assert_same(jaccard, grads_of(CachedMultipleNegativesRankingLoss(mini_batch_size=3), model, ids))
    overlap, _ = grads_of(CachedMultipleNegativesRankingLoss(mini_batch_size=3), model, batch)
    assert abs(float(overlap) - float(jaccard[0])) > 1e-4  # overlap masks more pairs: the rule matters
    assert CachedMultipleNegativesRankingLoss(relation="jaccard").relation_rule == RelationRule("jaccard")


def test_cached_mnrl_row_loss_follows_false_negative_mask():
    g = torch.Generator().manual_seed(3)
    anchors, positives = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    loss = CachedMultipleNegativesRankingLoss(relation=STRICT_JACCARD)
    chunked = sum(loss.row_loss([anchors, positives], begin, min(begin + 3, 8), LABELS) for begin in (0, 3, 6))
    expected = MultipleNegativesRankingLoss(relation=STRICT_JACCARD)(anchors, positives, labels=LABELS)
    torch.testing.assert_close(chunked, expected, rtol=1e-5, atol=1e-6)
    # by hand: row i's softmax leaves out the positives false_negative_mask marks (never its own)
    mask = STRICT_JACCARD.false_negative_mask(LABELS)
    mask.fill_diagonal_(False)
    logits = 20.0 * nn.functional.normalize(anchors, dim=-1) @ nn.functional.normalize(positives, dim=-1).T
    by_hand = nn.functional.cross_entropy(logits.masked_fill(mask, float("-inf")), torch.arange(8))
    torch.testing.assert_close(chunked, by_hand, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cached", [False, True], ids=["gist", "cached-gist"])
def test_gist_relation_rule(model, folder, cached):
    from labelspace.models import LabelspaceModel

    guide = LabelspaceModel.from_pretrained(folder).eval()  # the same weights: the guide masks only near-copies

    def make(relation=None):
        loss = CachedGISTEmbedLoss(guide, mini_batch_size=3) if cached else GISTEmbedLoss(guide)
        if relation is not None:
            loss.relation_rule = relation
        return loss

    labeled = TextBatch("pairs", [ANCHORS, POSITIVES], labels=LABELS)
    jaccard = grads_of(make(STRICT_JACCARD), model, labeled)
    ids = TextBatch("pairs", [ANCHORS, POSITIVES], labels=SAME_MASK_IDS)
    assert_same(jaccard, grads_of(make(), model, ids), atol=1e-4)
    overlap, _ = grads_of(make(), model, labeled)
    assert abs(float(overlap) - float(jaccard[0])) > 1e-4
    assert make("exact").relation_rule == RelationRule("exact")
    with pytest.raises(ValueError, match="relation must be"):
        make("cosine")


# ---- deprecated import paths -------------------------------------------------------------------------------------

MOVED = [
    ("labelspace.losses", "CombinedLoss", objectives.CombinedLoss),
    ("labelspace.losses", "ModelLoss", objectives.ModelLoss),
    ("labelspace.losses", "as_model_loss", objectives.as_model_loss),
    ("labelspace.losses", "CachedMultipleNegativesRankingLoss", CachedMultipleNegativesRankingLoss),
    ("labelspace.losses", "GISTEmbedLoss", GISTEmbedLoss),
    ("labelspace.losses", "CachedGISTEmbedLoss", CachedGISTEmbedLoss),
    ("labelspace.losses.text", "CachedMultipleNegativesRankingLoss", CachedMultipleNegativesRankingLoss),
    ("labelspace.losses.text", "GISTEmbedLoss", GISTEmbedLoss),
    ("labelspace.losses.text", "CachedGISTEmbedLoss", CachedGISTEmbedLoss),
    ("labelspace.losses.model_loss", "MetricObjective", objectives.MetricObjective),
    ("labelspace.losses.model_loss", "EmbeddingCache", objectives.EmbeddingCache),
    ("labelspace.losses.model_loss", "pair_batch_relation", objectives.pair_batch_relation),
    ("labelspace.losses.model_loss", "encoder_of", objectives.encoder_of),
    ("labelspace.losses.text.cached", "CachedMultipleNegativesRankingLoss", CachedMultipleNegativesRankingLoss),
    ("labelspace.losses.text.cached", "grad_cache_loss", objectives.gradcache.grad_cache_loss),
    ("labelspace.losses.text.cached", "RandomState", objectives.gradcache.RandomState),
    ("labelspace.losses.text.gist", "CachedGISTEmbedLoss", CachedGISTEmbedLoss),
    ("labelspace.losses.text.gist", "MARGIN_STRATEGIES", objectives.gist.MARGIN_STRATEGIES),
]


@pytest.mark.parametrize(("module", "name", "moved"), MOVED, ids=[f"{m}.{n}" for m, n, _ in MOVED])
def test_old_paths_work_and_warn(module, name, moved):
    old = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=f"{module}.{name} is deprecated: import {name} from labelspace"):
        value = getattr(old, name)
    assert value is moved
    assert name in old.DEPRECATED_ALIASES


def test_unknown_names_are_still_attribute_errors():
    from labelspace import losses
    from labelspace.losses import text

    with pytest.raises(AttributeError, match="NoSuchLoss"):
        losses.NoSuchLoss  # noqa: B018
    with pytest.raises(AttributeError, match="NoSuchLoss"):
        text.NoSuchLoss  # noqa: B018


def test_shares_label_rows_is_a_deprecated_false_negative_mask():
    from labelspace.losses.text.cached import shares_label_rows

    with pytest.warns(DeprecationWarning, match="false_negative_mask"):
        rows = shares_label_rows(LABELS, 1, 4)
    assert torch.equal(rows, RelationRule().false_negative_mask(LABELS[1:4], LABELS))
    assert rows.tolist()[0] == [True, True, False, False, False, True, False, False]


def test_the_new_paths_do_not_warn():
    # A fresh interpreter: importing labelspace.objectives (and the losses it builds on) and using the
    # names never goes through a deprecated path.
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "import labelspace.objectives as o, labelspace.losses as l, labelspace.losses.text as t\n"
        "from labelspace.objectives import *\n"
        "from labelspace.losses import MultiSimilarityLoss, BCEHeadLoss\n"
        "o.CombinedLoss([(MultiSimilarityLoss(), 1.0), (BCEHeadLoss(), 0.5)])\n"
        "o.CachedMultipleNegativesRankingLoss(relation='jaccard'), t.MultipleNegativesRankingLoss()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "module",
    [
        "labelspace.objectives",
        "labelspace.objectives.base",
        "labelspace.objectives.wrappers",
        "labelspace.objectives.combined",
        "labelspace.objectives.gradcache",
        "labelspace.objectives.cached",
        "labelspace.objectives.gist",
        "labelspace.losses.moved",
        "labelspace.losses.model_loss",
        "labelspace.losses.text.cached",
        "labelspace.losses.text.gist",
    ],
)
def test_docstring_examples_run(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
