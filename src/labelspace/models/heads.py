"""Classification heads: embeddings (B x input_dim) to logits (B x num_labels).

A `ClassificationHead` is ``Dropout -> Linear``, or a small MLP ``Linear -> activation -> Dropout
-> Linear`` when ``hidden_dim`` is given. Its ``kind`` says how logits are read:

- ``"multi_label"``: independent labels, ``predict_proba`` is sigmoid(logits), loss `BCEHeadLoss`
  (or `FocalLoss` / `AsymmetricLoss`).
- ``"single_label"``: exactly one class, ``predict_proba`` is softmax(logits) (rows sum to 1),
  loss `SoftmaxHeadLoss`.
- ``"regression"``: real-valued outputs, ``predict_proba`` is the identity, loss
  `RegressionHeadLoss` (mean squared error).

A head is saved as ``head.safetensors`` (weights) and ``head_config.json`` (`config`); `load`
reads back only those two files, never pickle.

Example:
    >>> import tempfile, torch
    >>> head = ClassificationHead(8, 3, hidden_dim=16)
    >>> head(torch.zeros(2, 8)).shape
    torch.Size([2, 3])
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     head.save(folder)
    ...     again = ClassificationHead.load(folder)
    >>> again.config() == head.config()
    True
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from labelspace.files import atomic_write, atomic_write_text
from labelspace.losses.head import BCEHeadLoss, HeadLoss, RegressionHeadLoss, SoftmaxHeadLoss
from labelspace.models.folder_io import read_json, read_safetensors

HeadKind = Literal["multi_label", "single_label", "regression"]
HEAD_KINDS = ("multi_label", "single_label", "regression")
ACTIVATIONS = {"gelu": torch.nn.GELU, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "silu": torch.nn.SiLU}
WEIGHTS_FILE = "head.safetensors"
CONFIG_FILE = "head_config.json"
CONFIG_FORMAT = "labelspace.classification_head"
CONFIG_VERSION = 1
CONFIG_KEYS = ("input_dim", "num_labels", "kind", "hidden_dim", "dropout", "activation")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class ClassificationHead(torch.nn.Module):
    """A linear or MLP head over sentence embeddings.

    Args:
        input_dim: embedding size.
        num_labels: number of outputs (labels, classes or regression targets).
        kind: ``"multi_label"`` (sigmoid), ``"single_label"`` (softmax) or ``"regression"`` (identity).
        hidden_dim: None for a single linear layer; an int for
            ``Linear(input_dim, hidden_dim) -> activation -> Dropout(dropout) -> Linear(hidden_dim, num_labels)``.
        dropout: dropout probability: on the input embeddings of the linear head, after the
            activation of the MLP head.
        activation: ``"gelu"``, ``"relu"``, ``"tanh"`` or ``"silu"`` (MLP only).

    Example:
        >>> import torch
        >>> head = ClassificationHead(4, 3, kind="single_label")
        >>> probabilities = head.predict_proba(torch.randn(2, 4))
        >>> torch.allclose(probabilities.sum(dim=1), torch.ones(2))
        True
    """

    def __init__(
        self,
        input_dim: int,
        num_labels: int,
        *,
        kind: HeadKind = "multi_label",
        hidden_dim: int | None = None,
        dropout: float = 0.1,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        self.input_dim = _positive_int("input_dim", input_dim)
        self.num_labels = _positive_int("num_labels", num_labels)
        if kind not in HEAD_KINDS:
            raise ValueError(f"kind must be one of {', '.join(HEAD_KINDS)}; got {kind!r}")
        if hidden_dim is not None:
            hidden_dim = _positive_int("hidden_dim", hidden_dim)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
        self.kind: HeadKind = kind
        self.hidden_dim = hidden_dim
        self.dropout = float(dropout)
        self.activation = activation
        layers: list[torch.nn.Module]
        if hidden_dim is None:
            layers = [torch.nn.Dropout(self.dropout), torch.nn.Linear(input_dim, num_labels)]
        else:
            layers = [
                torch.nn.Linear(input_dim, hidden_dim),
                ACTIVATIONS[activation](),
                torch.nn.Dropout(self.dropout),
                torch.nn.Linear(hidden_dim, num_labels),
            ]
        self.layers = torch.nn.Sequential(*layers)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Logits (B x num_labels) of embeddings (B x input_dim)."""
        if embeddings.dim() != 2 or embeddings.shape[1] != self.input_dim:
            raise ValueError(f"embeddings must be B x {self.input_dim}, got shape {tuple(embeddings.shape)}")
        weight = next(self.parameters())
        if embeddings.dtype != weight.dtype:
            embeddings = embeddings.to(weight.dtype)
        return self.layers(embeddings)

    @torch.no_grad()
    def predict_proba(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Probabilities in eval mode (no dropout, no gradient): sigmoid, softmax or identity by ``kind``.

        The head's training/eval mode is restored afterwards.
        """
        was_training = self.training
        self.eval()
        try:
            logits = self(embeddings).float()
        finally:
            self.train(was_training)
        if self.kind == "multi_label":
            return torch.sigmoid(logits)
        if self.kind == "single_label":
            return torch.softmax(logits, dim=-1)
        return logits

    def default_loss(self) -> HeadLoss:
        """The usual loss for ``kind``: `BCEHeadLoss`, `SoftmaxHeadLoss` or `RegressionHeadLoss`."""
        if self.kind == "multi_label":
            return BCEHeadLoss()
        if self.kind == "single_label":
            return SoftmaxHeadLoss()
        return RegressionHeadLoss()

    def config(self) -> dict[str, Any]:
        """The JSON-ready constructor arguments (with a format tag and version)."""
        return {
            "format": CONFIG_FORMAT,
            "version": CONFIG_VERSION,
            "input_dim": self.input_dim,
            "num_labels": self.num_labels,
            "kind": self.kind,
            "hidden_dim": self.hidden_dim,
            "dropout": self.dropout,
            "activation": self.activation,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ClassificationHead:
        """A freshly initialised head from `config` output (unknown keys are an error)."""
        if not isinstance(config, dict):
            raise ValueError(f"a head config must be a JSON object, got {type(config).__name__}")
        config = dict(config)
        fmt = config.pop("format", CONFIG_FORMAT)
        version = config.pop("version", CONFIG_VERSION)
        if fmt != CONFIG_FORMAT:
            raise ValueError(f"not a classification head config: format is {fmt!r}, expected {CONFIG_FORMAT!r}")
        if version != CONFIG_VERSION:
            raise ValueError(f"unsupported head config version {version!r} (this labelspace reads {CONFIG_VERSION})")
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(f"unknown head config keys: {', '.join(unknown)}")
        for key in ("input_dim", "num_labels"):
            if key not in config:
                raise ValueError(f"the head config lacks {key!r}")
        input_dim = config.pop("input_dim")
        num_labels = config.pop("num_labels")
        return cls(input_dim, num_labels, **config)

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write ``head.safetensors`` and ``head_config.json`` into ``folder`` (created if needed), atomically.

        Each file goes through `labelspace.files.atomic_write` (a hidden temporary name, then a
        rename), so a crash never leaves a half-written file under the final name, and both get the
        umask's mode.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {name: value.detach().cpu().contiguous() for name, value in self.state_dict().items()}
        metadata = {"format": "pt", "head": CONFIG_FORMAT}
        atomic_write(folder / WEIGHTS_FILE, lambda temporary: save_file(tensors, str(temporary), metadata=metadata))
        atomic_write_text(folder / CONFIG_FILE, json.dumps(self.config(), indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> ClassificationHead:
        """Read a head written by `save` (safetensors + JSON only, never pickle).

        A damaged or invalid file is a ValueError naming it (`labelspace.models.folder_io`).
        """
        folder = Path(folder)
        weights = folder / WEIGHTS_FILE
        config = folder / CONFIG_FILE
        for path in (config, weights):
            if not path.exists():
                raise FileNotFoundError(f"{path} not found: a saved head holds {CONFIG_FILE} and {WEIGHTS_FILE}")
        data = read_json(config, expected="a classification head config")
        try:
            head = cls.from_config(data)
        except ValueError as error:
            raise ValueError(f"{config}: {error}") from error
        state = read_safetensors(weights, what="the head", device=map_location)
        expected = head.state_dict()
        if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
            raise ValueError(f"{weights} does not match {config}: its tensors have other names or shapes")
        head.load_state_dict(state)
        return head.to(map_location)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
