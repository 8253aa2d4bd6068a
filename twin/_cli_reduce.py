"""Placeholder for the ``twin reduce`` sub-command (filled in by the MBAM work)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``reduce`` sub-command to the ``twin`` parser."""
