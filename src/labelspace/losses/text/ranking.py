"""MultipleNegativesRankingLoss on embeddings, with multi-label false-negative masking.

The functional core of sentence-transformers' ``MultipleNegativesRankingLoss`` (its default
behaviour: the ``query_to_doc`` direction only, one softmax, no gathering across devices, no
hardness weighting). The encoder call stays outside: pass the embeddings of any model. Which
in-batch candidates are false negatives is decided by a `labelspace.relations.RelationRule`.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.nn.functional as F

from labelspace.losses.base import check_columns
from labelspace.losses.reduction import zero_loss
from labelspace.precision import upcast_half
from labelspace.relations import RelationRule, Rule

__all__ = ["MultipleNegativesRankingLoss", "shares_label"]

Similarity = Literal["cosine", "dot"]
SIMILARITIES = ("cosine", "dot")


def shares_label(labels: torch.Tensor) -> torch.Tensor:
    """B x B boolean matrix: True where items i and j share at least one label (deprecated).

    ``labels`` is a B-length 1-D tensor of class ids (shared means equal ids) or a B x L 0/1
    multi-hot matrix. A row of zeros shares nothing, not even with itself. Deprecated: this is
    ``RelationRule("overlap").false_negative_mask(labels)``, which it calls.
    """
    warnings.warn(
        "shares_label(labels) is deprecated; use RelationRule().false_negative_mask(labels) "
        "(labelspace.relations) instead",
        DeprecationWarning,
        stacklevel=2,
    )
    return _OVERLAP.false_negative_mask(labels)


_OVERLAP = RelationRule()


class MultipleNegativesRankingLoss(torch.nn.Module):
    r"""In-batch softmax ranking loss (InfoNCE) of anchors against positives and hard negatives.

    For a batch of B anchors :math:`a_i`, their positives :math:`p_i` and K >= 0 columns of hard
    negatives :math:`n^{(k)}_i`, the candidates are :math:`c = (p_1..p_B, n^{(1)}_1..n^{(1)}_B, ...,
    n^{(K)}_1..n^{(K)}_B)` (B (1 + K) of them) and

    .. math::

        \ell_i = -\log \frac{\exp(s \cdot \mathrm{sim}(a_i, p_i))}
                            {\sum_{j \notin M_i} \exp(s \cdot \mathrm{sim}(a_i, c_j))},
        \qquad L = \frac{1}{B} \sum_i \ell_i

    i.e. cross entropy of the logits :math:`s \cdot \mathrm{sim}(a_i, c)` with target i, where
    :math:`s` is ``scale`` and sim the cosine similarity (or the dot product). This is
    sentence-transformers' ``MultipleNegativesRankingLoss`` with its defaults (anchor-to-candidate
    direction only), to which it is equal when no labels are given (:math:`M_i` empty).

    Multi-label false negatives: ``labels`` (optional) label the anchors, and each anchor's labels
    apply also to its positive. Candidate :math:`p_j` (j != i) is masked out of row i (its logit
    set to -inf, so :math:`j \in M_i`) when ``relation`` does not call item j a negative of anchor
    i (`RelationRule.false_negative_mask`): with the default ``overlap`` rule, when j shares a
    label with i; with ``jaccard``, when their Jaccard is above ``neg_threshold``. The own positive
    :math:`p_i` is never masked, so every row keeps a finite denominator and the loss never becomes
    NaN (a row with every other candidate masked has loss 0). Hard negatives carry no labels and are
    never masked. ``labels`` is a B-length 1-D tensor of class ids (shared = equal) or a B x L 0/1
    multi-hot matrix; ids give the same mask as their one-hot matrix.

    Args:
        scale: the inverse temperature s (sentence-transformers' default 20.0).
        similarity: ``"cosine"`` (default) or ``"dot"``.
        relation: the rule that says which labelled candidates are true negatives: a
            `RelationRule` or its name (``"overlap"``, the default, ``"jaccard"``, ``"exact"``).

    Example:
        >>> import torch
        >>> from labelspace.losses.text import MultipleNegativesRankingLoss
        >>> g = torch.Generator().manual_seed(0)
        >>> anchors, positives, negatives = (torch.randn(4, 8, generator=g) for _ in range(3))
        >>> loss = MultipleNegativesRankingLoss()
        >>> value = loss(anchors, positives, negatives)
        >>> masked = loss(anchors, positives, negatives, labels=torch.tensor([0, 0, 1, 2]))
        >>> bool(value > 0), bool(masked <= value)
        (True, True)
    """

    def __init__(
        self,
        scale: float = 20.0,
        similarity: Similarity = "cosine",
        *,
        relation: RelationRule | Rule | None = None,
    ) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be a positive value; got {scale!r}")
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {', '.join(SIMILARITIES)}; got {similarity!r}")
        self.scale = float(scale)
        self.similarity: Similarity = similarity
        self.relation_rule = RelationRule.of(relation, owner=type(self).__name__)

    def logits(
        self,
        anchors: torch.Tensor,
        positives: torch.Tensor,
        *negatives: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The B x B(1 + K) scaled, masked logits; row i's target is column i."""
        columns = (anchors, positives, *negatives)
        for name, column in (("anchors", anchors), ("positives", positives)):
            if not isinstance(column, torch.Tensor) or column.dim() != 2:
                raise ValueError(f"{name} must be a 2-D tensor (batch x dim)")
        batch, dim = anchors.shape
        for column in columns[1:]:
            if not isinstance(column, torch.Tensor) or tuple(column.shape) != (batch, dim):
                shape = tuple(column.shape) if isinstance(column, torch.Tensor) else type(column).__name__
                raise ValueError(f"positives and negatives must have the anchors' shape {(batch, dim)}, got {shape}")
        check_columns(columns)  # finite (an empty batch gives a zero loss)
        queries = upcast_half(anchors)
        candidates = torch.cat([upcast_half(column) for column in columns[1:]], dim=0)
        if self.similarity == "cosine":
            queries = F.normalize(queries, p=2, dim=-1)
            candidates = F.normalize(candidates, p=2, dim=-1)
        logits = (queries @ candidates.T) * self.scale
        if labels is not None:
            if not isinstance(labels, torch.Tensor) or labels.shape[0] != batch:
                raise ValueError(f"labels must be a tensor with one row per anchor ({batch})")
            mask = self.relation_rule.false_negative_mask(labels.to(logits.device))
            mask.fill_diagonal_(False)  # the own positive is never masked
            logits = torch.cat([logits[:, :batch].masked_fill(mask, float("-inf")), logits[:, batch:]], dim=1)
        return logits

    def forward(
        self,
        anchors: torch.Tensor,
        positives: torch.Tensor,
        *negatives: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean over the anchors of the cross entropy (see the class docstring)."""
        logits = self.logits(anchors, positives, *negatives, labels=labels)
        if anchors.shape[0] == 0:
            return zero_loss(logits)
        target = torch.arange(anchors.shape[0], device=logits.device)
        return F.cross_entropy(logits, target)

    def extra_repr(self) -> str:
        relation = "" if self.relation_rule == _OVERLAP else f", relation={self.relation_rule.describe()}"
        return f"scale={self.scale}, similarity={self.similarity!r}{relation}"
