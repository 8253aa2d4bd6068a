"""Radiobiology: BED and EQD2 of protracted irradiation, and organ-at-risk limits.

Linear-quadratic model with incomplete repair during continuous, decreasing dose rate (Dale
1985; MIRD Pamphlet 20):

    BED = D + G * D**2 / (alpha/beta),
    G   = 2 / D**2 * integral_0^inf  Ddot(t) * integral_0^t Ddot(w) exp(-mu (t - w)) dw dt,

with ``mu = ln 2 / T_rep``. For a mono-exponential dose rate with instantaneous uptake,
``G = lambda / (lambda + mu)`` (``lambda = ln 2 / T_eff``), which gives Dale's formula
``BED = D (1 + D / (alpha/beta) * lambda / (mu + lambda))``. For a sum of exponentials
``Ddot = sum_i a_i exp(-lambda_i t)`` (an uptake phase is a negative term) the double integral
is analytic: ``G = 2 / D**2 * sum_ij a_i a_j / ((lambda_i + lambda_j)(lambda_i + mu))``.
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
from twin.dose._errors import UnknownTissueError

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

    With ``uptake_half_time_h`` the dose rate is ``exp(-lambda t) - exp(-lambda_u t)`` (uptake
    then clearance) and the analytic multi-exponential G is returned.
    """
    _positive(effective_half_life_h, "effective_half_life_h")
    _positive(repair_half_time_h, "repair_half_time_h")
    lam = _LN2 / jnp.asarray(effective_half_life_h, dtype=jnp.float64)
    mu = _LN2 / jnp.asarray(repair_half_time_h, dtype=jnp.float64)
    if uptake_half_time_h is None:
        return lam / (lam + mu)
    _positive(uptake_half_time_h, "uptake_half_time_h")
    lam_u = _LN2 / jnp.asarray(uptake_half_time_h, dtype=jnp.float64)
    return g_factor_multiexponential(
        jnp.stack([jnp.ones_like(lam), -jnp.ones_like(lam)]),
        jnp.stack([lam, lam_u]),
        repair_half_time_h,
    )


def g_factor_multiexponential(coefficients, rates_per_h, repair_half_time_h) -> jax.Array:
    """Analytic G-factor of ``Ddot(t) = sum_i c_i exp(-k_i t)`` (any scale; negative c allowed).

    ``coefficients`` and ``rates_per_h`` have the same length along axis 0.
    """
    _positive(rates_per_h, "rates_per_h")
    _positive(repair_half_time_h, "repair_half_time_h")
    c = jnp.asarray(coefficients, dtype=jnp.float64)
    k = jnp.asarray(rates_per_h, dtype=jnp.float64)
    if c.shape != k.shape or c.ndim < 1:
        raise InvalidInputError("coefficients and rates_per_h must be arrays of the same shape")
    mu = _LN2 / jnp.asarray(repair_half_time_h, dtype=jnp.float64)
    dose = jnp.sum(c / k, axis=0)
    ci, cj = c[:, None], c[None, :]
    ki, kj = k[:, None], k[None, :]
    double = jnp.sum(ci * cj / ((ki + kj) * (ki + mu)), axis=(0, 1))
    return 2.0 * double / dose**2


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
    """``BED = D + G D**2 / (alpha/beta)``, Gy."""
    _non_negative(dose_gy, "dose_gy")
    _non_negative(g_factor, "g_factor")
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
    doses = jnp.atleast_1d(jnp.asarray(doses_gy, dtype=jnp.float64))
    if (effective_half_lives_h is None) == (g_factors is None):
        raise InvalidInputError("give exactly one of effective_half_lives_h and g_factors")
    ab, trep = _lq_params(tissue, alpha_beta_gy, repair_half_time_h)
    if g_factors is None:
        g = g_factor_monoexponential(jnp.asarray(effective_half_lives_h, jnp.float64), trep)
    else:
        g = jnp.asarray(g_factors, dtype=jnp.float64)
    g = jnp.broadcast_to(g, doses.shape)
    return jnp.sum(bed(doses, g, ab))


def eqd2(bed_gy, alpha_beta_gy) -> jax.Array:
    """Equivalent dose in 2-Gy fractions, ``BED / (1 + 2 / (alpha/beta))``, Gy."""
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
    frame = pd.DataFrame(_read_csv_text(text))
    needed = {"organ", "quantity", "limit_gy", "condition", "source"}
    if not needed <= set(frame.columns):
        raise InvalidInputError(f"OAR limit table needs the columns {sorted(needed)}")
    frame["limit_gy"] = frame["limit_gy"].astype(float)
    bad = sorted(set(frame["quantity"]) - {"absorbed_dose", "bed"})
    if bad:
        raise InvalidInputError(f"OAR quantity must be 'absorbed_dose' or 'bed', got {bad}")
    return frame


def check_oar_limits(
    dose_gy: Mapping[str, float] | None = None,
    bed_gy: Mapping[str, float] | None = None,
    *,
    limits=None,
):
    """Compare organ doses / BEDs (summed over cycles) with the organ-at-risk limits.

    Organ names are matched as :func:`organ_dose` matches them (``kidney`` = ``kidneys``,
    ``salivary`` = ``salivary_glands``, ``marrow`` = ``red_marrow``, any case).

    Returns
    -------
    pandas.DataFrame
        One row per applicable limit: organ, quantity, value_gy, limit_gy, fraction_of_limit,
        exceeded, condition, source.
    """
    import pandas as pd

    table = oar_limits() if limits is None else limits
    if not isinstance(table, pd.DataFrame):
        table = oar_limits(table)
    from twin.dose._organ import _canonical_organ

    rows = []
    values = {}
    for quantity, given in (("absorbed_dose", dose_gy), ("bed", bed_gy)):
        # 'kidney', 'Kidneys', 'salivary', 'marrow' name the limits' organs, as in organ_dose
        values[quantity] = {}
        for name, value in dict(given or {}).items():
            key = _canonical_organ(name)
            if key in values[quantity]:
                raise InvalidInputError(
                    f"{quantity}: {name!r} and another key both name {key}; give each organ once.")
            values[quantity][key] = value
    for rec in table.to_dict("records"):
        given = values[rec["quantity"]]
        organ = _canonical_organ(rec["organ"])
        if organ not in given:
            continue
        value = float(given[organ])
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
