"""Metric losses on embeddings (see `labelspace.losses` for the public names)."""
