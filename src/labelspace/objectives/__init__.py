"""Objectives: the losses the trainer calls, ``loss(model, batch)``, which run the model themselves.

The losses of `labelspace.losses` are functions of tensors (embeddings, logits, labels). An
objective sits one layer above: it embeds the texts of a `TextBatch` with the model and hands
the right tensors to the right loss, and it names the parts of what it returns.

- `ModelLoss` (`objectives.base`): the base class. ``components(model, batch, cache=None)``
  returns the named, already weighted parts of the loss; ``forward`` returns their sum.
  `EmbeddingCache` embeds each column once for several losses.
- `as_model_loss` and the adapters `MetricObjective`, `HeadObjective`, `RankingObjective`,
  `PairScoreObjective` (`objectives.wrappers`): any labelspace loss, on the batch kinds it takes.
- `CombinedLoss` (`objectives.combined`): ``sum(weight * loss)`` over one embedding pass, one
  component per loss.
- `CachedMultipleNegativesRankingLoss` (`objectives.cached`), `GISTEmbedLoss` and
  `CachedGISTEmbedLoss` (`objectives.gist`): in-batch ranking losses that call the encoder
  themselves, the cached ones with GradCache (`objectives.gradcache`) for batches larger than memory.

The old paths (`labelspace.losses.CombinedLoss`, `labelspace.losses.model_loss`,
`labelspace.losses.text.cached`, `labelspace.losses.text.gist`, ...) still work for one
release, with a DeprecationWarning.

Example:
    >>> import tempfile
    >>> from labelspace.data import LabeledDataset
    >>> from labelspace.data.batch import make_batch
    >>> from labelspace.losses import BCEHeadLoss, MultiSimilarityLoss
    >>> from labelspace.models import LabelspaceModel
    >>> from labelspace.models.testing import tiny_model_folder
    >>> from labelspace.objectives import CombinedLoss
    >>> data = LabeledDataset.from_label_names(["a b", "b c", "c d", "d e"], [["x"], ["x", "y"], ["y"], []])
    >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=data.label_set).eval()
    >>> loss = CombinedLoss([(MultiSimilarityLoss(), 1.0), (BCEHeadLoss(), 0.5)])
    >>> batch = make_batch(data, [0, 1, 2, 3])
    >>> parts = loss.components(model, batch)
    >>> list(parts)
    ['MultiSimilarityLoss', 'BCEHeadLoss']
    >>> bool(abs(sum(parts.values()) - loss(model, batch)) < 1e-5)  # eval mode: no dropout between the calls
    True
"""

from labelspace.objectives.base import EmbeddingCache, ModelLoss, encoder_of, sum_components
from labelspace.objectives.cached import CachedMultipleNegativesRankingLoss
from labelspace.objectives.combined import CombinedLoss
from labelspace.objectives.gist import CachedGISTEmbedLoss, GISTEmbedLoss
from labelspace.objectives.wrappers import (
    HeadObjective,
    MetricObjective,
    PairScoreObjective,
    RankingObjective,
    as_model_loss,
    pair_batch_relation,
)

__all__ = [
    "CachedGISTEmbedLoss",
    "CachedMultipleNegativesRankingLoss",
    "CombinedLoss",
    "EmbeddingCache",
    "GISTEmbedLoss",
    "HeadObjective",
    "MetricObjective",
    "ModelLoss",
    "PairScoreObjective",
    "RankingObjective",
    "as_model_loss",
    "encoder_of",
    "pair_batch_relation",
    "sum_components",
]
