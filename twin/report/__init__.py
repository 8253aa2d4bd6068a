"""twin.report: the one-folder patient report (PNG/PDF figures, CSV tables, JSON with units)."""

from twin.report._report import UNITS, write_report

__all__ = ["UNITS", "write_report"]
