"""Linear probe: fit a classification head on frozen embeddings with scikit-learn's logistic regression.

Fine-tuning from a random head distorts pretrained features while the head is still noise
(Kumar et al., 2022, "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution"); starting from the head a logistic regression fits on the frozen embeddings
avoids that, and the same head on the untouched encoder is the frozen baseline that
``labelspace train`` keeps as a candidate to ship.

What is fitted, by head kind (``LogisticRegression(C=C, max_iter=max_iter)``, lbfgs, the
intercept not penalised):

- ``"multi_label"``: one binary logistic regression per label; the head's weight row and bias
  are its coefficients and intercept, so ``head.predict_proba`` equals sklearn's
  ``predict_proba(...)[:, 1]``. A label that is always (or never) present in the training data
  cannot be fitted: it gets weight 0 and the bias ``logit((positives + 0.5) / (n + 1))``.
- ``"single_label"``: one multinomial logistic regression over the classes seen in training (its
  softmax equals sklearn's; with two classes the single binary coefficient row ``w`` becomes
  ``+w/2`` and ``-w/2``). A class never seen gets weight 0 and a bias ``log(n + 1)`` below the
  smallest logit of any seen class on any training text.
- a head with a hidden layer: only the last layer is fitted, on the hidden features of the
  (randomly initialised, frozen) first layer; the first layer keeps its initialisation.
- ``"regression"``: not a classifier; `fit_probe` refuses it.

Example:
    >>> import numpy as np
    >>> from labelspace.models.heads import ClassificationHead
    >>> rng = np.random.default_rng(0)
    >>> embeddings = rng.normal(size=(40, 4)).astype(np.float32)
    >>> labels = np.stack([embeddings[:, 0] > 0, embeddings[:, 1] > 0], axis=1).astype(np.float32)
    >>> head = ClassificationHead(4, 2)
    >>> fit_probe(head, embeddings, labels)
    >>> probabilities = head.predict_proba(torch.from_numpy(embeddings)).numpy()
    >>> bool(((probabilities > 0.5) == labels).mean() > 0.9)
    True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from labelspace.data.datasets import LabeledDataset
from labelspace.models.heads import ClassificationHead
from labelspace.models.model import LabelspaceModel
from labelspace.training.arguments import PROBE_C, PROBE_MAX_ITER

__all__ = ["fit_probe", "linear_probe", "probe_data"]


def _last_layer(head: ClassificationHead) -> torch.nn.Linear:
    layer = head.layers[-1]
    assert isinstance(layer, torch.nn.Linear)
    return layer


@torch.no_grad()
def _features(head: ClassificationHead, embeddings: np.ndarray) -> np.ndarray:
    """What the head's last layer sees (eval mode: no dropout): the embeddings, or the hidden features."""
    if head.hidden_dim is None:
        return np.asarray(embeddings, dtype=np.float64)
    was_training = head.training
    head.eval()
    try:
        weight = _last_layer(head).weight
        hidden = head.layers[:-1](torch.as_tensor(embeddings, dtype=weight.dtype, device=weight.device))
    finally:
        head.train(was_training)
    return hidden.double().cpu().numpy()


def _constant_logit(positives: float, total: int) -> float:
    """Log-odds of a label seen ``positives`` times in ``total`` texts, smoothed by half a count."""
    rate = (positives + 0.5) / (total + 1)
    return math.log(rate / (1 - rate))


def _fit_multi_label(features: np.ndarray, labels: np.ndarray, C: float, max_iter: int) -> tuple[np.ndarray, ...]:
    n, num_labels = labels.shape
    weights = np.zeros((num_labels, features.shape[1]))
    biases = np.zeros(num_labels)
    positives = labels.sum(axis=0)
    for label in range(num_labels):  # one independent fit per label (labels, not items)
        if 0 < positives[label] < n:
            fit = LogisticRegression(C=C, max_iter=max_iter).fit(features, labels[:, label])
            weights[label], biases[label] = fit.coef_[0], fit.intercept_[0]
        else:
            biases[label] = _constant_logit(float(positives[label]), n)
    return weights, biases


def _fit_single_label(features: np.ndarray, labels: np.ndarray, C: float, max_iter: int) -> tuple[np.ndarray, ...]:
    n, num_classes = labels.shape
    classes = labels.argmax(axis=1)
    seen = np.unique(classes)
    weights = np.zeros((num_classes, features.shape[1]))
    biases = np.zeros(num_classes)
    if len(seen) > 1:
        fit = LogisticRegression(C=C, max_iter=max_iter).fit(features, classes)
        if len(seen) == 2:  # sklearn keeps one row w for the second class: softmax([-w/2, w/2]) = sigmoid(w)
            weights[seen] = np.stack([-fit.coef_[0], fit.coef_[0]]) / 2
            biases[seen] = np.array([-fit.intercept_[0], fit.intercept_[0]]) / 2
        else:
            weights[seen], biases[seen] = fit.coef_, fit.intercept_
    unseen = np.setdiff1d(np.arange(num_classes), seen)
    if len(unseen):
        lowest = float((features @ weights[seen].T + biases[seen]).min())
        biases[unseen] = lowest - math.log(n + 1)
    return weights, biases


def fit_probe(
    head: ClassificationHead,
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    C: float = PROBE_C,
    max_iter: int = PROBE_MAX_ITER,
) -> None:
    """Set ``head``'s last layer to the logistic regression fitted on ``embeddings`` (N x input_dim) and
    ``labels`` (N x num_labels, 0/1; one 1 per row for a single-label head), in place (see the module docstring).

    ``C`` and ``max_iter`` are scikit-learn's: ``LogisticRegression(C=C, max_iter=max_iter)``.
    """
    if head.kind == "regression":
        raise ValueError("a linear probe fits classification heads; this head's kind is 'regression'")
    embeddings = np.asarray(embeddings)
    labels = np.asarray(labels, dtype=np.float64)
    if embeddings.ndim != 2 or embeddings.shape[1] != head.input_dim:
        raise ValueError(f"embeddings must be N x {head.input_dim}, got shape {embeddings.shape}")
    if labels.shape != (embeddings.shape[0], head.num_labels):
        raise ValueError(f"labels must be {embeddings.shape[0]} x {head.num_labels}, got shape {labels.shape}")
    if len(labels) == 0:
        raise ValueError("a linear probe needs at least one training text")
    if not C > 0:
        raise ValueError(f"C must be > 0, got {C!r}")
    features = _features(head, embeddings)
    fit = _fit_multi_label if head.kind == "multi_label" else _fit_single_label
    weights, biases = fit(features, labels, C, max_iter)
    layer = _last_layer(head)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weights, dtype=layer.weight.dtype))
        layer.bias.copy_(torch.as_tensor(biases, dtype=layer.bias.dtype))


def probe_data(model: LabelspaceModel, datasets: Sequence[LabeledDataset]) -> tuple[list[str], np.ndarray]:
    """The texts and dense labels of the ``datasets`` labeled over the model's labels (each dataset once)."""
    texts: list[str] = []
    blocks = []
    chosen = {id(dataset): dataset for dataset in datasets if dataset.label_set == model.label_set}
    for dataset in chosen.values():
        texts += list(dataset.texts)
        blocks.append(dataset.labels.to_dense())
    labels = np.concatenate(blocks) if blocks else np.zeros((0, model.num_labels))
    return texts, labels


def linear_probe(
    model: LabelspaceModel,
    datasets: Sequence[LabeledDataset],
    *,
    C: float = PROBE_C,
    max_iter: int = PROBE_MAX_ITER,
    batch_size: int = 64,
) -> ClassificationHead | None:
    """A copy of ``model.head`` fitted by `fit_probe` on the frozen embeddings of ``datasets`` (the ones
    labeled over the model's labels); None when the model has no classification head or no such data.

    The model itself is not changed.

    Example:
        >>> import tempfile
        >>> from labelspace.models.testing import tiny_model_folder
        >>> data = LabeledDataset.from_label_names(["a b", "b c", "c d", "d e"] * 3, [["x"], ["x", "y"], ["y"], []] * 3)
        >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=data.label_set)
        >>> head = linear_probe(model, [data])
        >>> head is not model.head, head.config() == model.head.config()
        (True, True)
    """
    if model.head is None or model.head.kind == "regression":
        return None
    texts, labels = probe_data(model, datasets)
    if not texts:
        return None
    embeddings = model.encode(texts, batch_size=batch_size, show_progress_bar=False)
    head = copy.deepcopy(model.head)
    fit_probe(head, embeddings, labels, C=C, max_iter=max_iter)
    return head
