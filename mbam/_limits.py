"""Identify the limit a geodesic approaches: parameters -> 0 / infinity, finite combinations, folds."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np

from ._geodesic import (
    STOP_COLLAPSE,
    STOP_FAILURE,
    STOP_FOLD,
    STOP_RUNAWAY,
    GeodesicResult,
    initial_velocity,
    integrate_geodesic,
)
from ._model import Model, _option

__all__ = [
    "Boundary",
    "BoundarySearch",
    "FiniteCombination",
    "Fold",
    "LimitReport",
    "ParameterLimit",
    "find_boundaries",
    "identify_limit",
]

NO_BOUNDARY = "none"
KIND_LIMIT = "limit"
KIND_FOLD = "fold"


@dataclasses.dataclass(frozen=True)
class ParameterLimit:
    """Parameter ``name`` goes to ``direction``: ``"0"`` or ``"inf"`` for a log-parameter,
    ``"-inf"`` or ``"+inf"`` for a linear one; ``value`` is theta (or x) at the path's end."""

    name: str
    index: int
    direction: str
    value: float

    def describe(self) -> str:
        arrow = {"0": "0", "inf": "infinity", "+inf": "+infinity", "-inf": "-infinity"}
        return f"{self.name} -> {arrow[self.direction]}"


@dataclasses.dataclass(frozen=True)
class FiniteCombination:
    """A power product prod(theta_i ** exponents_i) that stays finite while its factors run off.

    ``value`` at the path's end; ``drift`` = relative change over the last 10 % of the path
    (small when the combination has converged)."""

    names: tuple[str, ...]
    indices: tuple[int, ...]
    exponents: tuple[int, ...]
    value: float
    drift: float

    @property
    def kind(self) -> str:
        """``"ratio"``, ``"product"`` or ``"power_product"``."""
        e = self.exponents
        if len(e) == 2 and abs(e[0]) == abs(e[1]) == 1:
            return "ratio" if e[0] * e[1] < 0 else "product"
        return "power_product"

    def expression(self) -> str:
        num = [(n, e) for n, e in zip(self.names, self.exponents) if e > 0]
        den = [(n, -e) for n, e in zip(self.names, self.exponents) if e < 0]

        def fmt(terms):
            return "*".join(n if e == 1 else f"{n}^{e}" for n, e in terms)

        if not den:
            return fmt(num)
        if not num:
            return f"1/({fmt(den)})"
        d = fmt(den)
        return f"{fmt(num)}/{d if len(den) == 1 else '(' + d + ')'}"

    def describe(self) -> str:
        return f"{self.expression()} stays finite ({self.value:.4g})"


@dataclasses.dataclass(frozen=True)
class Fold:
    """Two parameters merge on an interior fold line (theta_i = theta_j); ``value`` = their
    geometric mean at the fold."""

    names: tuple[str, str]
    indices: tuple[int, int]
    value: float

    def describe(self) -> str:
        return f"fold: {self.names[0]} and {self.names[1]} merge ({self.names[0]} = {self.names[1]} ~ {self.value:.4g})"


@dataclasses.dataclass(frozen=True, eq=False)
class LimitReport:
    """What the geodesic found.

    ``kind``: ``"limit"`` (parameters ran to 0/infinity), ``"fold"`` (interior merge) or
    ``"none"`` (no boundary: the path ended on its length/step limit without metric collapse).
    ``finite``: (name, value) of the parameters that stayed finite (theta for log-parameters).
    """

    kind: str
    stop_reason: str
    limits: tuple[ParameterLimit, ...]
    combinations: tuple[FiniteCombination, ...]
    folds: tuple[Fold, ...]
    finite: tuple[tuple[str, float], ...]
    velocity: np.ndarray
    eigenvalue_ratio: float

    @property
    def description(self) -> str:
        if self.kind == NO_BOUNDARY:
            return (f"no boundary found (stopped on {self.stop_reason}; "
                    f"lambda_min/lambda_max = {self.eigenvalue_ratio:.3g})")
        parts = [f.describe() for f in self.folds]
        parts += [p.describe() for p in self.limits]
        parts += [c.describe() for c in self.combinations]
        if self.finite:
            parts.append("finite: " + ", ".join(f"{n} ~ {v:.4g}" for n, v in self.finite))
        return "; ".join(parts)

    def as_dict(self) -> dict:
        """Plain JSON-serialisable form (names, directions, values, description)."""
        return {
            "kind": self.kind,
            "stop_reason": self.stop_reason,
            "description": self.description,
            "limits": [dataclasses.asdict(p) for p in self.limits],
            "combinations": [
                {**dataclasses.asdict(c), "expression": c.expression(), "kind": c.kind}
                for c in self.combinations
            ],
            "folds": [dataclasses.asdict(f) for f in self.folds],
            "finite": {n: v for n, v in self.finite},
            "velocity": [float(u) for u in self.velocity],
            "eigenvalue_ratio": self.eigenvalue_ratio,
        }

    def direction_of(self, name: str) -> str | None:
        """'0' / 'inf' / '+inf' / '-inf' for a parameter in the limit, else None."""
        for p in self.limits:
            if p.name == name:
                return p.direction
        return None


def _value(x, i, log_params):
    return float(np.exp(x[i])) if log_params[i] else float(x[i])


def identify_limit(
    geodesic: GeodesicResult,
    *,
    frac: float = 0.3,
    max_denominator: int = 3,
    fold_max_separation: float = 0.25,
    collapse_drop: float = 1e-2,
) -> LimitReport:
    """Classify the end of a geodesic.

    * ``fold``: the path stopped at a local minimum of lambda_min/lambda_max; the two largest
      components of the sloppiest eigenvector have opposite signs and the two parameters are
      within ``fold_max_separation`` log units => they merge.
    * ``limit``: components of the final unit velocity with ``|v_i| >= frac * max|v|`` run off
      (v_i > 0: theta_i -> infinity, v_i < 0: theta_i -> 0); for two or more such parameters the
      power products prod theta^w with w . v = 0 (w small integers, ratios to the leading one)
      stay finite.
    * ``none``: stopped on the length/step limit, or ran away / failed while
      lambda_min/lambda_max stayed above ``collapse_drop`` times its starting value (a flat
      direction with no boundary, as in a linear model).
    """
    _option("frac", frac, high=1.0)
    max_denominator = _option("max_denominator", max_denominator, integer=True, low=1, strict=False)
    _option("fold_max_separation", fold_max_separation, strict=False)
    _option("collapse_drop", collapse_drop)
    names, lp = geodesic.names, geodesic.log_params
    x_end = geodesic.x_end
    v = geodesic.v_end / np.linalg.norm(geodesic.v_end)
    ratio = float(geodesic.ratios[-1])
    reason = geodesic.stop_reason

    if reason == STOP_FOLD:
        u = geodesic.sloppiest[-1]
        order = np.argsort(-np.abs(u))
        i, j = sorted(int(k) for k in order[:2])
        if u[i] * u[j] < 0 and abs(x_end[i] - x_end[j]) <= fold_max_separation:
            fold = Fold((names[i], names[j]), (i, j), float(np.exp(0.5 * (x_end[i] + x_end[j])))
                        if lp[i] and lp[j] else float(0.5 * (x_end[i] + x_end[j])))
            finite = tuple((names[k], _value(x_end, k, lp)) for k in range(len(names))
                           if k not in (i, j))
            return LimitReport(KIND_FOLD, reason, (), (), (fold,), finite, v, ratio)
        # a local minimum that is not a clean merge: report as an unresolved limit below

    collapsed = ratio < collapse_drop * float(geodesic.ratios[0])
    if reason not in (STOP_COLLAPSE, STOP_RUNAWAY, STOP_FAILURE, STOP_FOLD) or (
        reason in (STOP_RUNAWAY, STOP_FAILURE) and not collapsed
    ):
        finite = tuple((n, _value(x_end, k, lp)) for k, n in enumerate(names))
        return LimitReport(NO_BOUNDARY, reason, (), (), (), finite, v, ratio)

    amax = np.max(np.abs(v))
    S = [k for k in range(len(v)) if abs(v[k]) >= frac * amax]
    S.sort(key=lambda k: -abs(v[k]))
    limits = []
    for k in sorted(S):
        if lp[k]:
            d = "inf" if v[k] > 0 else "0"
        else:
            d = "+inf" if v[k] > 0 else "-inf"
        limits.append(ParameterLimit(names[k], k, d, _value(x_end, k, lp)))

    # point 10 % of the path length before the end, for the drift of combinations
    t_back = geodesic.ts[-1] - 0.1 * (geodesic.ts[-1] - geodesic.ts[0])
    kb = int(np.searchsorted(geodesic.ts, t_back))
    x_back = geodesic.xs[max(0, min(kb, len(geodesic.ts) - 2))]
    combos = []
    lead = S[0] if S else None
    for j in S[1:]:
        if not (lp[lead] and lp[j]):
            continue
        r = Fraction(float(-v[j] / v[lead])).limit_denominator(max_denominator)
        w_lead, w_j = r.numerator, r.denominator
        if w_lead == 0:
            continue
        idx = tuple(sorted((lead, j)))
        w = {lead: w_lead, j: w_j}
        exps = [w[idx[0]], w[idx[1]]]
        if exps[0] < 0:
            exps = [-e for e in exps]
        w_vec = np.zeros(len(v))
        w_vec[list(idx)] = exps
        val = float(np.exp(w_vec @ x_end))
        drift = float(abs(np.expm1(w_vec @ (x_end - x_back))))
        combos.append(FiniteCombination(tuple(names[k] for k in idx), idx, tuple(exps), val, drift))
    finite = tuple((names[k], _value(x_end, k, lp)) for k in range(len(names)) if k not in S)
    return LimitReport(KIND_LIMIT, reason, tuple(limits), tuple(combos), (), finite, v, ratio)


@dataclasses.dataclass(frozen=True, eq=False)
class Boundary:
    """One geodesic and the limit identified at its end; ``direction`` is ``"forward"``
    (the v.a >= 0 sign) or ``"reverse"``."""

    direction: str
    geodesic: GeodesicResult
    limit: LimitReport


@dataclasses.dataclass(frozen=True, eq=False)
class BoundarySearch:
    """Both directions from the i-th sloppiest eigenvector."""

    forward: Boundary
    reverse: Boundary

    def __iter__(self):
        return iter((self.forward, self.reverse))


def find_boundaries(model: Model, x0, *, i: int = 0, identify_kwargs: dict | None = None,
                    **geodesic_kwargs) -> BoundarySearch:
    """Integrate the geodesic both ways from the i-th sloppiest eigendirection at ``x0`` and
    identify each end's limit. ``geodesic_kwargs`` go to :func:`integrate_geodesic`."""
    v0 = initial_velocity(model, x0, i=i, forward=True)
    out = []
    for name, v in (("forward", v0), ("reverse", -v0)):
        g = integrate_geodesic(model, x0, v, **geodesic_kwargs)
        out.append(Boundary(name, g, identify_limit(g, **(identify_kwargs or {}))))
    return BoundarySearch(*out)
