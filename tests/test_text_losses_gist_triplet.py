"""GISTEmbedLoss, CachedGISTEmbedLoss and TripletLoss: parity with sentence-transformers on the tiny model,
cached == non-cached, the guide and label masks against a brute-force reference, errors."""

from __future__ import annotations

import doctest
import math

import pytest
import torch
from torch import nn

from labelspace.data.batch import TextBatch
from labelspace.losses.model_loss import RankingObjective, as_model_loss
from labelspace.losses.text import CachedGISTEmbedLoss, GISTEmbedLoss, TripletLoss
from labelspace.losses.text import gist as text_gist
from labelspace.losses.text import triplet as text_triplet
from text_loss_testing import ANCHORS, COLUMNS, LABELS, NEGATIVES, NEGATIVES_2, POSITIVES, assert_grad_close

st = pytest.importorskip("sentence_transformers")
st_losses = pytest.importorskip("sentence_transformers.sentence_transformer.losses")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from labelspace.models.testing import tiny_model_folder

    root = tmp_path_factory.mktemp("tiny-gist")
    return tiny_model_folder(root / "model", seed=0), tiny_model_folder(root / "guide", seed=1)


# The trained model runs in float64 on both sides: GIST divides cosines by a temperature of 0.01, so float32
# rounding (which the CPU's kernels and thread count change) reaches ~1e-5 in the loss and its gradients, the
# size of any float32 tolerance; in float64 the two libraries agree to ~1e-14. The guides stay float32 (ours
# casts guide embeddings to float32); test_guide_decisions_keep_clear_of_the_limits shows that rounding cannot
# flip a guide mask here. test_gist_float32_against_the_float64_reference checks the float32 path.
@pytest.fixture(scope="module")
def st_model(folders):
    model = st.SentenceTransformer(str(folders[0]), device="cpu")
    model.eval()
    return model.double()


@pytest.fixture(scope="module")
def st_guide(folders):
    guide = st.SentenceTransformer(str(folders[1]), device="cpu")
    guide.eval()
    return guide


def load_model(folder):
    from labelspace.models import LabelspaceModel

    model = LabelspaceModel.from_pretrained(folder)
    model.eval()
    return model


@pytest.fixture
def model(folders):
    return load_model(folders[0]).double()


@pytest.fixture
def model32(folders):
    return load_model(folders[0])


@pytest.fixture(scope="module")
def guide(folders):
    from labelspace.models import LabelspaceModel

    return LabelspaceModel.from_pretrained(folders[1])


def make_batch(columns: int, labels: torch.Tensor | None = None) -> TextBatch:
    return TextBatch("pairs" if columns == 2 else "triplets", COLUMNS[:columns], labels=labels)


def named_grads(transformer: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in transformer.named_parameters() if p.grad is not None}


def ours(loss: nn.Module, model: nn.Module, batch: TextBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    value = loss(model, batch)
    value.backward()
    return value.detach(), named_grads(model.encoder.model)


def theirs(loss: nn.Module, st_model, columns: list[list[str]]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    st_model.zero_grad(set_to_none=True)
    value = loss([st_model.tokenize(texts) for texts in columns], None)
    value.backward()
    return value.detach(), named_grads(st_model[0].auto_model)


def assert_same(mine, reference, atol: float = 1e-9) -> None:
    """Same value and gradients: float64 to 1e-9 (scaled as assert_grad_close does; ~1e-14 is seen)."""
    (value, grads), (expected_value, expected_grads) = mine, reference
    torch.testing.assert_close(value, expected_value, rtol=0, atol=atol)
    assert set(grads) == set(expected_grads)
    assert "embeddings.word_embeddings.weight" in grads and "encoder.layer.0.attention.self.query.weight" in grads
    for name in grads:
        assert_grad_close(grads[name], expected_grads[name], name, atol)


GIST_OPTIONS = [
    {},
    {"margin_strategy": "absolute", "margin": 0.002},
    {"margin_strategy": "relative", "margin": 0.003},
    {"contrast_anchors": False},
    {"contrast_positives": False, "temperature": 0.05},
]
GIST_IDS = ["defaults", "absolute-margin", "relative-margin", "no-anchor-block", "no-positive-block"]


# ---- GISTEmbedLoss / CachedGISTEmbedLoss: parity with sentence-transformers -------------------------------------


@pytest.mark.parametrize("options", GIST_OPTIONS, ids=GIST_IDS)
@pytest.mark.parametrize("columns", [2, 3], ids=["pairs", "triplets"])
def test_gist_parity_with_sentence_transformers(model, guide, st_model, st_guide, options, columns):
    batch = make_batch(columns)
    reference = theirs(st_losses.GISTEmbedLoss(st_model, st_guide, **options), st_model, batch.columns)
    assert_same(ours(GISTEmbedLoss(guide, **options), model, batch), reference)


@pytest.mark.parametrize("options", GIST_OPTIONS[:3], ids=GIST_IDS[:3])
@pytest.mark.parametrize("columns", [2, 3, 4], ids=["pairs", "one-negative", "two-negatives"])
@pytest.mark.parametrize("mini_batch_size", [3, 32])
def test_cached_gist_parity_with_sentence_transformers(
    model, guide, st_model, st_guide, options, columns, mini_batch_size
):
    batch = make_batch(columns)
    st_loss = st_losses.CachedGISTEmbedLoss(st_model, st_guide, mini_batch_size=mini_batch_size, **options)
    reference = theirs(st_loss, st_model, batch.columns)
    mine = ours(CachedGISTEmbedLoss(guide, mini_batch_size=mini_batch_size, **options), model, batch)
    assert_same(mine, reference)
    # with several negatives (which sentence-transformers' GISTEmbedLoss refuses) the non-cached loss agrees too
    assert_same(ours(GISTEmbedLoss(guide, **options), model, batch), reference)


@pytest.mark.parametrize("options", GIST_OPTIONS, ids=GIST_IDS)
def test_gist_float32_against_the_float64_reference(model32, guide, st_model, st_guide, options):
    # float32 against sentence-transformers in float64 on the same weights: float32 cosines are rounded by
    # ~1e-7 and the temperature (0.01) makes that ~1e-5 in the loss and gradients (at most 4e-6 seen): 1e-4
    batch = make_batch(3)
    reference = theirs(st_losses.GISTEmbedLoss(st_model, st_guide, **options), st_model, batch.columns)
    value, grads = ours(GISTEmbedLoss(guide, **options), model32, batch)
    assert value.dtype == torch.float32
    assert_same((value.double(), {name: grad.double() for name, grad in grads.items()}), reference, atol=1e-4)


def test_guide_decisions_keep_clear_of_the_limits(guide):
    # A guide similarity within rounding (~1e-7 in float32) of its row's limit would be masked or not depending
    # on the CPU; on these texts every one is at least 1e-5 away, for every margin the tests use.
    with torch.no_grad():
        columns = [guide.encoder(guide.encoder.tokenize(texts)).double() for texts in COLUMNS]
    anchors, positives, *negatives = (torch.nn.functional.normalize(column, dim=1) for column in columns)
    true_pair = (anchors * positives).sum(dim=1, keepdim=True)
    off_diagonal = ~torch.eye(len(anchors), dtype=torch.bool)
    candidates = [(anchors @ positives.T)[off_diagonal], anchors @ anchors.T, positives @ positives.T]
    candidates += [anchors @ negative.T for negative in negatives]
    margins = [("absolute", 0.0), ("absolute", 0.002), ("relative", 0.003), ("absolute", 0.001), ("absolute", -0.05)]
    for strategy, margin in margins:
        limit = true_pair - (margin if strategy == "absolute" else true_pair.abs() * margin)
        for similarities in candidates:
            gap = (similarities.reshape(len(anchors), -1) - limit).abs().min()
            assert gap > 1e-5, (strategy, margin, float(gap))


def test_guide_masks_something_on_this_data(model, guide):
    # The parity tests above would not see the guide's rule if it masked nothing: check that it does.
    loss = GISTEmbedLoss(guide)
    with torch.no_grad():
        columns = [model.encoder(model.encoder.tokenize(texts)) for texts in COLUMNS[:3]]
        guides = loss.guide_embeddings(COLUMNS[:3], columns[0].device, 8)
    masked = loss.row_loss(columns, guides, 0, 8)
    loose = GISTEmbedLoss(guide, margin=-10.0).row_loss(columns, guides, 0, 8)  # masks nothing but self-pairs
    assert not math.isclose(float(masked), float(loose), abs_tol=1e-4)


@pytest.mark.parametrize(
    ("name", "st_name"), [("GISTEmbedLoss", "GISTEmbedLoss"), ("CachedGISTEmbedLoss", "CachedGISTEmbedLoss")]
)
def test_gist_defaults_and_argument_order_match_sentence_transformers(name, st_name):
    import inspect

    mine = inspect.signature(getattr(text_gist, name))
    reference = inspect.signature(getattr(st_losses, st_name))
    reference_params = [p for p in reference.parameters.values() if p.name not in ("model",)]
    ours_names = list(mine.parameters)
    # sentence-transformers' extra arguments (multi-GPU gathering, token-budget mini-batches) are left out
    expected = [p for p in reference_params if p.name not in ("gather_across_devices", "mini_batch_num_tokens")]
    assert ours_names == [p.name for p in expected]
    for parameter in expected:
        assert mine.parameters[parameter.name].default == parameter.default, parameter.name


# ---- cached == non-cached ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mini_batch_size", [1, 3, 8, 20], ids=["one", "smaller", "equal", "larger"])
@pytest.mark.parametrize("columns", [2, 3, 4], ids=["pairs", "one-negative", "two-negatives"])
@pytest.mark.parametrize("with_labels", [False, True], ids=["no-labels", "labels"])
def test_cached_gist_equals_gist(model, guide, mini_batch_size, columns, with_labels):
    batch = make_batch(columns, labels=LABELS if with_labels else None)
    reference = ours(GISTEmbedLoss(guide, margin=0.001), model, batch)
    assert_same(
        ours(CachedGISTEmbedLoss(guide, mini_batch_size=mini_batch_size, margin=0.001), model, batch), reference
    )


def test_cached_gist_dropout_replay_matches_same_draws(model, guide):
    # Train mode: the cached gradient equals the plain loss on mini-batches embedded from the same seed.
    model.train()
    batch = make_batch(3, labels=LABELS)
    size = 3
    torch.manual_seed(7)
    mine = ours(CachedGISTEmbedLoss(guide, mini_batch_size=size), model, batch)

    loss = GISTEmbedLoss(guide)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    columns = [
        torch.cat([model.encoder(model.encoder.tokenize(texts[i : i + size])) for i in range(0, 8, size)])
        for texts in batch.columns
    ]
    guides = loss.guide_embeddings(batch.columns, columns[0].device, size)
    value = loss.row_loss(columns, guides, 0, 8, LABELS)
    value.backward()
    assert_same(mine, (value.detach(), named_grads(model.encoder.model)))


def test_guide_is_frozen_and_not_a_submodule(model, guide):
    loss = CachedGISTEmbedLoss(guide, mini_batch_size=4)
    assert list(loss.parameters()) == [] and loss.guide is guide
    guide.zero_grad(set_to_none=True)
    ours(loss, model, make_batch(3))
    ours(GISTEmbedLoss(guide), model, make_batch(3))
    assert all(p.grad is None for p in guide.parameters())


# ---- the masks against a brute-force reference ------------------------------------------------------------------


def cos(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(x @ y / (x.norm() * y.norm()))


def gist_by_hand(embeddings, guides, labels, temperature, strategy, margin, contrast_anchors, contrast_positives):
    """GISTEmbed written out item by item, with the label mask."""
    a, p, *negatives = embeddings
    ga, gp, *guide_negatives = guides
    size = a.shape[0]

    def shares(i, j):
        if labels is None:
            return False
        if labels.dim() == 1:  # class ids
            return bool(labels[i] == labels[j])
        return bool(((labels[i] != 0) & (labels[j] != 0)).any())

    total = 0.0
    for i in range(size):
        t = cos(ga[i], gp[i])
        limit = t - margin if strategy == "absolute" else t - abs(t) * margin
        own = cos(a[i], p[i]) / temperature
        logits = [own]
        for j in range(size):
            if j != i and not (cos(ga[i], gp[j]) > limit or shares(i, j)):
                logits.append(cos(a[i], p[j]) / temperature)
            if contrast_anchors and not (cos(ga[i], ga[j]) > limit or (j != i and shares(i, j))):
                logits.append(cos(a[i], a[j]) / temperature)
            if contrast_positives and not (cos(gp[i], gp[j]) > limit or (j != i and shares(i, j))):
                logits.append(cos(p[i], p[j]) / temperature)
            for negative, guide_negative in zip(negatives, guide_negatives, strict=True):
                if not cos(ga[i], guide_negative[j]) > limit:
                    logits.append(cos(a[i], negative[j]) / temperature)
        top = max(logits)
        total += -own + top + math.log(sum(math.exp(v - top) for v in logits))
    return total / size


@pytest.mark.parametrize("strategy, margin", [("absolute", 0.0), ("absolute", 0.2), ("relative", 0.3)])
@pytest.mark.parametrize("contrast", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("labels", [None, LABELS[:6], torch.tensor([0, 1, 0, 2, 1, 3])], ids=["none", "hot", "ids"])
def test_gist_row_loss_matches_brute_force(guide, strategy, margin, contrast, labels):
    g = torch.Generator().manual_seed(11)
    embeddings = [torch.randn(6, 5, generator=g, dtype=torch.float64) for _ in range(4)]
    guides = [torch.randn(6, 5, generator=g, dtype=torch.float64) for _ in range(4)]
    options = dict(
        margin_strategy=strategy, margin=margin, contrast_anchors=contrast[0], contrast_positives=contrast[1]
    )
    loss = GISTEmbedLoss(guide, temperature=0.5, **options)
    expected = gist_by_hand(embeddings, guides, labels, 0.5, strategy, margin, *contrast)
    assert float(loss.row_loss(embeddings, guides, 0, 6, labels)) == pytest.approx(expected, abs=1e-10)
    chunked = sum(loss.row_loss(embeddings, guides, begin, min(begin + 4, 6), labels) for begin in (0, 4))
    assert float(chunked) == pytest.approx(expected, abs=1e-10)


def test_gist_label_mask_changes_the_loss_only_when_labels_overlap(model, guide):
    loss = GISTEmbedLoss(guide, margin=-0.05)  # few guide masks, so the labels have something to remove
    plain = ours(loss, model, make_batch(3))
    for labels in (torch.eye(8), torch.arange(8), torch.zeros(8, 2)):
        assert_same(ours(loss, model, make_batch(3, labels=labels)), plain, atol=1e-6)
    masked, _ = ours(loss, model, make_batch(3, labels=LABELS))
    assert float(masked) < float(plain[0]) - 1e-4


# ---- GIST errors ------------------------------------------------------------------------------------------------


def test_gist_errors(model, guide):
    with pytest.raises(ValueError, match="GISTEmbedLoss trains on pairs or triplets data"):
        GISTEmbedLoss(guide)(model, TextBatch("labeled", [ANCHORS], labels=LABELS))
    with pytest.raises(ValueError, match="CachedGISTEmbedLoss trains on pairs or triplets data"):
        CachedGISTEmbedLoss(guide)(model, TextBatch("labeled", [ANCHORS], labels=LABELS))
    with pytest.raises(ValueError, match="margin_strategy"):
        GISTEmbedLoss(guide, margin_strategy="percent")
    with pytest.raises(ValueError, match="temperature"):
        GISTEmbedLoss(guide, temperature=0.0)
    with pytest.raises(TypeError, match="guide must be"):
        GISTEmbedLoss("all-MiniLM-L6-v2")
    for size in (0, -3, 2.5):
        with pytest.raises(ValueError, match="mini_batch_size must be an integer >= 1"):
            CachedGISTEmbedLoss(guide, mini_batch_size=size)


# ---- TripletLoss ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("distance", ["euclidean", "cosine", "manhattan"])
@pytest.mark.parametrize("margin", [5.0, 0.01])
def test_triplet_parity_with_sentence_transformers(model, st_model, distance, margin):
    metric = getattr(st_losses.TripletDistanceMetric, distance.upper())
    reference = theirs(
        st_losses.TripletLoss(st_model, distance_metric=metric, triplet_margin=margin), st_model, COLUMNS[:3]
    )
    loss = as_model_loss(TripletLoss(distance=distance, margin=margin))
    assert isinstance(loss, RankingObjective)
    assert_same(ours(loss, model, make_batch(3)), reference)


def test_triplet_hinge_is_active_and_inactive_with_small_margin(model):
    # with margin 0.01 the tiny model's triplets are neither all violated nor all satisfied
    with torch.no_grad():
        a, p, n = (model.encoder(model.encoder.tokenize(texts)) for texts in COLUMNS[:3])
        loss = TripletLoss(margin=0.01)
        hinge = loss.distances(a, p) - loss.distances(a, n) + 0.01
    assert bool((hinge > 0).any()) and bool((hinge < 0).any())
    assert hinge.abs().min() > 1e-4  # no triplet at the kink, where rounding would pick the gradient


def test_triplet_several_negatives_average_the_triplets(model, st_model):
    values = []
    for negatives in (NEGATIVES, NEGATIVES_2):
        values.append(
            theirs(st_losses.TripletLoss(st_model, triplet_margin=1.0), st_model, [ANCHORS, POSITIVES, negatives])
        )
    expected_value = (values[0][0] + values[1][0]) / 2
    expected_grads = {name: (values[0][1][name] + values[1][1][name]) / 2 for name in values[0][1]}
    assert_same(ours(as_model_loss(TripletLoss(margin=1.0)), model, make_batch(4)), (expected_value, expected_grads))


def test_triplet_by_hand_and_labels_ignored():
    anchors = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    positives = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    negatives = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    negatives_2 = torch.tensor([[6.0, 8.0], [1.0, -2.0]])
    loss = TripletLoss(margin=2.0)
    expected = (max(0, 5 - 1 + 2) + max(0, 0 - math.sqrt(5) + 2)) / 2
    assert float(loss(anchors, positives, negatives)) == pytest.approx(expected, abs=1e-6)
    assert float(loss(anchors, positives, negatives, labels=torch.tensor([0, 0]))) == pytest.approx(expected, abs=1e-6)
    expected_2 = (max(0, 5 - 1 + 2) + max(0, 0 - math.sqrt(5) + 2) + max(0, 5 - 10 + 2) + max(0, 0 - 3 + 2)) / 4
    assert float(loss(anchors, positives, negatives, negatives_2)) == pytest.approx(expected_2, abs=1e-6)
    manhattan = TripletLoss(distance="manhattan", margin=0.5)
    assert float(manhattan(anchors, positives, negatives)) == pytest.approx((max(0, 7 - 1 + 0.5) + 0) / 2)
    cosine = TripletLoss(distance="cosine", margin=0.5)
    value = cosine(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]]), torch.tensor([[-1.0, 0.0]]))
    assert float(value) == pytest.approx(max(0.0, 1 - 2 + 0.5))


def test_triplet_identical_anchor_and_positive_has_a_finite_gradient():
    anchors = torch.tensor([[1.0, 2.0], [0.5, -1.0]], requires_grad=True)
    positives = anchors.detach().clone().requires_grad_(True)
    negatives = torch.tensor([[1.0, 2.5], [0.0, 0.0]], requires_grad=True)
    TripletLoss()(anchors, positives, negatives).backward()
    assert all(torch.isfinite(t.grad).all() for t in (anchors, positives, negatives))


def test_triplet_defaults_and_errors(st_model):
    reference = st_losses.TripletLoss(st_model)
    loss = TripletLoss()
    assert loss.margin == reference.triplet_margin == 5
    assert loss.distance == "euclidean" and reference.distance_metric == st_losses.TripletDistanceMetric.EUCLIDEAN
    with pytest.raises(ValueError, match="TripletLoss needs \\(anchor, positive, negative\\) triplets"):
        loss(torch.randn(3, 4), torch.randn(3, 4))
    with pytest.raises(ValueError, match="shape"):
        loss(torch.randn(3, 4), torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="distance"):
        TripletLoss(distance="dot")
    with pytest.raises(ValueError, match="margin"):
        TripletLoss(margin="5")
    assert float(loss(torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0, 4))) == 0.0


def test_exports():
    from labelspace import losses
    from labelspace.losses import text

    for name in ("GISTEmbedLoss", "CachedGISTEmbedLoss", "TripletLoss"):
        assert getattr(losses, name) is getattr(text, name)
        assert name in losses.__all__ and name in text.__all__


def test_docstring_examples_run():
    for module in (text_gist, text_triplet):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0
