"""Pieces of the validation report and the VTT benchmark on inputs with known answers.

The statistics helpers, the published-agreement rule, the independent graph right-hand side
(against an analytic solution and finite differences) and the VTT summaries. Full runs of
``benchmarks/validate.py`` and ``benchmarks/vtt.py`` with tiny settings are marked slow (they
compile several solvers: minutes on the 2-core machine).
"""

from __future__ import annotations

import math
import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from validation import checks
from validation.checks import ValidationInputError


# ---------------------------------------------------------------- statistics
def test_percent_error_and_summary_known_values():
    e = checks.percent_error([110.0, 90.0, 120.0, 80.0], [100.0, 100.0, 100.0, 100.0])
    np.testing.assert_allclose(e, [10.0, -10.0, 20.0, -20.0])
    s = checks.error_summary(e)
    assert s["n"] == 4
    assert s["mean_pct"] == pytest.approx(0.0, abs=1e-12)
    # sample SD by hand: sqrt((100 + 100 + 400 + 400) / 3)
    assert s["sd_pct"] == pytest.approx(math.sqrt(1000.0 / 3.0))
    assert s["mean_abs_pct"] == pytest.approx(15.0)
    assert s["median_abs_pct"] == pytest.approx(15.0)
    # 90th percentile of |e| = (10, 10, 20, 20), linear interpolation: 20
    assert s["p90_abs_pct"] == pytest.approx(20.0)


def test_percent_error_rejects_bad_input():
    with pytest.raises(ValidationInputError):
        checks.percent_error([1.0], [0.0])
    with pytest.raises(ValidationInputError):
        checks.percent_error([1.0, 2.0], [1.0])
    with pytest.raises(ValidationInputError):
        checks.percent_error([np.nan], [1.0])
    with pytest.raises(ValidationInputError):
        checks.error_summary([])


def test_coverage_counts_inclusive_intervals():
    lo = np.array([0.0, 1.0, 2.0, 3.0])
    hi = np.array([1.0, 2.0, 3.0, 4.0])
    truth = np.array([1.0, 5.0, 2.5, -1.0])  # on the edge, above, inside, below
    assert checks.coverage(lo, hi, truth) == pytest.approx(0.5)
    with pytest.raises(ValidationInputError):
        checks.coverage([2.0], [1.0], [1.5])


def test_coverage_of_exact_gaussian_intervals_is_nominal():
    # truth ~ N(0, 1), interval mean +/- 1.6449: 90 % coverage within sampling error
    rng = np.random.default_rng(0)
    t = rng.standard_normal(20000)
    z = 1.6448536269514722
    assert checks.coverage(np.full_like(t, -z), np.full_like(t, z), t) == pytest.approx(0.90, abs=0.01)


def test_effective_half_life_of_exact_exponential():
    t = np.array([4.0, 24.0, 48.0, 72.0])
    a = 50.0 * np.exp(-math.log(2.0) / 40.0 * t)
    assert checks.effective_half_life_h(t, a) == pytest.approx(40.0, rel=1e-12)
    assert checks.effective_half_life_h([1.0, 2.0], [1.0, 2.0]) == math.inf
    with pytest.raises(ValidationInputError):
        checks.effective_half_life_h([1.0, 2.0], [1.0, 0.0])


def test_excretion_half_time_recovers_the_analytic_curve():
    # exact U(t) = 0.6 (1 - 2^(-t / 4.9)) at the sampling times: the fit returns T = 4.9 h
    t = np.array([1.0, 2.0, 4.0, 8.0, 12.0, 20.0])
    u = 0.6 * (1.0 - 2.0 ** (-t / 4.9))
    assert checks.excretion_half_time_h(t, u) == pytest.approx(4.9, rel=1e-6)
    with pytest.raises(ValidationInputError):
        checks.excretion_half_time_h([1.0, 2.0, 4.0], [0.3, 0.2, 0.4])  # decreasing
    with pytest.raises(ValidationInputError):
        checks.excretion_half_time_h([1.0, 2.0], [0.1, 0.2])


def test_lognormal_sd_and_population_summary():
    assert checks.lognormal_sd_from_cv(1.0) == pytest.approx(math.sqrt(math.log(2.0)))
    s = checks.summarise_population(np.arange(1.0, 102.0))  # 1..101
    assert s["median"] == 51.0 and s["p5"] == pytest.approx(6.0) and s["p95"] == pytest.approx(96.0)


def test_published_agreement_rules():
    ok, text = checks.published_agreement(0.5, 0.3, 0.9, mean=0.43, sd=0.16)
    assert ok and "2 SD" in text
    # median outside mean +/- 2 SD
    assert not checks.published_agreement(0.9, 0.5, 1.2, mean=0.43, sd=0.16)[0]
    # published mean outside our 5-95 % range
    assert not checks.published_agreement(0.45, 0.44, 0.46, mean=0.43, sd=0.16)[0]
    # bare value: +/- 50 %
    assert checks.published_agreement(0.70, 0.4, 1.2, mean=0.53)[0]
    assert not checks.published_agreement(0.85, 0.4, 1.2, mean=0.53)[0]
    # range only
    assert checks.published_agreement(40.0, 20.0, 90.0, mean=35.5, low=8.5, high=152.0)[0]


def test_markdown_table_and_check_rows():
    c = checks.Check("dosimetry", "x", "1", "ref", "crit", False)
    assert c.verdict == "**FAIL**" and checks.Check("s", "n", "v", "r", "c", None).verdict == "info"
    md = checks.markdown_table([["a", "b|c"]], ["h1", "h2"])
    assert md.splitlines() == ["| h1 | h2 |", "|---|---|", "| a | b/c |"]
    with pytest.raises(ValidationInputError):
        checks.markdown_table([["a"]], ["h1", "h2"])


# ---------------------------------------------------------------- independent graph RHS
def _tiny_graph():
    import pbpk

    comps = (pbpk.Compartment("a.x", "a", "x", "V_a"), pbpk.Compartment("b.x", "b", "x", "V_b"),
             pbpk.Compartment("b.bound", "b", "bound", None),
             pbpk.Compartment("out.x", "out", "excreta", None, in_body=False))
    procs = (pbpk.transfer("a.x", "out.x", "k_el"), pbpk.exchange("a.x", "b.x", "PS"),
             pbpk.binding("b.x", "b.bound", "kon", "koff", "R"))
    return pbpk.ModelGraph("tiny", comps, procs, "a.x")


def test_graph_rhs_matches_analytic_one_compartment_solution():
    from scipy.integrate import solve_ivp
    from validation.graph_rhs import GraphRHS

    import pbpk

    graph = pbpk.ModelGraph("one", (pbpk.Compartment("a.x", "a", "x", "V"),
                                    pbpk.Compartment("u.x", "u", "excreta", None, in_body=False)),
                            (pbpk.flow("a.x", "u.x", "Q"),), "a.x")
    lam, q, v = 0.01, 0.5, 2.0
    g = GraphRHS(graph, {"V": v, "Q": q}, lam)
    y0 = g.initial_state("a.x", 3.0, 1.0)
    t = np.array([0.5, 2.0, 10.0])
    sol = solve_ivp(g.rhs, (0, 10.0), y0, t_eval=t, method="Radau", rtol=1e-12, atol=1e-15, jac=g.jac)
    k = q / v
    hot = 3.0 * np.exp(-(k + lam) * t)
    total = 4.0 * np.exp(-k * t)  # hot + cold clears at Q/V regardless of decay
    np.testing.assert_allclose(sol.y[0], hot, rtol=1e-9)
    np.testing.assert_allclose(sol.y[0] + sol.y[2], total, rtol=1e-9)
    # TIA state of region a: integral of hot = 3 (1 - exp(-(k+lam) t)) / (k + lam)
    np.testing.assert_allclose(sol.y[4], 3.0 * (1 - np.exp(-(k + lam) * t)) / (k + lam), rtol=1e-9)


def test_graph_rhs_conserves_ligand_and_has_exact_jacobian():
    from validation.graph_rhs import GraphRHS

    params = {"V_a": 3.0, "V_b": 0.5, "k_el": 0.2, "PS": 1.5, "kon": 2.0, "koff": 0.3, "R": 0.8}
    g = GraphRHS(_tiny_graph(), params, 0.05)
    rng = np.random.default_rng(1)
    y = rng.uniform(0.1, 1.0, g.n_states)
    dy = g.rhs(0.0, y)
    assert abs(dy[: 2 * g.nc].sum()) < 1e-13  # every process moves ligand; decay moves hot -> cold
    J = g.jac(0.0, y).toarray()
    h = 1e-6
    fd = np.column_stack([(g.rhs(0, y + h * e) - g.rhs(0, y - h * e)) / (2 * h) for e in np.eye(g.n_states)])
    np.testing.assert_allclose(J, fd, atol=1e-8)


# ---------------------------------------------------------------- VTT helpers
def test_vtt_noise_model_and_summaries():
    import vtt

    assert vtt.noise_sd(0.1, 1.0) == pytest.approx(math.sqrt(math.log1p(0.01)))
    assert vtt.noise_sd(0.1, 0.5) == pytest.approx(math.sqrt(math.log1p(0.01) + 0.3**2))
    rng = np.random.default_rng(3)
    draws = np.log([vtt.measure(rng, 10.0, 0.2, 1.0) / 10.0 for _ in range(20000)])
    assert draws.std() == pytest.approx(vtt.noise_sd(0.2, 1.0), rel=0.03)
    assert abs(draws.mean()) < 0.01

    # synthetic records: every method predicts 1.08 x truth with an interval that holds the
    # truth for half the patients
    records = []
    for i in range(10):
        truth = {r: 1.0 + i for r in vtt.TARGETS}
        preds = {}
        for m in (*vtt.PROTOCOLS, *vtt.BASELINES):
            lo = (1.05 if i % 2 else 0.9) * np.array(list(truth.values()))
            preds[m] = {r: {"median_gy": 1.08 * truth[r], "q05_gy": float(lo[k]), "q95_gy": 1.2 * truth[r]}
                        for k, r in enumerate(vtt.TARGETS)}
        records.append({"true_dose_gy": truth, "predictions": preds})
    s = vtt.summarise(records)
    for m in s:
        for r in vtt.TARGETS:
            assert s[m][r]["mean_pct"] == pytest.approx(8.0)
            assert s[m][r]["sd_pct"] == pytest.approx(0.0, abs=1e-9)
            assert s[m][r]["coverage_90"] == pytest.approx(0.5)
    v = vtt.judge(s)
    assert v["pet_1_4_8h"]["kidney"]["error_ok"] is False          # 8 % > 5 %
    assert v["pet_1_4_8h"]["tumour1"]["error_ok"] is True           # 8 % <= 10 %
    assert v["pet_1_4_8h"]["kidney"]["coverage_ok"] is False        # 50 % outside 85-95 %


def test_vtt_release_oracle_is_exact_when_release_is_at_the_median():
    import vtt

    import pbpk

    model = pbpk.psma_model("PSMA-617", lesion_volumes_l=(0.01,))
    truth = {"R_kidney": 1.3 * model.parameters["R_kidney"],
             "krel_kidney": model.parameters["krel_kidney"],
             "krel_salivary": model.parameters["krel_salivary"]}
    res = pbpk.simulate(model, pbpk.Schedule.single(vtt.THERAPY_MBQ), vtt.THERAPY_TIMES_H, truth)
    true_dose = vtt.doses_gy({r: float(res.tia(r)) for r in vtt.TARGETS}, model)
    oracle = vtt.release_oracle_dose_gy(model, truth)
    # release at the median: the oracle is the truth (same simulation, same conversion)
    for r in vtt.TARGETS:
        assert oracle[r] == pytest.approx(true_dose[r], rel=1e-9)
    # a faster true kidney release lowers the true kidney dose; the oracle does not see it
    fast = {**truth, "krel_kidney": 2.0 * truth["krel_kidney"]}
    res = pbpk.simulate(model, pbpk.Schedule.single(vtt.THERAPY_MBQ), vtt.THERAPY_TIMES_H, fast)
    kidney_true = vtt.doses_gy({r: float(res.tia(r)) for r in vtt.TARGETS}, model)["kidney"]
    assert vtt.release_oracle_dose_gy(model, fast)["kidney"] > 1.2 * kidney_true


def test_vtt_population_average_is_leave_one_out():
    import vtt

    records = [{"true_dose_gy": {r: float(i + 1) for r in vtt.TARGETS}, "predictions": {}} for i in range(4)]
    vtt.add_population_average(records)
    # patient 0: mean of 2, 3, 4
    assert records[0]["predictions"]["population_average"]["kidney"]["median_gy"] == pytest.approx(3.0)
    assert records[3]["predictions"]["population_average"]["kidney"]["median_gy"] == pytest.approx(2.0)


def test_vtt_truth_spread_of_standard_scores():
    import vtt

    records = [{"truth_z": {"a": z, "b": 2.0}} for z in (-1.0, 0.0, 1.0, 2.0)]
    out = vtt.truth_spread(records)
    # mean 0.5; sample SD of (-1, 0, 1, 2) is sqrt(5/3)
    assert out["a"]["mean"] == pytest.approx(0.5) and out["a"]["sd"] == pytest.approx(math.sqrt(5 / 3))
    assert out["b"] == {"mean": 2.0, "sd": 0.0, "n": 4}


# ---------------------------------------------------------------- full runs (slow)
@pytest.mark.slow
def test_validate_quick_run(tmp_path):
    import validate

    rows = validate.main(["--quick", "--skip-mbam", "--out", str(tmp_path)])
    assert (tmp_path / "report.md").exists() and (tmp_path / "validation.json").exists()
    ver = [c for c in rows if c.section == "verification"]
    assert ver and all(c.passed for c in ver)
    dos = [c for c in rows if c.section == "dosimetry"]
    assert dos and all(c.passed for c in dos)


@pytest.mark.slow
def test_vtt_tiny_run(tmp_path):
    import vtt

    res = vtt.main(["--quick", "--n-patients", "2", "--out", str(tmp_path / "vtt.json"),
                    "--figure", str(tmp_path / "vtt.png")])
    assert len(res["patients"]) == 2 and (tmp_path / "vtt.png").exists()
    for proto in vtt.PROTOCOLS:
        assert set(res["summary"][proto]) == set(vtt.TARGETS)


def test_vtt_summary_skips_failed_protocols():
    import vtt

    records = []
    for i in range(3):
        truth = {r: 2.0 for r in vtt.TARGETS}
        preds = {m: {r: {"median_gy": 2.0, "q05_gy": 1.0, "q95_gy": 3.0} for r in vtt.TARGETS}
                 for m in (*vtt.PROTOCOLS, *vtt.BASELINES)}
        if i == 0:
            preds["pet_1h_spect_24h"] = {"_error": "SolverError: synthetic"}
        records.append({"true_dose_gy": truth, "predictions": preds})
    s = vtt.summarise(records)
    assert s["pet_1h_spect_24h"]["kidney"]["n"] == 2 and s["pet_1h_spect_24h"]["kidney"]["n_failed"] == 1
    assert s["pet_1h"]["kidney"]["n"] == 3 and s["pet_1h"]["kidney"]["mean_abs_pct"] == 0.0
    assert "failed" not in vtt.markdown(s)


def test_numpy_bool_verdicts_are_counted_as_pass_or_fail(tmp_path):
    """A verdict computed as ``worst < 5e-3`` is a numpy bool; the report's header counted
    passes with ``passed is True`` and left such rows out (77 in the header, 78 rows)."""
    import validate

    rows = [checks.Check("dosimetry", "a", "1", "ref", "crit", np.float64(1e-4) < 5e-3),
            checks.Check("dosimetry", "b", "1", "ref", "crit", np.float64(1.0) < 5e-3),
            checks.Check("dosimetry", "c", "1", "ref", "crit", None)]
    assert [r.passed for r in rows] == [True, False, None]
    assert all(type(r.passed) is bool for r in rows[:2])
    meta = {"date": "d", "machine": "m", "load_1min": 0.0, "wall_s": 0.0, "quick": True}
    validate.write_report(rows, meta, tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "**1 pass, 1 fail**, 1 reported only" in text
    assert text.count("| pass |") == 1
