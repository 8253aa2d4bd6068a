"""twin.report: the one-folder patient report (PNG/PDF figures, CSV tables, JSON with units)."""

from twin.report._report import UNITS, check_report_folder, write_report

__all__ = ["UNITS", "check_report_folder", "write_report"]
