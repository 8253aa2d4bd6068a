"""Radiobiology: BED and EQD2 of protracted irradiation, and organ-at-risk limits.

Linear-quadratic model with incomplete repair during continuous, decreasing dose rate (Dale
1985; MIRD Pamphlet 20):

    BED = D + G * D**2 / (alpha/beta),
    G   = 2 / D**2 * integral_0^inf  Ddot(t) * integral_0^t Ddot(w) exp(-mu (t - w)) dw dt,

with ``mu = ln 2 / T_rep``. For a mono-exponential dose rate with instantaneous uptake,
``G = lambda / (lambda + mu)`` (``lambda = ln 2 / T_eff``), which gives Dale's formula
``BED = D (1 + D / (alpha/beta) * lambda / (mu + lambda))``. For a sum of exponentials
``Ddot = sum_i a_i exp(-lambda_i t)`` (an uptake phase is a negative term) the double integral
is analytic: ``G = 2 / D**2 * sum_ij a_i a_j / ((lambda_i + lambda_j)(lambda_i + mu))``; for
the uptake-phase (Bateman) curve :func:`g_factor_monoexponential` uses its closed form, free of
the cancellation of that sum when the uptake and clearance rates are close.
For any other time-activity curve :func:`g_factor_numerical` integrates the sampled dose rate.
Cycles are assumed to be far enough apart for complete repair, so BEDs add over cycles.
``EQD2 = BED / (1 + 2 / (alpha/beta))``.

All functions use ``jax.numpy`` (float64 under ``import pbpk``), so they accept arrays and
are differentiable, e.g. with respect to the absorbed dose.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import io
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from pbpk._errors import InvalidInputError
from twin.dose._errors import UnknownOrganError, UnknownTissueError

__all__ = [
    "TissueRadiobiology",
    "bed",
    "bed_monoexponential",
    "bed_multicycle",
    "check_oar_limits",
    "eqd2",
    "g_factor_monoexponential",
    "g_factor_multiexponential",
    "g_factor_numerical",
    "known_tissues",
    "oar_limits",
    "tissue_parameters",
]

_LN2 = math.log(2.0)
_TISSUE_ALIASES = {
    "kidney": "kidneys",
    "renal": "kidneys",
    "lung": "lungs",
    "normal": "normal_tissue",
    "generic": "normal_tissue",
    "tumor": "tumour",
    "tumor_lung": "tumour_lung",
    "tumor_liver": "tumour_liver",
}


@dataclass(frozen=True)
class TissueRadiobiology:
    """Linear-quadratic parameters of one tissue, with their source."""

    tissue: str
    alpha_beta_gy: float
    repair_half_time_h: float
    alpha_per_gy: float | None
    source: str

    @property
    def repair_rate_per_h(self) -> float:
        """``mu = ln 2 / T_rep``, 1/h."""
        return _LN2 / self.repair_half_time_h


def _read_csv_text(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


def _data_text(name: str) -> str:
    return (
        importlib.resources.files("twin.dose")
        .joinpath("data", "radiobiology", name)
        .read_text(encoding="utf-8")
    )


@functools.cache
def _default_tissues() -> dict[str, TissueRadiobiology]:
    return _parse_tissues(_data_text("tissue_parameters.csv"))


def _parse_tissues(text: str) -> dict[str, TissueRadiobiology]:
    out = {}
    for row in _read_csv_text(text):
        try:
            alpha = row.get("alpha_per_gy", "").strip()
            entry = TissueRadiobiology(
                tissue=row["tissue"].strip(),
                alpha_beta_gy=float(row["alpha_beta_gy"]),
                repair_half_time_h=float(row["repair_half_time_h"]),
                alpha_per_gy=float(alpha) if alpha else None,
                source=row.get("source", "").strip(),
            )
        except (KeyError, ValueError) as exc:
            raise InvalidInputError(
                f"bad tissue parameter row {row!r}: {exc}; columns are tissue, alpha_beta_gy, "
                "repair_half_time_h, alpha_per_gy, source"
            ) from None
        if not (entry.alpha_beta_gy > 0 and entry.repair_half_time_h > 0):
            raise InvalidInputError(f"alpha/beta and repair half-time must be positive: {row!r}")
        out[entry.tissue] = entry
    return out


def known_tissues() -> tuple[str, ...]:
    """Tissues with shipped linear-quadratic parameters."""
    return tuple(_default_tissues())


def tissue_parameters(tissue: str, *, table: str | os.PathLike | None = None) -> TissueRadiobiology:
    """Linear-quadratic parameters of a tissue (alpha/beta, repair half-time, source).

    Parameters
    ----------
    tissue : str
        e.g. ``"kidneys"`` (alpha/beta 2.6 Gy, T_rep 2.8 h), ``"normal_tissue"``, ``"lungs"``,
        ``"liver"``, ``"tumour"``; see :func:`known_tissues`.
    table : path, optional
        Your own CSV with the columns of the shipped ``data/radiobiology/tissue_parameters.csv``.

    Raises
    ------
    UnknownTissueError
        If the tissue has no parameters (the message lists those that do); pass
        ``alpha_beta_gy`` and ``repair_half_time_h`` explicitly to the BED functions instead.
    """
    tissues = (
        _default_tissues()
        if table is None
        else _parse_tissues(pathlib.Path(table).read_text(encoding="utf-8"))
    )
    key = str(tissue).strip().lower().replace(" ", "_").replace("-", "_")
    key = _TISSUE_ALIASES.get(key, key)
    if key not in tissues:
        raise UnknownTissueError(
            f"no radiobiological parameters for tissue {tissue!r}; known tissues: "
            f"{list(tissues)}. Give alpha_beta_gy and repair_half_time_h explicitly, or add a "
            "row to your own tissue table."
        )
    return tissues[key]


def _lq_params(tissue, alpha_beta_gy, repair_half_time_h) -> tuple[float, float]:
    if tissue is not None:
        params = tissue_parameters(tissue)
        ab = params.alpha_beta_gy if alpha_beta_gy is None else alpha_beta_gy
        trep = params.repair_half_time_h if repair_half_time_h is None else repair_half_time_h
    else:
        ab, trep = alpha_beta_gy, repair_half_time_h
    if ab is None or trep is None:
        raise InvalidInputError(
            "give a tissue (e.g. tissue='kidneys') or both alpha_beta_gy and repair_half_time_h"
        )
    _positive(ab, "alpha_beta_gy")
    _positive(trep, "repair_half_time_h")
    return ab, trep


def _positive(value, name: str) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InvalidInputError(f"{name} must be positive and finite, got {value!r}")


def _non_negative(value, name: str) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise InvalidInputError(f"{name} must be finite and non-negative, got {value!r}")


def g_factor_monoexponential(
    effective_half_life_h,
    repair_half_time_h,
    uptake_half_time_h=None,
) -> jax.Array:
    """G-factor of a mono-exponential dose rate: ``lambda / (lambda + mu)``.

    With ``uptake_half_time_h`` the dose rate is the Bateman curve ``exp(-lambda t) -
    exp(-lambda_u t)`` (uptake then clearance, up to a positive factor); with ``a = lambda``,
    ``b = lambda_u``

        G = a b (a + b + mu) / ((a + b) (a + mu) (b + mu)),

    the closed form of the double integral, symmetric in ``lambda`` and ``lambda_u``. It has no
    cancellation, so it also holds when the uptake half-time equals the effective half-life
    (dose rate ``t exp(-lambda t)``) or is longer than it.
    """
    _positive(effective_half_life_h, "effective_half_life_h")
    _positive(repair_half_time_h, "repair_half_time_h")
    lam = _LN2 / jnp.asarray(effective_half_life_h, dtype=jnp.float64)
    mu = _LN2 / jnp.asarray(repair_half_time_h, dtype=jnp.float64)
    if uptake_half_time_h is None:
        return lam / (lam + mu)
    _positive(uptake_half_time_h, "uptake_half_time_h")
    lam_u = _LN2 / jnp.asarray(uptake_half_time_h, dtype=jnp.float64)
    return lam * lam_u * (lam + lam_u + mu) / ((lam + lam_u) * (lam + mu) * (lam_u + mu))


def _is_tracer(*values) -> bool:
    return any(isinstance(v, jax.core.Tracer) for v in values)


#: g_factor_multiexponential refuses coefficients whose dose sum(c/k) keeps less than this
#: fraction of sum(|c/k|): G would be lost to cancellation (relative error ~1e-16 / ratio**2).
_CANCELLATION_RATIO = 1e-4


def _check_multiexponential(c: np.ndarray, k: np.ndarray) -> None:
    """Concrete-value checks of a sum-of-exponentials dose rate (shapes already equal)."""
    if not np.all(np.isfinite(c)):
        raise InvalidInputError(f"coefficients must be finite, got {c!r}")
    dose = np.sum(c / k, axis=0)
    scale = np.sum(np.abs(c / k), axis=0)
    if np.any(~(dose > 0)):
        raise InvalidInputError(
            f"the total dose sum(c_i / k_i) = {dose!r} is not positive: the coefficients "
            f"{c.tolist()!r} with rates {k.tolist()!r} do not describe a dose rate that delivers a "
            "dose; give a non-negative dose rate (e.g. [1, -1] with the uptake rate larger than "
            "the clearance rate for an uptake phase)"
        )
    if np.any(dose < _CANCELLATION_RATIO * scale):
        raise InvalidInputError(
            f"the terms of sum(c_i / k_i) nearly cancel (dose {dose!r} against "
            f"{scale!r} for the terms' magnitudes): the rates {k.tolist()!r} with coefficients of "
            "opposite sign are too close for an accurate G-factor. Merge nearly equal rates; for an "
            "uptake phase use g_factor_monoexponential(..., uptake_half_time_h=...), which has no "
            "cancellation"
        )
    # The dose rate must not be negative: checked at t = 0, late (where the slowest term
    # dominates) and on a logarithmic grid in between (a coarse check, not a proof).
    t_grid = np.concatenate(
        [[0.0], np.geomspace(1e-3 / np.max(k), 200.0 / np.min(k), 64)]
    )
    for t in t_grid:
        terms = c * np.exp(-k * t)
        rate = np.sum(terms, axis=0)
        if np.any(rate < -1e-9 * np.sum(np.abs(terms), axis=0)):
            raise InvalidInputError(
                f"the dose rate sum(c_i exp(-k_i t)) is negative at t = {t:.4g} h (coefficients "
                f"{c.tolist()!r}, rates {k.tolist()!r}); a dose rate must be non-negative at all times"
            )


def _check_unit_interval(g, name: str) -> None:
    if isinstance(g, jax.core.Tracer):
        return
    arr = np.asarray(g, dtype=np.float64)
    if not np.all((arr >= -1e-12) & (arr <= 1.0 + 1e-12)):
        raise InvalidInputError(
            f"{name} = {arr!r} is outside [0, 1], which no non-negative dose rate gives; check the "
            "inputs (a G-factor is 1 for an acute dose and lambda / (lambda + mu) for a "
            "mono-exponential dose rate)"
        )


def g_factor_multiexponential(coefficients, rates_per_h, repair_half_time_h) -> jax.Array:
    """Analytic G-factor of ``Ddot(t) = sum_i c_i exp(-k_i t)``.

    Any positive scale; negative ``c`` are allowed (an uptake phase) as long as the dose rate
    stays non-negative for all ``t >= 0``. ``coefficients`` and ``rates_per_h`` have the same
    shape, the terms along axis 0 (further axes vectorise).

    Raises
    ------
    InvalidInputError
        (concrete inputs; skipped under ``jax.jit``) if the total dose ``sum c_i / k_i`` is not
        positive or is lost to cancellation between nearly equal rates, if the dose rate is
        negative somewhere, or if the result is outside [0, 1].
    """
    _positive(rates_per_h, "rates_per_h")
    _positive(repair_half_time_h, "repair_half_time_h")
    c = jnp.asarray(coefficients, dtype=jnp.float64)
    k = jnp.asarray(rates_per_h, dtype=jnp.float64)
    if c.shape != k.shape or c.ndim < 1:
        raise InvalidInputError("coefficients and rates_per_h must be arrays of the same shape")
    concrete = not _is_tracer(c, k, repair_half_time_h)
    if concrete:
        _check_multiexponential(np.asarray(c), np.asarray(k))
    mu = _LN2 / jnp.asarray(repair_half_time_h, dtype=jnp.float64)
    dose = jnp.sum(c / k, axis=0)
    ci, cj = c[:, None], c[None, :]
    ki, kj = k[:, None], k[None, :]
    double = jnp.sum(ci * cj / ((ki + kj) * (ki + mu)), axis=(0, 1))
    g = 2.0 * double / dose**2
    if concrete:
        _check_unit_interval(g, "the G-factor")
    return g


def g_factor_numerical(
    times_h,
    dose_rate_gy_per_h,
    repair_half_time_h,
    tail_rate_per_h,
    *,
    substeps: int = 64,
) -> jax.Array:
    """G-factor of a sampled dose-rate curve (any shape), by numerical integration.

    Parameters
    ----------
    times_h : 1-D array, increasing, starting at 0
        Sample times (h). Put the value at ``t = 0`` first (0 for an uptake curve).
    dose_rate_gy_per_h : 1-D array
        Dose rate at the sample times; linear between samples.
    repair_half_time_h : float
    tail_rate_per_h : float
        Decay rate of the mono-exponential tail after the last sample (e.g. the physical decay
        constant, or the fitted terminal rate).
    substeps : int
        Integration sub-steps per sample interval (error ~ 1/substeps**2).

    Notes
    -----
    The repair integral ``u(t) = int_0^t Ddot(w) exp(-mu (t - w)) dw`` is advanced exactly for
    the piecewise-linear dose rate; ``int Ddot u dt`` uses the trapezoidal rule on the
    sub-steps; the tail after the last sample is added analytically.
    """
    t = jnp.asarray(times_h, dtype=jnp.float64)
    r = jnp.asarray(dose_rate_gy_per_h, dtype=jnp.float64)
    if t.ndim != 1 or r.shape != t.shape or t.shape[0] < 2:
        raise InvalidInputError("times_h and dose_rate_gy_per_h must be 1-D, equal length >= 2")
    if not isinstance(t, jax.core.Tracer):
        tn = np.asarray(t)
        if tn[0] != 0 or np.any(np.diff(tn) <= 0):
            raise InvalidInputError(
                "times_h must start at 0 and increase strictly; prepend the dose rate at t = 0 "
                "(0 for a curve with an uptake phase)"
            )
    _non_negative(r, "dose_rate_gy_per_h")
    if not isinstance(r, jax.core.Tracer) and not np.any(np.asarray(r) > 0):
        raise InvalidInputError(
            "dose_rate_gy_per_h is zero everywhere: no dose, so no G-factor; give the sampled "
            "dose rate of a curve that delivers a dose"
        )
    _positive(repair_half_time_h, "repair_half_time_h")
    _positive(tail_rate_per_h, "tail_rate_per_h")
    if int(substeps) < 1:
        raise InvalidInputError("substeps must be a positive integer")
    mu = _LN2 / jnp.asarray(repair_half_time_h, dtype=jnp.float64)
    lam = jnp.asarray(tail_rate_per_h, dtype=jnp.float64)
    return _g_numerical(t, r, mu, lam, int(substeps))


@functools.partial(jax.jit, static_argnames=("substeps",))
def _g_numerical(t, r, mu, lam, substeps):
    frac = jnp.linspace(0.0, 1.0, substeps + 1)[1:]
    t0, t1, r0, r1 = t[:-1], t[1:], r[:-1], r[1:]
    tt = t0[:, None] + (t1 - t0)[:, None] * frac[None, :]
    rr = r0[:, None] + (r1 - r0)[:, None] * frac[None, :]
    fine_t = jnp.concatenate([t[:1], tt.ravel()])
    fine_r = jnp.concatenate([r[:1], rr.ravel()])
    h = jnp.diff(fine_t)
    a = fine_r[:-1]
    b = jnp.diff(fine_r) / h
    decay = jnp.exp(-mu * h)
    one_minus = -jnp.expm1(-mu * h)
    increment = a * one_minus / mu + b * (h / mu - one_minus / mu**2)

    # u_{k+1} = u_k * decay_k + increment_k (exact for the piecewise-linear dose rate)
    def step(u, inputs):
        dec, inc = inputs
        u_next = u * dec + inc
        return u_next, u_next

    _, u_tail = jax.lax.scan(step, jnp.zeros((), decay.dtype), (decay, increment))
    u = jnp.concatenate([jnp.zeros((1,), u_tail.dtype), u_tail])
    integrand = fine_r * u
    body = jnp.sum(0.5 * (integrand[1:] + integrand[:-1]) * h)
    dose_body = jnp.sum(0.5 * (fine_r[1:] + fine_r[:-1]) * h)
    r_end, u_end = fine_r[-1], u[-1]
    tail = r_end * u_end / (lam + mu) + r_end**2 / (2.0 * lam * (lam + mu))
    dose = dose_body + r_end / lam
    return 2.0 * (body + tail) / dose**2


def bed(dose_gy, g_factor, alpha_beta_gy) -> jax.Array:
    """``BED = D + G D**2 / (alpha/beta)``, Gy.

    ``G`` is in [0, 1] (1 for an acute dose). Inputs are checked when concrete (not under
    ``jax.jit``): finite non-negative dose, G in [0, 1], positive alpha/beta.
    """
    _non_negative(dose_gy, "dose_gy")
    _non_negative(g_factor, "g_factor")
    _check_unit_interval(g_factor, "g_factor")
    _positive(alpha_beta_gy, "alpha_beta_gy")
    d = jnp.asarray(dose_gy, dtype=jnp.float64)
    return d + jnp.asarray(g_factor, dtype=jnp.float64) * d**2 / alpha_beta_gy


def bed_monoexponential(
    dose_gy,
    effective_half_life_h,
    *,
    tissue: str | None = None,
    alpha_beta_gy: float | None = None,
    repair_half_time_h: float | None = None,
) -> jax.Array:
    """Dale's BED for a mono-exponential dose rate with instantaneous uptake, Gy.

    ``BED = D (1 + D / (alpha/beta) * lambda / (mu + lambda))``. Example (kidney, alpha/beta
    2.6 Gy, T_rep 2.8 h): 23 Gy with T_eff = 40 h gives 36.3 Gy.
    """
    ab, trep = _lq_params(tissue, alpha_beta_gy, repair_half_time_h)
    return bed(dose_gy, g_factor_monoexponential(effective_half_life_h, trep), ab)


def bed_multicycle(
    doses_gy: Sequence[float],
    *,
    effective_half_lives_h: Sequence[float] | float | None = None,
    g_factors: Sequence[float] | float | None = None,
    tissue: str | None = None,
    alpha_beta_gy: float | None = None,
    repair_half_time_h: float | None = None,
) -> jax.Array:
    """Total BED of several cycles (complete repair between cycles): the sum of cycle BEDs, Gy.

    Give each cycle's dose and either its effective half-life (mono-exponential) or its
    G-factor (e.g. from :func:`g_factor_numerical`); a single value applies to every cycle.
    Example (kidney): 4 x 5.75 Gy at T_eff = 40 h gives 26.3 Gy.
    """
    try:
        doses = jnp.atleast_1d(jnp.asarray(doses_gy, dtype=jnp.float64))
    except (TypeError, ValueError):
        raise InvalidInputError(f"doses_gy must be a sequence of numbers (Gy per cycle), got {doses_gy!r}") from None
    if doses.ndim != 1:
        raise InvalidInputError(
            f"doses_gy must be one dose per cycle (a 1-D sequence), got shape {doses.shape}; "
            "for several organs call bed_multicycle once per organ"
        )
    if (effective_half_lives_h is None) == (g_factors is None):
        raise InvalidInputError("give exactly one of effective_half_lives_h and g_factors")
    ab, trep = _lq_params(tissue, alpha_beta_gy, repair_half_time_h)
    name = "effective_half_lives_h" if g_factors is None else "g_factors"
    try:
        per_cycle = jnp.asarray(effective_half_lives_h if g_factors is None else g_factors, jnp.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number or one number per cycle") from None
    if per_cycle.ndim > 1 or (per_cycle.ndim == 1 and per_cycle.shape[0] not in (1, doses.shape[0])):
        raise InvalidInputError(
            f"{name} has shape {per_cycle.shape} but there are {doses.shape[0]} cycles in doses_gy; "
            "give one value for every cycle or a single value for all"
        )
    if g_factors is None:
        g = g_factor_monoexponential(per_cycle, trep)
    else:
        g = per_cycle
    g = jnp.broadcast_to(g, doses.shape)
    return jnp.sum(bed(doses, g, ab))


def eqd2(bed_gy, alpha_beta_gy) -> jax.Array:
    """Equivalent dose in 2-Gy fractions, ``BED / (1 + 2 / (alpha/beta))``, Gy.

    ``bed_gy`` must be finite and non-negative (checked when concrete, not under ``jax.jit``).
    """
    _non_negative(bed_gy, "bed_gy")
    _positive(alpha_beta_gy, "alpha_beta_gy")
    return jnp.asarray(bed_gy, dtype=jnp.float64) / (1.0 + 2.0 / alpha_beta_gy)


def oar_limits(table: str | os.PathLike | None = None):
    """Organ-at-risk limits as an editable table (pandas.DataFrame).

    Columns: ``organ``, ``quantity`` (``absorbed_dose`` or ``bed``), ``limit_gy``,
    ``condition``, ``source``, ``citation_checked``. Shipped defaults: kidneys 23 Gy absorbed
    dose, kidney BED 40 Gy (no risk factors) and 28 Gy (with risk factors), red marrow 2 Gy,
    salivary glands 25 Gy mean dose (external-beam surrogate). Pass ``table`` to read your own
    CSV with the same columns.
    """
    import pandas as pd

    if table is None:
        text = _data_text("oar_limits.csv")
    else:
        text = pathlib.Path(table).read_text(encoding="utf-8")
    return _checked_limits(pd.DataFrame(_read_csv_text(text)))


def _checked_limits(frame):
    """The limit table with ``limit_gy`` as positive finite floats (typed errors naming the row)."""
    needed = {"organ", "quantity", "limit_gy", "condition", "source"}
    if not needed <= set(frame.columns):
        raise InvalidInputError(f"OAR limit table needs the columns {sorted(needed)}")
    bad = sorted(map(repr, set(frame["quantity"]) - {"absorbed_dose", "bed"}))
    if bad:
        raise InvalidInputError(f"OAR quantity must be 'absorbed_dose' or 'bed', got {', '.join(bad)}")
    limits = []
    for i, rec in enumerate(frame.to_dict("records")):
        try:
            value = float(rec["limit_gy"])
        except (TypeError, ValueError):
            value = float("nan")
        if not (math.isfinite(value) and value > 0):
            raise InvalidInputError(
                f"OAR limit table data row {i + 1} ({rec['organ']}, {rec['quantity']}): limit_gy = "
                f"{rec['limit_gy']!r} is not a positive finite number of Gy; fix the table"
            )
        limits.append(value)
    frame = frame.copy()
    frame["limit_gy"] = np.asarray(limits, dtype=np.float64)
    return frame


@functools.cache
def _known_organs() -> frozenset[str]:
    """Organ names of the dose module (ICRP-89 sources, targets, masses) and their aliases."""
    from twin.dose import _organ

    names = set(_organ._SOURCE_COLUMNS.values()) | set(_organ._TARGET_ROWS.values())
    names |= set(_organ._MASS_ROWS.values()) | set(_organ._ALIASES.values())
    return frozenset(names)


def _known_organ(key: str, known) -> bool:
    return key in known or key.startswith(("tumour", "tumor", "lesion"))


def check_oar_limits(
    dose_gy: Mapping[str, float] | None = None,
    bed_gy: Mapping[str, float] | None = None,
    *,
    limits=None,
):
    """Compare organ doses / BEDs (summed over cycles) with the organ-at-risk limits.

    Organ names are matched as :func:`organ_dose` matches them (``kidney`` = ``kidneys``,
    ``salivary`` = ``salivary_glands``, ``marrow`` = ``red_marrow``, any case).

    Organs without a limit (e.g. ``liver``, tumour regions) are accepted and give no row.

    Raises
    ------
    UnknownOrganError
        For an organ name that is neither in the limit table nor an organ of the dose module
        (a misspelt ``kidnys`` would otherwise be ignored).
    InvalidInputError
        For a dose or BED that is not a finite, non-negative number.

    Returns
    -------
    pandas.DataFrame
        One row per applicable limit: organ, quantity, value_gy, limit_gy, fraction_of_limit,
        exceeded, condition, source.
    """
    import pandas as pd

    table = oar_limits() if limits is None else limits
    table = _checked_limits(table) if isinstance(table, pd.DataFrame) else oar_limits(table)
    from twin.dose._organ import _canonical_organ

    rows = []
    values = {}
    limited = sorted({_canonical_organ(o) for o in table["organ"]})
    known = set(limited) | _known_organs()
    for quantity, arg, given in (("absorbed_dose", "dose_gy", dose_gy), ("bed", "bed_gy", bed_gy)):
        # 'kidney', 'Kidneys', 'salivary', 'marrow' name the limits' organs, as in organ_dose
        values[quantity] = {}
        if given is not None and not isinstance(given, Mapping):
            raise InvalidInputError(
                f"{arg} must be a mapping {{organ: Gy}}, e.g. {{'kidneys': 20.0}}, got "
                f"{type(given).__name__}")
        unknown = [name for name in dict(given or {}) if not _known_organ(_canonical_organ(name), known)]
        if unknown:
            raise UnknownOrganError(
                f"{arg}: unknown organ(s) {', '.join(map(repr, unknown))}; organs with limits: "
                f"{', '.join(limited)} (other ICRP-89 organ names and tumour regions are accepted and "
                "have no limit). Check the spelling.")
        for name, value in dict(given or {}).items():
            key = _canonical_organ(name)
            if key in values[quantity]:
                raise InvalidInputError(
                    f"{quantity}: {name!r} and another key both name {key}; give each organ once.")
            try:
                v = float(value)
            except (TypeError, ValueError):
                v = float("nan")
            if not (math.isfinite(v) and v >= 0):
                raise InvalidInputError(
                    f"{arg}[{name!r}] = {value!r}: give a finite, non-negative dose in Gy (a NaN "
                    "would pass every limit unnoticed)")
            values[quantity][key] = v
    for rec in table.to_dict("records"):
        given = values[rec["quantity"]]
        organ = _canonical_organ(rec["organ"])
        if organ not in given:
            continue
        value = given[organ]
        rows.append(
            {
                "organ": rec["organ"],
                "quantity": rec["quantity"],
                "value_gy": value,
                "limit_gy": float(rec["limit_gy"]),
                "fraction_of_limit": value / float(rec["limit_gy"]),
                "exceeded": value > float(rec["limit_gy"]),
                "condition": rec["condition"],
                "source": rec["source"],
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "organ",
            "quantity",
            "value_gy",
            "limit_gy",
            "fraction_of_limit",
            "exceeded",
            "condition",
            "source",
        ],
    )
