"""twin.trial: virtual trials (arms as data, endpoints, summary tables and plots, TOML configs).

Quick start::

    from twin.cohort import Population
    from twin.trial import Arm, Limit, Trial, run_trial, summarise, exceedance_table

    arms = (Arm("fixed 7.4 GBq x 6", activity_gbq=7.4, cycles=6),
            Arm("kidney BED <= 40 Gy", activity_gbq=7.4, cycles=6, personalise="cycles",
                limit=Limit("kidneys", "bed", 40.0)))
    trial = Trial(arms, Population.default("PSMA-617"), n_patients=500, key=0)
    if __name__ == "__main__":   # in a script: the worker processes (500+ patients) import it again
        run_trial(trial, "out/trial")
        summarise("out/trial"); exceedance_table("out/trial")

or from a TOML file: ``twin trial twin/trial/data/psma_kidney_limit.toml --out out/trial``.
"""

from __future__ import annotations

from importlib.resources import files as _files

from twin.trial._arms import PERSONALISE, QUANTITIES, Arm, Limit, default_limits, evaluate_arm
from twin.trial._config import TrialConfig, TrialConfigError, load_trial_config, parse_trial_config
from twin.trial._summary import exceedance_table, plot_trial, summarise, write_trial_report
from twin.trial._trial import Trial, TrialTask, run_cohort, run_trial

#: The shipped example configuration (177Lu-PSMA-617: fixed vs kidney-limited arms).
EXAMPLE_CONFIG = _files("twin.trial") / "data" / "psma_kidney_limit.toml"

__all__ = [
    "EXAMPLE_CONFIG", "PERSONALISE", "QUANTITIES", "Arm", "Limit", "Trial", "TrialConfig", "TrialConfigError",
    "TrialTask", "default_limits", "evaluate_arm", "exceedance_table", "load_trial_config",
    "parse_trial_config", "plot_trial", "run_cohort", "run_trial", "summarise",
    "write_trial_report",
]
