"""Relations: which pairs of a batch are positives, which are negatives, and how strongly.

Labels (one integer per item, or a multi-hot row per item), explicit pair or triplet indices
all become one `Relation`: two B x B boolean masks and optional B x B weights. Miners and
losses speak only in relations, so every loss behaves the same on single-label, multi-label
and pair/triplet data. Everything here is vectorised: one B x B matrix product, no Python
loop over items.

Rules for multi-hot labels (``L`` is the B x num_labels 0/1 matrix, ``shared = L Lᵀ``):

- ``overlap`` (default): positive when two items share at least ``min_shared`` labels,
  negative when they share none.
- ``jaccard``: positive when Jaccard >= ``pos_threshold``, negative when Jaccard <=
  ``neg_threshold``, ignored in between; ``weight`` is the Jaccard similarity.
- ``exact``: positive when the label sets are equal, negative when they share none.

An item is never its own positive (nor its own negative). Items with no labels share nothing
with anyone, so they are negatives to everything.

Example:
    >>> import torch
    >>> labels = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0]])
    >>> relation = Relation.from_labels(labels)
    >>> relation.positive.int().tolist()
    [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    >>> relation.negative.int().tolist()
    [[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0]]
    >>> [t.tolist() for t in relation.pair_indices()]
    [[0, 1], [1, 0], [0, 0, 1, 1, 2, 2, 2, 3, 3, 3], [2, 3, 2, 3, 0, 1, 3, 0, 1, 2]]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import torch

Rule = Literal["overlap", "jaccard", "exact"]
IndicesTuple = (
    tuple[torch.Tensor, torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
)
RULES = ("overlap", "jaccard", "exact")
Array = TypeVar("Array", torch.Tensor, np.ndarray)
# The keyword arguments losses and miners took before relation= (deprecated, one release).
_DEPRECATED_KEYWORDS = ("rule", "min_shared", "pos_threshold", "neg_threshold")


def _check_labels(labels: torch.Tensor) -> torch.Tensor:
    """``labels`` itself when it is 1-D integer class ids or a 2-D 0/1 matrix, else a ValueError saying why.

    A 2-D bool matrix is 0/1 by its type: it is not scanned (no device synchronisation), which is
    what `check_labels` hands back for callers that relate the same labels block by block.
    """
    if not isinstance(labels, torch.Tensor):
        raise ValueError(
            "labels must be a torch.Tensor (class ids or a multi-hot matrix) or a Relation, got "
            f"{type(labels).__name__}; wrap it with torch.tensor(...)"
        )
    if labels.dim() == 1:
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"1-D labels must be integer class ids, got dtype {labels.dtype}")
        return labels
    if labels.dim() == 2:
        if labels.dtype != torch.bool and labels.numel() and not ((labels == 0) | (labels == 1)).all():
            raise ValueError("2-D labels must be a 0/1 multi-hot matrix (batch x num_labels)")
        return labels
    raise ValueError(f"labels must be 1-D class ids or a 2-D 0/1 matrix, got shape {tuple(labels.shape)}")


def check_labels(labels: torch.Tensor) -> torch.Tensor:
    """Validate labels once: 1-D class ids as they are, a 2-D 0/1 matrix as bool (then never scanned again).

    Losses that relate the same labels chunk by chunk (`RelationRule.false_negative_mask` on row
    blocks) call this once per batch, so the 0/1 check costs one device synchronisation, not one per chunk.

    Example:
        >>> check_labels(torch.tensor([[1, 0], [0, 1]])).dtype
        torch.bool
    """
    labels = _check_labels(labels)
    return labels.bool() if labels.dim() == 2 else labels


def _check_rule(rule: object, min_shared: object, pos_threshold: object, neg_threshold: object) -> None:
    """Refuse settings of a rule that are out of range (ValueError) or of the wrong type (TypeError)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(map(repr, RULES))}, got {rule!r}")
    if isinstance(min_shared, bool) or not isinstance(min_shared, (int, np.integer)):
        raise TypeError(f"min_shared must be an integer >= 1, got {type(min_shared).__name__}")
    if min_shared < 1:
        raise ValueError(f"min_shared must be an integer >= 1, got {min_shared}")
    for name, value in (("pos_threshold", pos_threshold), ("neg_threshold", neg_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__}")
        if not 0.0 <= value <= 1.0:  # also refuses NaN
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if not neg_threshold < pos_threshold:  # type: ignore[operator]
        raise ValueError(
            "pos_threshold must be greater than neg_threshold (0 <= neg_threshold < pos_threshold <= 1), "
            f"got neg_threshold={neg_threshold}, pos_threshold={pos_threshold}"
        )


def jaccard_similarity(shared: Array, query_counts: Array, reference_counts: Array) -> Array:
    """|A ∩ B| / |A ∪ B| from shared-label counts and label counts (0 where both sets are empty).

    Works elementwise on torch tensors and numpy arrays alike (broadcasting as they do), so the
    dense batch masks, the sparse pair sampler of `labelspace.data.convert` and retrieval
    relevance all compute Jaccard here.

    Example:
        >>> import numpy as np
        >>> jaccard_similarity(np.array([1, 0, 2]), np.array([2, 0, 2]), np.array([1, 0, 3])).tolist()
        [0.5, 0.0, 0.6666666666666666]
    """
    union = query_counts + reference_counts - shared
    if isinstance(union, torch.Tensor):
        shared = shared.to(torch.float64) if shared.dtype == torch.float64 else shared.to(torch.float32)
        return torch.where(union > 0, shared / union.clamp(min=1), torch.zeros_like(shared))
    shared = np.asarray(shared, dtype=np.float64)
    return np.divide(shared, union, out=np.zeros(np.shape(shared), dtype=np.float64), where=np.asarray(union) > 0)


@dataclass(frozen=True)
class RelationRule:
    """The one place where overlap / jaccard / exact decide which pairs are positives and negatives.

    Every part of labelspace that relates two label sets calls a rule: the metric losses and
    miners (`resolve`), the text losses' multi-label false-negative masks (`false_negative_mask`),
    the pair and triplet conversion of `labelspace.data.convert` (`decide` on sparse overlaps) and
    retrieval relevance in `labelspace.evaluation.retrieval`. Rules (``shared`` = labels two
    items have in common, Jaccard = shared / union):

    - ``overlap`` (default): positive when ``shared >= min_shared``, negative when ``shared == 0``.
    - ``jaccard``: positive when Jaccard >= ``pos_threshold``, negative when Jaccard <=
      ``neg_threshold``, neither in between; the weight of a pair is its Jaccard.
    - ``exact``: positive when the two label sets are equal and not empty, negative when ``shared == 0``.

    With 1-D class ids two items share their one label when their ids are equal: positive when
    equal, negative otherwise, whatever the rule.

    Args:
        rule: ``"overlap"``, ``"jaccard"`` or ``"exact"``.
        min_shared: labels a positive pair shares at least (``overlap``).
        pos_threshold, neg_threshold: Jaccard bounds of positives and negatives (``jaccard``).

    Example:
        >>> import torch
        >>> rule = RelationRule("jaccard", pos_threshold=0.5)
        >>> rule.resolve(torch.tensor([[1, 1], [1, 0]]), None, torch.zeros(2, 3)).positive.tolist()
        [[False, True], [True, False]]
        >>> RelationRule.of("exact") == RelationRule("exact")
        True
    """

    rule: Rule = "overlap"
    min_shared: int = 1
    pos_threshold: float = 0.5
    neg_threshold: float = 0.0

    def __post_init__(self) -> None:
        _check_rule(self.rule, self.min_shared, self.pos_threshold, self.neg_threshold)

    @classmethod
    def of(
        cls, relation: RelationRule | str | None = None, *, owner: str = "this loss", **deprecated: Any
    ) -> RelationRule:
        """The rule a loss or miner was given: a `RelationRule`, its name as shorthand, or None (overlap).

        ``deprecated`` takes ``rule``, ``min_shared``, ``pos_threshold`` and ``neg_threshold``, the
        keyword arguments losses and miners took before ``relation=``; they still work for one
        release, with a DeprecationWarning (``owner`` names the class in it). Any other keyword is
        a TypeError naming ``owner``, as Python's own.

        Example:
            >>> RelationRule.of("jaccard").rule
            'jaccard'
            >>> RelationRule.of(None)
            RelationRule(rule='overlap', min_shared=1, pos_threshold=0.5, neg_threshold=0.0)
        """
        unknown = sorted(set(deprecated) - set(_DEPRECATED_KEYWORDS))
        if unknown:
            raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
        legacy = {key: deprecated[key] for key in _DEPRECATED_KEYWORDS if deprecated.get(key) is not None}
        if legacy:
            if relation is not None:
                raise ValueError(f"{owner}: give either relation= or the deprecated {', '.join(legacy)}=, not both")
            settings = ", ".join(f"{key}={value!r}" for key, value in legacy.items())
            warnings.warn(
                f"{owner}({settings}) is deprecated; pass relation=RelationRule({settings}) instead",
                DeprecationWarning,
                stacklevel=4,
            )
            return cls(**legacy)
        if relation is None:
            return cls()
        if isinstance(relation, RelationRule):
            return relation
        if isinstance(relation, str):
            if relation not in RULES:
                raise ValueError(
                    f"{owner}: relation must be one of {', '.join(RULES)} or a RelationRule; got {relation!r}"
                )
            return cls(relation)  # type: ignore[arg-type]
        raise ValueError(
            f"{owner}: relation must be a RelationRule or one of {', '.join(RULES)}, got {type(relation).__name__}"
        )

    def decide(self, shared: Array, query_counts: Array, reference_counts: Array) -> tuple[Array, Array, Array | None]:
        """``(positive, negative, weight)`` of pairs from their shared-label counts and label counts.

        Elementwise on torch tensors or numpy arrays (``query_counts`` and ``reference_counts``
        broadcast against ``shared``); ``weight`` is the Jaccard for the ``jaccard`` rule, else None.
        Self pairs are not excluded here (see `Relation.from_labels`).

        Example:
            >>> import numpy as np
            >>> shared, query_counts, reference_counts = np.array([2, 1, 0]), np.array([2, 2, 1]), np.array([2, 1, 1])
            >>> positive, negative, _ = RelationRule("exact").decide(shared, query_counts, reference_counts)
            >>> positive.tolist(), negative.tolist()
            ([True, False, False], [False, False, True])
        """
        negative = shared == 0
        if self.rule == "overlap":
            return shared >= self.min_shared, negative, None
        if self.rule == "exact":
            return (shared == query_counts) & (shared == reference_counts) & (query_counts > 0), negative, None
        jaccard = jaccard_similarity(shared, query_counts, reference_counts)
        return jaccard >= self.pos_threshold, jaccard <= self.neg_threshold, jaccard

    def masks(
        self, query_labels: torch.Tensor, reference_labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(positive, negative, weight)`` of a block of query rows against reference rows (B x B').

        ``reference_labels`` defaults to the queries; self pairs are not excluded here. Labels are
        1-D class ids or B x num_labels 0/1 matrices (both sides of one kind).
        """
        query_labels = _check_labels(query_labels)
        reference_labels = query_labels if reference_labels is None else _check_labels(reference_labels)
        if query_labels.dim() != reference_labels.dim():
            raise ValueError("query and reference labels must both be class ids or both multi-hot matrices")
        shared = shared_label_counts(query_labels, reference_labels)
        if query_labels.dim() == 1:
            same = shared > 0
            return same, ~same, same.to(torch.float32) if self.rule == "jaccard" else None
        query_counts = query_labels.to(torch.float32).sum(dim=1)[:, None]
        reference_counts = reference_labels.to(torch.float32).sum(dim=1)[None, :]
        return self.decide(shared, query_counts, reference_counts)

    def false_negative_mask(
        self, query_labels: torch.Tensor, reference_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """B x B' bool: True where a reference may not serve as an in-batch negative of the query.

        That is every pair the rule does not call a negative (positives and the undecided pairs
        between the thresholds). The text losses mask these candidates out of their softmax.
        Labels as in `masks`; with ``overlap`` this is "shares at least one label".

        Example:
            >>> import torch
            >>> labels = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 1]])
            >>> RelationRule().false_negative_mask(labels).int().tolist()
            [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
            >>> RelationRule("jaccard", pos_threshold=0.9, neg_threshold=0.5).false_negative_mask(labels).int().tolist()
            [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
        """
        _, negative, _ = self.masks(query_labels, reference_labels)
        return ~negative

    def resolve(
        self, labels: torch.Tensor | Relation | None, indices_tuple: IndicesTuple | None, embeddings: torch.Tensor
    ) -> Relation:
        """The relation of the batch of ``embeddings``, on their device (see `resolve_relation`)."""
        if isinstance(labels, torch.Tensor):
            labels = labels.to(embeddings.device)
        relation = resolve_relation(labels, indices_tuple, embeddings.shape[0], rule=self)
        return relation if relation.device == embeddings.device else relation.to(embeddings.device)

    def describe(self) -> str:
        """The rule and the settings it uses, for messages: ``rule='overlap' (min_shared=1)``."""
        if self.rule == "overlap":
            return f"rule='overlap' (min_shared={self.min_shared})"
        if self.rule == "jaccard":
            return f"rule='jaccard' (pos_threshold={self.pos_threshold}, neg_threshold={self.neg_threshold})"
        return "rule='exact'"


def shared_label_counts(labels: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
    """B x B' number of labels each pair shares (1-D labels: 1 when equal, else 0)."""
    labels = _check_labels(labels)
    other = labels if other is None else _check_labels(other)
    if labels.dim() == 1:
        return (labels[:, None] == other[None, :]).to(torch.float32)
    left = labels.to(torch.float32)
    right = other.to(torch.float32)
    return left @ right.T


@dataclass
class Relation:
    """Positive and negative masks over the pairs of a batch, with optional weights.

    Attributes:
        positive: B x B bool, ``positive[i, j]`` when j is a positive of anchor i.
        negative: B x B bool, ``negative[i, j]`` when j is a negative of anchor i.
        weight: optional B x B float (e.g. Jaccard similarity) for losses that use graded
            relevance; ``None`` means every positive counts 1.
    """

    positive: torch.Tensor
    negative: torch.Tensor
    weight: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.positive.shape != self.negative.shape or self.positive.dim() != 2:
            raise ValueError(
                f"positive and negative masks must be 2-D and of one shape, got "
                f"{tuple(self.positive.shape)} and {tuple(self.negative.shape)}"
            )
        if self.weight is not None and self.weight.shape != self.positive.shape:
            raise ValueError(f"weight has shape {tuple(self.weight.shape)}, expected {tuple(self.positive.shape)}")

    @property
    def batch_size(self) -> int:
        return self.positive.shape[0]

    @property
    def device(self) -> torch.device:
        return self.positive.device

    def to(self, device: torch.device | str) -> Relation:
        """The same relation on another device."""
        weight = None if self.weight is None else self.weight.to(device)
        return Relation(self.positive.to(device), self.negative.to(device), weight)

    @classmethod
    def from_labels(
        cls,
        labels: torch.Tensor,
        *,
        rule: Rule | RelationRule = "overlap",
        min_shared: int = 1,
        pos_threshold: float = 0.5,
        neg_threshold: float = 0.0,
    ) -> Relation:
        """Build the relation of a batch from 1-D class ids or a B x num_labels 0/1 matrix.

        ``rule`` is a `RelationRule`, or a rule name with its settings in the other arguments.
        """
        if not isinstance(rule, RelationRule):
            rule = RelationRule(rule, min_shared, pos_threshold, neg_threshold)
        positive, negative, weight = rule.masks(labels)
        not_self = ~torch.eye(positive.shape[0], dtype=torch.bool, device=positive.device)
        if labels.dim() == 1:
            return cls(positive & not_self, negative, weight)  # 1-D: never its own negative either way
        return cls(positive & not_self, negative & not_self, weight)

    @classmethod
    def from_indices_tuple(cls, indices_tuple: IndicesTuple, batch_size: int) -> Relation:
        """Masks from ``(a1, p, a2, n)`` pairs or ``(a, p, n)`` triplets (pytorch-metric-learning's form)."""
        indices_tuple = check_indices_tuple(indices_tuple, batch_size)
        if len(indices_tuple) == 3:
            anchors, positives, negatives = indices_tuple
            anchors_positive, anchors_negative = anchors, anchors
        else:
            anchors_positive, positives, anchors_negative, negatives = indices_tuple
        device = anchors_positive.device
        positive = torch.zeros(batch_size, batch_size, dtype=torch.bool, device=device)
        negative = torch.zeros_like(positive)
        positive[anchors_positive.long(), positives.long()] = True
        negative[anchors_negative.long(), negatives.long()] = True
        return cls(positive, negative)

    @classmethod
    def from_pairs(
        cls,
        item_keys: torch.Tensor,
        positive_pairs: tuple[torch.Tensor, torch.Tensor],
        negative_pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
        *,
        in_batch_negatives: bool = True,
    ) -> Relation:
        """The relation of a batch built from explicit pairs (or triplets) of its items.

        ``item_keys`` (M,) says which items are the same text (equal keys: any integer, e.g. a hash
        of the text); ``positive_pairs`` and ``negative_pairs`` are ``(rows, columns)`` index
        tensors into the M items. Two items are positives when they are the same text or when
        some positive pair links their texts (in either order); they are never negatives then.
        With ``in_batch_negatives`` every other pair of items is a negative (the assumption of
        in-batch-negative losses such as MultipleNegativesRankingLoss); without it only the
        explicit negative pairs are. Symmetric, never an item with itself.

        Example:
            >>> import torch
            >>> keys = torch.tensor([10, 11, 12, 13])             # texts a0, a1, p0, p1
            >>> relation = Relation.from_pairs(keys, (torch.tensor([0, 1]), torch.tensor([2, 3])))
            >>> relation.positive.int().tolist()
            [[0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0]]
            >>> relation.negative.int().tolist()
            [[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]]
        """
        if not isinstance(item_keys, torch.Tensor) or item_keys.dim() != 1:
            raise ValueError("item_keys must be a 1-D tensor with one key per item")
        size = item_keys.shape[0]
        device = item_keys.device
        pairs = check_indices_tuple((*positive_pairs, *(negative_pairs or positive_pairs)), size)
        _, text_ids = torch.unique(item_keys, return_inverse=True)
        distinct = int(text_ids.max()) + 1 if size else 0
        linked = torch.eye(distinct, dtype=torch.bool, device=device)
        rows, columns = text_ids[pairs[0]], text_ids[pairs[1]]
        linked[rows, columns] = True
        linked[columns, rows] = True
        same = linked[text_ids[:, None], text_ids[None, :]]
        not_self = ~torch.eye(size, dtype=torch.bool, device=device)
        if in_batch_negatives:
            negative = ~same
        else:
            negative = torch.zeros(size, size, dtype=torch.bool, device=device)
            if negative_pairs is not None:
                negative[pairs[2], pairs[3]] = True
                negative[pairs[3], pairs[2]] = True
            negative &= ~same
        return cls(same & not_self, negative & not_self)

    def pair_indices(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(a1, p, a2, n)``: every positive pair and every negative pair, anchor-major order."""
        anchors_positive, positives = torch.where(self.positive)
        anchors_negative, negatives = torch.where(self.negative)
        return anchors_positive, positives, anchors_negative, negatives

    def triplet_indices(
        self, max_triplets: int | None = None, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(a, p, n)``: every (anchor, positive, negative) combination, in (a, p, n) order.

        The triplets are enumerated from the pair lists without a B x B x B tensor. When
        there are more than ``max_triplets``, a seeded random subset of that size is kept
        (sorted, so order stays anchor-major).
        """
        device = self.device
        anchors_positive, positives = torch.where(self.positive)
        negatives_per_anchor = self.negative.sum(dim=1)
        anchors_negative, negatives = torch.where(self.negative)
        first_negative = torch.cumsum(negatives_per_anchor, 0) - negatives_per_anchor
        per_pair = negatives_per_anchor[anchors_positive]
        total = int(per_pair.sum())
        if max_triplets is not None and total > max_triplets:
            chosen = torch.randint(total, (max_triplets,), generator=generator, device="cpu").to(device)
            chosen = torch.unique(chosen)  # sorted; drops the rare repeats
        else:
            chosen = torch.arange(total, device=device)
        pair_end = torch.cumsum(per_pair, 0)
        pair = torch.searchsorted(pair_end, chosen, right=True)
        offset = chosen - (pair_end[pair] - per_pair[pair])
        anchor = anchors_positive[pair]
        return anchor, positives[pair], negatives[first_negative[anchor] + offset]


def check_indices_tuple(indices_tuple: object, batch_size: int) -> tuple[torch.Tensor, ...]:
    """Validate a pytorch-metric-learning ``indices_tuple`` and return its members as int64 tensors.

    It must be a tuple (or list) of 3 ``(a, p, n)`` or 4 ``(a1, p, a2, n)`` 1-D integer tensors,
    the paired members of equal length, every index in ``0 .. batch_size - 1``.

    Example:
        >>> check_indices_tuple((torch.tensor([0]), torch.tensor([1]), torch.tensor([5])), 4)
        Traceback (most recent call last):
        ...
        ValueError: indices_tuple[2] holds index 5, outside 0..3 (the batch has 4 items)
    """
    if not isinstance(indices_tuple, (tuple, list)):
        raise ValueError(
            "indices_tuple must be a tuple of 3 (a, p, n) or 4 (a1, p, a2, n) tensors, "
            f"got {type(indices_tuple).__name__}"
        )
    if len(indices_tuple) not in (3, 4):
        raise ValueError(f"indices_tuple must have 3 (a, p, n) or 4 (a1, p, a2, n) tensors, got {len(indices_tuple)}")
    members: list[torch.Tensor] = []
    for position, member in enumerate(indices_tuple):
        if not isinstance(member, torch.Tensor):
            kind = "None" if member is None else type(member).__name__
            raise ValueError(
                f"indices_tuple[{position}] must be a 1-D integer torch.Tensor, got {kind} "
                "(wrap lists with torch.tensor(...))"
            )
        if member.dim() != 1 or member.dtype.is_floating_point or member.dtype.is_complex or member.dtype == torch.bool:
            raise ValueError(
                f"indices_tuple[{position}] must be a 1-D integer tensor, got shape {tuple(member.shape)} "
                f"and dtype {member.dtype}"
            )
        if member.numel():
            low, high = int(member.min()), int(member.max())
            if low < 0 or high >= batch_size:
                bad = low if low < 0 else high
                raise ValueError(
                    f"indices_tuple[{position}] holds index {bad}, outside 0..{batch_size - 1} "
                    f"(the batch has {batch_size} items)"
                )
        members.append(member.long())
    groups = [(0, 1, 2)] if len(members) == 3 else [(0, 1), (2, 3)]
    for group in groups:
        lengths = [members[i].numel() for i in group]
        if len(set(lengths)) != 1:
            names = ", ".join(f"indices_tuple[{i}]" for i in group)
            raise ValueError(f"{names} must have one length, got {lengths}")
    return tuple(members)


def resolve_relation(
    labels: torch.Tensor | Relation | None,
    indices_tuple: IndicesTuple | None,
    batch_size: int,
    *,
    rule: Rule | RelationRule = "overlap",
    min_shared: int = 1,
    pos_threshold: float = 0.5,
    neg_threshold: float = 0.0,
) -> Relation:
    """The relation a loss or miner works on: from ``indices_tuple`` when given, else from labels.

    As in pytorch-metric-learning, explicit indices take precedence over labels. ``rule`` is a
    `RelationRule`, or a rule name with its settings in the other arguments.
    """
    if labels is not None and not isinstance(labels, (torch.Tensor, Relation)):
        _check_labels(labels)  # raises; also beside an indices_tuple, where a list is a mistake as well
    if indices_tuple is not None:
        return Relation.from_indices_tuple(indices_tuple, batch_size)
    if labels is None:
        raise ValueError("give labels (class ids, a multi-hot matrix or a Relation) or an indices_tuple")
    if isinstance(labels, Relation):
        if labels.batch_size != batch_size:
            raise ValueError(f"the relation covers {labels.batch_size} items but the batch has {batch_size}")
        return labels
    if labels.shape[0] != batch_size:
        raise ValueError(f"labels have {labels.shape[0]} rows but the batch has {batch_size} embeddings")
    if not isinstance(rule, RelationRule):
        rule = RelationRule(rule, min_shared, pos_threshold, neg_threshold)
    return Relation.from_labels(labels, rule=rule)
