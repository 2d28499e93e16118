"""Losses: metric losses on embeddings (and, in later modules, text and head losses)."""
