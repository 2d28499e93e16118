"""Miners: pick the informative pairs or triplets of a batch, from labels or a Relation."""
