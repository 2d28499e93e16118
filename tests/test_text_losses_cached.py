"""CachedMultipleNegativesRankingLoss (GradCache): parity with sentence-transformers, equality with the
non-cached loss, exact dropout replay, label masking, scaling of the backward pass, errors."""

from __future__ import annotations

import doctest

import pytest
import torch
from torch import nn

from labelspace.data.batch import TextBatch
from labelspace.losses import CombinedLoss
from labelspace.losses.model_loss import as_model_loss
from labelspace.losses.text import CachedMultipleNegativesRankingLoss, MultipleNegativesRankingLoss
from labelspace.losses.text import cached as text_cached
from text_loss_testing import ANCHORS, COLUMNS, LABELS, TOL, assert_grad_close

st = pytest.importorskip("sentence_transformers")
st_losses = pytest.importorskip("sentence_transformers.sentence_transformer.losses")

st_util = pytest.importorskip("sentence_transformers.util")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from labelspace.models.testing import tiny_model_folder

    return tiny_model_folder(tmp_path_factory.mktemp("tiny-cached") / "tiny", seed=0)


@pytest.fixture(scope="module")
def st_model(folder):
    model = st.SentenceTransformer(str(folder), device="cpu")
    model.eval()  # no dropout: both libraries must see the same embeddings
    return model


@pytest.fixture
def model(folder):
    from labelspace.models import LabelspaceModel

    model = LabelspaceModel.from_pretrained(folder)
    model.eval()
    return model


def make_batch(columns: int, size: int = 8, labels: torch.Tensor | None = None) -> TextBatch:
    kind = "pairs" if columns == 2 else "triplets"
    return TextBatch(kind, [column[:size] for column in COLUMNS[:columns]], labels=labels)


def ours(loss: nn.Module, model: nn.Module, batch: TextBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss value and the transformer's parameter gradients after backward."""
    model.zero_grad(set_to_none=True)
    value = loss(model, batch)
    value.backward()
    return value.detach(), named_grads(model.encoder.model)


def named_grads(transformer: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in transformer.named_parameters() if p.grad is not None}


def assert_same_grads(mine: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], atol: float = 1e-5) -> None:
    assert set(mine) == set(theirs)
    assert "embeddings.word_embeddings.weight" in mine and "encoder.layer.1.output.dense.weight" in mine
    for name in mine:
        assert_grad_close(mine[name], theirs[name], name, atol)


# ---- parity with sentence-transformers --------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [2, 3, 4], ids=["pairs", "one-negative", "two-negatives"])
@pytest.mark.parametrize("mini_batch_size", [3, 32])
def test_parity_with_sentence_transformers(model, st_model, columns, mini_batch_size):
    batch = make_batch(columns)
    theirs_loss = st_losses.CachedMultipleNegativesRankingLoss(st_model, mini_batch_size=mini_batch_size)
    st_model.zero_grad(set_to_none=True)
    theirs_value = theirs_loss([st_model.tokenize(texts) for texts in batch.columns], None)
    theirs_value.backward()
    theirs_grads = named_grads(st_model[0].auto_model)

    value, grads = ours(CachedMultipleNegativesRankingLoss(mini_batch_size=mini_batch_size), model, batch)
    torch.testing.assert_close(value, theirs_value.detach(), **TOL)
    assert_same_grads(grads, theirs_grads)


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_parity_other_scale_and_similarity(model, st_model, similarity):
    batch = make_batch(3)
    fct = st_util.cos_sim if similarity == "cosine" else st_util.dot_score
    theirs_loss = st_losses.CachedMultipleNegativesRankingLoss(
        st_model, scale=7.0, similarity_fct=fct, mini_batch_size=5
    )
    st_model.zero_grad(set_to_none=True)
    theirs_value = theirs_loss([st_model.tokenize(texts) for texts in batch.columns], None)
    theirs_value.backward()
    loss = CachedMultipleNegativesRankingLoss(scale=7.0, similarity=similarity, mini_batch_size=5)
    value, grads = ours(loss, model, batch)
    torch.testing.assert_close(value, theirs_value.detach(), **TOL)
    assert_same_grads(grads, named_grads(st_model[0].auto_model))


def test_defaults_match_sentence_transformers(st_model):
    theirs = st_losses.CachedMultipleNegativesRankingLoss(st_model)
    mine = CachedMultipleNegativesRankingLoss()
    assert mine.scale == theirs.scale == 20.0
    assert mine.mini_batch_size == theirs.mini_batch_size == 32
    assert mine.similarity == "cosine" and theirs.similarity_fct is st_util.cos_sim
    assert mine.show_progress_bar is theirs.show_progress_bar is False


# ---- cached == non-cached ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mini_batch_size", [1, 3, 8, 50], ids=["one", "smaller", "equal", "larger"])
@pytest.mark.parametrize("columns", [2, 3, 4], ids=["pairs", "one-negative", "two-negatives"])
@pytest.mark.parametrize("with_labels", [False, True], ids=["no-labels", "labels"])
def test_cached_equals_non_cached(model, mini_batch_size, columns, with_labels):
    batch = make_batch(columns, labels=LABELS if with_labels else None)
    expected_value, expected_grads = ours(as_model_loss(MultipleNegativesRankingLoss()), model, batch)
    value, grads = ours(CachedMultipleNegativesRankingLoss(mini_batch_size=mini_batch_size), model, batch)
    torch.testing.assert_close(value, expected_value, **TOL)
    assert_same_grads(grads, expected_grads)


def test_gradients_accumulate_like_plain_backward(model):
    # The replay adds to .grad (as plain backward does): two backward passes give twice the gradient,
    # and a plain loss backpropagated alongside adds its own.
    batch = make_batch(3, labels=LABELS)
    loss = CachedMultipleNegativesRankingLoss(mini_batch_size=3)
    _, once = ours(loss, model, batch)
    loss(model, batch).backward()
    assert_same_grads(named_grads(model.encoder.model), {name: 2 * grad for name, grad in once.items()})

    _, plain = ours(as_model_loss(MultipleNegativesRankingLoss()), model, make_batch(2))
    model.zero_grad(set_to_none=True)
    total = loss(model, batch) + as_model_loss(MultipleNegativesRankingLoss())(model, make_batch(2))
    total.backward()
    assert_same_grads(named_grads(model.encoder.model), {name: once[name] + plain[name] for name in once})


def test_backward_is_scaled_by_the_incoming_gradient(model):
    # Loss weights, gradient accumulation (loss / n) and fp16 loss scaling all reach the replay.
    batch = make_batch(2)
    loss = CachedMultipleNegativesRankingLoss(mini_batch_size=3)
    value, grads = ours(loss, model, batch)
    combined = CombinedLoss([(loss, 0.25)])
    scaled_value, scaled_grads = ours(combined, model, batch)
    torch.testing.assert_close(scaled_value, 0.25 * value, **TOL)
    assert_same_grads(scaled_grads, {name: 0.25 * grad for name, grad in grads.items()})
    assert combined.last_values["CachedMultipleNegativesRankingLoss"] == pytest.approx(float(value), abs=1e-6)


def test_second_backward_is_refused(model):
    value = CachedMultipleNegativesRankingLoss(mini_batch_size=4)(model, make_batch(2))
    value.backward()
    with pytest.raises(RuntimeError):
        value.backward()


def test_no_grad_and_frozen_model_return_the_plain_value(model):
    batch = make_batch(3, labels=LABELS)
    loss = CachedMultipleNegativesRankingLoss(mini_batch_size=3)
    expected, _ = ours(as_model_loss(MultipleNegativesRankingLoss()), model, batch)
    with torch.no_grad():
        value = loss(model, batch)
    assert not value.requires_grad
    torch.testing.assert_close(value, expected, **TOL)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    frozen = loss(model, batch)
    assert not frozen.requires_grad
    torch.testing.assert_close(frozen, expected, **TOL)


# ---- dropout: the re-embedding replays the random state ---------------------------------------------------------


class Recording(nn.Module):
    """An encoder that records each output (detached) in the order it computes them."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.inner = encoder
        self.outputs: list[tuple[bool, torch.Tensor]] = []

    @property
    def device(self) -> torch.device:
        return self.inner.device

    def tokenize(self, texts):
        return self.inner.tokenize(texts)

    def forward(self, features):
        output = self.inner(features)
        self.outputs.append((output.requires_grad, output.detach().clone()))
        return output


def test_dropout_replay_reproduces_the_first_pass_exactly(model):
    model.train()  # dropout on
    recording = Recording(model.encoder)
    torch.manual_seed(0)
    value = CachedMultipleNegativesRankingLoss(mini_batch_size=3)(recording, make_batch(3))
    first = [output for with_grad, output in recording.outputs if not with_grad]
    recording.outputs.clear()
    value.backward()
    second = [output for with_grad, output in recording.outputs if with_grad]
    assert len(first) == len(second) == 9  # 3 columns x ceil(8 / 3) mini-batches
    for before, after in zip(first, second, strict=True):
        assert torch.equal(before, after)
    # dropout does act: the same mini-batch embedded again outside the replay differs
    features = model.encoder.tokenize(ANCHORS[:3])
    with torch.no_grad():
        assert not torch.equal(model.encoder(features), first[0])


def test_dropout_gradients_equal_the_same_draws_without_caching(model):
    # Reference without GradCache: embed the same mini-batches in the same order with gradients,
    # from the same seed, so every mini-batch draws the dropout masks the cached loss drew.
    model.train()
    batch = make_batch(3, labels=LABELS)
    size = 3
    torch.manual_seed(123)
    value, grads = ours(CachedMultipleNegativesRankingLoss(mini_batch_size=size), model, batch)

    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    columns = []
    for texts in batch.columns:
        parts = [model.encoder(model.encoder.tokenize(texts[i : i + size])) for i in range(0, len(texts), size)]
        columns.append(torch.cat(parts))
    expected_value = MultipleNegativesRankingLoss()(*columns, labels=LABELS)
    expected_value.backward()
    torch.testing.assert_close(value, expected_value.detach(), **TOL)
    assert_same_grads(grads, named_grads(model.encoder.model))

    # and another seed gives other gradients: the comparison above is not vacuous
    torch.manual_seed(124)
    _, other = ours(CachedMultipleNegativesRankingLoss(mini_batch_size=size), model, batch)
    word = "embeddings.word_embeddings.weight"
    assert not torch.allclose(other[word], grads[word], rtol=1e-3, atol=1e-6)


def test_global_random_state_after_backward_is_that_after_the_forward(model):
    model.train()
    torch.manual_seed(5)
    value = CachedMultipleNegativesRankingLoss(mini_batch_size=3)(model, make_batch(2))
    state = torch.get_rng_state()
    value.backward()
    assert torch.equal(torch.get_rng_state(), state)


# ---- label masking ----------------------------------------------------------------------------------------------


def test_label_mask_changes_the_loss_only_when_labels_overlap(model):
    loss = CachedMultipleNegativesRankingLoss(mini_batch_size=3)
    plain, plain_grads = ours(loss, model, make_batch(3))
    disjoint = torch.eye(8)  # every anchor has its own label: nothing to mask
    ids = torch.arange(8)  # the same as class ids
    for labels in (disjoint, ids, torch.zeros(8, 3)):
        value, grads = ours(loss, model, make_batch(3, labels=labels))
        torch.testing.assert_close(value, plain, rtol=0, atol=1e-6)
        assert_same_grads(grads, plain_grads)
    masked, masked_grads = ours(loss, model, make_batch(3, labels=LABELS))
    assert float(masked) < float(plain) - 1e-4  # masking removes terms from the denominators
    word = "embeddings.word_embeddings.weight"
    assert not torch.allclose(masked_grads[word], plain_grads[word], rtol=1e-3, atol=1e-6)


def test_row_loss_by_hand():
    # dot similarity, scale 1: the summed row losses of two chunks equal the formula with the mask.
    anchors = torch.eye(3, dtype=torch.float64)
    positives = torch.tensor([[2.0, 1.0, 0.0], [0.5, 1.0, 3.0], [1.0, 0.0, -1.0]], dtype=torch.float64).T
    labels = torch.tensor([0, 0, 1])  # items 0 and 1 share a label
    loss = CachedMultipleNegativesRankingLoss(scale=1.0, similarity="dot")
    s = positives.T  # s[i][j] = <a_i, p_j>
    expected = (
        -s[0, 0]
        + torch.logsumexp(s[0, [0, 2]], 0)
        - s[1, 1]
        + torch.logsumexp(s[1, [1, 2]], 0)
        - s[2, 2]
        + torch.logsumexp(s[2], 0)
    ) / 3
    total = loss.row_loss([anchors, positives], 0, 2, labels) + loss.row_loss([anchors, positives], 2, 3, labels)
    torch.testing.assert_close(total, expected, rtol=0, atol=1e-12)


# ---- errors -----------------------------------------------------------------------------------------------------


def test_wrong_batch_kind_is_a_clear_error(model):
    batch = TextBatch("labeled", [ANCHORS[:4]], labels=LABELS[:4])
    with pytest.raises(ValueError, match="CachedMultipleNegativesRankingLoss trains on pairs or triplets data"):
        CachedMultipleNegativesRankingLoss()(model, batch)


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "8"])
def test_mini_batch_size_must_be_a_positive_integer(size):
    with pytest.raises(ValueError, match="mini_batch_size must be an integer >= 1"):
        CachedMultipleNegativesRankingLoss(mini_batch_size=size)


def test_invalid_scale_and_similarity():
    with pytest.raises(ValueError, match="scale"):
        CachedMultipleNegativesRankingLoss(scale=0)
    with pytest.raises(ValueError, match="similarity"):
        CachedMultipleNegativesRankingLoss(similarity="euclidean")


def test_as_model_loss_keeps_it_and_exports():
    from labelspace import losses

    loss = CachedMultipleNegativesRankingLoss()
    assert as_model_loss(loss) is loss
    assert losses.CachedMultipleNegativesRankingLoss is CachedMultipleNegativesRankingLoss
    assert "CachedMultipleNegativesRankingLoss" in losses.__all__


def test_docstring_examples_run():
    for module in (text_cached,):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0
