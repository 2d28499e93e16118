"""Miners: pick the informative pairs or triplets of a batch, from labels or a Relation.

Example:
    >>> import torch
    >>> from labelspace.miners import BatchHardMiner
    >>> embeddings = torch.tensor([[0.0, 1.0], [0.1, 1.0], [1.0, 0.0], [1.0, 0.1]])
    >>> labels = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 1]])
    >>> [t.tolist() for t in BatchHardMiner()(embeddings, labels)]
    [[0, 2, 3], [1, 1, 1], [3, 0, 0]]

(Item 1 shares a label with everyone, so it has no negative and is not an anchor; each other
anchor gets its farthest positive and its closest negative.)
"""

from labelspace.miners.base import BaseMiner
from labelspace.miners.batch_hard import BatchHardMiner
from labelspace.miners.multi_similarity import MultiSimilarityMiner
from labelspace.miners.pair_margin import PairMarginMiner
from labelspace.miners.triplet_margin import TripletMarginMiner

__all__ = ["BaseMiner", "BatchHardMiner", "MultiSimilarityMiner", "PairMarginMiner", "TripletMarginMiner"]
