"""`CachedMultipleNegativesRankingLoss`: `MultipleNegativesRankingLoss` over batches larger than memory.

The model is called in mini-batches with GradCache (`labelspace.objectives.gradcache`); the loss
of each chunk of anchor rows is `CachedMultipleNegativesRankingLoss.row_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labelspace import parallel as distributed
from labelspace.data.batch import TextBatch
from labelspace.losses.text.ranking import MultipleNegativesRankingLoss, Similarity
from labelspace.objectives.base import EmbeddingCache, ModelLoss, encoder_of
from labelspace.objectives.gradcache import check_mini_batch_size, grad_cache_loss
from labelspace.precision import upcast_half
from labelspace.relations import RelationRule, check_labels

__all__ = ["CachedMultipleNegativesRankingLoss"]


class CachedMultipleNegativesRankingLoss(ModelLoss):
    r"""`MultipleNegativesRankingLoss` with GradCache: batches far larger than memory allows.

    The same loss as `MultipleNegativesRankingLoss` (and sentence-transformers'
    ``CachedMultipleNegativesRankingLoss`` with its defaults): for anchors :math:`a_i`, candidates
    :math:`c = (p_1..p_B, n^{(1)}_1..n^{(K)}_B)` and scale :math:`s`,

    .. math::

        L = \frac{1}{B} \sum_i -\log \frac{\exp(s \cdot \mathrm{sim}(a_i, p_i))}
                                          {\sum_{j \notin M_i} \exp(s \cdot \mathrm{sim}(a_i, c_j))}

    with :math:`M_i` the in-batch positives :math:`p_j` (j != i) that ``relation`` does not call a
    negative of anchor i (`RelationRule.false_negative_mask`: with the default ``overlap``, those
    sharing a label) when the batch carries labels (multi-label false negatives; never the own
    positive, never a hard negative). It is computed in three steps (see the module docstring): embed without
    gradients in mini-batches of ``mini_batch_size`` texts, cache the gradient of the loss with
    respect to each embedding, then, during ``backward()``, re-embed each mini-batch with the
    random state of the first pass (identical dropout) and backpropagate the cached gradient. The
    value and the gradients equal the non-cached loss; peak memory is that of one mini-batch.

    ``forward(model, batch, cache=None)`` embeds the texts itself (``cache`` is ignored: shared
    embeddings with gradients would defeat the caching). Call ``backward()`` once on the returned
    value (or on a sum containing it) before the next optimiser step. Under ``torch.no_grad()``
    (evaluation) the loss is computed without the second pass.

    Args:
        scale: inverse temperature s (sentence-transformers' default 20.0).
        similarity: ``"cosine"`` (default) or ``"dot"``.
        mini_batch_size: texts per forward pass; bounds the memory (default 32, as sentence-transformers).
        show_progress_bar: show the mini-batches' progress.
        relation: the rule that decides which labeled in-batch positives are false negatives: a
            `RelationRule`, ``"overlap"`` (default), ``"jaccard"`` or ``"exact"``.

    Example:
        >>> import tempfile
        >>> from labelspace.data.batch import TextBatch
        >>> from labelspace.objectives import CachedMultipleNegativesRankingLoss
        >>> from labelspace.models import LabelspaceModel
        >>> from labelspace.models.testing import tiny_model_folder
        >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()))
        >>> batch = TextBatch("pairs", [["a cat", "a stock", "a song"], ["the kitten", "shares", "music"]])
        >>> loss = CachedMultipleNegativesRankingLoss(mini_batch_size=2)
        >>> value = loss(model, batch)
        >>> value.backward()
        >>> bool(value > 0), model.encoder.model.embeddings.word_embeddings.weight.grad is not None
        (True, True)
    """

    batch_kinds = ("pairs", "triplets")
    pairs_are_positives = True

    def __init__(
        self,
        scale: float = 20.0,
        similarity: Similarity = "cosine",
        mini_batch_size: int = 32,
        show_progress_bar: bool = False,
        *,
        relation: RelationRule | str | None = None,
    ) -> None:
        super().__init__()
        # validates scale, similarity and relation
        self.ranking = MultipleNegativesRankingLoss(scale=scale, similarity=similarity, relation=relation)
        self.mini_batch_size = check_mini_batch_size(mini_batch_size)
        self.show_progress_bar = bool(show_progress_bar)

    @property
    def scale(self) -> float:
        return self.ranking.scale

    @property
    def similarity(self) -> Similarity:
        return self.ranking.similarity

    @property
    def relation_rule(self) -> RelationRule:
        """The rule of the multi-label false negatives (that of the wrapped `MultipleNegativesRankingLoss`)."""
        return self.ranking.relation_rule

    def row_loss(
        self, embeddings: list[torch.Tensor], begin: int, end: int, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Summed cross entropy of anchor rows ``begin:end`` divided by B (what `grad_cache_loss` sums)."""
        anchors = upcast_half(embeddings[0])
        batch = anchors.shape[0]
        queries = anchors[begin:end]
        candidates = torch.cat([upcast_half(column) for column in embeddings[1:]], dim=0)
        if self.similarity == "cosine":
            queries = F.normalize(queries, p=2, dim=-1)
            candidates = F.normalize(candidates, p=2, dim=-1)
        logits = (queries @ candidates.T) * self.scale
        own = torch.arange(begin, end, device=logits.device)
        if labels is not None:
            labels = labels.to(logits.device)
            mask = self.relation_rule.false_negative_mask(labels[begin:end], labels)
            mask[own - begin, own] = False  # the own positive is never masked
            logits = torch.cat([logits[:, :batch].masked_fill(mask, float("-inf")), logits[:, batch:]], dim=1)
        return F.cross_entropy(logits, own, reduction="sum") / batch

    def forward(self, model: nn.Module, batch: TextBatch, cache: EmbeddingCache | None = None) -> torch.Tensor:
        self.check_batch(batch)
        labels = batch.labels
        if labels is not None:
            if labels.shape[0] != len(batch):
                raise ValueError(f"labels must have one row per anchor ({len(batch)})")
            labels = check_labels(distributed.gather_without_grad(labels.to(encoder_of(model).device)))

        def row_loss(embeddings: list[torch.Tensor], begin: int, end: int) -> torch.Tensor:
            return self.row_loss(embeddings, begin, end, labels)

        return grad_cache_loss(
            model,
            batch.columns,
            row_loss,
            mini_batch_size=self.mini_batch_size,
            show_progress_bar=self.show_progress_bar,
        )

    def extra_repr(self) -> str:
        return (
            f"scale={self.scale}, similarity={self.similarity!r}, mini_batch_size={self.mini_batch_size}, "
            f"relation={self.relation_rule.describe()}"
        )
