"""Multi-label stratified splits (iterative stratification).

`stratified_split_indices` implements the iterative stratification of Sechidis, Tsoumakas
and Vlahavas (2011), "On the stratification of multi-label data" (ECML PKDD), Algorithm 1:

1. Subset ``j`` wants ``c_j = n * r_j`` items in all and ``c_j^l = n_l * r_j`` items of each
   label ``l`` (``n_l`` = items carrying ``l``, ``r_j`` = the subset's fraction).
2. Repeatedly take the label with the fewest remaining (unassigned) items, ties broken at
   random, and give each of its remaining items to the subset that most wants that label;
   ties go to the subset that most wants items overall, then at random. Every assignment
   lowers the receiving subset's want of each label of the item, and its overall want.
3. Items with no labels are given out at the end, each to the subset that most wants items
   overall, which fills the subsets up to their desired sizes.

How it is computed. Within one label, the subset chosen at each step depends only on the
wants, not on which item is placed, so a label is settled at once with numpy: the greedy
choices are the ``n_l`` best of the candidates ``(c_j^l - s, c_j - s)``, ``s = 0, 1, ...``
(each subset's candidates only get worse, so picking the best one each time is a merge).
The Python loop runs once per label, not once per item.

Which of the label's items fills which of those slots is left open by the paper (it walks
the items in data order). We use that freedom to keep subset *sizes* on target: an item
that also carries labels still to be processed uses up some of the receiving subset's wants
for those labels, so a subset that gets many such items ends up with too few items (taken
at random, a 10% subset of 3,000 items with 1-3 labels each can end up with 282 items
instead of 300, and every label share in it is then 6% too high). Items are
therefore grouped by how many still-open labels they carry, and the groups are shared out
so that each subset's remaining label wants stay in line with its remaining item want.
Per-label counts are exactly those of the paper's algorithm for the label being processed.

As in the paper, a very rare label can miss a small subset: with fractions (0.8, 0.1, 0.1)
a label with three items wants (2.4, 0.3, 0.3) of them, and all three go to the first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from labelspace.data.datasets import LabeledDataset
from labelspace.data.labels import LabelMatrix

__all__ = ["label_shares", "stratified_split", "stratified_split_indices"]

# Wants are multiples of the fractions minus integers; rounding them to this many decimals
# makes wants that are equal on paper compare equal despite floating-point noise.
_DECIMALS = 9

# Upper bound on the swap rounds that steer one label's items (a safety net; a few suffice).
_MAX_SWAP_ROUNDS = 200


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    """Validate ``fractions`` (positive, finite, summing to 1) and return them as floats."""
    message = f"fractions must be a sequence of positive numbers summing to 1, got {fractions!r}"
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, (Sequence, np.ndarray)):
        raise ValueError(message)
    try:
        values = np.asarray([float(f) for f in fractions], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if values.size == 0:
        raise ValueError("fractions must hold at least one number, got an empty sequence")
    if not np.isfinite(values).all() or (values <= 0).any():
        raise ValueError(f"fractions must all be positive finite numbers, got {values.tolist()}")
    total = float(values.sum())
    if not math.isclose(total, 1.0, rel_tol=0.0, abs_tol=1e-6):
        raise ValueError(f"fractions must sum to 1, got {values.tolist()} (sum {total:g})")
    return values


def _greedy_counts(count: int, primary: np.ndarray, secondary: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """How many of ``count`` items each subset gets when each item in turn goes to the subset
    with the largest ``primary`` want (ties: largest ``secondary`` want, then random) and
    lowers both wants of that subset by one.

    Subset ``j``'s ``s``-th item is the candidate ``(primary[j] - s, secondary[j] - s)``; the
    greedy choices are the ``count`` best candidates. The subset with the largest primary
    want alone offers ``count`` candidates at or above ``max(primary) - count + 1``, so no
    subset needs candidates below that.
    """
    num_subsets = primary.size
    if count == 0:
        return np.zeros(num_subsets, dtype=np.int64)
    primary = np.round(primary, _DECIMALS)
    secondary = np.round(secondary, _DECIMALS)
    depth = np.floor(primary - primary.max()).astype(np.int64) + count
    depth = np.clip(depth, 0, count)
    owner = np.repeat(np.arange(num_subsets), depth)
    step = np.arange(owner.size) - np.repeat(np.cumsum(depth) - depth, depth)
    first = np.round(primary[owner] - step, _DECIMALS)
    second = np.round(secondary[owner] - step, _DECIMALS)
    tiebreak = rng.random(owner.size)
    # np.lexsort sorts by its last key first; negate to put the best candidates first.
    best = np.lexsort((-tiebreak, -second, -first))[:count]
    return np.bincount(owner[best], minlength=num_subsets).astype(np.int64)


def _interleave(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A sequence holding subset ``j`` ``counts[j]`` times, each subset spread evenly along it."""
    present = np.flatnonzero(counts)
    position = np.concatenate([(np.arange(counts[j]) + 0.5) / counts[j] for j in present])
    owner = np.repeat(present, counts[present])
    return owner[np.lexsort((rng.random(owner.size), position))]


def _share_by_open_labels(
    open_labels: np.ndarray,
    counts: np.ndarray,
    open_wants: np.ndarray,
    item_wants_after: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Decide how many items with each number of open labels each subset receives.

    Args:
        open_labels: per item (sorted ascending), how many labels still to be processed it
            carries.
        counts: items each subset receives (from the label's greedy choices).
        open_wants: per subset, the sum of its wants over the labels still to be processed.
        item_wants_after: per subset, its overall item want once this label is placed.

    Returns:
        The receiving subset of each item, aligned with ``open_labels``.

    Later items carry on average ``rate`` open labels each, whichever subset they go to, so
    subset ``j`` should keep ``rate * item_wants_after[j]`` of its open wants for later, i.e.
    take items carrying ``open_wants[j] - rate * item_wants_after[j]`` open labels in all now.
    Starting from an even mix of values in every subset, make the swap of two items between
    two subsets that brings those totals closest to their targets, while one helps.
    """
    num_subsets = counts.size
    receivers = _interleave(counts, rng)
    future_items = float(item_wants_after.sum())
    values, value_of_item = np.unique(open_labels, return_inverse=True)
    num_values = values.size
    if num_values == 1 or future_items < 0.5:
        return receivers
    mix = np.bincount(receivers * num_values + value_of_item, minlength=num_subsets * num_values).reshape(
        num_subsets, num_values
    )
    rate = (float(open_wants.sum()) - float(open_labels.sum())) / future_items
    target = open_wants - rate * item_wants_after
    # Swapping an item of value values[g] from subset a for one of value values[t] from
    # subset b moves difference[g, t] open labels from a to b.
    difference = (values[:, None] - values[None, :]).astype(np.float64)
    for _ in range(_MAX_SWAP_ROUNDS):
        error = mix @ values - target
        ea = error[:, None, None, None]
        eb = error[None, :, None, None]
        gain = np.abs(ea) + np.abs(eb) - np.abs(ea - difference) - np.abs(eb + difference)
        available = (mix > 0)[:, None, :, None] & (mix > 0)[None, :, None, :]
        gain = np.where(available & (difference > 0), gain, 0.0)
        best = int(np.argmax(gain))
        if gain.flat[best] <= 1e-9:
            break
        a, b, g, t = np.unravel_index(best, gain.shape)
        step = float(difference[g, t])
        repeats = max(1, int(min(error[a], -error[b]) // step)) if error[a] > 0 > error[b] else 1
        repeats = min(repeats, int(mix[a, g]), int(mix[b, t]))
        mix[a, g] -= repeats
        mix[b, g] += repeats
        mix[b, t] -= repeats
        mix[a, t] += repeats
    # Items are sorted by their number of open labels, in random order within each value.
    return np.concatenate([np.repeat(np.arange(num_subsets), mix[:, v]) for v in range(num_values)])


def stratified_split_indices(
    labels: LabelMatrix,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    seed: int = 0,
) -> list[np.ndarray]:
    """Split item indices into subsets that keep every label's share (iterative stratification).

    Args:
        labels: the n x L multi-hot label matrix of the items.
        fractions: the share of items each subset should get; positive, summing to 1.
        seed: seed of the random tie-breaks and item orders; the same seed gives the same
            split, another seed (almost surely) another split.

    Returns:
        One sorted int64 index array per fraction; the arrays are disjoint and together
        cover ``range(len(labels))``.

    Raises:
        ValueError: when ``fractions`` are not positive numbers summing to 1.
        TypeError: when ``labels`` is not a `LabelMatrix`.

    Example:
        >>> from labelspace.data import LabelMatrix
        >>> labels = LabelMatrix.from_lists([[0], [0], [1], [1], [0, 1], [0, 1]], num_labels=2)
        >>> first, second = stratified_split_indices(labels, (0.5, 0.5), seed=0)
        >>> len(first), len(second)
        (3, 3)
        >>> label_shares(labels, [first, second]).round(3).tolist()
        [[0.667, 0.667], [0.667, 0.667]]
    """
    if not isinstance(labels, LabelMatrix):
        raise TypeError(
            f"labels must be a LabelMatrix, got {type(labels).__name__} "
            "(build one with LabelMatrix.from_lists or LabelMatrix.from_dense)"
        )
    ratios = _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    num_items = len(labels)
    num_subsets = ratios.size
    csr = labels.to_sparse()
    csc = labels.to_csc()
    label_counts = labels.label_counts()

    item_wants = num_items * ratios  # per subset
    label_wants = ratios[:, None] * label_counts[None, :].astype(np.float64)  # subset x label
    remaining = label_counts.copy()  # unassigned items per label
    subset_of = np.full(num_items, -1, dtype=np.int64)

    while (remaining > 0).any():
        fewest = remaining[remaining > 0].min()
        tied = np.flatnonzero(remaining == fewest)
        label = int(tied[rng.integers(tied.size)])

        items = csc.indices[csc.indptr[label] : csc.indptr[label + 1]]
        items = items[subset_of[items] < 0]
        items = items[rng.permutation(items.size)]
        counts = _greedy_counts(items.size, label_wants[:, label], item_wants, rng)

        # Labels still open once this label's items are placed, and how many each item has.
        rows = csr[items]
        row_of_entry = np.repeat(np.arange(items.size), np.diff(rows.indptr))
        still_open = remaining - np.bincount(rows.indices, minlength=remaining.size) > 0
        open_labels = np.bincount(row_of_entry, weights=still_open[rows.indices], minlength=items.size).astype(np.int64)
        order = np.argsort(open_labels, kind="stable")
        items, open_labels = items[order], open_labels[order]
        receivers = _share_by_open_labels(
            open_labels,
            counts,
            label_wants[:, still_open].sum(axis=1),
            item_wants - counts,
            rng,
        )
        subset_of[items] = receivers

        entry_subsets = receivers[np.argsort(order)][row_of_entry]
        np.subtract.at(label_wants, (entry_subsets, rows.indices), 1.0)
        np.subtract.at(remaining, rows.indices, 1)
        item_wants -= counts

    unlabelled = np.flatnonzero(subset_of < 0)
    if unlabelled.size:
        unlabelled = unlabelled[rng.permutation(unlabelled.size)]
        counts = _greedy_counts(unlabelled.size, item_wants, np.zeros(num_subsets), rng)
        subset_of[unlabelled] = np.repeat(np.arange(num_subsets), counts)

    order = np.argsort(subset_of, kind="stable")
    bounds = np.searchsorted(subset_of[order], np.arange(num_subsets + 1))
    return [order[bounds[j] : bounds[j + 1]].astype(np.int64) for j in range(num_subsets)]


def stratified_split(
    dataset: LabeledDataset,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    seed: int = 0,
) -> list[LabeledDataset]:
    """Split a dataset into label-stratified parts (see `stratified_split_indices`).

    Items keep their original order within each part.

    Example:
        >>> from labelspace.data import LabeledDataset
        >>> data = LabeledDataset.from_label_names(
        ...     ["a", "b", "c", "d"], [["x"], ["x"], ["y"], ["y"]])
        >>> train, test = stratified_split(data, (0.5, 0.5), seed=1)
        >>> sorted(name for _, names in train for name in names)
        ['x', 'y']
    """
    indices = stratified_split_indices(dataset.labels, fractions, seed=seed)
    return [dataset.subset(part) for part in indices]


def label_shares(labels: LabelMatrix, splits: Sequence[np.ndarray]) -> np.ndarray:
    """The fraction of each split's items that carry each label.

    Args:
        labels: the n x L label matrix the splits index into.
        splits: index arrays, e.g. from `stratified_split_indices`.

    Returns:
        A float64 array of shape (len(splits), L); row ``j`` column ``l`` is the share of
        the items of split ``j`` that carry label ``l`` (0.0 for an empty split).

    Example:
        >>> from labelspace.data import LabelMatrix
        >>> labels = LabelMatrix.from_lists([[0], [0, 1], [1], []], num_labels=2)
        >>> label_shares(labels, [np.array([0, 1]), np.array([2, 3])]).tolist()
        [[1.0, 0.5], [0.0, 0.5]]
    """
    csr = labels.to_sparse()
    shares = np.zeros((len(splits), labels.num_labels), dtype=np.float64)
    for row, split in enumerate(splits):
        split = np.asarray(split, dtype=np.int64)
        if split.size:
            counts = np.bincount(csr[split].indices, minlength=labels.num_labels)
            shares[row] = counts / split.size
    return shares
