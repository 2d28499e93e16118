"""Sampler choice and multi-dataset scheduling: build_sampler, MultiDatasetSchedule, checked_batch, sampler_state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from labelspace.data import LabeledDataset, PairDataset, TripletDataset
from labelspace.data.builtin import demo
from labelspace.samplers import (
    MULTI_DATASET_SAMPLING,
    SAMPLERS,
    LengthGroupedSampler,
    MPerLabelSampler,
    MultiDatasetSchedule,
    MultiLabelBalancedSampler,
    NoDuplicatesSampler,
    PKSampler,
    build_sampler,
    checked_batch,
    has_state,
    sampler_state,
)

BATCH = 8


@pytest.fixture(scope="module")
def train() -> LabeledDataset:
    return demo("train")  # 480 labelled items, 12 labels with 37 to 128 items each


def build(choice, dataset, **overrides):
    options = {"batch_size": BATCH, "seed": 0, "m_per_label": 2, "per_label": 4, "dataset_name": "news"}
    return build_sampler(choice, dataset, **{**options, **overrides})


def test_every_name_is_built():
    assert set(SAMPLERS) == {"random", "no_duplicates", "m_per_label", "balanced", "length_grouped", "pk"}


def test_the_names_load_without_torch_and_the_package_exports_everything():
    code = (
        "import sys\n"
        "from labelspace.samplers.names import MULTI_DATASET_SAMPLING, SAMPLERS, check_sampler_choice\n"
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'names imported torch or numpy'\n"
        "import labelspace.samplers as samplers\n"
        "assert 'torch' not in sys.modules, 'the package imported torch eagerly'\n"
        "missing = [name for name in samplers.__all__ if getattr(samplers, name, None) is None]\n"
        "assert not missing, missing\n"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    result = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": src}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("choice", ["random", "length_grouped", "no_duplicates"])
def test_text_samplers_cover_every_item_once_in_full_batches(train, choice):
    sampler = build(choice, train)
    expected = {"random": LengthGroupedSampler, "length_grouped": LengthGroupedSampler}
    assert type(sampler) is expected.get(choice, NoDuplicatesSampler)
    if choice != "no_duplicates":
        assert sampler.mega_batch_factor == {"random": 1, "length_grouped": 50}[choice]
    batches = list(sampler)
    assert len(batches) == len(sampler) == 480 // BATCH
    assert all(len(batch) == BATCH for batch in batches)
    assert sorted(i for batch in batches for i in batch) == list(range(480))


def test_random_is_a_plain_shuffle_and_length_grouped_sorts_within_mega_batches(train):
    lengths = np.array([len(text) for text in train.texts])
    random_batches = list(build("random", train, batch_size=4))
    grouped_batches = list(build("length_grouped", train, batch_size=4))

    def spread(batches):  # mean length range inside a batch
        return float(np.mean([np.ptp(lengths[batch]) for batch in batches]))

    # Sorting 200 items by length before cutting batches of 4 leaves far less spread than a shuffle.
    assert spread(grouped_batches) < 0.25 * spread(random_batches)


def test_drop_last_drops_the_short_batch(train):
    keep = list(build("random", train, batch_size=7))
    drop = list(build("random", train, batch_size=7, drop_last=True))
    assert sorted(len(b) for b in keep) == [480 - 68 * 7] + [7] * 68
    assert [len(b) for b in drop] == [7] * 68
    no_dup = list(build("no_duplicates", train, batch_size=7, drop_last=True))
    assert [len(b) for b in no_dup] == [7] * 68


def test_m_per_label_gives_p_labels_with_m_items_each(train):
    sampler = build("m_per_label", train)
    assert type(sampler) is MPerLabelSampler and (sampler.m, sampler.batch_size) == (2, BATCH)
    dense = train.labels.to_dense()
    for batch, labels in sampler.batches_with_labels():
        assert len(batch) == BATCH == len(set(batch)) and len(labels) == BATCH // 2
        for position, label in enumerate(labels):
            assert dense[batch[2 * position : 2 * position + 2], label].all()


def test_pk_gives_batch_size_over_k_labels_and_k_items(train):
    sampler = build("pk", train, batch_size=12, per_label=3)
    assert type(sampler) is PKSampler
    assert (sampler.labels_per_batch, sampler.per_label) == (4, 3)
    assert len(sampler) == 480 // 12  # ceil(labelled items / (P * K))
    dense = train.labels.to_dense()
    for batch, labels in sampler.batches_with_labels():
        assert len(batch) == len(set(batch)) == 12  # every demo label has >= 37 items: full batches
        assert len(set(labels)) == 4
        assert all(dense[batch, label].sum() >= 3 for label in labels)


def test_balanced_gives_full_batches_of_distinct_items(train):
    sampler = build("balanced", train)
    assert type(sampler) is MultiLabelBalancedSampler
    batches = list(sampler)
    assert len(batches) == 480 // BATCH
    assert all(len(batch) == len(set(batch)) == BATCH for batch in batches)


def test_pairs_and_triplets_use_their_first_texts():
    pairs = PairDataset(["a", "b", "a", "c"], ["x", "y", "z", "w"], [1.0, 1.0, 1.0, 1.0])
    sampler = build("no_duplicates", pairs, batch_size=2)
    assert sampler.texts == ["a", "b", "a", "c"]
    assert all(len({pairs.text1[i] for i in batch}) == len(batch) for batch in sampler)
    triplets = TripletDataset(["q1", "q2", "q3"], ["p1", "p2", "p3"], ["n1", "n2", "n3"])
    assert build("random", triplets, batch_size=2).texts == ["q1", "q2", "q3"]


def test_a_sampler_object_is_used_as_it_is(train):
    mine = [[0, 1], [2, 3]]
    assert build(mine, train) is mine


def test_errors_name_the_dataset(train):
    pairs = PairDataset(["a", "b"], ["c", "d"], [1.0, 0.0])
    with pytest.raises(ValueError, match=r"sampler='pk' needs labeled data .* dataset 'news' is a PairDataset"):
        build("pk", pairs)
    triplets = TripletDataset(["a"], ["b"], ["c"])
    with pytest.raises(ValueError, match=r"sampler='balanced' needs labeled data .* 'news' is a TripletDataset"):
        build("balanced", triplets)
    with pytest.raises(ValueError, match=r"sampler of train dataset 'news' must be one of random, .* got 'fast'"):
        build("fast", train)
    with pytest.raises(ValueError, match=r"the sampler of train dataset 'news' \(list\) has no batches"):
        build([], train)
    with pytest.raises(ValueError, match=r"train dataset 'news' must be one of .* got a dict"):
        build({"news": "random"}, train)
    with pytest.raises(ValueError, match=r"train dataset 'news': batch_size \(8\) must be a multiple of m \(3\)"):
        build("m_per_label", train, m_per_label=3)
    with pytest.raises(ValueError, match=r"'news': with sampler='pk', batch_size \(10\) must be a multiple of per_"):
        build("pk", train, batch_size=10)
    with pytest.raises(ValueError, match=r"'news': sampler='m_per_label' needs m_per_label"):
        build("m_per_label", train, m_per_label=None)
    with pytest.raises(TypeError, match=r"train dataset 'news' is a list: expected a LabeledDataset"):
        build("random", ["a", "b"])


# ----------------------------------------------------------------------------- the schedule


THREE = {"a": [[0]] * 3, "b": [[0]] * 2, "c": [[0]]}


def test_proportional_schedule_matches_the_trainers_order():
    # Written out from Trainer._schedule before the move: resumed runs depend on this exact order.
    assert MultiDatasetSchedule(THREE, "proportional", seed=0).epoch(1) == ["b", "a", "a", "b", "a", "c"]
    assert MultiDatasetSchedule(THREE, "proportional", seed=7).epoch(2) == ["c", "a", "b", "a", "a", "b"]


def test_proportional_schedule_is_reproducible_and_changes_with_the_epoch():
    samplers = {"a": [[0]] * 30, "b": [[0]] * 20, "c": [[0]] * 5}
    schedule = MultiDatasetSchedule(samplers, "proportional", seed=3)
    orders = [schedule.epoch(epoch) for epoch in range(4)]
    assert orders == [MultiDatasetSchedule(samplers, "proportional", seed=3).epoch(e) for e in range(4)]
    assert all(Counter(order) == {"a": 30, "b": 20, "c": 5} for order in orders)
    assert len({tuple(order) for order in orders}) == 4
    assert schedule.epoch(0) != MultiDatasetSchedule(samplers, "proportional", seed=4).epoch(0)
    assert schedule.batches_per_epoch == 55


def test_round_robin_takes_turns_until_the_smallest_runs_out():
    schedule = MultiDatasetSchedule(THREE, "round_robin", seed=0)
    assert schedule.epoch(0) == schedule.epoch(5) == ["a", "b", "c"]
    two = MultiDatasetSchedule({"x": [[0]] * 4, "y": [[0]] * 2}, "round_robin", seed=0)
    assert two.epoch(0) == ["x", "y", "x", "y"] and two.batches_per_epoch == 4


@pytest.mark.parametrize("mode", MULTI_DATASET_SAMPLING)
def test_one_dataset_gives_its_batches_in_order(mode):
    schedule = MultiDatasetSchedule({"only": [[0]] * 3}, mode, seed=1)
    assert schedule.epoch(2) == ["only"] * 3 and schedule.batches_per_epoch == 3


def test_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode must be one of proportional, round_robin, got 'random'"):
        MultiDatasetSchedule(THREE, "random", seed=0)
    with pytest.raises(ValueError, match="non-empty dict"):
        MultiDatasetSchedule({}, "proportional", seed=0)
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        MultiDatasetSchedule(THREE, "proportional", seed=0).epoch(-1)


# ----------------------------------------------------------------------------- batches and state


def test_checked_batch_accepts_lists_arrays_and_tensors():
    assert checked_batch([2, 0], 3, "src") == [2, 0]
    assert checked_batch(np.array([1], dtype=np.int32), 3, "src") == [1]
    assert checked_batch(torch.tensor([0, 2]), 3, "src") == [0, 2]


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        ([], r"src gave a batch of shape \(0,\)"),
        ([[0, 1]], r"src gave a batch of shape \(1, 2\)"),
        ([0.0, 1.0], r"dtype float64: expected a non-empty list of integer item indices"),
        ([0, 3], r"src gave item index 3, outside the dataset's 3 items \(0 to 2\)"),
        ([-1, 0], r"src gave item index -1, outside"),
        ([[0], [1, 2]], r"src gave a batch that is not a list of integer item indices"),
    ],
)
def test_checked_batch_names_the_source_of_a_bad_batch(indices, message):
    with pytest.raises(ValueError, match=message):
        checked_batch(indices, 3, "src")


class _NumpyState:
    """A user sampler whose state holds NumPy and torch values."""

    def __iter__(self):
        return iter([[0]])

    def __len__(self):
        return 1

    def state_dict(self):
        return {"position": np.int64(3), "weights": torch.tensor([0.5, 1.0]), "mask": np.array([True, False])}

    def load_state_dict(self, state):
        pass


def test_sampler_state_is_json_ready_or_names_a_stateless_sampler(train):
    assert has_state(_NumpyState()) and not has_state([[0]])
    state = sampler_state(_NumpyState())
    assert json.loads(json.dumps(state)) == {"position": 3, "weights": [0.5, 1.0], "mask": [True, False]}
    assert sampler_state([[0]]) == {"sampler": "list", "stateless": True}
    sampler = build("pk", train)
    next(iter(sampler))
    assert sampler_state(sampler) == {
        "sampler": "PKSampler",
        "seed": 0,
        "epoch": 0,
        "batches_yielded": 1,
        "labels_per_batch": 2,
        "per_label": 4,
        "power": 1.0,
        "num_batches": 60,
    }
