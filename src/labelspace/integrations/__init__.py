"""Bridges to engines that run labelspace models at scale; each needs its own optional extra.

- `labelspace.integrations.ray`: bulk scoring on Ray Data (``pip install 'labelspace[ray]'``):
  `LabelspaceBatchPredictor` for ``Dataset.map_batches`` and `predict_files` for folders of shards.

Nothing here is imported by ``import labelspace``; importing a module of this package does not import
its engine either (Ray is imported when a function needs it).
"""
