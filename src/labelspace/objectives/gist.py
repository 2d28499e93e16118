"""GISTEmbed: in-batch ranking whose false negatives a guide model filters out.

`GISTEmbedLoss` and `CachedGISTEmbedLoss` are sentence-transformers' losses of the same names
(Solatorio 2024, https://arxiv.org/abs/2402.16829), taking the guide at construction and the
trained model at call time, plus multi-label false-negative masking when the batch carries labels
(by the loss's ``relation_rule``, overlap unless set otherwise).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from labelspace import parallel as distributed
from labelspace.data.batch import TextBatch
from labelspace.objectives.base import EmbeddingCache, ModelLoss, encoder_of
from labelspace.objectives.gradcache import check_mini_batch_size, embed_mini_batches, grad_cache_loss
from labelspace.precision import upcast_half
from labelspace.relations import RelationRule, check_labels

__all__ = ["MARGIN_STRATEGIES", "CachedGISTEmbedLoss", "GISTEmbedLoss", "MarginStrategy"]

MarginStrategy = Literal["absolute", "relative"]
MARGIN_STRATEGIES = ("absolute", "relative")


def _cosine(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    return F.normalize(first, p=2, dim=-1) @ F.normalize(second, p=2, dim=-1).T


class GISTEmbedLoss(ModelLoss):
    r"""In-batch softmax ranking (as `MultipleNegativesRankingLoss`) with guide-filtered negatives.

    For anchors :math:`a_i`, positives :math:`p_i` and K >= 0 columns of hard negatives
    :math:`n^{(k)}_i`, the logits of anchor i are the cosine similarities, divided by the
    ``temperature`` :math:`\tau`, to the candidates of up to four blocks:

    - :math:`\cos(a_i, p_j)` for all j (the target is j = i);
    - :math:`\cos(a_i, a_j)` when ``contrast_anchors``;
    - :math:`\cos(p_i, p_j)` when ``contrast_positives``;
    - :math:`\cos(a_i, n^{(k)}_j)` for every negative column k and all j,

    and :math:`L = \frac{1}{B}\sum_i -\log \mathrm{softmax}_i(\text{logits})_{\text{own positive}}`.
    The guide model (frozen) embeds the same texts: :math:`g(\cdot)`. With the guide's similarity of
    the true pair :math:`t_i = \cos(g(a_i), g(p_i))`, a candidate x of row i is a false negative,
    and its logit is set to :math:`-\infty`, when

    - ``margin_strategy="absolute"``: :math:`\cos(g(\cdot_i), g(x)) > t_i - \text{margin}`;
    - ``margin_strategy="relative"``: :math:`\cos(g(\cdot_i), g(x)) > t_i - |t_i| \cdot \text{margin}`

    (where :math:`\cdot_i` is the row's item of that block: :math:`a_i`, or :math:`p_i` in the
    positive-positive block). The own positive :math:`p_i` is never masked; the self-similarities
    of the anchor-anchor and positive-positive blocks are masked by this rule whenever
    :math:`t_i` is below :math:`1 - \text{margin}`, as in sentence-transformers. This is
    sentence-transformers' ``GISTEmbedLoss`` (same defaults), which it equals when the batch has no
    labels; sentence-transformers takes at most one negative column, we take any number.

    Multi-label false negatives: when the batch carries labels (the anchors' labels, which apply
    also to their positives), in-batch items j != i that ``relation_rule`` does not call a negative of
    item i (`RelationRule.false_negative_mask`; with the default ``overlap``: sharing a label) are
    masked too in the anchor-positive, anchor-anchor and positive-positive blocks. Hard negatives
    are never label-masked. The rule is the attribute ``relation_rule`` rather than an argument,
    so that the arguments stay those of sentence-transformers: ``loss.relation_rule = "jaccard"``
    (or a `RelationRule`) switches it.

    The guide embeds the raw texts with its own tokenizer and ``max_seq_length``, without
    gradients, on its own device, in whatever mode it is in (``from_pretrained`` gives eval mode).
    It is kept out of this module's submodules, so its parameters are never trained nor moved by
    ``loss.to(...)``. (sentence-transformers re-tokenizes the trained model's decoded tokens when
    the vocabularies differ; the two agree when the texts fit both models' maximum length.)

    Args:
        guide: the guide: a `LabelspaceModel`, an `Encoder`, or anything `encoder_of` maps to one.
        temperature: :math:`\tau` (default 0.01; the inverse of `MultipleNegativesRankingLoss`' scale).
        margin_strategy: ``"absolute"`` (default) or ``"relative"``.
        margin: the margin (default 0.0: only candidates the guide finds closer than the true pair).
        contrast_anchors: include the anchor-anchor block (default True).
        contrast_positives: include the positive-positive block (default True).

    Example:
        >>> import tempfile
        >>> from labelspace.data.batch import TextBatch
        >>> from labelspace.objectives import GISTEmbedLoss
        >>> from labelspace.models import LabelspaceModel
        >>> from labelspace.models.testing import tiny_model_folder
        >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()))
        >>> guide = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp(), seed=1))
        >>> batch = TextBatch("pairs", [["a cat", "a stock", "a song"], ["the kitten", "shares", "music"]])
        >>> value = GISTEmbedLoss(guide)(model, batch)
        >>> value.backward()
        >>> bool(value >= 0), model.encoder.model.embeddings.word_embeddings.weight.grad is not None
        (True, True)
    """

    batch_kinds = ("pairs", "triplets")
    pairs_are_positives = True

    def __init__(
        self,
        guide: nn.Module,
        temperature: float = 0.01,
        margin_strategy: MarginStrategy = "absolute",
        margin: float = 0.0,
        contrast_anchors: bool = True,
        contrast_positives: bool = True,
    ) -> None:
        super().__init__()
        guide_encoder = encoder_of(guide)
        if not callable(getattr(guide_encoder, "tokenize", None)) or not hasattr(guide_encoder, "device"):
            kind = type(guide).__name__
            raise TypeError(f"guide must be a LabelspaceModel or an Encoder (with tokenize() and device), got {kind}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a positive number; got {temperature!r}")
        if margin_strategy not in MARGIN_STRATEGIES:
            raise ValueError(f"margin_strategy must be one of {', '.join(MARGIN_STRATEGIES)}; got {margin_strategy!r}")
        if isinstance(margin, bool) or not isinstance(margin, (int, float)):
            raise ValueError(f"margin must be a number; got {margin!r}")
        # Not a submodule: the trainer optimises the losses' parameters, and the guide stays frozen.
        object.__setattr__(self, "guide", guide)
        self.temperature = float(temperature)
        self.margin_strategy: MarginStrategy = margin_strategy
        self.margin = float(margin)
        self.contrast_anchors = bool(contrast_anchors)
        self.contrast_positives = bool(contrast_positives)
        self.relation_rule = RelationRule()

    @property
    def relation_rule(self) -> RelationRule:
        """The rule of the multi-label false negatives (overlap by default); set a `RelationRule` or its name."""
        return self._relation_rule

    @relation_rule.setter
    def relation_rule(self, relation: RelationRule | str | None) -> None:
        self._relation_rule = RelationRule.of(relation, owner=type(self).__name__)

    def guide_embeddings(
        self, columns: list[list[str]], device: torch.device, mini_batch_size: int
    ) -> list[torch.Tensor]:
        """The guide's embeddings of every column (no gradients), on ``device``."""
        encoder = encoder_of(self.guide)
        with torch.no_grad():
            return [
                embed_mini_batches(encoder, texts, mini_batch_size)[0].to(device, torch.float32) for texts in columns
            ]

    def row_loss(
        self,
        embeddings: list[torch.Tensor],
        guides: list[torch.Tensor],
        begin: int,
        end: int,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Summed cross entropy of anchor rows ``begin:end`` divided by B (see the class docstring)."""
        anchors, positives, *negatives = (upcast_half(column) for column in embeddings)
        guide_anchors, guide_positives, *guide_negatives = guides
        batch = anchors.shape[0]
        rows = torch.arange(end - begin, device=anchors.device)
        own = rows + begin
        guided = _cosine(guide_anchors[begin:end], guide_positives)
        threshold = guided[rows, own].unsqueeze(1)
        if self.margin_strategy == "absolute":
            limit = threshold - self.margin
        else:
            limit = threshold - threshold.abs() * self.margin
        same_label = None
        if labels is not None:
            labels = labels.to(anchors.device)
            same_label = self.relation_rule.false_negative_mask(labels[begin:end], labels)
            same_label[rows, own] = False  # the diagonal is left to the guide's rule

        def block(
            queries: torch.Tensor, keys: torch.Tensor, guided: torch.Tensor, labeled: bool, keep_own: bool = False
        ) -> torch.Tensor:
            """Cosine logits of rows begin:end against all keys, the false negatives set to -inf."""
            mask = guided > limit
            if labeled and same_label is not None:
                mask |= same_label
            if keep_own:
                mask[rows, own] = False  # the true pair is never masked
            return _cosine(queries, keys).masked_fill(mask, float("-inf"))

        scores = [block(anchors[begin:end], positives, guided, labeled=True, keep_own=True)]
        if self.contrast_anchors:
            guided_anchors = _cosine(guide_anchors[begin:end], guide_anchors)
            scores.append(block(anchors[begin:end], anchors, guided_anchors, labeled=True))
        if self.contrast_positives:
            guided_positives = _cosine(guide_positives[begin:end], guide_positives)
            scores.append(block(positives[begin:end], positives, guided_positives, labeled=True))
        for negative, guide_negative in zip(negatives, guide_negatives, strict=True):
            guided_negatives = _cosine(guide_anchors[begin:end], guide_negative)
            scores.append(block(anchors[begin:end], negative, guided_negatives, labeled=False))
        logits = torch.cat(scores, dim=1) / self.temperature
        return F.cross_entropy(logits, own, reduction="sum") / batch

    def _labels(self, batch: TextBatch, device: torch.device) -> torch.Tensor | None:
        if batch.labels is None:
            return None
        return check_labels(distributed.gather_without_grad(batch.labels.to(device)))  # checked once, not per chunk

    def forward(self, model: nn.Module, batch: TextBatch, cache: EmbeddingCache | None = None) -> torch.Tensor:
        self.check_batch(batch)
        cache = cache or EmbeddingCache(model, batch)
        columns = [distributed.gather_with_grad(column) for column in cache.columns()]
        device = columns[0].device
        guides = self.guide_embeddings(batch.columns, device, max(1, len(batch)))
        guides = [distributed.gather_without_grad(guide) for guide in guides]
        return self.row_loss(columns, guides, 0, columns[0].shape[0], self._labels(batch, device))

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, margin_strategy={self.margin_strategy!r}, margin={self.margin}, "
            f"contrast_anchors={self.contrast_anchors}, contrast_positives={self.contrast_positives}, "
            f"relation={self.relation_rule.describe()}"
        )


class CachedGISTEmbedLoss(GISTEmbedLoss):
    r"""`GISTEmbedLoss` with GradCache: the same loss and gradients in the memory of one mini-batch.

    The loss is `GISTEmbedLoss`' (see its docstring for the formula, the guide's false-negative rule
    and the label mask), computed like `CachedMultipleNegativesRankingLoss`: both the model and the
    guide embed in mini-batches of ``mini_batch_size`` texts without gradients, the gradient of the
    loss with respect to each embedding is cached (the loss is computed over chunks of
    ``mini_batch_size`` anchor rows), and ``backward()`` re-embeds each mini-batch with the random
    state of the first pass and backpropagates the cached gradient (see `labelspace.objectives.gradcache`).
    ``cache`` is ignored. This is sentence-transformers' ``CachedGISTEmbedLoss`` (same arguments in
    the same order, without ``model``, which arrives at call time).

    Args:
        guide: the guide model (see `GISTEmbedLoss`).
        temperature: :math:`\tau` (default 0.01).
        mini_batch_size: texts per forward pass (default 32).
        show_progress_bar: show the mini-batches' progress.
        margin_strategy: ``"absolute"`` (default) or ``"relative"``.
        margin: the margin (default 0.0).
        contrast_anchors: include the anchor-anchor block (default True).
        contrast_positives: include the positive-positive block (default True).

    Example:
        >>> import tempfile
        >>> from labelspace.data.batch import TextBatch
        >>> from labelspace.objectives import CachedGISTEmbedLoss
        >>> from labelspace.models import LabelspaceModel
        >>> from labelspace.models.testing import tiny_model_folder
        >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()))
        >>> guide = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp(), seed=1))
        >>> batch = TextBatch("triplets", [["a cat", "a stock"], ["the kitten", "shares"], ["a car", "a tree"]])
        >>> value = CachedGISTEmbedLoss(guide, mini_batch_size=1)(model, batch)
        >>> value.backward()
        >>> bool(value >= 0), model.encoder.model.embeddings.word_embeddings.weight.grad is not None
        (True, True)
    """

    def __init__(
        self,
        guide: nn.Module,
        temperature: float = 0.01,
        mini_batch_size: int = 32,
        show_progress_bar: bool = False,
        margin_strategy: MarginStrategy = "absolute",
        margin: float = 0.0,
        contrast_anchors: bool = True,
        contrast_positives: bool = True,
    ) -> None:
        super().__init__(
            guide,
            temperature=temperature,
            margin_strategy=margin_strategy,
            margin=margin,
            contrast_anchors=contrast_anchors,
            contrast_positives=contrast_positives,
        )
        self.mini_batch_size = check_mini_batch_size(mini_batch_size)
        self.show_progress_bar = bool(show_progress_bar)

    def forward(self, model: nn.Module, batch: TextBatch, cache: EmbeddingCache | None = None) -> torch.Tensor:
        self.check_batch(batch)
        device = encoder_of(model).device
        guides = self.guide_embeddings(batch.columns, device, self.mini_batch_size)
        guides = [distributed.gather_without_grad(guide) for guide in guides]
        labels = self._labels(batch, device)

        def row_loss(embeddings: list[torch.Tensor], begin: int, end: int) -> torch.Tensor:
            return self.row_loss(embeddings, guides, begin, end, labels)

        return grad_cache_loss(
            model,
            batch.columns,
            row_loss,
            mini_batch_size=self.mini_batch_size,
            show_progress_bar=self.show_progress_bar,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mini_batch_size={self.mini_batch_size}"
