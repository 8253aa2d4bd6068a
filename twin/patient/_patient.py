"""A patient from files: PET/SPECT frames, optional CT, masks and labs, on one checked grid."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

import pbpk
from pbpk._errors import InvalidInputError
from twin.patient._errors import (
    GeometryMismatchError,
    MissingInjectedActivityError,
    NonFiniteVoxelError,
    ScanTimeError,
)
from twin.patient._io import (
    DEFAULT_MAX_BYTES,
    ActivityImage,
    Geometry,
    Masks,
    _as_sitk,
    check_same_grid,
    load_activity_image,
    load_masks,
    resample_to,
)
from twin.patient._labs import Labs, read_labs
from twin.patient._uptake import organ_uptake, region_of

__all__ = ["Patient", "load_patient"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Patient:
    """Activity frames (sorted by time), masks, optional CT (HU, float32) and labs on one grid."""

    frames: tuple[ActivityImage, ...]
    masks: Masks = field(repr=False)
    ct_hu: np.ndarray | None = field(default=None, repr=False)
    labs: Labs | None = None
    resampled: tuple[str, ...] = ()

    @property
    def geometry(self) -> Geometry:
        return self.frames[0].geometry

    def uptake(self, frame: int = 0, *, fwhm_mm: float | None = None, **kwargs):
        """:func:`organ_uptake` of one frame."""
        return organ_uptake(self.frames[frame], self.masks, fwhm_mm=fwhm_mm, **kwargs)

    def organ_volumes_l(self) -> dict[str, float]:
        """Segmented (physical) volumes, L, of the pbpk organs in the masks (kidney, liver, ...).

        :meth:`physiology` converts them to the models' mass-equivalent volumes
        (:func:`pbpk.model_volume_l`)."""
        out: dict[str, float] = {}
        for name in self.masks.names:
            reg = region_of(name)
            if reg in ("kidney", "liver", "spleen", "salivary", "lacrimal"):
                out[reg] = out.get(reg, 0.0) + self.masks.volume_ml(name) / 1000.0
        return out

    def lesion_volumes_l(self) -> tuple[float, ...]:
        lesions = {n: region_of(n) for n in self.masks.names}
        names = sorted((n for n, r in lesions.items() if r and re.fullmatch(r"tumour\d+", r)),
                       key=lambda n: int(lesions[n][6:]))
        return tuple(self.masks.volume_ml(n) / 1000.0 for n in names)

    def physiology(self, **kwargs) -> pbpk.Physiology:
        """pbpk physiology from the labs with the segmented organ volumes (x tissue density)."""
        if self.labs is None:
            raise InvalidInputError("this patient has no labs; load them with load_patient(..., labs=...).")
        return self.labs.physiology(measured_volumes_l=self.organ_volumes_l(), **kwargs)


def load_patient(
    pet,
    *,
    nuclide: str,
    masks,
    label_table=None,
    ct=None,
    labs=None,
    hours_after_injection=None,
    injection_time=None,
    scan_time=None,
    unit: str = "Bq/mL",
    injected_activity_mbq: float | None = None,
    decay_corrected: bool = False,
    resample: bool = False,
    allow_negative: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    spacing_mm=None,
    origin_mm=None,
) -> Patient:
    """Load a patient. ``pet`` is one image or a list (one per time point); then
    ``hours_after_injection`` / ``scan_time`` are lists of the same length.

    Masks and CT must be on the PET grid; ``resample=True`` resamples them (nearest neighbour
    for masks, linear for CT) and records it in ``Patient.resampled``. Masks or a CT given as
    numpy arrays carry no geometry: they are taken voxel for voxel on the PET grid and must have
    its (z, y, x) shape (never resampled). ``spacing_mm`` / ``origin_mm`` (x, y, z) give the
    geometry of a PET given as numpy array(s) (see :func:`load_activity_image`). The body weight
    for SUV (``unit="SUV"``) and for lesion thresholds comes from the labs (``labs=``). A CT with
    NaN/infinite voxels raises :class:`NonFiniteVoxelError`.
    """
    many = isinstance(pet, (list, tuple))
    pets = list(pet) if many else [pet]

    def per_frame(v, name):
        if v is None:
            return [None] * len(pets)
        vals = list(v) if isinstance(v, (list, tuple)) else [v]
        if len(vals) != len(pets):
            raise ScanTimeError(f"{name} has {len(vals)} value(s) for {len(pets)} image(s); give one per image.")
        return vals

    lab = read_labs(labs) if labs is not None else None
    weight = lab.weight_kg if lab is not None else None
    if unit == "SUV" and (weight is None or injected_activity_mbq is None):
        missing = [m for m, v in (("injected_activity_mbq=... (MBq)", injected_activity_mbq),
                                  ("labs=... with the body weight (load_patient takes weight_kg from "
                                   "the labs: a labs CSV or dict with sex, age_y, weight_kg, height_cm, "
                                   "creatinine)", weight)) if v is None]
        raise MissingInjectedActivityError(
            "the PET is in SUV (unit='SUV'); converting SUV to Bq/mL needs the injected activity and "
            f"the body weight: give {' and '.join(missing)}."
        )
    hs = per_frame(hours_after_injection, "hours_after_injection")
    sts = per_frame(scan_time, "scan_time")
    frames = []
    for p, h, st in zip(pets, hs, sts):
        frames.append(load_activity_image(
            p, nuclide=nuclide, unit=unit, hours_after_injection=h, injection_time=injection_time,
            scan_time=st, injected_activity_mbq=injected_activity_mbq, weight_kg=weight,
            decay_corrected=decay_corrected, allow_negative=allow_negative, max_bytes=max_bytes,
            spacing_mm=spacing_mm, origin_mm=origin_mm))
    ref = frames[0].geometry
    for i, f in enumerate(frames[1:], start=2):
        if ref.differences(f.geometry):
            raise GeometryMismatchError(
                f"PET frame {i} is not on the grid of frame 1 ({'; '.join(ref.differences(f.geometry))});"
                " register/resample the frames to one grid first."
            )
    frames.sort(key=lambda f: f.hours_after_injection)
    done: list[str] = []
    m = load_masks(masks, label_table, reference=ref, resample=resample, max_bytes=max_bytes,
                   _record=done)
    ct_arr = None
    if ct is not None:
        ct_img = _as_sitk(ct, "CT", max_bytes, ref)
        ct_view = sitk.GetArrayViewFromImage(ct_img)
        finite = np.isfinite(ct_view)
        if not finite.all():
            raise NonFiniteVoxelError(
                f"the CT has {int((~finite).sum())} NaN/infinite voxel(s) (first at index (z, y, x) "
                f"{tuple(int(i) for i in np.argwhere(~finite)[0])}); they would give NaN densities and "
                "doses. Fix the CT export or replace them (e.g. numpy.nan_to_num(ct, nan=-1000.0) for "
                "air) before loading.")
        diffs = ref.differences(Geometry.of(ct_img))
        if diffs and resample:
            _log.info("CT resampled to the PET grid (linear): %s", "; ".join(diffs))
            ct_img = resample_to(sitk.Cast(ct_img, sitk.sitkFloat32), ref, is_label=False)
            done.append("CT (linear)")
        elif diffs:
            check_same_grid(ref, Geometry.of(ct_img), "CT")
        ct_arr = sitk.GetArrayFromImage(ct_img).astype(np.float32)
        ct_arr.setflags(write=False)
    return Patient(tuple(frames), m, ct_arr, lab, tuple(done))
