"""One real number from user input: the check shared by the entry points of every package."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["real_or_none"]


def real_or_none(value) -> float | None:
    """``value`` as a float if it is one real number (Python or NumPy scalar, or a 0-d array of
    integers or floats; never a bool or a string), else ``None``."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    dtype = getattr(value, "dtype", None)
    if (getattr(value, "shape", None) == () and dtype is not None
            and (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating))):
        return float(value)
    return None
