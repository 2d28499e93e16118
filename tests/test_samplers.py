"""Batch samplers: label rates, P x K structure, no duplicates, determinism, resume, length grouping."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from labelspace.data import LabeledDataset, LabelMatrix, LabelSet
from labelspace.samplers import (
    LengthGroupedSampler,
    MPerLabelSampler,
    MultiLabelBalancedSampler,
    NoDuplicatesSampler,
)


def skewed_labels(n: int = 4000, num_labels: int = 20, seed: int = 0) -> LabelMatrix:
    """Zipf-like multi-label data: label 0 on about half the items, the last ones on ~1%; some items unlabelled."""
    rng = np.random.default_rng(seed)
    rates = 0.5 * np.arange(1, num_labels + 1, dtype=float) ** -1.3
    dense = (rng.random((n, num_labels)) < rates).astype(np.uint8)
    return LabelMatrix.from_dense(dense)


def repeated_texts(n: int = 600, distinct: int = 40, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = [f"text number {i} " + "x" * int(rng.integers(0, 200)) for i in range(distinct)]
    # A few very frequent texts plus a tail.
    picks = rng.choice(distinct, size=n, p=np.arange(distinct, 0, -1) / np.arange(distinct, 0, -1).sum())
    return [words[i] for i in picks]


def make_samplers():
    labels = skewed_labels(1200, 12)
    texts = repeated_texts(500)
    return {
        "mper": lambda seed: MPerLabelSampler(labels, m=4, batch_size=16, seed=seed),
        "balanced": lambda seed: MultiLabelBalancedSampler(labels, batch_size=16, seed=seed, num_batches=30),
        "nodup": lambda seed: NoDuplicatesSampler(texts, batch_size=16, seed=seed),
        "nodup_len": lambda seed: NoDuplicatesSampler(
            texts, batch_size=16, seed=seed, group_by_length=True, mega_batch_factor=4
        ),
        "length": lambda seed: LengthGroupedSampler(texts, batch_size=16, seed=seed, mega_batch_factor=4),
    }


SAMPLERS = make_samplers()


# ----------------------------------------------------------------------------- label rates


def test_balanced_sampler_lifts_rare_labels_to_near_uniform():
    labels = skewed_labels()
    counts = labels.label_counts()
    data_share = counts / counts.sum()
    sampler = MultiLabelBalancedSampler(labels, batch_size=64, seed=1, num_batches=100)
    drawn = np.concatenate([np.asarray(ls) for _, ls in sampler.batches_with_labels()])
    draw_share = np.bincount(drawn, minlength=labels.num_labels) / len(drawn)
    uniform = 1 / labels.num_labels
    rare = np.argsort(counts)[:5]
    assert np.all(draw_share[rare] > 3 * data_share[rare])
    assert np.allclose(draw_share, uniform, atol=0.2 * uniform)

    # Item-level view: the rarest labels are carried by far more sampled items than with plain random batches.
    dense = labels.to_dense()
    sampled = np.concatenate([np.asarray(b) for b in sampler])
    random_items = np.random.default_rng(0).choice(len(labels), size=len(sampled), replace=True)
    balanced_rate = dense[sampled][:, rare].sum(0)
    random_rate = dense[random_items][:, rare].sum(0)
    assert np.all(balanced_rate > 3 * random_rate)


def test_balanced_sampler_batches_are_distinct_labelled_items():
    labels = skewed_labels(500, 8)
    unlabelled = set(np.flatnonzero(labels.cardinality() == 0).tolist())
    sampler = MultiLabelBalancedSampler(labels, batch_size=32, seed=0)
    assert len(sampler) == (len(labels) - len(unlabelled)) // 32
    for batch, drawn in sampler.batches_with_labels():
        assert len(batch) == 32 == len(set(batch)) == len(drawn)
        assert not set(batch) & unlabelled
        for item, label in zip(batch, drawn, strict=True):
            assert label in labels.row(item)


def test_balanced_sampler_tiny_labels_do_not_repeat_items():
    # Label 1 has a single item: it can appear at most once per batch even though it is drawn often.
    labels = LabelMatrix.from_lists([[0]] * 40 + [[1]] + [[2]] * 3, num_labels=3)
    for batch in MultiLabelBalancedSampler(labels, batch_size=20, seed=3, num_batches=20):
        assert len(batch) == len(set(batch)) == 20


class CountingGenerator:
    """A numpy Generator that counts its calls and the values each method drew."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.calls, self.drawn = rng, Counter(), Counter()

    def __getattr__(self, name):
        method = getattr(self.rng, name)

        def counted(*args, **kwargs):
            result = method(*args, **kwargs)
            self.calls[name] += 1
            self.drawn[name] += int(np.size(result))
            return result

        return counted


def test_balanced_sampler_draws_labels_in_chunks(monkeypatch):
    # The work per batch (not a wall-clock bound, which a loaded machine breaks): labels are drawn in numpy chunks
    # of 16, so a batch of 64 takes 4 draws of labels and 4 of items, each after one O(labels) weight update; an
    # item already in the batch is redrawn (a scan of its label's items at worst) for a few percent of draws.
    sampler = MultiLabelBalancedSampler(skewed_labels(20000, 28), batch_size=64, seed=0, num_batches=200)
    rng = CountingGenerator(sampler._rng(0))
    monkeypatch.setattr(sampler, "_rng", lambda epoch: rng)
    redraws = []
    redraw = MultiLabelBalancedSampler._redraw
    monkeypatch.setattr(MultiLabelBalancedSampler, "_redraw", staticmethod(lambda *a: redraws.append(1) or redraw(*a)))
    assert [len(batch) for batch in sampler] == [64] * 200
    assert 200 * 4 <= rng.calls["choice"] <= 200 * 5 and rng.drawn["choice"] <= 16 * rng.calls["choice"]
    assert rng.calls["random"] == rng.calls["choice"]
    assert len(redraws) <= 0.02 * 200 * 64


# ----------------------------------------------------------------------------- P x K


@pytest.mark.parametrize(("m", "batch_size"), [(2, 8), (4, 32), (1, 5)])
def test_mper_label_structure(m, batch_size):
    labels = skewed_labels(2000, 16)
    unlabelled = set(np.flatnonzero(labels.cardinality() == 0).tolist())
    sampler = MPerLabelSampler(labels, m=m, batch_size=batch_size, seed=0)
    assert len(sampler) == (len(labels) - len(unlabelled)) // batch_size
    plans = sampler.batches_with_labels()
    assert [b for b, _ in plans] == list(sampler)
    for batch, chosen in plans:
        assert len(batch) == batch_size == len(set(batch))
        assert len(chosen) == len(set(chosen)) == batch_size // m
        assert not set(batch) & unlabelled
        for i, label in enumerate(chosen):
            for item in batch[i * m : (i + 1) * m]:
                assert label in labels.row(item)


def test_mper_label_skips_labels_with_fewer_than_m_items():
    # Label 2 has only 2 items; with m=3 it is never chosen.
    labels = LabelMatrix.from_lists([[0]] * 10 + [[1]] * 10 + [[2]] * 2 + [[3]] * 10, num_labels=4)
    sampler = MPerLabelSampler(labels, m=3, batch_size=6, seed=0, length_before_new_iter=300)
    assert len(sampler) == 50
    used = {label for _, chosen in sampler.batches_with_labels() for label in chosen}
    assert used == {0, 1, 3}


def test_mper_label_accepts_dataset_and_validates():
    dataset = LabeledDataset.from_label_names([f"t{i}" for i in range(12)], [["a"], ["b"], ["a", "b"], ["c"]] * 3)
    sampler = MPerLabelSampler(dataset, m=2, batch_size=4)
    assert all(len(batch) == 4 for batch in sampler)
    with pytest.raises(ValueError, match="multiple of m"):
        MPerLabelSampler(dataset, m=3, batch_size=4)
    with pytest.raises(ValueError, match=r"m \* number of usable labels"):
        MPerLabelSampler(dataset, m=4, batch_size=16)
    with pytest.raises(ValueError, match="length_before_new_iter"):
        MPerLabelSampler(dataset, m=2, batch_size=4, length_before_new_iter=2)
    with pytest.raises(ValueError, match="m must be"):
        MPerLabelSampler(dataset, m=0, batch_size=4)
    with pytest.raises(TypeError, match="labels must be"):
        MPerLabelSampler([[0, 1]], m=1, batch_size=1)


# ----------------------------------------------------------------------------- no duplicates


@pytest.mark.parametrize("group_by_length", [False, True])
def test_no_duplicates_sampler(group_by_length):
    texts = repeated_texts(800, 30)
    sampler = NoDuplicatesSampler(texts, batch_size=16, seed=2, group_by_length=group_by_length, mega_batch_factor=10)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(texts)))  # every item exactly once
    for batch in batches:
        assert 1 <= len(batch) <= 16
        assert len({texts[i] for i in batch}) == len(batch)
    # Few extra batches despite heavy duplication (at best: max(ceil(n / 16), copies of the most repeated text)).
    best = max(-(-len(texts) // 16), max(Counter(texts).values()))
    assert len(batches) <= 1.3 * best


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.sampled_from(["a", "b", "c", "dd", "eee", "f"]), min_size=1, max_size=60),
    batch_size=st.integers(1, 8),
    group_by_length=st.booleans(),
    seed=st.integers(0, 3),
)
def test_no_duplicates_property(texts, batch_size, group_by_length, seed):
    sampler = NoDuplicatesSampler(
        texts, batch_size=batch_size, seed=seed, group_by_length=group_by_length, mega_batch_factor=2
    )
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(texts)))
    assert all(1 <= len(b) <= batch_size and len({texts[i] for i in b}) == len(b) for b in batches)


def test_no_duplicates_single_text_and_drop_last():
    texts = ["same"] * 5 + ["other"]
    batches = list(NoDuplicatesSampler(texts, batch_size=2, seed=0))
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(len({texts[i] for i in b}) == len(b) for b in batches)
    assert all(len(b) == 2 for b in NoDuplicatesSampler(texts, batch_size=2, seed=0, drop_last=True))
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        NoDuplicatesSampler(["a", 3], batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        NoDuplicatesSampler(["a"], batch_size=0)


# ----------------------------------------------------------------------------- determinism and resume


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_determinism(name):
    make = SAMPLERS[name]
    first = list(make(0))
    assert first == list(make(0))
    assert first == list(make(0))  # iterating twice gives the same epoch
    assert first != list(make(1))
    sampler = make(0)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != first
    other = make(0)
    other.set_epoch(1)
    assert list(other) == epoch1
    if name in ("nodup", "nodup_len"):  # the number of batches may vary a little with duplicates
        assert len(sampler) == len(epoch1)
    else:
        assert len(sampler) == len(first)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_exact_resume_mid_epoch(name):
    make = SAMPLERS[name]
    reference = make(5)
    reference.set_epoch(3)
    full = list(reference)
    assert reference.state_dict()["batches_yielded"] == 0  # counter resets at the end of an epoch

    interrupted = make(5)
    interrupted.set_epoch(3)
    iterator = iter(interrupted)
    cut = len(full) // 3
    before = [next(iterator) for _ in range(cut)]
    state = interrupted.state_dict()
    assert state == {"sampler": type(interrupted).__name__, "seed": 5, "epoch": 3, "batches_yielded": cut}

    resumed = make(0)  # a fresh process with a different default seed
    resumed.load_state_dict(dict(state))
    resumed.set_epoch(3)  # a training loop calls set_epoch again: same epoch keeps the position
    after = list(resumed)
    assert before + after == full
    # The next epoch after resuming is the same as in the uninterrupted run.
    resumed.set_epoch(4)
    reference.set_epoch(4)
    assert list(resumed) == list(reference)


def test_load_state_dict_validates():
    sampler = SAMPLERS["length"](0)
    with pytest.raises(KeyError, match="epoch"):
        sampler.load_state_dict({"seed": 0, "batches_yielded": 0})
    with pytest.raises(ValueError, match="NoDuplicatesSampler"):
        sampler.load_state_dict({"sampler": "NoDuplicatesSampler", "seed": 0, "epoch": 0, "batches_yielded": 0})
    with pytest.raises(ValueError, match="batches_yielded"):
        sampler.load_state_dict({"seed": 0, "epoch": 0, "batches_yielded": 10_000})
    with pytest.raises(ValueError, match="epoch"):
        sampler.set_epoch(-1)


# ----------------------------------------------------------------------------- length grouping


def padding(texts: list[str], batches: list[list[int]]) -> int:
    return sum(max(len(texts[i]) for i in b) * len(b) - sum(len(texts[i]) for i in b) for b in batches)


def test_length_grouping_reduces_padding():
    rng = np.random.default_rng(0)
    texts = ["w" * int(n) for n in rng.integers(1, 400, size=3000)]
    grouped = list(LengthGroupedSampler(texts, batch_size=32, seed=0))
    assert sorted(i for b in grouped for i in b) == list(range(len(texts)))
    order = rng.permutation(len(texts)).tolist()
    random_batches = [order[i : i + 32] for i in range(0, len(order), 32)]
    assert padding(texts, grouped) < 0.2 * padding(texts, random_batches)

    no_dup = list(NoDuplicatesSampler(texts, batch_size=32, seed=0, group_by_length=True))
    assert padding(texts, no_dup) < 0.3 * padding(texts, random_batches)
    # Batch order is shuffled: not sorted by length across the epoch.
    first_lengths = [len(texts[b[0]]) for b in grouped]
    assert first_lengths != sorted(first_lengths, reverse=True)


def test_length_grouped_len_and_drop_last():
    texts = ["a" * i for i in range(1, 102)]
    assert len(LengthGroupedSampler(texts, batch_size=10)) == 11 == len(list(LengthGroupedSampler(texts, 10)))
    dropped = LengthGroupedSampler(texts, batch_size=10, drop_last=True)
    assert len(dropped) == 10 == len(list(dropped))
    with pytest.raises(ValueError, match="lengths"):
        LengthGroupedSampler(texts, batch_size=10, lengths=[1, 2])


# ----------------------------------------------------------------------------- DataLoader


class _Texts(torch.utils.data.Dataset):
    def __init__(self, dataset: LabeledDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return index, self.dataset.texts[index]


def _collate(items):
    return [i for i, _ in items], [t for _, t in items]


@pytest.mark.parametrize("name", ["mper", "balanced", "nodup", "length"])
def test_dataloader_integration(name):
    labels = skewed_labels(400, 6)
    texts = [f"text {i % 150} " + "y" * (i % 37) for i in range(len(labels))]
    dataset = LabeledDataset(texts, labels, LabelSet([f"l{j}" for j in range(labels.num_labels)]))
    sampler = {
        "mper": lambda: MPerLabelSampler(dataset, m=2, batch_size=8, seed=0),
        "balanced": lambda: MultiLabelBalancedSampler(dataset, batch_size=8, seed=0),
        "nodup": lambda: NoDuplicatesSampler(dataset, batch_size=8, seed=0),
        "length": lambda: LengthGroupedSampler(dataset, batch_size=8, seed=0),
    }[name]()
    loader = DataLoader(_Texts(dataset), batch_sampler=sampler, collate_fn=_collate)
    assert len(loader) == len(sampler)
    got = [indices for indices, _ in loader]
    assert got == list(sampler)
    # Worker processes get the same batches.
    loader = DataLoader(_Texts(dataset), batch_sampler=sampler, collate_fn=_collate, num_workers=2)
    assert [indices for indices, _ in loader] == got
