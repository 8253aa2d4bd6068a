"""twin: the patient twin (dosimetry, patient data, scenarios, trials, CLI).

Quick start::

    from twin import Twin, patient, max_activity, write_report
    ph = patient.default_patient()                 # a virtual patient: 68Ga-PSMA-11 PET at 1 h
    tw = Twin.from_patient(ph)                     # calibrate (Laplace) on the PET and labs
    pred = tw.predict(activity_gbq=7.4, n_cycles=6)
    pred.dose_table()                              # Gy, Gy/GBq, BED, EQD2 with credible intervals
    esc = max_activity(tw, probability=0.95)       # kidney BED <= 40 Gy, marrow <= 2 Gy ...
    write_report("out/report", pred, escalation=esc)

The public names are imported on first use, so ``import twin`` (and the ``twin`` command's
``--help``) stays fast.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ScanSet": "twin._design", "rank_imaging_schedules": "twin._design",
    "InfeasibleError": "twin._errors", "TwinError": "twin._errors", "TwinInputError": "twin._errors",
    "EscalationResult": "twin._scenarios", "max_activity": "twin._scenarios",
    "default_escalation_limits": "twin._scenarios", "TooFewDrawsError": "twin._scenarios",
    "min_draws": "twin._scenarios",
    "scenario_table": "twin._scenarios",
    "DEFAULT_QUANTILES": "twin._twin", "TherapyPrediction": "twin._twin", "Twin": "twin._twin",
    "VoxelDose": "twin._twin", "therapy_schedule": "twin._twin", "limit_quantile": "twin._twin",
    "model_doses": "twin._twin", "AIR_DENSITY_G_CM3": "twin._twin",
    "write_report": "twin.report",
}

__all__ = [
    "AIR_DENSITY_G_CM3", "DEFAULT_QUANTILES", "EscalationResult", "InfeasibleError", "ScanSet", "TherapyPrediction", "Twin",
    "TwinError", "TwinInputError", "VoxelDose", "default_escalation_limits", "limit_quantile", "max_activity",
    "model_doses", "TooFewDrawsError", "min_draws",
    "rank_imaging_schedules", "scenario_table", "therapy_schedule", "write_report",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'twin' has no attribute {name!r}")


assert sorted(__all__) == sorted(_EXPORTS)


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
