"""Deprecated: the GIST losses moved to `labelspace.objectives` (this path works for one release).

`GISTEmbedLoss` and `CachedGISTEmbedLoss` (and `MARGIN_STRATEGIES`, `MarginStrategy`) are now in
`labelspace.objectives.gist`, exported by `labelspace.objectives`; they still import from here,
with a DeprecationWarning.

Example:
    >>> import warnings
    >>> from labelspace.objectives import GISTEmbedLoss
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     from labelspace.losses.text.gist import GISTEmbedLoss as Old
    >>> Old is GISTEmbedLoss, caught[0].category.__name__
    (True, 'DeprecationWarning')
"""

from __future__ import annotations

from typing import Any

from labelspace.losses.moved import moved_name

#: old name -> the module that holds it now
DEPRECATED_ALIASES = {
    "CachedGISTEmbedLoss": "labelspace.objectives",
    "GISTEmbedLoss": "labelspace.objectives",
    "MARGIN_STRATEGIES": "labelspace.objectives.gist",
    "MarginStrategy": "labelspace.objectives.gist",
}

__all__ = sorted(DEPRECATED_ALIASES)


def __getattr__(name: str) -> Any:
    if name not in DEPRECATED_ALIASES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from labelspace import objectives  # noqa: F401  (a deprecated path: objectives sit a layer above losses)

    return moved_name(__name__, name, DEPRECATED_ALIASES[name])
