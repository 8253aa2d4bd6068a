"""Lesion segmentation on PET in SUV: fixed threshold, percentage of local SUVmax, adaptive.

Every method starts from the same candidate regions: voxels with SUV >= a seed threshold that
are not in an excluded (physiological-uptake) structure or within ``exclude_margin_mm`` of it,
split into connected components with SimpleITK. Then, per candidate region:

- :class:`FixedThreshold`: the candidate region is the lesion (SUV >= ``threshold_suv``).
- :class:`PercentOfMax`: voxels >= ``percent`` % of the region's SUVmax (the *local* SUVmax),
  e.g. the EANM 41 % isocontour.
- :class:`AdaptiveThreshold`: voxels >= B + ``percent`` % x (SUVmax - B), with B the local
  background: the median SUV in a shell ``background_shell_mm`` around the region, leaving out
  other candidate voxels, excluded structures and zero voxels (or a fixed ``background_suv``).

The thresholded voxels are split again into connected components; components smaller than
``min_volume_ml`` are dropped. The candidate region bounds every method: a percentage
threshold below the seed cannot grow a lesion beyond it. Lesions are numbered 1, 2, ... by
decreasing volume.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from twin.lesions._errors import LesionParameterError
from twin.patient._errors import (
    GeometryMismatchError,
    MissingInjectedActivityError,
    UnknownLabelError,
)
from twin.patient._io import ActivityImage, Geometry, Masks
from twin.patient._uptake import _normalised_name, region_of

if TYPE_CHECKING:
    import pandas

__all__ = ["PHYSIOLOGICAL_UPTAKE", "AdaptiveThreshold", "FixedThreshold", "Lesion",
           "LesionSegmentation", "PercentOfMax", "segment_lesions"]

_log = logging.getLogger(__name__)

#: Structure names (TotalSegmentator-style and ``twin.patient`` phantom names) excluded by
#: default: organs with physiological PSMA/SSTR uptake or excretion. Names are compared as
#: :func:`twin.patient.region_of` compares them (case, spaces and hyphens do not matter:
#: ``"Kidney Left"`` is ``kidney_left``), and any structure whose pbpk region is kidney, urine
#: (bladder), salivary, lacrimal, liver or spleen is excluded too. Liver metastases are lost
#: when the liver is excluded; pass ``exclude=`` explicitly for such patients.
PHYSIOLOGICAL_UPTAKE = frozenset({
    "kidney", "kidney_left", "kidney_right", "kidneys",
    "bladder", "urinary_bladder", "ureter", "ureter_left", "ureter_right",
    "salivary", "salivary_glands", "parotid", "parotid_left", "parotid_right",
    "parotid_gland_left", "parotid_gland_right", "submandibular", "submandibular_left",
    "submandibular_right", "submandibular_gland_left", "submandibular_gland_right",
    "sublingual", "sublingual_gland", "lacrimal", "lacrimal_left", "lacrimal_right",
    "lacrimal_gland_left", "lacrimal_gland_right",
    "liver", "spleen",
    "bowel", "small_bowel", "colon", "duodenum", "gi", "intestine", "stomach",
})

#: pbpk regions (:func:`twin.patient.region_of`) of physiological uptake, excluded by default.
_PHYSIOLOGICAL_REGIONS = frozenset({"kidney", "urine", "salivary", "lacrimal", "liver", "spleen"})


def _physiological(name: str) -> bool:
    return _normalised_name(name) in PHYSIOLOGICAL_UPTAKE or region_of(name) in _PHYSIOLOGICAL_REGIONS


_TABLE_COLUMNS = ("n_voxels", "volume_ml", "suv_mean", "suv_max", "activity_mbq", "percent_ia",
                  "tlu_suv_ml", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm", "threshold_suv",
                  "background_suv", "touches_excluded")


def _positive(name: str, value, *, allow_zero: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise LesionParameterError(f"{name} = {value!r} is a boolean, not a number.")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise LesionParameterError(f"{name} = {value!r} is not a number.") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise LesionParameterError(
            f"{name} = {value!r} must be a finite number {'>= 0' if allow_zero else '> 0'}.")
    return v


def _percent(name: str, value) -> float:
    """A percentage in (1, 100). Values in (0, 1] are refused: they are almost always a fraction
    (0.41 for 41 %), and 1 % or less of SUVmax is no useful isocontour."""
    v = _positive(name, value)
    if v <= 1:
        guess = f" — did you mean {v * 100:g}? Give" if v < 1 else "; give"
        raise LesionParameterError(
            f"{name} is given in percent (e.g. 41 for 41 %); got {value!r}{guess} a value above 1 and "
            "below 100.")
    if not v < 100:
        raise LesionParameterError(f"{name} = {value!r} is a percentage; give a value in (1, 100), "
                                   "e.g. 41 for the 41 % isocontour.")
    return v


# ----------------------------------------------------------------------------- methods
@dataclass(frozen=True)
class FixedThreshold:
    """Every voxel with SUV >= ``threshold_suv`` (e.g. 3 for PSMA PET)."""

    threshold_suv: float = 3.0

    def __post_init__(self):
        object.__setattr__(self, "threshold_suv", _positive("threshold_suv", self.threshold_suv))

    @property
    def seed_suv(self) -> float:
        return self.threshold_suv


@dataclass(frozen=True)
class PercentOfMax:
    """Voxels >= ``percent`` % of the local SUVmax of each candidate region (SUV >= ``seed_suv``).

    ``percent`` is in percent, above 1 and below 100 (41 for the EANM 41 % isocontour); a
    fraction such as 0.41 is refused with a :class:`LesionParameterError`.
    """

    percent: float = 41.0
    seed_suv: float = 3.0

    def __post_init__(self):
        object.__setattr__(self, "percent", _percent("percent", self.percent))
        object.__setattr__(self, "seed_suv", _positive("seed_suv", self.seed_suv))


@dataclass(frozen=True)
class AdaptiveThreshold:
    """Background-corrected: voxels >= B + ``percent`` % x (SUVmax - B) per candidate region.

    B is ``background_suv`` if given, else the median SUV in the shell between
    ``background_shell_mm`` = (inner, outer) mm around the candidate region. ``percent`` is in
    percent, above 1 and below 100 (50, not 0.5).
    """

    percent: float = 50.0
    seed_suv: float = 3.0
    background_suv: float | None = None
    background_shell_mm: tuple[float, float] = (10.0, 20.0)

    def __post_init__(self):
        object.__setattr__(self, "percent", _percent("percent", self.percent))
        object.__setattr__(self, "seed_suv", _positive("seed_suv", self.seed_suv))
        if self.background_suv is not None:
            object.__setattr__(self, "background_suv",
                               _positive("background_suv", self.background_suv, allow_zero=True))
        shell = self.background_shell_mm
        try:
            inner, outer = (float(v) for v in shell)
        except (TypeError, ValueError):
            raise LesionParameterError(
                f"background_shell_mm = {shell!r}; give (inner, outer) distances in mm, e.g. (10, 20)."
            ) from None
        if not (math.isfinite(inner) and math.isfinite(outer) and 0 <= inner < outer):
            raise LesionParameterError(
                f"background_shell_mm = {shell!r}; need 0 <= inner < outer (mm), e.g. (10, 20).")
        object.__setattr__(self, "background_shell_mm", (inner, outer))


Method = FixedThreshold | PercentOfMax | AdaptiveThreshold
_METHODS = {"fixed": FixedThreshold, "percent_max": PercentOfMax, "adaptive": AdaptiveThreshold}


def _method(method) -> Method:
    if isinstance(method, (FixedThreshold, PercentOfMax, AdaptiveThreshold)):
        return method
    if isinstance(method, str) and method in _METHODS:
        return _METHODS[method]()
    raise LesionParameterError(
        f"method = {method!r}; use 'fixed', 'percent_max', 'adaptive' or an instance of "
        "FixedThreshold, PercentOfMax or AdaptiveThreshold (to set thresholds)."
    )


# ----------------------------------------------------------------------------- result
@dataclass(frozen=True)
class Lesion:
    """One segmented lesion. ``label`` is its value in the label map (1 = largest).

    ``activity_mbq`` is at scan time (not decay-corrected); ``percent_ia`` is decay-corrected
    to injection; ``tlu_suv_ml`` (total lesion uptake) = SUVmean x volume; ``centroid_mm`` is
    the physical (x, y, z) point; ``threshold_suv`` the threshold that delimited it;
    ``background_suv`` the background of the adaptive method (NaN otherwise);
    ``touches_excluded``: the lesion borders an excluded structure (or its margin), so part of
    it may have been cut away.
    """

    label: int
    n_voxels: int
    volume_ml: float
    suv_mean: float
    suv_max: float
    activity_mbq: float
    percent_ia: float
    tlu_suv_ml: float
    centroid_mm: tuple[float, float, float]
    threshold_suv: float
    background_suv: float
    touches_excluded: bool


@dataclass(frozen=True, eq=False)
class LesionSegmentation:
    """Segmented lesions: a label map (int16, (z, y, x), 0 = background) and one :class:`Lesion` each.

    Lesion ``k`` (1 = largest) has label ``k``. ``n_rejected_small`` counts the connected
    components dropped for being smaller than ``min_volume_ml``. ``exclude_margin_mm`` is the
    margin used per excluded structure.
    """

    labels: np.ndarray = field(repr=False)
    geometry: Geometry
    lesions: tuple[Lesion, ...]
    method: Method
    min_volume_ml: float
    excluded_structures: tuple[str, ...]
    exclude_margin_mm: Mapping[str, float]
    connectivity: int
    n_rejected_small: int

    @property
    def n_lesions(self) -> int:
        return len(self.lesions)

    @property
    def total_tumour_volume_ml(self) -> float:
        """TTV / TMTV: summed lesion volume (mL)."""
        return float(sum(les.volume_ml for les in self.lesions))

    @property
    def total_lesion_activity_mbq(self) -> float:
        """Summed lesion activity at scan time (MBq)."""
        return float(sum(les.activity_mbq for les in self.lesions))

    @property
    def total_lesion_uptake_suv_ml(self) -> float:
        """Total lesion uptake (TLU, e.g. TL-PSMA): sum of SUVmean x volume (SUV mL)."""
        return float(sum(les.tlu_suv_ml for les in self.lesions))

    @property
    def total_percent_ia(self) -> float:
        """Summed lesion uptake in % of the injected activity (decay-corrected)."""
        return float(sum(les.percent_ia for les in self.lesions))

    def table(self) -> pandas.DataFrame:
        """Per-lesion table indexed by ``lesion`` (the label), largest first; empty if none."""
        import pandas as pd

        rows = []
        for les in self.lesions:
            row = {k: getattr(les, k) for k in _TABLE_COLUMNS if hasattr(les, k)}
            row["centroid_x_mm"], row["centroid_y_mm"], row["centroid_z_mm"] = les.centroid_mm
            rows.append(row)
        df = pd.DataFrame(rows, columns=list(_TABLE_COLUMNS))
        df.index = pd.Index([les.label for les in self.lesions], name="lesion", dtype="int64")
        if not rows:
            df = df.astype({c: ("bool" if c == "touches_excluded" else
                                "int64" if c == "n_voxels" else "float64") for c in _TABLE_COLUMNS})
        return df

    def summary(self) -> dict:
        """Totals: ``n_lesions``, ``total_tumour_volume_ml`` (TTV), ``total_lesion_activity_mbq``,
        ``total_lesion_uptake_suv_ml`` (TLU), ``total_percent_ia``, ``n_rejected_small``."""
        return {"n_lesions": self.n_lesions, "total_tumour_volume_ml": self.total_tumour_volume_ml,
                "total_lesion_activity_mbq": self.total_lesion_activity_mbq,
                "total_lesion_uptake_suv_ml": self.total_lesion_uptake_suv_ml,
                "total_percent_ia": self.total_percent_ia, "n_rejected_small": self.n_rejected_small}

    def to_sitk(self) -> sitk.Image:
        """The label map as a SimpleITK image on the PET grid (write it with ``sitk.WriteImage``)."""
        return self.geometry.to_image(self.labels)

    def to_masks(self, prefix: str = "lesion") -> Masks:
        """The lesions as :class:`twin.patient.Masks` named ``<prefix>1``, ``<prefix>2``, ...

        For pbpk tumour compartments use :func:`tumour_compartments` instead.
        """
        if not self.lesions:
            raise LesionParameterError("no lesion was segmented, so there are no lesion masks; check "
                                       "n_lesions first.")
        return Masks(self.labels, {les.label: f"{prefix}{les.label}" for les in self.lesions},
                     self.geometry)


# ----------------------------------------------------------------------------- helpers
def _components(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """Connected components (SimpleITK): labels 1..n in a uint32 array, and n."""
    if not mask.any():
        return np.zeros(mask.shape, np.uint32), 0
    cc = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), connectivity == 26)
    arr = sitk.GetArrayFromImage(cc)
    return arr, int(arr.max())


def _padded(sl: tuple[slice, ...], pad, shape) -> tuple[slice, ...]:
    return tuple(slice(max(0, s.start - p), min(n, s.stop + p)) for s, p, n in zip(sl, pad, shape))


def _dilate_mm(mask: np.ndarray, spacing_zyx, margin_mm: float) -> np.ndarray:
    """Voxels within ``margin_mm`` (Euclidean, physical) of ``mask``."""
    from scipy.ndimage import distance_transform_edt, find_objects

    if margin_mm <= 0 or not mask.any():
        return mask
    sl = find_objects(mask.astype(np.uint8))[0]
    pad = [math.ceil(margin_mm / s) + 1 for s in spacing_zyx]
    big = _padded(sl, pad, mask.shape)
    out = mask.copy()
    out[big] = distance_transform_edt(~mask[big], sampling=spacing_zyx) <= margin_mm
    return out


def _excluded_names(masks: Masks | None, exclude) -> tuple[str, ...]:
    if exclude is None:
        return ()
    if isinstance(exclude, str):
        if exclude == "physiological":
            return () if masks is None else tuple(n for n in masks.names if _physiological(n))
        exclude = (exclude,)
    if not isinstance(exclude, Iterable):
        raise LesionParameterError(f"exclude = {exclude!r}; give 'physiological', None or structure names.")
    names = tuple(str(n) for n in exclude)
    if names and masks is None:
        raise LesionParameterError(f"exclude = {names!r} names structures, but no masks were given; pass "
                                   "the organ masks (twin.patient.load_masks) as masks=.")
    for n in names:
        if n not in masks.names:
            raise UnknownLabelError(f"structure {n!r} to exclude is not in the masks; known: "
                                    f"{', '.join(masks.names)}.")
    return names


def _margins(exclude_margin_mm, names: tuple[str, ...]) -> dict[str, float]:
    """Margin (mm) per excluded structure from a number or a {name: mm} mapping (others 0)."""
    if isinstance(exclude_margin_mm, Mapping):
        unknown = sorted(set(map(str, exclude_margin_mm)) - set(names))
        if unknown:
            raise LesionParameterError(
                f"exclude_margin_mm names {', '.join(unknown)}, which are not excluded (excluded: "
                f"{', '.join(names) or 'none'}); add them to exclude= or drop their margins.")
        out = {n: 0.0 for n in names}
        for n, v in exclude_margin_mm.items():
            out[str(n)] = _positive(f"exclude_margin_mm[{n!r}]", v, allow_zero=True)
        return out
    v = _positive("exclude_margin_mm", exclude_margin_mm, allow_zero=True)
    return {n: v for n in names}


def _physical_point(geo: Geometry, index_zyx) -> tuple[float, float, float]:
    ijk = np.asarray(index_zyx, float)[::-1] * np.asarray(geo.spacing)
    d = np.asarray(geo.direction, float).reshape(3, 3)
    p = np.asarray(geo.origin, float) + d @ ijk
    return (float(p[0]), float(p[1]), float(p[2]))


# ----------------------------------------------------------------------------- segmentation
def segment_lesions(
    image: ActivityImage,
    masks: Masks | None = None,
    *,
    method: Method | str = "fixed",
    min_volume_ml: float = 0.5,
    exclude="physiological",
    exclude_margin_mm: float | Mapping[str, float] = 0.0,
    connectivity: int = 26,
) -> LesionSegmentation:
    """Segment lesions on a PET frame in body-weight SUV.

    Parameters
    ----------
    image: a :class:`twin.patient.ActivityImage` with ``injected_activity_mbq`` and
        ``weight_kg`` (SUV needs both; ``load_patient`` takes the weight from the labs).
    masks: organ masks on the PET grid (:class:`twin.patient.Masks`); needed to exclude
        physiological uptake.
    method: ``"fixed"`` (SUV >= 3), ``"percent_max"`` (41 % of local SUVmax), ``"adaptive"``
        (50 % of SUVmax above the local background), or a :class:`FixedThreshold`,
        :class:`PercentOfMax`, :class:`AdaptiveThreshold` with its own thresholds.
    min_volume_ml: lesions smaller than this are dropped (counted in ``n_rejected_small``).
    exclude: ``"physiological"`` (default: the structures of the masks named in
        :data:`PHYSIOLOGICAL_UPTAKE`, compared as :func:`twin.patient.region_of` compares names,
        so ``"Kidney Left"`` counts), ``None`` (nothing) or structure names.
    exclude_margin_mm: also exclude voxels within this distance (mm) of an excluded structure:
        one number for all, or ``{name: mm}`` (others 0). The blur halo of an organ reaches
        further the hotter the organ is relative to ``seed_suv``: about one PET FWHM is enough
        for moderately hot organs such as the kidneys, but very hot ones such as the bladder
        need 1.5-2 FWHM (on ``twin.patient.default_patient()``, FWHM 5 mm and bladder SUVmean
        51, a 5 mm margin leaves 8 halo fragments as false lesions, 7.5 and 10 mm none). A
        margin also trims lesions touching these organs (flagged ``touches_excluded``).
    connectivity: 26 (face, edge and corner neighbours) or 6 (face neighbours only).
    """
    m = _method(method)
    if not isinstance(image, ActivityImage):
        raise LesionParameterError(
            f"image is a {type(image).__name__}; give a twin.patient.ActivityImage "
            "(twin.patient.load_activity_image, or patient.frames[i] from load_patient).")
    if image.injected_activity_mbq is None or image.weight_kg is None:
        missing = [n for n, v in (("injected_activity_mbq", image.injected_activity_mbq),
                                  ("weight_kg", image.weight_kg)) if v is None]
        raise MissingInjectedActivityError(
            f"lesion thresholds are in SUV, which needs the injected activity and the body weight; "
            f"this image lacks {' and '.join(missing)}. Give them to load_activity_image(..., "
            "injected_activity_mbq=..., weight_kg=...) (load_patient takes the weight from the labs).")
    min_volume_ml = _positive("min_volume_ml", min_volume_ml, allow_zero=True)
    if connectivity not in (6, 26):
        raise LesionParameterError(f"connectivity = {connectivity!r}; use 26 (default) or 6.")
    if masks is not None:
        if not isinstance(masks, Masks):
            raise LesionParameterError(
                f"masks is a {type(masks).__name__}; give twin.patient.Masks (twin.patient.load_masks "
                "with reference=image.geometry).")
        diffs = image.geometry.differences(masks.geometry)
        if diffs:
            raise GeometryMismatchError(
                f"the masks are not on the PET grid ({'; '.join(diffs)}); load them with "
                "twin.patient.load_masks(..., reference=image.geometry, resample=True).")
    names = _excluded_names(masks, exclude)
    margins = _margins(exclude_margin_mm, names)

    from scipy.ndimage import binary_dilation, distance_transform_edt, find_objects

    geo = image.geometry
    shape = geo.shape
    spacing_zyx = tuple(reversed(geo.spacing))
    vv = geo.voxel_volume_ml
    suv = image.suv()
    excluded = np.zeros(shape, bool)
    for margin in sorted(set(margins.values())):
        organ = np.isin(masks.labels, [masks.label_of(n) for n in names if margins[n] == margin])
        excluded |= _dilate_mm(organ, spacing_zyx, margin)
    hot = suv >= np.float32(m.seed_suv)
    cc, _ = _components(hot & ~excluded, connectivity)
    min_vox = math.ceil(min_volume_ml / vv - 1e-9) if min_volume_ml > 0 else 1

    global_bg = None

    def background(k: int, sl) -> float:
        nonlocal global_bg
        if m.background_suv is not None:
            return m.background_suv
        inner, outer = m.background_shell_mm
        big = _padded(sl, [math.ceil(outer / s) + 1 for s in spacing_zyx], shape)
        dist = distance_transform_edt(cc[big] != k, sampling=spacing_zyx)
        shell = (dist > inner) & (dist <= outer) & ~hot[big] & ~excluded[big]
        vals = suv[big][shell]
        vals = vals[vals > 0]
        if vals.size >= 10:
            return float(np.median(vals))
        if global_bg is None:
            rest = suv[~hot & ~excluded]
            rest = rest[rest > 0]
            global_bg = float(np.median(rest)) if rest.size else 0.0
        _log.info("lesion candidate %d: background shell has %d voxels; using the image background "
                  "SUV %.3g", k, vals.size, global_bg)
        return global_bg

    pieces = []  # (slices, local mask, threshold, background)
    n_small = 0
    for k, sl in enumerate(find_objects(cc), start=1):
        if sl is None:
            continue
        comp = cc[sl] == k
        if int(comp.sum()) < min_vox:
            n_small += 1
            continue
        if isinstance(m, FixedThreshold):
            pieces.append((sl, comp, m.threshold_suv, math.nan))
            continue
        s = suv[sl]
        smax = float(s[comp].max())
        if isinstance(m, PercentOfMax):
            bg = math.nan
            thr = m.percent / 100.0 * smax
        else:
            bg = background(k, sl)
            thr = bg + m.percent / 100.0 * (smax - bg)
        sub_cc, n_sub = _components(comp & (s >= np.float32(thr)), connectivity)
        if n_sub == 0:
            _log.info("lesion candidate %d dropped: SUVmax %.3g is not above its background %.3g",
                      k, smax, bg)
        for j in range(1, n_sub + 1):
            piece = sub_cc == j
            if int(piece.sum()) < min_vox:
                n_small += 1
                continue
            pieces.append((sl, piece, max(thr, m.seed_suv), bg))

    near_excluded = binary_dilation(excluded, np.ones((3, 3, 3), bool)) if excluded.any() else excluded
    bq = image.bq_per_ml
    a_inj = float(image.injected_activity_mbq)
    decay = image.decay_factor
    stats = []
    for sl, piece, thr, bg in pieces:
        vals = suv[sl][piece].astype(np.float64)
        n_vox = int(vals.size)
        idx = np.argwhere(piece).mean(axis=0) + np.array([s.start for s in sl])
        act = float(bq[sl][piece].sum(dtype=np.float64)) * vv / 1e6
        stats.append({"n_voxels": n_vox, "volume_ml": n_vox * vv, "suv_mean": float(vals.mean()),
                      "suv_max": float(vals.max()), "activity_mbq": act,
                      "percent_ia": 100.0 * act / decay / a_inj,
                      "tlu_suv_ml": float(vals.mean()) * n_vox * vv,
                      "centroid_mm": _physical_point(geo, idx), "threshold_suv": float(thr),
                      "background_suv": float(bg),
                      "touches_excluded": bool(near_excluded[sl][piece].any())})
    order = sorted(range(len(stats)), key=lambda i: (-stats[i]["n_voxels"], -stats[i]["suv_max"],
                                                      stats[i]["centroid_mm"]))
    if len(order) > np.iinfo(np.int16).max:
        raise LesionParameterError(f"{len(order)} lesions found; raise the threshold or min_volume_ml.")
    labels = np.zeros(shape, np.int16)
    lesions = []
    for new, i in enumerate(order, start=1):
        sl, piece = pieces[i][0], pieces[i][1]
        labels[sl][piece] = new
        lesions.append(Lesion(label=new, **stats[i]))
    labels.setflags(write=False)
    return LesionSegmentation(labels, geo, tuple(lesions), m, min_volume_ml, names,
                              MappingProxyType(margins),
                              int(connectivity), n_small)
