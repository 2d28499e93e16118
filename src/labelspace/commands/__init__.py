"""The `labelspace` subcommands that train and use models; each module registers its commands on the app."""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: Modules whose ``register(app)`` adds commands to the `labelspace` app.
COMMAND_MODULES: tuple[str, ...] = ("quickstart", "train", "evaluate", "mine")


def register_all(app: Any) -> None:
    """Register every command module's commands on ``app`` (modules not present are skipped)."""
    for name in COMMAND_MODULES:
        try:
            module = import_module(f"labelspace.commands.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"labelspace.commands.{name}":
                continue
            raise
        module.register(app)
