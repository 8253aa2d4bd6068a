"""Comparison and statistics helpers of the validation report and the VTT benchmark.

Pure numpy; no project imports, so the tests can check them on synthetic inputs with known
answers. Percentages are in per cent (``12.5`` means 12.5 %).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Check",
    "coverage",
    "effective_half_life_h",
    "excretion_half_time_h",
    "error_summary",
    "lognormal_sd_from_cv",
    "markdown_table",
    "percent_error",
    "published_agreement",
    "relative_difference",
    "summarise_population",
]


class ValidationInputError(ValueError):
    """Bad input to a validation helper (shapes, non-finite or non-positive values)."""


def _finite(a, what: str) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ValidationInputError(f"{what} must be finite numbers.")
    return arr


def percent_error(predicted, truth) -> np.ndarray:
    """``100 (predicted - truth) / truth`` element-wise; truth must be > 0."""
    p = _finite(predicted, "predicted")
    t = _finite(truth, "truth")
    if p.shape != t.shape:
        raise ValidationInputError(f"predicted {p.shape} and truth {t.shape} differ in shape.")
    if np.any(t <= 0):
        raise ValidationInputError("truth must be > 0 for a percentage error.")
    return 100.0 * (p - t) / t


def relative_difference(a, b) -> float:
    """Max ``|a - b| / |b|`` over the elements (``b`` the reference, non-zero)."""
    x = _finite(a, "a")
    y = _finite(b, "b")
    if x.shape != y.shape:
        raise ValidationInputError(f"shapes {x.shape} and {y.shape} differ.")
    if np.any(y == 0):
        raise ValidationInputError("the reference contains zeros.")
    return float(np.max(np.abs(x - y) / np.abs(y)))


def error_summary(errors_percent) -> dict:
    """Mean, SD (ddof 1), mean |error|, median |error|, 90th percentile of |error| and n."""
    e = _finite(errors_percent, "errors").reshape(-1)
    if e.size == 0:
        raise ValidationInputError("no errors to summarise.")
    a = np.abs(e)
    return {
        "n": int(e.size),
        "mean_pct": float(e.mean()),
        "sd_pct": float(e.std(ddof=1)) if e.size > 1 else 0.0,
        "mean_abs_pct": float(a.mean()),
        "median_abs_pct": float(np.median(a)),
        "p90_abs_pct": float(np.quantile(a, 0.9)),
    }


def coverage(lower, upper, truth) -> float:
    """Fraction of ``truth`` values inside ``[lower, upper]`` (inclusive)."""
    lo = _finite(lower, "lower")
    hi = _finite(upper, "upper")
    t = _finite(truth, "truth")
    if not (lo.shape == hi.shape == t.shape):
        raise ValidationInputError("lower, upper and truth must have the same shape.")
    if t.size == 0:
        raise ValidationInputError("no intervals.")
    if np.any(lo > hi):
        raise ValidationInputError("an interval has lower > upper.")
    return float(np.mean((t >= lo) & (t <= hi)))


def lognormal_sd_from_cv(cv: float) -> float:
    """Log-scale SD of a log-normal with coefficient of variation ``cv``."""
    if not (cv > 0 and math.isfinite(cv)):
        raise ValidationInputError("cv must be a positive finite number.")
    return math.sqrt(math.log1p(cv * cv))


def effective_half_life_h(times_h: Sequence[float], activity: Sequence[float]) -> float:
    """Effective half-life (h) of a mono-exponential fitted to ``log activity`` by least squares.

    This is the clinical method of the published half-lives we compare with (mono-exponential
    fit to a few SPECT time points). Returns ``inf`` if the fitted curve does not decrease.
    """
    t = _finite(times_h, "times_h").reshape(-1)
    a = _finite(activity, "activity").reshape(-1)
    if t.size != a.size or t.size < 2:
        raise ValidationInputError("need at least two (time, activity) pairs of equal length.")
    if np.any(a <= 0):
        raise ValidationInputError("activities must be > 0.")
    slope = np.polyfit(t, np.log(a), 1)[0]
    return float(math.log(2.0) / -slope) if slope < 0 else math.inf


def excretion_half_time_h(times_h: Sequence[float], cumulative_fraction: Sequence[float]) -> float:
    """Half-time (h) of urinary excretion: ``U(t) = U_inf (1 - exp(-ln2 t / T))`` fitted to the
    cumulative excreted fraction by least squares (the excretion rate halves every T hours)."""
    from scipy.optimize import curve_fit

    t = _finite(times_h, "times_h").reshape(-1)
    u = _finite(cumulative_fraction, "cumulative_fraction").reshape(-1)
    if t.size != u.size or t.size < 3:
        raise ValidationInputError("need at least three (time, fraction) pairs of equal length.")
    if np.any(t <= 0) or np.any(u <= 0) or np.any(np.diff(u) < 0):
        raise ValidationInputError("times and fractions must be > 0 and the fractions non-decreasing.")

    def model(tt, u_inf, log_half):
        return u_inf * -np.expm1(-math.log(2.0) * tt / np.exp(log_half))

    (_, log_half), _ = curve_fit(model, t, u, p0=(float(u[-1]), math.log(float(np.median(t)))),
                                 maxfev=2000)
    return float(np.exp(log_half))


def summarise_population(values) -> dict:
    """Median, mean, SD and 5th/95th percentiles of a population of values."""
    v = _finite(values, "values").reshape(-1)
    if v.size == 0:
        raise ValidationInputError("empty population.")
    return {"n": int(v.size), "median": float(np.median(v)), "mean": float(v.mean()),
            "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "p5": float(np.quantile(v, 0.05)), "p95": float(np.quantile(v, 0.95))}


def published_agreement(ours_median: float, ours_p5: float, ours_p95: float, mean: float,
                        sd: float | None = None, low: float | None = None,
                        high: float | None = None, rel_tol: float = 0.5) -> tuple[bool, str]:
    """Does a population agree with a published value? Returns ``(passed, criterion text)``.

    * with a published SD: our median lies within ``mean +/- 2 SD`` (the published spread);
    * with a published range ``[low, high]`` only: our median lies inside it;
    * with a bare value: our median is within ``rel_tol`` (default +/- 50 %) of it, the spread
      between published 177Lu-PSMA-617 kidney doses (0.39-0.82 Gy/GBq) being about that;
    and, in every case, the published mean lies inside our population's 5-95 % range.
    """
    for name, v in (("ours_median", ours_median), ("ours_p5", ours_p5), ("ours_p95", ours_p95),
                    ("mean", mean)):
        if not math.isfinite(v):
            raise ValidationInputError(f"{name} must be finite.")
    in_ours = ours_p5 <= mean <= ours_p95
    if sd is not None and sd > 0:
        ok = abs(ours_median - mean) <= 2.0 * sd
        text = f"median within published mean ± 2 SD ({mean - 2 * sd:.3g}–{mean + 2 * sd:.3g})"
    elif low is not None and high is not None:
        ok = low <= ours_median <= high
        text = f"median within published range {low:.3g}–{high:.3g}"
    else:
        ok = abs(ours_median - mean) <= rel_tol * abs(mean)
        text = f"median within ±{100 * rel_tol:.0f} % of published {mean:.3g}"
    text += "; published value inside our 5–95 %"
    return bool(ok and in_ours), text


@dataclass
class Check:
    """One row of the report: what was compared, with what, the criterion and the verdict."""

    section: str
    name: str
    value: str
    reference: str
    criterion: str
    passed: bool | None  # None: reported only (no criterion)
    note: str = ""
    data: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a numpy bool (``worst < 5e-3``) is neither ``True`` nor ``False`` by identity: the
        # report's pass count missed such rows and the JSON stored 1.0
        if self.passed is not None:
            object.__setattr__(self, "passed", bool(self.passed))

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "**FAIL**", None: "info"}[self.passed]

    def as_dict(self) -> dict:
        return {"section": self.section, "name": self.name, "value": self.value,
                "reference": self.reference, "criterion": self.criterion,
                "passed": self.passed, "note": self.note, **({"data": self.data} if self.data else {})}


def markdown_table(rows: Iterable[Mapping | Sequence], header: Sequence[str]) -> str:
    """A GitHub markdown table; ``rows`` are sequences or mappings keyed by ``header``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r.get(h, "") for h in header] if isinstance(r, Mapping) else list(r)
        if len(cells) != len(header):
            raise ValidationInputError(f"row has {len(cells)} cells for {len(header)} columns.")
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)
