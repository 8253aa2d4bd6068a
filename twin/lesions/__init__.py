"""twin.lesions: tumour burden from PET: lesion segmentation, TTV/TLU and pbpk tumour compartments.

Segment lesions in SUV, excluding organs with physiological uptake (given as masks)::

    from twin import lesions, patient
    p = patient.load_patient("pet.nii.gz", nuclide="68Ga", masks="organs.nii.gz",
                             label_table="organs.csv", labs="labs.csv", hours_after_injection=1.0,
                             injected_activity_mbq=150.0)
    seg = lesions.segment_lesions(p.frames[0], p.masks, method=lesions.PercentOfMax(41.0),
                                  min_volume_ml=0.5, exclude_margin_mm=5.0)
    seg.table()              # per lesion: volume_ml, suv_mean, suv_max, activity_mbq, tlu_suv_ml ...
    seg.summary()            # total_tumour_volume_ml (TTV), total_lesion_uptake_suv_ml (TLU), ...

Turn them into pbpk tumour compartments (3 largest individually, the rest lumped)::

    comp = lesions.tumour_compartments(seg, 3, model="psma")
    model = pbpk.psma_model("PSMA-11", physiology=p.physiology(), **comp.model_kwargs())
    masks = lesions.merge_tumour_masks(p.masks, comp)   # tumour1..3, tumour_rest beside the organs

Errors subclass the ``twin.patient`` error types.
"""

from twin.lesions._compartments import TumourCompartments, merge_tumour_masks, tumour_compartments
from twin.lesions._errors import LesionError, LesionParameterError, NoLesionError
from twin.lesions._segment import (
    PHYSIOLOGICAL_UPTAKE,
    AdaptiveThreshold,
    FixedThreshold,
    Lesion,
    LesionSegmentation,
    PercentOfMax,
    segment_lesions,
)

__all__ = [
    "PHYSIOLOGICAL_UPTAKE",
    "AdaptiveThreshold",
    "FixedThreshold",
    "Lesion",
    "LesionError",
    "LesionParameterError",
    "LesionSegmentation",
    "NoLesionError",
    "PercentOfMax",
    "TumourCompartments",
    "merge_tumour_masks",
    "segment_lesions",
    "tumour_compartments",
]
