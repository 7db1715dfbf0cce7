"""Analyst commands (`sql`, `report`), registered on the main parser by :func:`add_commands`."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the analyst subcommands to the `taxi-assets` parser."""
