"""Names that moved from `labelspace.losses` to `labelspace.objectives`: their old paths, for one release.

The model-level losses (`ModelLoss`, `CombinedLoss`, the adapters of `as_model_loss`, the cached
and GIST losses) call the model, so they live a layer above the losses, in `labelspace.objectives`.
Their old modules keep a ``DEPRECATED_ALIASES`` table (name -> new module) and a module
``__getattr__`` that imports `labelspace.objectives` on first use and hands out the name through
`moved_name`, with a DeprecationWarning that gives the new path.

Example:
    >>> import warnings
    >>> import labelspace.objectives
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     loss_class = moved_name("labelspace.losses", "CombinedLoss", "labelspace.objectives")
    >>> loss_class is labelspace.objectives.CombinedLoss, caught[0].category.__name__
    (True, 'DeprecationWarning')
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

__all__ = ["moved_name"]


def moved_name(old_module: str, name: str, new_module: str) -> Any:
    """``name`` from ``new_module`` (already imported), warning that ``old_module.name`` is deprecated."""
    warnings.warn(
        f"{old_module}.{name} is deprecated: import {name} from {new_module} "
        f"(the old path goes away in the next release)",
        DeprecationWarning,
        stacklevel=3,
    )
    return getattr(sys.modules[new_module], name)
