"""PKSampler (P labels drawn inversely to their frequency x K items) and samplers in the Trainer."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import BatchSampler, SequentialSampler

from labelspace import LabelspaceModel, Trainer, TrainingArguments
from labelspace.data import LabeledDataset, LabelMatrix, TripletDataset
from labelspace.losses import BCEHeadLoss, CombinedLoss, ModelLoss, MultiSimilarityLoss, as_model_loss
from labelspace.models.testing import tiny_model_folder
from labelspace.samplers import MPerLabelSampler, PKSampler
from toy_data import TEXTS, toy_data

# ----------------------------------------------------------------------------- the sampler


def inclusion_probabilities(weights: list[float], draws: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact P(label drawn first) and P(label among the ``draws`` labels) of successive weighted draws
    without replacement, by enumerating every ordered sequence of labels."""
    total = sum(weights)
    first = np.array(weights) / total
    included = np.zeros(len(weights))
    for sequence in itertools.permutations(range(len(weights)), draws):
        probability, left = 1.0, total
        for label in sequence:
            probability *= weights[label] / left
            left -= weights[label]
        included[list(sequence)] += probability
    return first, included


# Label 0 has 1 item, label 1 two, label 2 four, label 3 eight (one shared with label 4), label 4 sixteen.
STAT_LISTS = [[0]] + [[1]] * 2 + [[2]] * 4 + [[3]] * 7 + [[3, 4]] + [[4]] * 15
STAT_COUNTS = Counter(label for row in STAT_LISTS for label in row)


@pytest.mark.parametrize("power", [1.0, 0.0, 2.0])
def test_labels_are_drawn_with_the_exact_inverse_frequency_probabilities(power):
    labels = LabelMatrix.from_lists(STAT_LISTS, num_labels=5)
    draws, batches = 2, 6000
    sampler = PKSampler(labels, labels_per_batch=draws, per_label=2, power=power, seed=11, num_batches=batches)
    assert [STAT_COUNTS[label] for label in range(5)] == [1, 2, 4, 8, 16]
    weights = [STAT_COUNTS[label] ** -power for label in range(5)]
    first_expected, included_expected = inclusion_probabilities(weights, draws)
    np.testing.assert_allclose(sampler.label_probabilities(), first_expected, rtol=1e-12)

    chosen = np.array([labels_of_batch for _, labels_of_batch in sampler.batches_with_labels()])
    assert chosen.shape == (batches, draws)
    assert (chosen[:, 0] != chosen[:, 1]).all()
    first_seen = np.bincount(chosen[:, 0], minlength=5) / batches
    included_seen = np.bincount(chosen.ravel(), minlength=5) / batches
    # Batches are independent draws, so each frequency is Binomial(batches, p) / batches: 4.5 standard
    # deviations make a false failure about 7e-6 per label, while a wrong rule is caught (checked below).
    for seen, expected in ((first_seen, first_expected), (included_seen, included_expected)):
        tolerance = 4.5 * np.sqrt(expected * (1 - expected) / batches)
        assert np.all(np.abs(seen - expected) <= tolerance), (power, seen, expected, tolerance)
    if power > 0:  # the tolerance is tight enough to tell inverse-frequency choice from a uniform one
        uniform = np.full(5, draws / 5)
        assert np.any(np.abs(uniform - included_expected) > 10 * np.sqrt(uniform * (1 - uniform) / batches))


def test_a_rare_label_comes_with_all_its_items_instead_of_being_dropped():
    # Label 0: items 0 and 1 only; labels 1 and 2: ten items each. P=2, K=4.
    labels = LabelMatrix.from_lists([[0], [0]] + [[1]] * 10 + [[2]] * 10, num_labels=3)
    sampler = PKSampler(labels, labels_per_batch=2, per_label=4, seed=0, num_batches=300)
    with_rare = [(batch, chosen) for batch, chosen in sampler.batches_with_labels() if 0 in chosen]
    assert len(with_rare) > 200  # weights 1/2, 1/10, 1/10: label 0 is in most batches
    for batch, _ in with_rare:
        assert {0, 1} <= set(batch) and len(batch) == 2 + 4
    for batch, chosen in sampler.batches_with_labels():
        if 0 not in chosen:
            assert len(batch) == 8
    # MPerLabelSampler with m=4 never picks that label at all.
    m_per_label = MPerLabelSampler(labels, m=4, batch_size=8, seed=0, length_before_new_iter=80)
    assert not any(item in (0, 1) for batch in m_per_label for item in batch)


def test_batches_hold_no_item_twice_and_each_chosen_label_at_least_min_k_count_times():
    rng = np.random.default_rng(3)
    lists = [sorted(set(rng.choice(6, size=rng.integers(1, 4)).tolist())) for _ in range(40)]
    lists += [[6], [6, 0], [7]]  # rare labels, one overlapping a frequent one
    lists += [[]] * 5  # unlabelled items are never drawn
    labels = LabelMatrix.from_lists(lists, num_labels=8)
    counts = Counter(label for row in lists for label in row)
    per_batch, per_label = 3, 4
    sampler = PKSampler(labels, labels_per_batch=per_batch, per_label=per_label, seed=5, num_batches=400)
    for batch, chosen in sampler.batches_with_labels():
        assert len(batch) == len(set(batch)) and len(batch) <= per_batch * per_label
        assert len(set(chosen)) == per_batch
        assert all(lists[item] for item in batch)
        for label in chosen:
            carrying = sum(label in lists[item] for item in batch)
            assert carrying >= min(per_label, counts[label]), (batch, chosen, label)
        # every item was drawn for one of the chosen labels
        assert all(set(lists[item]) & set(chosen) for item in batch)


def test_default_epoch_length_and_determinism():
    labels = toy_data(repeat=5).labels  # 40 labelled items
    sampler = PKSampler(labels, labels_per_batch=2, per_label=3, seed=1)
    assert len(sampler) == math.ceil(40 / 6) == len(list(sampler))
    again = PKSampler(labels, labels_per_batch=2, per_label=3, seed=1)
    assert list(sampler) == list(again)
    other_seed = PKSampler(labels, labels_per_batch=2, per_label=3, seed=2)
    assert list(other_seed) != list(sampler)
    first_epoch = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first_epoch
    sampler.set_epoch(0)
    assert list(sampler) == first_epoch


def test_resume_mid_epoch_gives_exactly_the_remaining_batches():
    labels = toy_data(repeat=10).labels
    uninterrupted = PKSampler(labels, labels_per_batch=2, per_label=4, seed=7)
    uninterrupted.set_epoch(3)
    expected = list(uninterrupted)
    sampler = PKSampler(labels, labels_per_batch=2, per_label=4, seed=7)
    sampler.set_epoch(3)
    iterator = iter(sampler)
    head = [next(iterator) for _ in range(4)]
    state = json.loads(json.dumps(sampler.state_dict()))
    assert state["batches_yielded"] == 4 and state["labels_per_batch"] == 2 and state["per_label"] == 4
    resumed = PKSampler(labels, labels_per_batch=2, per_label=4, seed=0)
    resumed.load_state_dict(state)
    resumed.set_epoch(3)
    assert head + list(resumed) == expected
    # Same batch size, other shape: refused instead of giving other batches.
    with pytest.raises(ValueError, match="labels_per_batch=2, this one has labels_per_batch=4"):
        PKSampler(labels, labels_per_batch=4, per_label=2).load_state_dict(state)


def test_bad_arguments_are_clear_errors():
    labels = LabelMatrix.from_lists([[0], [1], [1]], num_labels=3)
    with pytest.raises(ValueError, match=r"labels_per_batch \(3\) is larger than the number of labels with at least"):
        PKSampler(labels, labels_per_batch=3, per_label=2)
    with pytest.raises(ValueError, match="per_label must be >= 1"):
        PKSampler(labels, labels_per_batch=1, per_label=0)
    with pytest.raises(ValueError, match="power must be a finite number >= 0"):
        PKSampler(labels, labels_per_batch=1, per_label=1, power=-1.0)


# ----------------------------------------------------------------------------- in the Trainer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("tiny") / "model")


def new_model(folder: Path, data: LabeledDataset) -> LabelspaceModel:
    return LabelspaceModel.from_pretrained(folder, labels=data.label_set, seed=0)


class RecordingLoss(ModelLoss):
    """Wraps a loss and records the texts of every batch it is called on."""

    def __init__(self, inner: ModelLoss) -> None:
        super().__init__()
        self.inner = inner
        self.batch_kinds = inner.batch_kinds
        self.batches: list[list[str]] = []

    def forward(self, model, batch, cache=None):
        self.batches.append(list(batch.texts))
        return self.inner(model, batch, cache)


def test_pk_arguments_set_the_batch_size_and_are_validated():
    args = TrainingArguments(sampler="pk", labels_per_batch=3, per_label=5, batch_size=64)
    assert args.batch_size == 15 and args.pk_shape() == (3, 5)
    assert TrainingArguments(sampler="pk", batch_size=32).pk_shape() == (8, 4)
    with pytest.raises(ValueError, match=r"batch_size \(30\) must be a multiple of per_label \(4\)"):
        TrainingArguments(sampler="pk", batch_size=30)
    with pytest.raises(ValueError, match="labels_per_batch must be a positive integer"):
        TrainingArguments(sampler="pk", labels_per_batch=0, per_label=4)
    with pytest.raises(ValueError, match="per_label must be a positive integer"):
        TrainingArguments(sampler="pk", labels_per_batch=2, per_label=1.5)
    with pytest.raises(ValueError, match="labels_per_batch is set but no dataset uses sampler='pk'"):
        TrainingArguments(sampler="random", labels_per_batch=2)


def test_trainer_with_pk_sampler_learns(tiny):
    data = toy_data()
    model = new_model(tiny, data)
    args = TrainingArguments(
        sampler="pk",
        labels_per_batch=2,
        per_label=4,
        max_steps=40,
        learning_rate=2e-3,
        head_learning_rate=2e-2,
        logging_steps=1,
        show_progress_bar=False,
    )
    loss = RecordingLoss(as_model_loss(CombinedLoss([(MultiSimilarityLoss(), 1.0), (BCEHeadLoss(), 1.0)])))
    trainer = Trainer(model, data, loss, args=args)
    trainer.train()
    sampler = trainer.samplers["train"]
    assert isinstance(sampler, PKSampler) and (sampler.labels_per_batch, sampler.per_label) == (2, 4)
    # The batches trained on are the PKSampler's, epoch after epoch (4 batches of at most 2 x 4 per epoch).
    reference = PKSampler(data.labels, labels_per_batch=2, per_label=4, seed=args.seed)
    expected = []
    for epoch in range(10):
        reference.set_epoch(epoch)
        expected += [[data.texts[i] for i in batch] for batch in reference]
    assert loss.batches == expected and all(len(batch) <= 8 for batch in expected)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 40 and np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_pk_needs_labels(tiny):
    data = toy_data()
    triplets = TripletDataset(TEXTS[:4], TEXTS[4:], TEXTS[2:6])
    args = TrainingArguments(sampler="pk", labels_per_batch=2, per_label=2, max_steps=1, show_progress_bar=False)
    trainer = Trainer(new_model(tiny, data), triplets, args=args)
    with pytest.raises(ValueError, match="sampler='pk' needs labeled data .* 'train' is a TripletDataset"):
        trainer.train()


@pytest.mark.parametrize("kind", ["list", "torch"])
def test_trainer_uses_exactly_the_batches_of_a_user_sampler(tiny, kind):
    data = toy_data()  # 32 texts
    if kind == "list":
        sampler = [[5, 1, 30], [2, 2, 9, 31], [0]]
        expected = sampler
    else:
        sampler = BatchSampler(SequentialSampler(range(len(data))), batch_size=10, drop_last=False)
        expected = [list(range(0, 10)), list(range(10, 20)), list(range(20, 30)), [30, 31]]
    args = TrainingArguments(sampler=sampler, num_epochs=2, show_progress_bar=False)
    assert json.loads(json.dumps(args.to_dict()))["sampler"] == type(sampler).__name__
    loss = RecordingLoss(as_model_loss(BCEHeadLoss()))
    output = Trainer(new_model(tiny, data), data, loss, args=args).train()
    assert output.global_step == 2 * len(expected)
    assert loss.batches == [[data.texts[i] for i in batch] for batch in expected] * 2


def test_user_samplers_per_dataset_and_bad_batches_are_clear_errors(tiny):
    data = toy_data()
    model = new_model(tiny, data)
    other = toy_data(repeat=1)
    losses = {"a": RecordingLoss(as_model_loss(BCEHeadLoss())), "b": RecordingLoss(as_model_loss(BCEHeadLoss()))}
    args = TrainingArguments(
        sampler={"a": [[3, 4]], "b": "random"}, batch_size=4, num_epochs=1, show_progress_bar=False
    )
    assert args.to_dict()["sampler"] == {"a": "list", "b": "random"}
    Trainer(model, {"a": data, "b": other}, losses, args=args).train()
    assert losses["a"].batches == [[data.texts[3], data.texts[4]]]
    assert sorted(t for batch in losses["b"].batches for t in batch) == sorted(other.texts)

    def run(sampler, datasets=None):
        args = TrainingArguments(sampler=sampler, max_steps=2, show_progress_bar=False)
        Trainer(model, datasets or data, BCEHeadLoss(), args=args).train()

    with pytest.raises(
        ValueError, match=r"train dataset 'train' \(list\) gave item index 32, outside the dataset's 32"
    ):
        run([[0, 32]])
    with pytest.raises(ValueError, match=r"\(list\) gave item index -1"):
        run([[-1, 2]])
    with pytest.raises(ValueError, match="expected a non-empty list of integer item indices"):
        run([[0.5, 1.0]])
    with pytest.raises(ValueError, match="expected a non-empty list of integer item indices"):
        run([[]])
    with pytest.raises(ValueError, match="give a dict dataset name -> sampler"):
        run([[0]], {"a": data, "b": data})
    with pytest.raises(ValueError, match="missing: \\['b'\\]"):
        run({"a": [[0]]}, {"a": data, "b": data})
    with pytest.raises(ValueError, match="or a sampler object .* got a int"):
        TrainingArguments(sampler=42)
    with pytest.raises(ValueError, match="sampler must be one of .*pk.* got 'nope'"):
        TrainingArguments(sampler="nope")

    class Short:  # promises 3 batches, gives 1
        def __iter__(self):
            return iter([[0, 1]])

        def __len__(self):
            return 3

    with pytest.raises(ValueError, match=r"\(Short\) ran out of batches before the 3 its len\(\) promised"):
        run(Short())


def run_with_resume(tiny, tmp_path, sampler, *, steps: int, resume: bool):
    data = toy_data()
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        sampler=sampler,
        labels_per_batch=2 if sampler == "pk" else None,
        per_label=3 if sampler == "pk" else None,
        max_steps=steps,
        save_steps=1,
        show_progress_bar=False,
        seed=4,
    )
    loss = RecordingLoss(as_model_loss(BCEHeadLoss()))
    trainer = Trainer(new_model(tiny, data), data, loss, args=args)
    trainer.train(resume_from_checkpoint=resume)
    return loss.batches


def test_resume_continues_with_the_same_batches_for_pk_and_for_a_plain_user_sampler(tiny, tmp_path):
    plain = [[i, i + 1, i + 2] for i in range(0, 30, 3)]  # no state_dict: skipped ahead on resume
    for name, sampler in (("pk", "pk"), ("plain", plain)):
        folder = tmp_path / name
        expected = run_with_resume(tiny, folder / "a", sampler, steps=5, resume=False)
        assert len(expected) == 5
        first = run_with_resume(tiny, folder / "b", sampler, steps=2, resume=False)
        assert first == expected[:2]
        if name == "pk":
            state = json.loads(
                (folder / "b" / "run" / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text()
            )
            assert state["samplers"]["train"]["sampler"] == "PKSampler"
            rest = run_with_resume(tiny, folder / "b", sampler, steps=5, resume=True)
        else:
            with pytest.warns(UserWarning, match=r"'train' \(list\) has no state_dict/load_state_dict"):
                rest = run_with_resume(tiny, folder / "b", sampler, steps=5, resume=True)
        assert rest == expected[2:]


def test_a_stateful_user_sampler_is_saved_and_restored(tiny, tmp_path):
    class Counting:
        """Gives batch [k, k + 1] for k = 0, 1, ...; its position is its whole state."""

        def __init__(self) -> None:
            self.position = 0
            self.loaded: list[dict] = []

        def __iter__(self):
            while self.position < 6:
                self.position += 1
                yield [self.position - 1, self.position]
            self.position = 0

        def __len__(self):
            return 6

        def state_dict(self):
            return {"position": self.position}

        def load_state_dict(self, state):
            self.loaded.append(state)
            self.position = state["position"]

    data = toy_data()
    args = TrainingArguments(
        output_dir=str(tmp_path), sampler=Counting(), max_steps=3, save_steps=1, show_progress_bar=False
    )
    loss = RecordingLoss(as_model_loss(BCEHeadLoss()))
    Trainer(new_model(tiny, data), data, loss, args=args).train()
    assert loss.batches == [[data.texts[k], data.texts[k + 1]] for k in range(3)]
    resumed_sampler = Counting()
    args = TrainingArguments(
        output_dir=str(tmp_path), sampler=resumed_sampler, max_steps=5, save_steps=1, show_progress_bar=False
    )
    loss = RecordingLoss(as_model_loss(BCEHeadLoss()))
    Trainer(new_model(tiny, data), data, loss, args=args).train(resume_from_checkpoint=True)
    assert resumed_sampler.loaded == [{"position": 3}]
    assert loss.batches == [[data.texts[k], data.texts[k + 1]] for k in (3, 4)]
