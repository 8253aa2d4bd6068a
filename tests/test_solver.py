"""Tests of the sparse LU (pbpk._sparse) and the RODAS4 integrator (pbpk._rodas).

Every numeric reference is independent of the code under test: matrix exponentials
(scipy.linalg.expm), numpy.linalg.solve, closed-form solutions, scipy's Radau at
rtol 1e-10, or central finite differences.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.sparse
from scipy.integrate import solve_ivp

import pbpk  # noqa: F401  (turns on x64)
from pbpk._rodas import (
    STATUS_FAILED,
    STATUS_MAX_STEPS,
    STATUS_OK,
    _rodas_step,
    rodas4_solve,
    rodas4_solve_batched,
    status_message,
)
from pbpk._sparse import SparseLUPlan

# --------------------------------------------------------------------------------------------
# a synthetic whole-body compartmental model (shared with benchmarks/bench_solver_micro.py)
# --------------------------------------------------------------------------------------------


def make_block_model(n_rec: int = 10, n_nonrec: int = 8, seed: int = 0) -> dict:
    """PBPK-like system: plasma + lungs, receptor organs {vas, int, B, I} and non-receptor
    organs {vas, int}, hot and cold ligand sharing one receptor pool per organ (saturable
    binding kon*C_int*(R0 - B_hot - B_cold)), hot -> cold decay on every amount state,
    renal filtration to urine, release to a sink, plus hot time-integral states.

    ``rhs`` and ``jac_values`` work for one system (``y`` of shape ``(n,)``, per-organ
    parameters ``(p,)`` and scalars ``()``) and for a batch stored last (``(n, B)``,
    ``(p, B)``, ``(B,)``). Amounts are conserved exactly (sum of all amount states).
    Rates span about 1e-3 .. 3e3 per hour.
    """
    rng = np.random.default_rng(seed)
    names: list[str] = []
    idx: dict = {}

    def add(name):
        names.append(name)
        return len(names) - 1

    for s in "hc":
        for nm in ("art", "ven", "lung_vas", "lung_int", "urine", "released"):
            idx[nm, s] = add(f"{nm}_{s}")
        for j in range(n_nonrec):
            for c in ("vas", "int"):
                idx[f"n{j}_{c}", s] = add(f"n{j}_{c}_{s}")
        for r in range(n_rec):
            for c in ("vas", "int", "B", "I"):
                idx[f"r{r}_{c}", s] = add(f"r{r}_{c}_{s}")
    n_amount = len(names)
    tia = [add(f"tia_r{r}") for r in range(n_rec)] + [add("tia_blood")]
    n = len(names)
    n_org = n_rec + n_nonrec
    args = {
        "F": np.concatenate([rng.uniform(0.3, 40, n_rec), rng.uniform(1, 60, n_nonrec)]),
        "Vvas": np.concatenate([rng.uniform(0.003, 0.3, n_rec), rng.uniform(0.05, 0.9, n_nonrec)]),
        "Vint": np.concatenate([rng.uniform(0.015, 0.4, n_rec), rng.uniform(0.1, 9, n_nonrec)]),
        "PS": np.concatenate([rng.uniform(0.5, 20, n_rec), rng.uniform(1, 20, n_nonrec)]),
        "R0": rng.uniform(0.5, 10, n_rec),
        "kon": np.full(n_rec, 2.4),
        "koff": np.full(n_rec, 0.02),
        "kint": rng.uniform(0.01, 0.1, n_rec),
        "krel": rng.uniform(0.001, 0.01, n_rec),
        "G": np.array(7.2),
        "Vart": np.array(0.9),
        "Vven": np.array(1.6),
        "Vlv": np.array(0.15),
        "Vli": np.array(0.3),
        "PSl": np.array(30.0),
        "lam": np.array(np.log(2) / 159.5),
    }
    kinds = (
        "art_out",
        "vas_out",
        "ven_out",
        "lung_out",
        "vi",
        "iv",
        "koff",
        "kint",
        "krel",
        "gfr",
        "dec",
        "lvi",
        "liv",
    )
    tr: dict = {k: ([], [], []) for k in kinds}  # src, dst, organ

    def add_tr(a, b, k, o=0):
        tr[k][0].append(a)
        tr[k][1].append(b)
        tr[k][2].append(o)

    for s in "hc":
        for o in range(n_org):
            c = f"r{o}" if o < n_rec else f"n{o - n_rec}"
            add_tr(idx["art", s], idx[c + "_vas", s], "art_out", o)
            add_tr(idx[c + "_vas", s], idx["ven", s], "vas_out", o)
            add_tr(idx[c + "_vas", s], idx[c + "_int", s], "vi", o)
            add_tr(idx[c + "_int", s], idx[c + "_vas", s], "iv", o)
            if o < n_rec:
                add_tr(idx[c + "_B", s], idx[c + "_int", s], "koff", o)
                add_tr(idx[c + "_B", s], idx[c + "_I", s], "kint", o)
                add_tr(idx[c + "_I", s], idx["released", s], "krel", o)
        add_tr(idx["r0_vas", s], idx["urine", s], "gfr")
        add_tr(idx["ven", s], idx["lung_vas", s], "ven_out")
        add_tr(idx["lung_vas", s], idx["art", s], "lung_out")
        add_tr(idx["lung_vas", s], idx["lung_int", s], "lvi")
        add_tr(idx["lung_int", s], idx["lung_vas", s], "liv")
    for i in range(n_amount // 2):
        add_tr(i, i + n_amount // 2, "dec")  # hot -> cold decay
    src = np.concatenate([np.asarray(tr[k][0], int) for k in kinds])
    dst = np.concatenate([np.asarray(tr[k][1], int) for k in kinds])
    org = {k: np.asarray(tr[k][2], int) for k in kinds}
    cnt = {k: len(tr[k][0]) for k in kinds}

    def rates(a):
        def rep(x, k):
            return jnp.broadcast_to(x, (cnt[k],) + jnp.shape(x))

        fl = jnp.sum(a["F"], axis=0)
        blocks = {
            "art_out": a["F"][org["art_out"]] / a["Vart"],
            "vas_out": a["F"][org["vas_out"]] / a["Vvas"][org["vas_out"]],
            "ven_out": rep(fl / a["Vven"], "ven_out"),
            "lung_out": rep(fl / a["Vlv"], "lung_out"),
            "vi": a["PS"][org["vi"]] / a["Vvas"][org["vi"]],
            "iv": a["PS"][org["iv"]] / a["Vint"][org["iv"]],
            "koff": a["koff"][org["koff"]],
            "kint": a["kint"][org["kint"]],
            "krel": a["krel"][org["krel"]],
            "gfr": rep(a["G"] / a["Vvas"][0], "gfr"),
            "dec": rep(a["lam"], "dec"),
            "lvi": rep(a["PSl"] / a["Vlv"], "lvi"),
            "liv": rep(a["PSl"] / a["Vli"], "liv"),
        }
        return jnp.concatenate([blocks[k] for k in kinds], axis=0)

    r_int = {s: np.array([idx[f"r{r}_int", s] for r in range(n_rec)]) for s in "hc"}
    r_b = {s: np.array([idx[f"r{r}_B", s] for r in range(n_rec)]) for s in "hc"}
    tia_rows, tia_cols = [], []
    for r in range(n_rec):
        for c in ("vas", "int", "B", "I"):
            tia_rows.append(tia[r])
            tia_cols.append(idx[f"r{r}_{c}", "h"])
    for nm in ("art", "ven"):
        tia_rows.append(tia[-1])
        tia_cols.append(idx[nm, "h"])
    tia_rows, tia_cols = np.array(tia_rows), np.array(tia_cols)

    def rhs(y, a):
        fl = rates(a) * y[src]
        dy = jnp.zeros_like(y).at[dst].add(fl).at[src].add(-fl)
        free = a["R0"] - y[r_b["h"]] - y[r_b["c"]]
        for s in "hc":
            b = a["kon"] * y[r_int[s]] / a["Vint"][:n_rec] * free
            dy = dy.at[r_b[s]].add(b).at[r_int[s]].add(-b)
        return dy.at[tia_rows].add(y[tia_cols])

    prow, pcol = [dst, src], [src, src]
    for s in "hc":
        prow += [r_b[s], r_b[s], r_b[s], r_int[s], r_int[s], r_int[s]]
        pcol += [r_int[s], r_b["h"], r_b["c"], r_int[s], r_b["h"], r_b["c"]]
    prow.append(tia_rows)
    pcol.append(tia_cols)
    rows, cols = np.concatenate(prow), np.concatenate(pcol)

    def jac_values(y, a):
        k = rates(a)
        free = a["R0"] - y[r_b["h"]] - y[r_b["c"]]
        parts = [k, -k]
        for s in "hc":
            da = a["kon"] / a["Vint"][:n_rec] * free
            db = a["kon"] * y[r_int[s]] / a["Vint"][:n_rec]
            parts += [da, -db, -db, -da, db, db]
        parts.append(jnp.ones((len(tia_rows),) + y.shape[1:], dtype=y.dtype))
        return jnp.concatenate(parts, axis=0)

    y0 = np.zeros(n)
    y0[idx["ven", "h"]] = 10.0  # nmol hot
    y0[idx["ven", "c"]] = 80.0  # nmol cold
    return {
        "n": n,
        "n_amount": n_amount,
        "rows": rows,
        "cols": cols,
        "rhs": rhs,
        "jac_values": jac_values,
        "y0": y0,
        "args": {k: jnp.asarray(v, dtype=jnp.float64) for k, v in args.items()},
        "names": names,
        "tia": np.array(tia),
        "idx": idx,
    }


def cohort_args(args: dict, n_batch: int, sigma: float = 0.3, seed: int = 1) -> dict:
    """Per-system log-normal multipliers on F, PS, R0, kint, koff, G (leading batch axis)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in args.items():
        v = np.asarray(v, float)
        if k in ("F", "PS", "R0", "kint", "koff", "G"):
            mult = np.exp(sigma * rng.standard_normal((n_batch,) + v.shape))
        else:
            mult = np.ones((n_batch,) + v.shape)
        out[k] = jnp.asarray(v[None] * mult)
    return out


def _radau(f, jac, y0, t_save, rtol=1e-10, atol=1e-14):
    sol = solve_ivp(
        lambda t, y: f(y),
        (0.0, float(t_save[-1])),
        y0,
        method="Radau",
        t_eval=t_save,
        rtol=rtol,
        atol=atol,
        jac=lambda t, y: jac(y),
    )
    assert sol.status == 0, sol.message
    return sol.y.T


# --------------------------------------------------------------------------------------------
# sparse LU
# --------------------------------------------------------------------------------------------


def _random_pattern(n, density, rng):
    mask = rng.random((n, n)) < density
    rows, cols = np.nonzero(mask)
    # repeat a few entries: duplicates must be summed
    dup = rng.choice(rows.size, size=max(1, rows.size // 10), replace=False)
    return np.concatenate([rows, rows[dup]]), np.concatenate([cols, cols[dup]])


def _dense(n, rows, cols, vals):
    a = np.zeros((n, n))
    np.add.at(a, (rows, cols), vals)
    return a


@functools.cache
def _lu_solve_fn():
    @functools.partial(jax.jit, static_argnums=0)
    def fn(plan, vals, shift, b):
        return plan.solve(plan.factor(plan.assemble(vals, shift)), b)

    return fn


@pytest.mark.parametrize("case", ["block", "random24", "tridiag"])
def test_sparse_lu_matches_numpy(case):
    rng = np.random.default_rng(42)
    if case == "block":
        m = make_block_model(3, 2)
        n, rows, cols = m["n"], m["rows"], m["cols"]
    elif case == "tridiag":
        n = 12
        rows = np.concatenate([np.arange(1, n), np.arange(n - 1)])
        cols = np.concatenate([np.arange(n - 1), np.arange(1, n)])
    else:
        n = int(case[6:])
        rows, cols = _random_pattern(n, 0.1, rng)
    plan = SparseLUPlan.from_pattern(n, rows, cols)
    assert plan.n_slots >= n + len(
        set(zip(rows.tolist(), cols.tolist())) - {(i, i) for i in range(n)}
    )
    fn = _lu_solve_fn()
    for _ in range(3):
        vals = rng.normal(size=rows.size)
        a = _dense(n, rows, cols, vals)
        shift = np.abs(a).sum(axis=0).max() + np.abs(a).sum(axis=1).max() + 1.0
        b = rng.normal(size=n)
        x = np.asarray(fn(plan, jnp.asarray(vals), shift, jnp.asarray(b)))
        x_ref = np.linalg.solve(shift * np.eye(n) - a, b)
        np.testing.assert_allclose(x, x_ref, rtol=1e-12, atol=1e-14 * np.abs(x_ref).max())
    # batch stored last: columns are independent systems
    vals = rng.normal(size=(rows.size, 3))
    b = rng.normal(size=(n, 3))
    x = np.asarray(fn(plan, jnp.asarray(vals), 50.0 + 5 * n, jnp.asarray(b)))
    for j in range(3):
        x_ref = np.linalg.solve(
            (50.0 + 5 * n) * np.eye(n) - _dense(n, rows, cols, vals[:, j]), b[:, j]
        )
        np.testing.assert_allclose(x[:, j], x_ref, rtol=1e-12, atol=1e-14)


def test_sparse_lu_is_differentiable():
    rng = np.random.default_rng(3)
    n = 10
    rows, cols = _random_pattern(n, 0.2, rng)
    plan = SparseLUPlan.from_pattern(n, rows, cols)
    vals = jnp.asarray(rng.normal(size=rows.size))
    b = jnp.asarray(rng.normal(size=n))
    dv = jnp.asarray(rng.normal(size=rows.size))

    def solve(v):
        return plan.solve(plan.factor(plan.assemble(v, 30.0)), b)

    x, dx = jax.jit(lambda v, d: jax.jvp(solve, (v,), (d,)))(vals, dv)
    m = 30.0 * np.eye(n) - _dense(n, rows, cols, np.asarray(vals))
    dm = -_dense(n, rows, cols, np.asarray(dv))
    dx_ref = -np.linalg.solve(m, dm @ np.asarray(x))  # d(M^-1 b) = -M^-1 dM x
    np.testing.assert_allclose(np.asarray(dx), dx_ref, rtol=1e-11, atol=1e-13)
    g = jax.jit(jax.grad(lambda v: jnp.sum(solve(v) ** 2)))(vals)
    np.testing.assert_allclose(float(g @ dv), float(2 * np.asarray(x) @ dx_ref), rtol=1e-10)


def test_plan_is_hashable_and_validates():
    p1 = SparseLUPlan.from_pattern(3, [0, 1], [1, 2])
    p2 = SparseLUPlan.from_pattern(3, np.array([0, 1]), np.array([1, 2]))
    assert p1 == p2 and hash(p1) == hash(p2)
    assert p1 != SparseLUPlan.from_pattern(3, [0, 2], [1, 1])
    with pytest.raises(ValueError):
        SparseLUPlan.from_pattern(3, [0, 3], [1, 2])
    with pytest.raises(ValueError):
        SparseLUPlan.from_pattern(3, [0, 1], [1])


def test_block_pattern_gives_little_fill():
    m = make_block_model()
    plan = SparseLUPlan.from_pattern(m["n"], m["rows"], m["cols"])
    # organ blocks coupled through a few plasma nodes: fill stays a fraction of the pattern,
    # and the numeric work is a handful of vectorised levels, not n sequential steps
    assert plan.n_fill < 0.5 * len(set(zip(m["rows"].tolist(), m["cols"].tolist())))
    assert max(plan.n_levels) <= 20 < m["n"]


# --------------------------------------------------------------------------------------------
# RODAS4 on problems with closed-form solutions
# --------------------------------------------------------------------------------------------

_A2 = np.array([[-2.0, 0.5], [1.5, -0.7]])
_R2, _C2 = np.nonzero(_A2)
_PLAN2 = SparseLUPlan.from_pattern(2, _R2, _C2)


def _lin_rhs(y, a):
    return jnp.stack([a[0] * y[0] + a[1] * y[1], a[2] * y[0] + a[3] * y[1]])


def _lin_jac(y, a):
    return a


@functools.cache
def _lin_solver():
    @functools.partial(jax.jit, static_argnames=("max_steps",))
    def fn(y0, a, t_save, max_steps=20_000):
        return rodas4_solve(
            _lin_rhs,
            _lin_jac,
            _PLAN2,
            y0,
            a,
            0.0,
            t_save,
            rtol=1e-9,
            atol=1e-13,
            max_steps=max_steps,
        )

    return fn


def test_linear_two_compartment_matches_expm_and_lands_on_save_times():
    t_save = np.array([0.0, 0.0, 0.3, 1.0, 1.0, 2.5, 7.0, 10.0])  # with t0 and duplicates
    y0 = np.array([1.0, 0.0])
    sol = _lin_solver()(jnp.asarray(y0), jnp.asarray(_A2[_R2, _C2]), jnp.asarray(t_save))
    assert int(sol.status) == STATUS_OK
    assert float(sol.t_final) == t_save[-1]  # exact landing, no overshoot
    ref = np.stack([scipy.linalg.expm(_A2 * t) @ y0 for t in t_save])
    np.testing.assert_array_equal(np.asarray(sol.ys[0]), y0)
    np.testing.assert_allclose(np.asarray(sol.ys), ref, rtol=2e-8, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(sol.ys[3]), np.asarray(sol.ys[4]))
    assert status_message(sol.status) == "success"


def test_fourth_order_convergence():
    """Fixed steps on y1' = -y1^2 (y1 = 1/(1+t)) and a linear 2x2 block (expm)."""
    b = np.array([[-3.0, 1.0], [2.0, -4.0]])

    def f(y):
        return jnp.concatenate([-(y[:1] ** 2), jnp.asarray(b) @ y[1:]])

    rows = np.array([0, 1, 1, 2, 2])
    cols = np.array([0, 1, 2, 1, 2])
    plan = SparseLUPlan.from_pattern(3, rows, cols)

    def jac(y):
        return jnp.concatenate([-2 * y[:1], jnp.asarray(b[[0, 0, 1, 1], [0, 1, 0, 1]])])

    y0 = np.array([1.0, 1.0, -0.5])
    t1 = 2.0
    exact = np.concatenate([[1.0 / (1.0 + t1)], scipy.linalg.expm(b * t1) @ y0[1:]])

    @functools.partial(jax.jit, static_argnums=0)
    def integrate(n_steps):
        h = t1 / n_steps
        return jax.lax.fori_loop(
            0, n_steps, lambda i, y: _rodas_step(f, jac, plan, y, h)[0], jnp.asarray(y0)
        )

    errs = np.array([np.abs(np.asarray(integrate(k)) - exact).max() for k in (8, 16, 32, 64)])
    orders = np.log2(errs[:-1] / errs[1:])
    assert np.all(orders > 3.7) and np.all(orders < 4.5), (errs, orders)


# --------------------------------------------------------------------------------------------
# stiff problems against scipy Radau
# --------------------------------------------------------------------------------------------


def _rober_rhs(y, k):
    r1 = k[0] * y[0]
    r2 = k[1] * y[1] * y[2]
    r3 = k[2] * y[1] ** 2
    return jnp.stack([-r1 + r2, r1 - r2 - r3, r3])


_ROBER_ROWS = np.array([0, 0, 0, 1, 1, 1, 2])
_ROBER_COLS = np.array([0, 1, 2, 0, 1, 2, 1])


def _rober_jac(y, k):
    return jnp.stack(
        [
            -k[0],
            k[1] * y[2],
            k[1] * y[1],
            k[0],
            -k[1] * y[2] - 2 * k[2] * y[1],
            -k[1] * y[1],
            2 * k[2] * y[1],
        ]
    )


def test_robertson_matches_radau():
    k = np.array([0.04, 1e4, 3e7])
    y0 = np.array([1.0, 0.0, 0.0])
    t_save = np.concatenate([[0.0], np.logspace(-5, 7, 25)])

    def f_np(y):
        return np.array(
            [
                -k[0] * y[0] + k[1] * y[1] * y[2],
                k[0] * y[0] - k[1] * y[1] * y[2] - k[2] * y[1] ** 2,
                k[2] * y[1] ** 2,
            ]
        )

    def j_np(y):
        return _dense(3, _ROBER_ROWS, _ROBER_COLS, np.asarray(_rober_jac(y, k)))

    ref = _radau(f_np, j_np, y0, t_save, rtol=1e-11, atol=1e-20)
    plan = SparseLUPlan.from_pattern(3, _ROBER_ROWS, _ROBER_COLS)
    sol = jax.jit(
        lambda y, k: rodas4_solve(
            _rober_rhs, _rober_jac, plan, y, k, 0.0, t_save, rtol=1e-8, atol=1e-14
        )
    )(jnp.asarray(y0), jnp.asarray(k))
    assert int(sol.status) == STATUS_OK
    ys = np.asarray(sol.ys)
    mask = np.abs(ref) > 1e-10
    rel = np.abs(ys - ref)[mask] / np.abs(ref)[mask]
    assert rel.max() < 1e-6, rel.max()
    np.testing.assert_allclose(ys.sum(axis=1), 1.0, rtol=1e-12)  # linear invariant


@functools.cache
def _block_setup():
    m = make_block_model(7, 6)  # 100 states
    plan = SparseLUPlan.from_pattern(m["n"], m["rows"], m["cols"])
    return m, plan


def test_block_model_jacobian_is_exact():
    m, _ = _block_setup()
    y = jnp.asarray(m["y0"] + np.random.default_rng(0).uniform(0, 1, m["n"]))
    jd = _dense(m["n"], m["rows"], m["cols"], np.asarray(m["jac_values"](y, m["args"])))
    np.testing.assert_allclose(
        jd, np.asarray(jax.jit(jax.jacfwd(m["rhs"]))(y, m["args"])), atol=1e-12
    )


def test_block_model_matches_radau_and_conserves_mass():
    m, plan = _block_setup()
    n, args = m["n"], m["args"]
    assert n == 100
    t_save = np.concatenate([[0.0], np.geomspace(0.01, 300.0, 30)])
    rhs_c = jax.jit(lambda y: m["rhs"](y, args))
    jv_c = jax.jit(lambda y: m["jac_values"](y, args))

    def jac_sparse(y):
        return scipy.sparse.csc_matrix((np.asarray(jv_c(y)), (m["rows"], m["cols"])), shape=(n, n))

    ref = _radau(lambda y: np.asarray(rhs_c(y)), jac_sparse, m["y0"], t_save)
    sol = jax.jit(
        lambda y0, a: rodas4_solve(
            m["rhs"], m["jac_values"], plan, y0, a, 0.0, t_save, rtol=1e-8, atol=1e-14
        )
    )(jnp.asarray(m["y0"]), args)
    assert int(sol.status) == STATUS_OK
    ys = np.asarray(sol.ys)
    scale = np.abs(ref).max()
    mask = np.abs(ref) > 1e-6 * scale
    rel = np.abs(ys - ref)[mask] / np.abs(ref)[mask]
    assert rel.max() < 1e-6, rel.max()
    tia = m["tia"]
    assert (np.abs(ys - ref)[:, tia] / np.abs(ref[-1, tia])).max() < 1e-7
    total = ys[:, : m["n_amount"]].sum(axis=1)
    np.testing.assert_allclose(total, 90.0, rtol=1e-9)


# --------------------------------------------------------------------------------------------
# cohorts and derivatives (small block model: 1 receptor organ, 22 states)
# --------------------------------------------------------------------------------------------

_T_SMALL = np.array([0.0, 0.5, 2.0, 6.0])


@functools.cache
def _small():
    m = make_block_model(1, 0, seed=3)
    plan = SparseLUPlan.from_pattern(m["n"], m["rows"], m["cols"])
    kw = {"rtol": 1e-10, "atol": 1e-14}

    def solve(y0, a, mode="forward"):
        return rodas4_solve(m["rhs"], m["jac_values"], plan, y0, a, 0.0, _T_SMALL, mode=mode, **kw)

    def with_theta(theta, mode):
        # log-multipliers on R0, kint, F, PS
        a = dict(m["args"])
        a["R0"] = a["R0"] * jnp.exp(theta[0])
        a["kint"] = a["kint"] * jnp.exp(theta[1])
        a["F"] = a["F"] * jnp.exp(theta[2])
        a["PS"] = a["PS"] * jnp.exp(theta[3])
        ys = solve(jnp.asarray(m["y0"]), a, mode).ys
        # bound hot at 6 h, TIA of the receptor organ at 6 h, cold internalised at 2 h
        return jnp.stack(
            [ys[3, m["idx"]["r0_B", "h"]], ys[3, m["tia"][0]], ys[2, m["idx"]["r0_I", "c"]]]
        )

    return {
        "m": m,
        "plan": plan,
        "kw": kw,
        "solve": jax.jit(solve),
        "outputs": jax.jit(lambda th: with_theta(th, "forward")),
        "with_theta": with_theta,
    }


def test_vmap_over_parameter_sets_equals_single_solves():
    s = _small()
    m = s["m"]
    args_b = cohort_args(m["args"], 8)
    y0_b = jnp.asarray(np.tile(m["y0"], (8, 1)) * np.linspace(0.5, 2.0, 8)[:, None])
    sol_b = jax.jit(jax.vmap(s["solve"]))(y0_b, args_b)
    assert np.all(np.asarray(sol_b.status) == STATUS_OK)
    steps = set()
    for i in range(8):
        a_i = jax.tree_util.tree_map(lambda x, i=i: x[i], args_b)
        sol_i = s["solve"](y0_b[i], a_i)
        np.testing.assert_allclose(
            np.asarray(sol_b.ys[i]), np.asarray(sol_i.ys), rtol=1e-10, atol=1e-16
        )
        assert int(sol_b.n_steps[i]) == int(sol_i.n_steps)
        steps.add(int(sol_i.n_steps))
    assert len(steps) > 1  # the systems really took different step sequences

    # the batch-last solver with natively batched functions gives the same answer
    args_t = jax.tree_util.tree_map(lambda x: jnp.moveaxis(x, 0, -1), args_b)
    nat = jax.jit(
        lambda y0, a: rodas4_solve_batched(
            m["rhs"],
            m["jac_values"],
            s["plan"],
            y0,
            a,
            0.0,
            _T_SMALL,
            batched_functions=True,
            **s["kw"],
        )
    )(y0_b, args_t)
    # same arithmetic, differently fused: rounding may move an accept/reject decision
    assert np.all(np.asarray(nat.status) == STATUS_OK)
    assert np.abs(np.asarray(nat.n_steps) - np.asarray(sol_b.n_steps)).max() <= 3
    np.testing.assert_allclose(np.asarray(nat.ys), np.asarray(sol_b.ys), rtol=1e-8, atol=1e-14)


def test_batched_solver_with_vmapped_functions_equals_single_solves():
    a_b = jnp.asarray(_A2[_R2, _C2])[None] * jnp.asarray([[1.0], [0.5], [2.0]])
    y0_b = jnp.asarray([[1.0, 0.0], [0.2, 0.7], [0.0, 3.0]])
    t_save = jnp.asarray([0.0, 0.1, 1.0, 5.0])
    bat = jax.jit(
        lambda y0, a: rodas4_solve_batched(
            _lin_rhs, _lin_jac, _PLAN2, y0, a, 0.0, t_save, rtol=1e-9, atol=1e-13
        )
    )(y0_b, a_b)
    assert bat.ys.shape == (3, 4, 2) and bat.status.shape == (3,)
    for i in range(3):
        one = _lin_solver()(y0_b[i], a_b[i], t_save)
        np.testing.assert_allclose(
            np.asarray(bat.ys[i]), np.asarray(one.ys), rtol=1e-12, atol=1e-15
        )
        assert int(bat.n_steps[i]) == int(one.n_steps) and int(bat.status[i]) == STATUS_OK


@pytest.mark.slow  # 62 s; test_simulate checks forward and reverse derivatives of the PSMA model
def test_forward_and_reverse_derivatives_match_finite_differences():
    s = _small()
    theta0 = jnp.asarray([0.1, -0.2, 0.05, 0.3])
    jac_fwd = np.asarray(jax.jit(jax.jacfwd(s["outputs"]))(theta0))
    w = jnp.asarray([1.0, 1e-2, 3.0])
    grad_rev = np.asarray(jax.jit(jax.grad(lambda th: s["with_theta"](th, "reverse") @ w))(theta0))
    eps = 1e-3
    fd = np.stack(
        [
            (
                np.asarray(s["outputs"](theta0.at[i].add(eps)))
                - np.asarray(s["outputs"](theta0.at[i].add(-eps)))
            )
            / (2 * eps)
            for i in range(4)
        ],
        axis=1,
    )
    np.testing.assert_allclose(jac_fwd, fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max())
    np.testing.assert_allclose(grad_rev, np.asarray(w) @ fd, rtol=1e-5)
    # both modes differentiate the same discrete scheme
    np.testing.assert_allclose(grad_rev, np.asarray(w) @ jac_fwd, rtol=1e-10)


# --------------------------------------------------------------------------------------------
# failures are reported, never raised, never silent
# --------------------------------------------------------------------------------------------


def test_max_steps_reported():
    t_save = jnp.asarray([0.0, 1.0, 10.0])
    sol = _lin_solver()(jnp.asarray([1.0, 0.0]), jnp.asarray(_A2[_R2, _C2]), t_save, max_steps=5)
    assert int(sol.status) == STATUS_MAX_STEPS
    assert int(sol.n_steps) + int(sol.n_rejected) == 5
    assert float(sol.t_final) < 10.0
    assert np.all(np.isnan(np.asarray(sol.ys[-1])))  # unreached rows are NaN, not zeros
    assert "max_steps" in status_message(sol.status)


def test_non_finite_reported():
    a = jnp.asarray(_A2[_R2, _C2]).at[0].set(jnp.nan)
    sol = _lin_solver()(jnp.asarray([1.0, 0.0]), a, jnp.asarray([0.0, 1.0, 10.0]))
    assert int(sol.status) == STATUS_FAILED
    assert np.all(np.isnan(np.asarray(sol.ys[1:])))


def test_bad_arguments_raise_at_trace_time():
    with pytest.raises(ValueError):
        rodas4_solve(
            _lin_rhs,
            _lin_jac,
            _PLAN2,
            jnp.zeros(3),
            jnp.asarray(_A2[_R2, _C2]),
            0.0,
            jnp.asarray([1.0]),
        )
    with pytest.raises(ValueError):
        rodas4_solve(
            _lin_rhs,
            _lin_jac,
            _PLAN2,
            jnp.zeros(2),
            jnp.asarray(_A2[_R2, _C2]),
            0.0,
            jnp.asarray([1.0]),
            mode="sideways",
        )
