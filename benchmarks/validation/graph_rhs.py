"""An independent numpy right-hand side for a ``pbpk.ModelGraph`` (verification reference).

Written from the rate laws documented in ``pbpk/_graph.py`` (flow ``Q C_src``, exchange
``PS (C_a - C_b)``, transfer ``k A_src``, binding ``kon C_free (R - B_hot - B_cold) - koff B``,
physical decay hot -> cold in every compartment); it shares nothing with ``pbpk._compile``
except the graph data and the parameter values. The state is ``[hot (nc), cold (nc),
integral of hot per body region (nr)]`` in nmol and nmol h. The exact Jacobian is returned as a
scipy sparse matrix so that scipy's Radau can run at tight tolerances in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

__all__ = ["GraphRHS"]


def _factor_value(tokens, params: Mapping[str, float]) -> float:
    value = 1.0
    for tok in tokens:
        if tok.startswith("/"):
            value /= float(params[tok[1:]])
        elif tok.startswith("1-"):
            value *= 1.0 - float(params[tok[2:]])
        else:
            value *= float(params[tok])
    return value


class GraphRHS:
    """``rhs(t, y)`` and ``jac(t, y)`` of a model graph with given parameter values."""

    def __init__(self, graph, params: Mapping[str, float], decay_per_h: float):
        comps = list(graph.compartments)
        self.names = [c.name for c in comps]
        self.nc = nc = len(comps)
        idx = {c.name: i for i, c in enumerate(comps)}
        vol = np.array([float(params[c.volume]) if c.volume else np.nan for c in comps])
        self.body_regions = list(graph.body_regions)
        self.nr = len(self.body_regions)
        self.region_rows = [[idx[c.name] for c in comps if c.region == r] for r in self.body_regions]
        self.lam = float(decay_per_h)
        # linear part for one species: dA/dt = L A (flows, exchanges, transfers)
        lin = np.zeros((nc, nc))
        self.bindings = []
        for p in graph.processes:
            s, t = idx[p.source], idx[p.target]
            k = _factor_value(p.rate, params)
            if p.kind == "flow":
                lin[s, s] -= k / vol[s]
                lin[t, s] += k / vol[s]
            elif p.kind == "transfer":
                lin[s, s] -= k
                lin[t, s] += k
            elif p.kind == "exchange":
                # flux PS (A_s / V_s - A_t / V_t) from s to t
                lin[s, s] -= k / vol[s]
                lin[s, t] += k / vol[t]
                lin[t, s] += k / vol[s]
                lin[t, t] -= k / vol[t]
            elif p.kind == "binding":
                self.bindings.append((s, t, k / vol[s], _factor_value(p.koff, params),
                                      _factor_value(p.receptor, params)))
            else:  # pragma: no cover - the graph validates its kinds
                raise ValueError(p.kind)
        n = 2 * nc + self.nr
        full = np.zeros((n, n))
        full[:nc, :nc] = lin - self.lam * np.eye(nc)
        full[nc:2 * nc, nc:2 * nc] = lin
        full[nc:2 * nc, :nc] += self.lam * np.eye(nc)
        for j, rows in enumerate(self.region_rows):
            full[2 * nc + j, rows] = 1.0
        self.linear = full
        self.n_states = n

    def rhs(self, t, y):
        nc = self.nc
        dy = self.linear @ y
        for s, b, kon_v, koff, rtot in self.bindings:
            free_r = rtot - y[b] - y[nc + b]
            for off in (0, nc):
                f = kon_v * y[off + s] * free_r - koff * y[off + b]
                dy[off + s] -= f
                dy[off + b] += f
        return dy

    def jac(self, t, y):
        nc = self.nc
        J = self.linear.copy()
        for s, b, kon_v, koff, rtot in self.bindings:
            free_r = rtot - y[b] - y[nc + b]
            for off in (0, nc):
                # f = kon_v * A_s * free_r - koff * B, with free_r = R - B_hot - B_cold
                dfs = {off + s: kon_v * free_r, b: -kon_v * y[off + s], nc + b: -kon_v * y[off + s]}
                dfs[off + b] = dfs.get(off + b, 0.0) - koff
                for col, v in dfs.items():
                    J[off + s, col] -= v
                    J[off + b, col] += v
        return sp.csr_matrix(J)

    def initial_state(self, dose_compartment: str, hot_nmol: float, cold_nmol: float) -> np.ndarray:
        y0 = np.zeros(self.n_states)
        i = self.names.index(dose_compartment)
        y0[i] = hot_nmol
        y0[self.nc + i] = cold_nmol
        return y0

    def region_hot(self, y: np.ndarray, graph, regions) -> np.ndarray:
        """Hot amount per region (rows: regions) from states ``y`` of shape (n_states, T)."""
        out = []
        for r in regions:
            rows = [self.names.index(c.name) for c in graph.compartments_in(r)]
            out.append(y[rows].sum(axis=0))
        return np.array(out)
