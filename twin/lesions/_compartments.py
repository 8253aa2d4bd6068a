"""Segmented lesions as pbpk tumour compartments: the largest N individually, the rest lumped.

The PSMA model (``pbpk.psma_model``) takes ``lesion_volumes_l`` (compartments ``tumour1``,
``tumour2``, ...) and ``tumour_rest_volume_l`` (one ``tumour_rest`` compartment). The SSTR model
(``pbpk.sstr_model``) has no rest compartment: its ``tumour_volumes_l`` gets the lumped rest as
one more tumour (``tumour<N+1>``). The masks carry the same names, which
:func:`twin.patient.region_of` maps to the pbpk regions of the same name, so
:func:`merge_tumour_masks` puts them beside a patient's organ masks for
:func:`twin.patient.organ_uptake` and calibration.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from twin.lesions._errors import LesionParameterError, NoLesionError
from twin.lesions._segment import LesionSegmentation
from twin.patient._errors import (
    GeometryMismatchError,
    LabelTableError,
    OverlappingLabelsError,
    UnknownLabelError,
)
from twin.patient._io import Masks
from twin.patient._uptake import region_of

if TYPE_CHECKING:
    import pandas

__all__ = ["TumourCompartments", "merge_tumour_masks", "tumour_compartments"]

_log = logging.getLogger(__name__)
_BODY_ONLY = ("body",)  # default of merge_tumour_masks(overwrite=); 'body' may be absent
_TUMOUR_REGION = re.compile(r"tumour(\d+|_rest)")


def _is_tumour(name: str) -> bool:
    """A tumour structure, spelled as :func:`twin.patient.region_of` accepts it (``tumor1``,
    ``Tumour1``, ``tumour_rest`` ...)."""
    region = region_of(name)
    return region is not None and _TUMOUR_REGION.fullmatch(region) is not None


@dataclass(frozen=True, eq=False)
class TumourCompartments:
    """Tumour compartments for one pbpk model family (``"psma"`` or ``"sstr"``).

    ``names``: compartment (= structure = pbpk region) names; ``volumes_l``: their volumes;
    ``lesion_labels``: the segmentation labels that form each compartment; ``masks``: one
    structure per compartment on the PET grid.
    """

    model: str
    names: tuple[str, ...]
    volumes_l: tuple[float, ...]
    lesion_labels: tuple[tuple[int, ...], ...]
    masks: Masks = field(repr=False)

    @property
    def lesion_volumes_l(self) -> tuple[float, ...]:
        """Volumes of the ``tumourN`` compartments (for SSTR including the lumped rest)."""
        return tuple(v for n, v in zip(self.names, self.volumes_l) if n != "tumour_rest")

    @property
    def tumour_rest_volume_l(self) -> float:
        """Volume of ``tumour_rest`` (PSMA; 0 when every lesion is modelled individually)."""
        return float(sum(v for n, v in zip(self.names, self.volumes_l) if n == "tumour_rest"))

    def model_kwargs(self) -> dict:
        """Keyword arguments of ``pbpk.psma_model`` (``lesion_volumes_l``, ``tumour_rest_volume_l``)
        or ``pbpk.sstr_model`` (``tumour_volumes_l``)."""
        if self.model == "psma":
            return {"lesion_volumes_l": self.lesion_volumes_l,
                    "tumour_rest_volume_l": self.tumour_rest_volume_l}
        return {"tumour_volumes_l": self.lesion_volumes_l}

    def table(self) -> pandas.DataFrame:
        """One row per compartment: ``volume_ml``, ``n_lesions``, ``lesion_labels``."""
        import pandas as pd

        return pd.DataFrame({"volume_ml": [v * 1000.0 for v in self.volumes_l],
                             "n_lesions": [len(x) for x in self.lesion_labels],
                             "lesion_labels": [list(x) for x in self.lesion_labels]},
                            index=pd.Index(list(self.names), name="compartment"))


def tumour_compartments(seg: LesionSegmentation, n_individual: int = 3, *,
                        model: str = "psma") -> TumourCompartments:
    """Tumour compartments from a segmentation: the ``n_individual`` largest lesions as
    ``tumour1`` ... ``tumourN`` (largest first), the others lumped into ``tumour_rest`` (PSMA)
    or ``tumour<N+1>`` (SSTR). Raises :class:`NoLesionError` when nothing was segmented: the
    pbpk models need at least one tumour compartment.
    """
    if not isinstance(seg, LesionSegmentation):
        raise LesionParameterError(f"seg is a {type(seg).__name__}; give the result of segment_lesions().")
    if model not in ("psma", "sstr"):
        raise LesionParameterError(f"model = {model!r}; use 'psma' (pbpk.psma_model) or 'sstr' "
                                   "(pbpk.sstr_model).")
    if isinstance(n_individual, bool) or not isinstance(n_individual, (int, np.integer)) or n_individual < 1:
        raise LesionParameterError(f"n_individual = {n_individual!r} must be an integer >= 1 (the "
                                   "number of lesions modelled individually).")
    if not seg.lesions:
        raise NoLesionError(
            "the segmentation found no lesion, but the pbpk models need at least one tumour "
            "compartment; check the threshold, min_volume_ml and excluded structures, or build the "
            "model with its default tumour volumes.")
    lesions = seg.lesions  # largest first
    groups = [(f"tumour{i + 1}", (les.label,)) for i, les in enumerate(lesions[:n_individual])]
    rest = tuple(les.label for les in lesions[n_individual:])
    if rest:
        groups.append(("tumour_rest" if model == "psma" else f"tumour{n_individual + 1}", rest))
    vv_l = seg.geometry.voxel_volume_ml / 1000.0
    n_vox = {les.label: les.n_voxels for les in lesions}
    lut = np.zeros(max(n_vox) + 1, np.int16)
    for k, (_, labs) in enumerate(groups, start=1):
        lut[list(labs)] = k
    labels = lut[seg.labels]
    labels.setflags(write=False)
    masks = Masks(labels, {k: name for k, (name, _) in enumerate(groups, start=1)}, seg.geometry)
    return TumourCompartments(model, tuple(g[0] for g in groups),
                              tuple(sum(n_vox[x] for x in g[1]) * vv_l for g in groups),
                              tuple(g[1] for g in groups), masks)


def merge_tumour_masks(masks: Masks, tumours: TumourCompartments, *, replace_tumours: bool = False,
                       overwrite=_BODY_ONLY) -> Masks:
    """Organ masks with the tumour compartments added (new labels after the organs' labels).

    Tumour voxels may only take voxels that are unlabelled or in a structure named in
    ``overwrite`` (default: the ``body`` remainder); overlap with another structure raises
    :class:`twin.patient.OverlappingLabelsError`. Masks that already hold tumour structures
    (``tumourN``, ``tumour_rest``, in any spelling :func:`twin.patient.region_of` maps to them,
    such as ``tumor1`` or ``Tumour1``) raise :class:`twin.patient.LabelTableError` unless
    ``replace_tumours=True``, which drops them first (their voxels go to ``body`` if present).
    A name in ``overwrite`` other than ``body`` that is not a structure of ``masks`` raises
    :class:`twin.patient.UnknownLabelError` (a ``KeyError``) listing the structures.
    """
    if not isinstance(masks, Masks):
        raise LesionParameterError(f"masks is a {type(masks).__name__}; give twin.patient.Masks.")
    if not isinstance(tumours, TumourCompartments):
        raise LesionParameterError(f"tumours is a {type(tumours).__name__}; give tumour_compartments().")
    diffs = masks.geometry.differences(tumours.masks.geometry)
    if diffs:
        raise GeometryMismatchError(
            f"the organ masks are not on the grid of the segmented PET ({'; '.join(diffs)}); load them "
            "with twin.patient.load_masks(..., reference=image.geometry, resample=True).")
    given = overwrite
    if isinstance(overwrite, str):
        overwrite = {overwrite}
    else:
        try:
            overwrite = set(overwrite or ())
        except TypeError:
            raise LesionParameterError(
                f"overwrite = {given!r}; give structure names (a name or a tuple of names, e.g. "
                "('body',)) or None.") from None
    # 'body' (the default remainder) may be absent from the masks, whether named or by default
    unknown = sorted(str(n) for n in overwrite if n not in masks.names and n != "body")
    if unknown:
        raise UnknownLabelError(
            f"overwrite names {', '.join(repr(n) for n in unknown)}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not a structure of the masks; valid names: "
            f"{', '.join(masks.names)}.")
    labels = np.array(masks.labels, dtype=np.int16, copy=True)
    table = dict(masks.label_table)
    old = [k for k, n in table.items() if _is_tumour(n)]
    if old and not replace_tumours:
        raise LabelTableError(
            f"the masks already hold tumour structure(s) {', '.join(table[k] for k in old)}; pass "
            "replace_tumours=True to replace them by the segmented compartments, or drop them.")
    body = next((k for k, n in table.items() if n == "body"), 0)
    for k in old:
        labels[labels == k] = body
        del table[k]
    tum = tumours.masks.labels > 0
    allowed = [0, *(k for k, n in table.items() if n in overwrite)]
    clash = tum & ~np.isin(labels, allowed)
    if clash.any():
        hit = np.unique(labels[clash])
        detail = ", ".join(f"{table[int(k)]!r} ({int((labels[clash] == k).sum())} voxels)" for k in hit)
        raise OverlappingLabelsError(
            f"the tumour compartments overlap {detail}; segment with that structure excluded "
            "(segment_lesions(..., exclude=...)), or allow it with overwrite=(..., name).")
    start = max(table) if table else 0
    if start + len(tumours.names) > np.iinfo(np.int16).max:
        raise LabelTableError("the masks use labels up to 32767; no room for the tumour labels.")
    for k, name in tumours.masks.label_table.items():
        labels[tumours.masks.labels == k] = start + k
        table[start + k] = name
    present = set(np.unique(labels).tolist())
    for k in [k for k in table if k not in present]:
        _log.info("structure %r is fully covered by tumours and is dropped", table[k])
        del table[k]
    labels.setflags(write=False)
    return Masks(labels, table, masks.geometry)
