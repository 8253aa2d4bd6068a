"""plot_spectrum: zero eigenvalues are counted as unidentifiable, not folded into the decades."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

import mbam
from mbam import FisherSpectrum


def _spectrum(ev):
    ev = np.asarray(ev, dtype=float)
    n = ev.size
    return FisherSpectrum(x=np.zeros(n), names=tuple(f"p{i}" for i in range(n)), eigenvalues=ev,
                          eigenvectors=np.eye(n))


def _inside(fig, artist):
    r = fig.canvas.get_renderer()
    box, fbox = artist.get_window_extent(r), fig.bbox
    return box.x0 >= fbox.x0 - 0.5 and box.x1 <= fbox.x1 + 0.5 and box.y0 >= fbox.y0 - 0.5 and box.y1 <= fbox.y1 + 0.5


def test_decades_over_positive_eigenvalues_and_zero_counted():
    # eigenvalues 1, 1e-3, 0: log10(1 / 1e-3) = 3 decades, one unidentifiable direction
    ax = mbam.plot_spectrum(_spectrum([1.0, 1e-3, 0.0]))
    title = ax.get_title()
    assert title.startswith("3.0 decades")
    assert "1 unidentifiable" in title and "304" not in title
    assert ax.get_xlabel() and ax.get_ylabel()
    assert len(ax.collections) == 3  # one line per eigenvalue, the zero one included
    # the positive ones sit at their relative values; the zero one below the smallest
    ys = sorted(float(c.get_segments()[0][0][1]) for c in ax.collections)
    assert ys[1] == pytest.approx(1e-3) and ys[2] == pytest.approx(1.0)
    assert 0 < ys[0] < 1e-3
    lo, hi = ax.get_ylim()
    assert lo <= ys[0] and hi >= 1.0
    plt.close(ax.figure)


def test_tiny_eigenvalues_below_the_tolerance_are_unidentifiable():
    sp = _spectrum([4.0, 4e-2, 4e-5, 1e-20, 0.0])  # 1e-20 / 4 < 1e-12: unidentifiable
    ax = mbam.plot_spectrum(sp)
    assert ax.get_title().startswith("5.0 decades") and "2 unidentifiable" in ax.get_title()
    plt.close(ax.figure)
    ax = mbam.plot_spectrum(sp, relative=False, zero_rtol=1e-30)  # now only the exact zero
    assert ax.get_title().startswith(f"{np.log10(4 / 1e-20):.1f} decades")
    assert "1 unidentifiable" in ax.get_title()
    plt.close(ax.figure)


def test_full_rank_title_has_no_unidentifiable_and_all_zero_is_said():
    ax = mbam.plot_spectrum(_spectrum([2.0, 2e-4]))
    assert ax.get_title() == "4.0 decades"
    plt.close(ax.figure)
    ax = mbam.plot_spectrum(_spectrum([0.0, 0.0]))
    assert "all 2 eigenvalues 0" in ax.get_title()
    plt.close(ax.figure)


def test_labels_fit_in_the_figure():
    ax = mbam.plot_spectrum(_spectrum(np.geomspace(1.0, 1e-11, 12).tolist() + [0.0] * 3))
    fig = ax.figure
    fig.canvas.draw()
    labels = [t for t in ax.get_yticklabels() if t.get_text() and t.get_visible()]
    lo, hi = ax.get_ylim()
    labels = [t for t in labels if lo <= t.get_position()[1] <= hi]
    assert labels
    for art in [*labels, ax.yaxis.label, ax.xaxis.label, ax.title]:
        assert _inside(fig, art), art
    plt.close(fig)
