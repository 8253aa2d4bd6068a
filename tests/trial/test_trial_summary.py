"""Summary tables and plots of a run folder, on synthetic rows with known statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from scipy import stats

from twin.cohort import run_chunks
from twin.trial import exceedance_table, summarise, write_trial_report

N = 101


@dataclass(frozen=True)
class SyntheticTrial:
    """Two arms; patient i has kidney BED i/2.5 Gy (arm A) and i/5 Gy (arm B); patient 0 failed."""

    n_patients: int = N
    chunk_size: int = 30
    rows_per_patient: int = 2

    @property
    def n_chunks(self):
        return math.ceil(self.n_patients / self.chunk_size)

    def rows_in_chunk(self, c):
        return 2 * min(self.chunk_size, self.n_patients - c * self.chunk_size)

    def fingerprint(self):
        return {"kind": "synthetic", "arms": [{"name": "A"}, {"name": "B"}]}

    def run_chunk(self, c):
        import pyarrow as pa

        i = np.arange(c * self.chunk_size, c * self.chunk_size + self.rows_in_chunk(c) // 2)
        tables = []
        for arm, div in (("A", 2.5), ("B", 5.0)):
            bed = i / div
            tables.append(pa.table({
                "patient_id": i, "arm": [arm] * i.size, "status": (i == 0).astype(int),
                "cycles_given": np.minimum(6, 1 + i // 20).astype(float),
                "activity_per_cycle_gbq": np.full(i.size, 7.4),
                "cumulative_activity_gbq": 7.4 * np.minimum(6, 1 + i // 20),
                "kidneys_bed_gy": bed, "tumour_dose_gy": 2 * bed,
                "exceeds_kidneys_bed_le_40gy": bed > 40.0}))
        return pa.concat_tables(tables)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    run_chunks(SyntheticTrial(), out, workers=1, progress=False)
    return out


def test_summary_statistics(run):
    s = summarise(run).set_index(["arm", "endpoint"])
    a = s.loc[("A", "kidneys_bed_gy")]
    v = np.arange(1, N) / 2.5  # patient 0 failed and is excluded
    assert a["n"] == N - 1
    assert a["median"] == pytest.approx(np.median(v))
    assert a["mean"] == pytest.approx(v.mean()) and a["sd"] == pytest.approx(v.std(ddof=1))
    assert a["unit"] == "Gy"
    assert s.loc[("B", "cumulative_activity_gbq"), "unit"] == "GBq"


def test_exceedance_fraction_with_wilson_interval(run):
    e = exceedance_table(run).set_index(["arm", "limit"])
    row = e.loc[("A", "kidneys_bed_le_40gy")]
    k = int((np.arange(1, N) / 2.5 > 40).sum())  # patients 101..: i > 100 -> none; i/2.5 > 40 -> i > 100
    assert row["n_exceeding"] == k and row["n"] == N - 1
    row = e.loc[("B", "kidneys_bed_le_40gy")]
    assert row["n_exceeding"] == 0 and row["fraction"] == 0.0
    # an independent Wilson interval: scipy's binomtest
    ci = stats.binomtest(0, N - 1).proportion_ci(method="wilson")
    assert row["ci95_low"] == pytest.approx(ci.low, abs=1e-12)
    assert row["ci95_high"] == pytest.approx(ci.high, rel=1e-9)


def test_report_files(run):
    paths = write_trial_report(run)
    assert all(p.exists() and p.stat().st_size > 0 for p in paths.values())


@dataclass(frozen=True)
class NoLimitsTrial(SyntheticTrial):
    """The synthetic trial without limit columns (a trial with ``limits = []``)."""

    def fingerprint(self):
        return {"kind": "synthetic-no-limits", "arms": [{"name": "A"}, {"name": "B"}]}

    def run_chunk(self, c):
        table = super().run_chunk(c)
        return table.drop_columns(["exceeds_kidneys_bed_le_40gy"])


def test_no_limits_gives_an_empty_table_and_a_plot_without_exceedance(tmp_path):
    import matplotlib.pyplot as plt

    from twin.trial import plot_trial

    run_chunks(NoLimitsTrial(), tmp_path, workers=1, progress=False)
    e = exceedance_table(tmp_path)
    assert len(e) == 0
    assert list(e.columns) == ["arm", "limit", "n", "n_exceeding", "fraction", "ci95_low", "ci95_high"]
    fig = plot_trial(tmp_path)
    assert len(fig.axes) == 3  # two endpoints and cycles given; no exceedance panel
    plt.close(fig)
    paths = write_trial_report(tmp_path)
    assert paths["exceedance"].read_text().strip() == "arm,limit,n,n_exceeding,fraction,ci95_low,ci95_high"


def test_tables_of_a_folder_without_a_run_say_so(tmp_path):
    from twin.cohort import ResumeError
    from twin.trial import plot_trial

    for fn in (exceedance_table, summarise, plot_trial):
        with pytest.raises(ResumeError, match="no cohort run"):
            fn(tmp_path / "no_such_dir")
