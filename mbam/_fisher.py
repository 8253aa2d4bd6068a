"""Fisher metric J^T J of a model in log-parameters, its eigen-spectrum and sloppiness plots."""

from __future__ import annotations

import dataclasses

import numpy as np

from ._model import Model

__all__ = ["FisherSpectrum", "fisher_metric", "fisher_spectrum", "jacobian", "plot_spectrum"]


def jacobian(model: Model, x) -> np.ndarray:
    """Jacobian J = d r / d x of the weighted predictions, shape (M, N), by forward mode
    (``jax.jacfwd``, compiled once per Model together with the geodesic right-hand side)."""
    from ._geodesic import _jacobian

    return _jacobian(model, model.check_x(x))


def fisher_metric(model: Model, x) -> np.ndarray:
    """Fisher information metric g = J^T J (least-squares case), shape (N, N)."""
    J = jacobian(model, x)
    return J.T @ J


@dataclasses.dataclass(frozen=True, eq=False)
class FisherSpectrum:
    """Eigen-spectrum of the Fisher metric at ``x``.

    ``eigenvalues`` are in descending order (from the singular values of J, squared, so the small
    ones are not spoiled by forming J^T J); ``eigenvectors[:, k]`` is the parameter-space direction
    of ``eigenvalues[k]``; the last column is the sloppiest direction.
    """

    x: np.ndarray
    names: tuple[str, ...]
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray

    @property
    def sloppiest(self) -> np.ndarray:
        return self.eigenvectors[:, -1]

    @property
    def condition(self) -> float:
        """lambda_max / lambda_min (inf when the metric is singular)."""
        lo = self.eigenvalues[-1]
        return float(self.eigenvalues[0] / lo) if lo > 0 else float("inf")

    def plot_data(self, floor: float = 1e-300) -> dict:
        """Data for a sloppiness spectrum: log10 eigenvalues, and those relative to the largest.

        Returns ``{"log10_eigenvalues", "log10_relative", "decades", "eigenvectors", "names"}``
        (eigenvalues clipped below at ``floor`` before the log).
        """
        ev = np.maximum(self.eigenvalues, floor)
        log10 = np.log10(ev)
        return {
            "log10_eigenvalues": log10,
            "log10_relative": log10 - log10[0],
            "decades": float(log10[0] - log10[-1]),
            "eigenvectors": self.eigenvectors,
            "names": self.names,
        }


def fisher_spectrum(model: Model, x) -> FisherSpectrum:
    """Eigenvalues/vectors of J^T J via the SVD of J (eigenvalues = singular values squared)."""
    J = jacobian(model, x)
    n = J.shape[1]
    _, s, vt = np.linalg.svd(J, full_matrices=True)
    ev = np.zeros(n)
    ev[: s.size] = s**2
    return FisherSpectrum(
        x=np.asarray(x, dtype=float), names=model.names, eigenvalues=ev, eigenvectors=vt.T
    )


def plot_spectrum(spectrum: FisherSpectrum, ax=None, relative: bool = True, label: str | None = None,
                  zero_rtol: float = 1e-12):
    """Plot a sloppiness spectrum (eigenvalues as horizontal lines on a log axis); returns the axes.

    Eigenvalues at or below ``zero_rtol`` times the largest (exact zeros included) are counted
    as unidentifiable directions: they are drawn as dashed red lines one decade below the
    smallest positive eigenvalue (they have no place on a log axis) and reported in the title;
    the number of decades in the title spans the positive eigenvalues only.
    """
    import matplotlib.pyplot as plt

    own = ax is None
    if own:
        _, ax = plt.subplots(figsize=(2.6, 4.2))
    ev = np.asarray(spectrum.eigenvalues, dtype=float)
    top = float(ev.max()) if ev.size else 0.0
    zero = ~(ev > zero_rtol * top) if top > 0 else np.ones(ev.shape, bool)
    pos = ev[~zero]
    scale = top if (relative and top > 0) else 1.0
    decades = float(np.log10(pos.max() / pos.min())) if pos.size else float("nan")
    first = True
    for v in pos:
        ax.hlines(v / scale, 0.0, 1.0, colors="C0", label=label if first else None)
        first = False
    n_zero = int(zero.sum())
    if n_zero:
        floor = (pos.min() / scale) / 10.0 if pos.size else 1.0
        for k in range(n_zero):
            ax.hlines(floor, 0.0, 1.0, colors="tab:red", linestyles="--",
                      label=f"{n_zero} unidentifiable (eigenvalue 0)" if k == 0 else None)
        ax.annotate(f"{n_zero} unidentifiable (0)", (0.5, floor), xytext=(0, 3),
                    textcoords="offset points", ha="center", va="bottom", fontsize=7, color="tab:red")
    ax.set_yscale("log")
    ax.set_xticks([])
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel(f"{ev.size} eigen-directions")
    ax.set_ylabel("FIM eigenvalue / largest" if relative else "FIM eigenvalue")
    if pos.size:
        head = f"{decades:.1f} decades"
        if n_zero:
            head += f"\n({pos.size} positive; {n_zero} unidentifiable)"
    else:
        head = f"all {ev.size} eigenvalues 0 (unidentifiable)"
    ax.set_title(head, fontsize=9)
    if own:
        ax.figure.tight_layout()
    return ax
