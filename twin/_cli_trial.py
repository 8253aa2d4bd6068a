"""Placeholder for the ``twin cohort`` and ``twin trial`` sub-commands (filled in by the cohort work)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cohort`` and ``trial`` sub-commands to the ``twin`` parser."""
