"""The demo behind ``make demo``: the embedded virtual patient end to end.

68Ga-PSMA-11 PET at 1 h (the embedded default patient: ICRP-89 reference-male labs, two
lesions of 12 and 5 mL) -> Laplace calibration of the patient-specific parameters -> posterior
prediction of 177Lu-PSMA-617 at the fixed protocol (7.4 GBq x 6 every 6 weeks) -> the
personalised activity (kidney BED <= 40 Gy and red marrow <= 2 Gy with 95 % probability) ->
the report folder (figures, tables, JSON).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

DEMO_ACTIVITY_GBQ = 7.4
DEMO_CYCLES = 6


def run_demo(out_dir: str | Path = "out", *, activity_gbq: float = DEMO_ACTIVITY_GBQ,
             n_cycles: int = DEMO_CYCLES, interval_weeks: float = 6.0, n_draws: int = 400,
             n_voxel_draws: int = 16, probability: float = 0.95, method: str = "laplace",
             progress: bool = True) -> dict:
    """Run the demo and write the report to ``out_dir/report``.

    Returns a dict: ``twin``, ``prediction`` (fixed protocol), ``escalation``, ``files``
    (name -> path), ``timings_s`` (per stage) and ``report_dir``.
    """
    from twin import patient
    from twin._scenarios import max_activity
    from twin._twin import Twin
    from twin.report import check_report_folder, write_report

    check_report_folder(Path(out_dir) / "report")  # before the work, not after it
    stages = ["virtual patient", "calibration", "therapy prediction", "escalation", "voxel dose", "report"]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(stages), desc="twin demo", unit="stage")
    timings: dict[str, float] = {}
    t = time.perf_counter()

    def done(stage):
        nonlocal t
        now = time.perf_counter()
        timings[stage] = now - t
        t = now
        log.info("demo: %s done in %.1f s", stage, timings[stage])
        if bar is not None:
            bar.set_postfix_str(stage)
            bar.update(1)

    try:
        ph = patient.default_patient("PET")
        done("virtual patient")
        tw = Twin.from_patient(ph, method=method, num_samples=max(400, n_draws))
        done("calibration")
        pred = tw.predict(activity_gbq=activity_gbq, n_cycles=n_cycles, interval_weeks=interval_weeks,
                          n_draws=n_draws)
        done("therapy prediction")
        esc = max_activity(tw, probability=probability, n_cycles=n_cycles, interval_weeks=interval_weeks,
                           fixed_activity_gbq=activity_gbq, fixed_n_cycles=n_cycles, n_draws=n_draws)
        done("escalation")
        vox = pred.voxel_dose(n_draws=n_voxel_draws)
        done("voxel dose")
        report_dir = Path(out_dir) / "report"
        files = write_report(report_dir, pred, escalation=esc, voxel=vox,
                             title=f"Demo patient, 177Lu-PSMA-617 {activity_gbq:g} GBq x {n_cycles}",
                             extra={"patient": "twin.patient.default_patient() (virtual, seed 0)",
                                    "pet": "68Ga-PSMA-11, 150 MBq, 1 h"})
        done("report")
    finally:
        if bar is not None:
            bar.close()
    return {"twin": tw, "prediction": pred, "escalation": esc, "files": files, "timings_s": timings,
            "report_dir": report_dir}
