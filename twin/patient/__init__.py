"""twin.patient: patient data (images, masks, labs), organ uptake and virtual patients.

Load a patient from files::

    from twin import patient
    p = patient.load_patient("pet.nii.gz", nuclide="68Ga", unit="kBq/mL", hours_after_injection=1.0,
                             injected_activity_mbq=150.0, masks="labels.nii.gz",
                             label_table="label_table.csv", ct="ct.nii.gz", labs="labs.csv")
    p.uptake(fwhm_mm=5.0)          # pandas table: volume_ml, activity_mbq, percent_ia, suv_mean ...

Make a virtual patient::

    ph = patient.make_phantom(seed=1, agent="PSMA-11", times_h=(1.0, 2.0), heterogeneity=0.2)
    ph.write("out/phantom1")       # NIfTI images, labs.csv, label_table.csv, ground_truth.json

Arrays are numpy in SimpleITK's (z, y, x) order; activity images are float32 Bq/mL at scan
time (not decay-corrected). Errors subclass the ``pbpk`` error types.
"""

from twin.patient._errors import (
    CorruptFileError,
    EmptyMaskError,
    GeometryMismatchError,
    ImageDimensionError,
    ImageTooLargeError,
    LabelTableError,
    LabRangeError,
    LabUnitError,
    MissingInjectedActivityError,
    NegativeActivityError,
    NonFiniteVoxelError,
    OverlappingLabelsError,
    PatientDataError,
    PatientParameterError,
    PhantomParameterError,
    ScanTimeError,
    UnknownLabelError,
    UnknownSexError,
)
from twin.patient._io import (
    ACTIVITY_UNITS,
    DEFAULT_MAX_BYTES,
    ActivityImage,
    Geometry,
    Masks,
    check_same_grid,
    decay_factor,
    hours_between,
    load_activity_image,
    load_masks,
    read_image,
    resample_to,
)
from twin.patient._labs import LAB_RANGES, LAB_UNITS, Labs, read_labs
from twin.patient._patient import Patient, load_patient
from twin.patient._phantom import AGENTS, Phantom, default_patient, make_phantom
from twin.patient._uptake import (
    LARGE_ORGAN_REGIONS,
    STRUCTURE_REGIONS,
    intra_organ_distribution,
    organ_uptake,
    recovery_coefficient,
    region_of,
    region_uptake,
)

__all__ = [
    "ACTIVITY_UNITS",
    "LARGE_ORGAN_REGIONS",
    "PatientParameterError",
    "AGENTS",
    "DEFAULT_MAX_BYTES",
    "LAB_RANGES",
    "LAB_UNITS",
    "STRUCTURE_REGIONS",
    "ActivityImage",
    "CorruptFileError",
    "EmptyMaskError",
    "Geometry",
    "GeometryMismatchError",
    "ImageDimensionError",
    "ImageTooLargeError",
    "LabRangeError",
    "LabUnitError",
    "LabelTableError",
    "Labs",
    "Masks",
    "MissingInjectedActivityError",
    "NegativeActivityError",
    "NonFiniteVoxelError",
    "OverlappingLabelsError",
    "Patient",
    "PatientDataError",
    "Phantom",
    "PhantomParameterError",
    "ScanTimeError",
    "UnknownLabelError",
    "UnknownSexError",
    "check_same_grid",
    "decay_factor",
    "default_patient",
    "hours_between",
    "intra_organ_distribution",
    "load_activity_image",
    "load_masks",
    "load_patient",
    "make_phantom",
    "organ_uptake",
    "read_image",
    "read_labs",
    "recovery_coefficient",
    "region_of",
    "region_uptake",
    "resample_to",
]
