"""Conversions between the three data shapes: labelled texts, scored pairs and triplets.

Text losses want pairs (AnglE, CoSENT: ``(text1, text2, score)``), anchor/positive pairs
(MultipleNegativesRankingLoss) or triplets (TripletLoss), while most multi-label data comes
as texts with labels. This module turns labels into pairs and triplets with the relation
rules of the design (``overlap``, ``jaccard``, ``exact``), and triplets into pairs.

Which pairs are positives and negatives is decided by `labelspace.relations.RelationRule`
(the rule engine of the losses, miners and retrieval), here on sparse row overlaps.

Sampling goes through the label -> items index (the CSC label matrix): a positive is found
by drawing an anchor (uniformly among the items that can have a positive), one of its labels
(uniformly among those another text also carries) and another item carrying that label
(uniformly), so the n^2 item pairs are never enumerated; for ``exact`` the partner is drawn
from the items with the same label set. A negative pairs an item with a uniformly drawn one.

Candidates are drawn for all missing slots at once, checked against the rule with vectorised
sparse row overlaps, and the rejected ones are redrawn in the next round. After a bounded
number of rounds a ValueError says why the rule cannot produce enough pairs. Pairs are drawn
with replacement (a pair may appear more than once); an item is never paired with itself and
pairs of two equal texts (duplicates at different indices) are skipped.

Example:
    >>> from labelspace.data import LabeledDataset
    >>> data = LabeledDataset.from_label_names(
    ...     ["card declined", "charged twice", "app crashes", "login fails", "hello"],
    ...     [["billing"], ["billing"], ["bug"], ["bug", "login"], []],
    ... )
    >>> pairs = labeled_to_pairs(data, 6, seed=0)
    >>> len(pairs), int(pairs.scores.sum())  # half positives, half negatives
    (6, 3)
    >>> triplets = labeled_to_triplets(data, 4, num_negatives=2, seed=0)
    >>> len(triplets), triplets.num_negatives
    (4, 2)
    >>> len(triplets_to_pairs(triplets))  # one positive and two negative pairs each
    12
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp

from labelspace.data.datasets import LabeledDataset, PairDataset, TripletDataset
from labelspace.relations import RelationRule, Rule, jaccard_similarity

__all__ = [
    "labeled_to_anchor_positive",
    "labeled_to_pairs",
    "labeled_to_triplets",
    "triplets_to_pairs",
]

Score = Literal["binary", "jaccard"]

SCORES: tuple[str, ...] = ("binary", "jaccard")

# Sampling budget: at most this many rounds and this many candidates per round; give up
# early when at least this many candidates were drawn and none was valid.
_MAX_ROUNDS = 50
_MAX_BATCH = 1 << 20
_GIVE_UP_AFTER = 1 << 20


# --------------------------------------------------------------------------- triplets -> pairs


def triplets_to_pairs(triplets: TripletDataset) -> PairDataset:
    """Split each triplet into one positive pair (score 1.0) and one negative pair (0.0) per
    negative, for pair losses such as AnglE or CoSENT.

    Order: for each triplet, its positive pair first, then its negative pairs in order.

    Example:
        >>> t = TripletDataset(["q"], ["p"], [["n1", "n2"]])
        >>> pairs = triplets_to_pairs(t)
        >>> [pairs[i] for i in range(len(pairs))]
        [('q', 'p', 1.0), ('q', 'n1', 0.0), ('q', 'n2', 0.0)]
    """
    if not isinstance(triplets, TripletDataset):
        raise TypeError(f"triplets must be a TripletDataset, got {type(triplets).__name__}")
    text1: list[str] = []
    text2: list[str] = []
    scores: list[float] = []
    for index in range(len(triplets)):
        anchor, positive, negatives = triplets[index]
        text1.append(anchor)
        text2.append(positive)
        scores.append(1.0)
        for negative in negatives:
            text1.append(anchor)
            text2.append(negative)
            scores.append(0.0)
    return PairDataset(text1, text2, np.asarray(scores, dtype=np.float32), source=triplets.source)


# --------------------------------------------------------------------------- labels -> pairs


def labeled_to_pairs(
    dataset: LabeledDataset,
    num_pairs: int,
    *,
    rule: Rule | None = None,
    min_shared: int | None = None,
    pos_threshold: float | None = None,
    neg_threshold: float | None = None,
    relation: RelationRule | Rule | None = None,
    positive_fraction: float = 0.5,
    score: Score = "binary",
    seed: int | np.random.Generator | None = 0,
) -> PairDataset:
    """Sample scored pairs from labelled texts, for pair losses (AnglE, CoSENT, contrastive).

    ``round(num_pairs * positive_fraction)`` pairs are positives and the rest negatives under
    ``rule`` (see the design): ``overlap`` (the default; positive: share >= ``min_shared``
    labels, default 1; negative: share none), ``jaccard`` (positive: Jaccard >= ``pos_threshold``,
    default 0.5; negative: Jaccard <= ``neg_threshold``, default 0; pairs in between are never
    emitted) or ``exact`` (positive: equal non-empty label sets; negative: share no label).
    ``relation`` gives the same as one `RelationRule` (or its name), the argument the losses and
    miners take; give it or the four settings, not both. Items without labels are never
    part of a positive but can be the negative of anything. ``score="binary"`` scores
    positives 1.0 and negatives 0.0; ``score="jaccard"`` gives the Jaccard of the two label
    sets (graded relevance, e.g. for CoSENT). Positives and negatives come shuffled together;
    the same ``seed`` gives the same pairs.

    Raises ValueError when an argument is out of range or when the data cannot produce the
    requested pairs under the rule (the message says why).

    Example:
        >>> from labelspace.data import LabeledDataset
        >>> data = LabeledDataset.from_label_names(
        ...     ["a", "b", "c", "d"], [["x", "y"], ["x"], ["y"], ["z"]])
        >>> pairs = labeled_to_pairs(data, 10, rule="jaccard", score="jaccard", seed=1)
        >>> sorted(set(pairs.scores.tolist()))  # 0.5 for {x,y}~{x} and {x,y}~{y}, 0 for negatives
        [0.0, 0.5]
        >>> from labelspace.relations import RelationRule
        >>> same = labeled_to_pairs(data, 10, relation=RelationRule("jaccard"), score="jaccard", seed=1)
        >>> same.text1 == pairs.text1 and same.text2 == pairs.text2
        True
    """
    _check_dataset(dataset)
    num_pairs = _check_count(num_pairs, "num_pairs")
    relation_rule = _relation_rule(relation, rule, min_shared, pos_threshold, neg_threshold)
    _check_fraction(positive_fraction, "positive_fraction")
    if score not in SCORES:
        raise ValueError(f"score must be one of {_names(SCORES)}, got {score!r}")
    rng = np.random.default_rng(seed)
    num_positive = round(num_pairs * positive_fraction)
    num_negative = num_pairs - num_positive
    sampler = _Sampler(dataset, relation_rule, rng)
    pos_a, pos_b = sampler.positive_pairs(num_positive)
    neg_a, neg_b = sampler.negative_pairs(num_negative)
    first = np.concatenate([pos_a, neg_a])
    second = np.concatenate([pos_b, neg_b])
    if score == "binary":
        scores = np.concatenate([np.ones(num_positive), np.zeros(num_negative)])
    else:
        scores = sampler.jaccard(first, second)
    order = rng.permutation(num_pairs)
    first, second, scores = first[order], second[order], scores[order]
    return PairDataset(
        sampler.take_texts(first),
        sampler.take_texts(second),
        scores.astype(np.float32),
        source=dataset.source,
    )


def labeled_to_anchor_positive(
    dataset: LabeledDataset,
    num_pairs: int,
    *,
    rule: Rule | None = None,
    min_shared: int | None = None,
    pos_threshold: float | None = None,
    relation: RelationRule | Rule | None = None,
    seed: int | np.random.Generator | None = 0,
) -> PairDataset:
    """Sample (anchor, positive) pairs, all scored 1.0, for MultipleNegativesRankingLoss-style
    training where the other positives of a batch serve as negatives.

    Positives follow ``rule`` (or ``relation``) exactly as in `labeled_to_pairs`. The pairs
    carry the anchors' labels (``pairs.labels``), so in-batch losses mask the other pairs of a
    batch that share a label with the anchor instead of treating them as negatives.

    Example:
        >>> from labelspace.data import LabeledDataset
        >>> data = LabeledDataset.from_label_names(["a", "b", "c"], [["x"], ["x"], ["y"]])
        >>> pairs = labeled_to_anchor_positive(data, 4, seed=0)
        >>> sorted({(p[0], p[1]) for p in (pairs[i] for i in range(4))})
        [('a', 'b'), ('b', 'a')]
    """
    _check_dataset(dataset)
    num_pairs = _check_count(num_pairs, "num_pairs")
    relation_rule = _relation_rule(relation, rule, min_shared, pos_threshold, None)
    sampler = _Sampler(dataset, relation_rule, np.random.default_rng(seed))
    first, second = sampler.positive_pairs(num_pairs)
    return PairDataset(
        sampler.take_texts(first),
        sampler.take_texts(second),
        np.ones(num_pairs, dtype=np.float32),
        source=dataset.source,
        labels=dataset.labels[first],
    )


def labeled_to_triplets(
    dataset: LabeledDataset,
    num_triplets: int,
    *,
    num_negatives: int = 1,
    rule: Rule | None = None,
    min_shared: int | None = None,
    pos_threshold: float | None = None,
    neg_threshold: float | None = None,
    relation: RelationRule | Rule | None = None,
    seed: int | np.random.Generator | None = 0,
) -> TripletDataset:
    """Sample (anchor, positive, negatives) triplets from labelled texts, for triplet losses.

    The positive follows ``rule`` (or ``relation``) as in `labeled_to_pairs`; each negative is a
    negative of the anchor under the same rule. The negatives of one triplet have distinct texts, different
    from the anchor's and the positive's. ``negatives`` is a list of str when
    ``num_negatives == 1``, else a list of lists.

    Example:
        >>> from labelspace.data import LabeledDataset
        >>> data = LabeledDataset.from_label_names(["a", "b", "c"], [["x"], ["x"], ["y"]])
        >>> labeled_to_triplets(data, 1, seed=0)[0][2]
        ['c']
    """
    _check_dataset(dataset)
    num_triplets = _check_count(num_triplets, "num_triplets")
    num_negatives = _check_count(num_negatives, "num_negatives")
    relation_rule = _relation_rule(relation, rule, min_shared, pos_threshold, neg_threshold)
    sampler = _Sampler(dataset, relation_rule, np.random.default_rng(seed))
    anchors, positives, negatives = sampler.triplets(num_triplets, num_negatives)
    texts = sampler.take_texts
    negative_texts: list[str] | list[list[str]]
    if num_negatives == 1:
        negative_texts = texts(negatives[:, 0])
    else:
        flat = texts(negatives.ravel())
        negative_texts = [flat[i : i + num_negatives] for i in range(0, len(flat), num_negatives)]
    return TripletDataset(texts(anchors), texts(positives), negative_texts, source=dataset.source)


# --------------------------------------------------------------------------- validation


def _names(options: Sequence[str]) -> str:
    return ", ".join(repr(o) for o in options)


def _check_dataset(dataset: object) -> None:
    if not isinstance(dataset, LabeledDataset):
        raise TypeError(f"dataset must be a LabeledDataset, got {type(dataset).__name__}")


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def _check_fraction(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


def _relation_rule(
    relation: RelationRule | str | None,
    rule: str | None,
    min_shared: int | None,
    pos_threshold: float | None,
    neg_threshold: float | None,
) -> RelationRule:
    """The `RelationRule` of a conversion: ``relation``, or the rule built from the settings given.

    `RelationRule` validates the settings (the one place that does).
    """
    settings = {
        name: value
        for name, value in (
            ("rule", rule),
            ("min_shared", min_shared),
            ("pos_threshold", pos_threshold),
            ("neg_threshold", neg_threshold),
        )
        if value is not None
    }
    if relation is None:
        return RelationRule(**settings)
    if settings:
        raise ValueError(f"give either relation= or {'= / '.join(settings)}=, not both")
    return RelationRule.of(relation, owner="the conversion")


# --------------------------------------------------------------------------- sampling


class _Sampler:
    """Index structures of one dataset and the vectorised draw/check steps of one rule."""

    def __init__(self, dataset: LabeledDataset, relation_rule: RelationRule, rng: np.random.Generator) -> None:
        self.texts = dataset.texts
        self.relation_rule = relation_rule
        self.rule = relation_rule.rule
        self.rng = rng
        self.labels = labels = dataset.labels
        self.n = n = len(labels)
        self.label_names = dataset.label_set.names
        csr = labels.to_sparse()
        self.csr = sp.csr_matrix(csr, dtype=np.int32)  # int32: overlap sums cannot overflow
        self.card = labels.cardinality()
        # Texts as integer ids, so "the two texts are equal" is an integer comparison.
        text_index: dict[str, int] = {}
        self.text_id = np.fromiter(
            (text_index.setdefault(text, len(text_index)) for text in self.texts),
            dtype=np.int64,
            count=n,
        )
        self.num_texts = len(text_index)
        self._positive_ready = False
        # Any valid pair is drawn with probability >= 1 / (n^2 * max labels per item) per
        # candidate, so after 200 times that many candidates without a hit none exists
        # (up to e^-200); large datasets stop at _GIVE_UP_AFTER instead.
        max_card = int(self.card.max()) if n else 0
        self.give_up_after = min(_GIVE_UP_AFTER, 200 * n * n * max(1, max_card))

    # ---- relation checks (vectorised over pairs of item indices)

    def shared(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Number of labels items ``a[k]`` and ``b[k]`` have in common."""
        if a.size == 0:
            return np.zeros(0, dtype=np.int64)
        both = self.csr[a].multiply(self.csr[b])
        return np.asarray(both.sum(axis=1), dtype=np.int64).ravel()

    def jaccard(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Jaccard of the label sets (0.0 when both are empty)."""
        return jaccard_similarity(self.shared(a, b), self.card[a], self.card[b])

    def _decide(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positive, negative) of the pairs (a[k], b[k]) under the rule, among valid pairs only:
        never an item with itself, never two equal texts."""
        valid = (a != b) & (self.text_id[a] != self.text_id[b])
        positive, negative, _ = self.relation_rule.decide(self.shared(a, b), self.card[a], self.card[b])
        return valid & positive, valid & negative

    def is_positive(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._decide(a, b)[0]

    def is_negative(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._decide(a, b)[1]

    # ---- positives

    def _rule_text(self) -> str:
        return self.relation_rule.describe()

    def _prepare_positives(self) -> None:
        """Build the label -> items index and the anchors that can have a positive."""
        if self._positive_ready:
            return
        self._positive_ready = True
        n = self.n
        if self.rule == "exact":
            self._prepare_groups()
            return
        csc = self.labels.to_csc()  # cached by LabelMatrix, indices sorted per column
        num_labels = csc.shape[1]
        self.col_ptr = csc.indptr.astype(np.int64)
        self.col_items = csc.indices.astype(np.int64)
        self.label_count = np.diff(self.col_ptr)
        col_label = np.repeat(np.arange(num_labels, dtype=np.int64), self.label_count)
        # Sorted keys (label, item) of the CSC entries: finds an item's slot in a column.
        self.col_key = col_label * n + self.col_items
        # A label can give a positive only when items with two different texts carry it.
        distinct = np.unique(col_label * self.num_texts + self.text_id[self.col_items])
        useful = np.bincount(distinct // self.num_texts, minlength=num_labels) >= 2
        indptr, indices = self.csr.indptr, self.csr.indices
        row_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
        keep = useful[indices]
        self.u_indices = indices[keep].astype(np.int64)
        self.u_card = np.bincount(row_of[keep], minlength=n).astype(np.int64)
        self.u_ptr = np.concatenate([[0], np.cumsum(self.u_card)])
        need = self.relation_rule.min_shared if self.rule == "overlap" else 1
        self.anchors = np.flatnonzero(self.u_card >= need)
        if self.anchors.size == 0:
            if need == 1:
                why = "no two items (with different texts) share a label"
            else:
                why = (
                    f"no item has {need} labels that items with other texts also carry, "
                    f"so no two items share {need} labels"
                )
            raise ValueError(f"{self._rule_text()} cannot produce positive pairs: {why}")

    def _prepare_groups(self) -> None:
        """Group items by their exact label set (rule='exact'); -1 for unlabelled items."""
        indptr, indices = self.csr.indptr, self.csr.indices
        group_index: dict[tuple[int, ...], int] = {}
        group = np.full(self.n, -1, dtype=np.int64)
        for item in np.flatnonzero(self.card > 0).tolist():
            key = tuple(indices[indptr[item] : indptr[item + 1]].tolist())
            group[item] = group_index.setdefault(key, len(group_index))
        num_groups = len(group_index)
        labelled = group >= 0
        # Anchors: items in a group that holds at least two different texts.
        distinct = np.unique(group[labelled] * self.num_texts + self.text_id[labelled])
        texts_per_group = np.bincount(distinct // self.num_texts, minlength=num_groups)
        eligible = np.zeros(self.n, dtype=bool)
        eligible[labelled] = texts_per_group[group[labelled]] >= 2
        self.anchors = np.flatnonzero(eligible)
        if self.anchors.size == 0:
            raise ValueError(
                "rule='exact' cannot produce positive pairs: no two items (with different "
                "texts) have the same non-empty label set"
            )
        # Items sorted by group (unlabelled first); group g occupies
        # group_order[group_start[g] : group_start[g] + group_size[g]].
        order = np.argsort(group, kind="stable")
        sizes = np.bincount(group[labelled], minlength=num_groups).astype(np.int64)
        start = self.n - int(sizes.sum()) + np.concatenate([[0], np.cumsum(sizes)[:-1]])
        sorted_group = group[order]
        in_group = sorted_group >= 0
        slot = np.zeros(self.n, dtype=np.int64)
        slot[order[in_group]] = np.flatnonzero(in_group) - start[sorted_group[in_group]]
        self.group, self.group_order = group, order
        self.group_start, self.group_size, self.group_slot = start.astype(np.int64), sizes, slot

    def _draw_positive(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``k`` candidate positive pairs drawn through the index (not yet checked)."""
        rng = self.rng
        a = self.anchors[rng.integers(self.anchors.size, size=k)]
        if self.rule == "exact":
            g = self.group[a]
            other = rng.integers(0, self.group_size[g] - 1)
            other += other >= self.group_slot[a]  # skip the anchor itself
            return a, self.group_order[self.group_start[g] + other]
        # One of the anchor's (useful) labels, uniformly; then another item with that label.
        label = self.u_indices[self.u_ptr[a] + rng.integers(0, self.u_card[a])]
        start = self.col_ptr[label]
        slot = np.searchsorted(self.col_key, label * self.n + a) - start
        other = rng.integers(0, self.label_count[label] - 1)
        other += other >= slot  # skip the anchor itself
        return a, self.col_items[start + other]

    def positive_pairs(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` valid positive pairs (item indices)."""
        if count == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        self._prepare_positives()

        def draw(k: int) -> tuple[np.ndarray, ...]:
            a, b = self._draw_positive(k)
            ok = self.is_positive(a, b)
            return a[ok], b[ok]

        a, b = _collect(
            count,
            draw,
            self.give_up_after,
            lambda: f"{count} positive pairs with {self._rule_text()}",
            "no pair of items with different texts satisfies it on this data",
        )
        return a, b

    # ---- negatives

    def _check_negatives_possible(self) -> None:
        if self.num_texts < 2:
            raise ValueError(
                f"{self._rule_text()} cannot produce negative pairs: the dataset has fewer than two different texts"
            )
        if np.any(self.card == 0):
            return  # an unlabelled item is a negative of every item with another text
        if self.rule == "jaccard" and self.relation_rule.neg_threshold > 0:
            return
        everywhere = np.flatnonzero(np.bincount(self.csr.indices, minlength=self.csr.shape[1]) == self.n)
        if everywhere.size:
            raise ValueError(
                f"{self._rule_text()} cannot produce negative pairs: every item carries label "
                f"'{self.label_names[everywhere[0]]}', so every two items share a label"
            )

    def negative_pairs(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` valid negative pairs: first item among the labelled ones (all items when
        none is labelled), second item among all items."""
        if count == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        self._check_negatives_possible()
        first_pool = np.flatnonzero(self.card > 0)
        if first_pool.size == 0:
            first_pool = np.arange(self.n)

        def draw(k: int) -> tuple[np.ndarray, ...]:
            a = first_pool[self.rng.integers(first_pool.size, size=k)]
            b = self.rng.integers(self.n, size=k)
            ok = self.is_negative(a, b)
            return a[ok], b[ok]

        a, b = _collect(
            count,
            draw,
            self.give_up_after,
            lambda: f"{count} negative pairs with {self._rule_text()}",
            "no pair of items with different texts satisfies it on this data",
        )
        return a, b

    # ---- triplets

    def triplets(self, count: int, num_negatives: int) -> tuple[np.ndarray, ...]:
        """``count`` (anchor, positive, negatives[num_negatives]) index triplets."""
        self._prepare_positives()
        self._check_negatives_possible()
        stats = {"drawn": 0, "accepted": 0}

        def draw(k: int) -> tuple[np.ndarray, ...]:
            a, p = self._draw_positive(k)
            ok = self.is_positive(a, p)
            a, p = a[ok], p[ok]
            # Candidates per negative slot, from the acceptance rate seen so far.
            rate = (stats["accepted"] + 1) / (stats["drawn"] + 1)
            per_row = num_negatives * min(64, max(2, math.ceil(2.0 / rate)))
            per_row = max(num_negatives, min(per_row, _MAX_BATCH // max(a.size, 1)))
            cand = self.rng.integers(self.n, size=(a.size, per_row))
            flat_a = np.repeat(a, per_row)
            flat_c = cand.ravel()
            ok = self.is_negative(flat_a, flat_c)
            stats["drawn"] += flat_c.size
            stats["accepted"] += int(ok.sum())
            ok &= self.text_id[flat_c] != self.text_id[np.repeat(p, per_row)]
            # Keep the first occurrence of each text within a row: distinct negatives.
            key = np.repeat(np.arange(a.size, dtype=np.int64), per_row) * self.num_texts
            key += self.text_id[flat_c]
            first = np.zeros(flat_c.size, dtype=bool)
            first[np.unique(np.where(ok, key, -1), return_index=True)[1]] = True
            ok &= first
            ok = ok.reshape(a.size, per_row)
            rank = np.cumsum(ok, axis=1)
            complete = rank[:, -1] >= num_negatives
            chosen = ok & (rank <= num_negatives)
            negatives = cand[complete][chosen[complete]].reshape(-1, num_negatives)
            return a[complete], p[complete], negatives

        return _collect(
            count,
            draw,
            self.give_up_after,
            lambda: f"{count} triplets with {num_negatives} negative(s) and {self._rule_text()}",
            f"no anchor that has a positive has {num_negatives} negatives with distinct texts (lower num_negatives)",
        )

    def take_texts(self, items: np.ndarray) -> list[str]:
        texts = self.texts
        return [texts[i] for i in items.tolist()]


def _collect(
    count: int,
    draw: Callable[[int], tuple[np.ndarray, ...]],
    give_up_after: int,
    what: Callable[[], str],
    why_none: str,
) -> tuple[np.ndarray, ...]:
    """Call ``draw(k)`` (k candidates in, the valid ones out) in rounds until ``count`` valid
    rows are found; the batch size follows the acceptance rate seen so far.

    ``what`` names the request and ``why_none`` the likely cause when nothing was valid, for
    the error raised when the budget runs out.
    """
    parts: list[tuple[np.ndarray, ...]] = []
    have = drawn = accepted = 0
    for _ in range(_MAX_ROUNDS):
        missing = count - have
        rate = (accepted + 1) / (drawn + 1)
        k = int(min(_MAX_BATCH, max(missing, math.ceil(missing * 1.2 / rate) + 16)))
        arrays = draw(k)
        drawn += k
        found = len(arrays[0])
        accepted += found
        take = min(found, missing)
        parts.append(tuple(x[:take] for x in arrays))
        have += take
        if have == count:
            return tuple(np.concatenate(columns) for columns in zip(*parts, strict=True))
        if accepted == 0 and drawn >= give_up_after:
            break
    if accepted == 0:
        raise ValueError(
            f"cannot sample {what()}: none of {drawn:,} candidates drawn was valid, so (almost surely) {why_none}"
        )
    raise ValueError(
        f"cannot sample {what()}: only {accepted:,} of {drawn:,} candidates drawn were valid "
        f"({accepted / drawn:.2g}), too few to fill {count:,} in {_MAX_ROUNDS} rounds; "
        "loosen the rule"
    )
