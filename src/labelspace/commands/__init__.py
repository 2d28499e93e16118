"""The `labelspace` subcommands, one module per command group; `labelspace.cli` registers them on the app.

- `data`: ``data check``, ``convert triplets-to-pairs``, ``split`` (data files, no model)
- `train`: ``train``
- `evaluate`: ``evaluate``, ``tune-thresholds``, ``set-thresholds``, ``predict`` (a trained model folder)
- `embed`: ``embed`` (embeddings of a text file, any backend)
- `export`: ``export`` (ONNX graphs, int8)
- `index`: ``index build`` (the kNN index of knn / hybrid scoring)
- `serve`: ``serve`` (the HTTP service)
- `mine`: ``mine`` (hard negatives)
- `quickstart`: ``quickstart`` (the demo end to end)

Each module has ``register(app)``. What several of them share (the console, `CommandError`, the option
types, data and model loading, the metrics table) lives in `labelspace.commands.common`, where an
output may be written in `labelspace.commands.paths`; a command module never imports `labelspace.cli`.
"""
