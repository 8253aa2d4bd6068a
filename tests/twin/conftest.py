"""Shared fixtures of the twin tests: one calibrated twin per test process.

The virtual patient is the embedded default patient's anatomy and labs, but its lesions carry
PSMA densities (80 and 30 nM) that differ from the model default (50 nM) the twin starts from,
so the calibration has something to find. The twin's model depends only on the anatomy and
labs, so its compiled calibration is shared with `twin demo` in the same process.
"""

from __future__ import annotations

import numpy as np
import pytest

import pbpk
from twin import Twin, patient

LESION_NMOL_PER_L = (80.0, 30.0)
PET_TIMES_H = (1.0,)


def _phantom():
    labs = patient.default_patient().labs
    return patient.make_phantom(0, agent="PSMA-11", modality="PET", labs=labs, tumour_volumes_ml=(12.0, 5.0),
                                tumour_centres_mm=((60.0, -40.0, 200.0), (-90.0, 20.0, 300.0)),
                                times_h=PET_TIMES_H,
                                model_kwargs={"lesion_receptor_nmol_per_l": LESION_NMOL_PER_L})


@pytest.fixture(scope="session")
def phantom():
    return _phantom()


@pytest.fixture(scope="session")
def twin(phantom):
    return Twin.from_patient(phantom, num_samples=400, key=0)


@pytest.fixture(scope="session")
def true_therapy_model(phantom, twin):
    """The therapy agent in the phantom's true physiology (its ground-truth parameters)."""
    gt = {k: v for k, v in phantom.ground_truth["model_parameters"].items() if k != "lambda_phys_per_h"}
    truth = twin.imaging_model.with_parameters(**{k: v for k, v in gt.items() if k in twin.imaging_model.parameters})
    return pbpk.theranostic_pair(truth, "PSMA-617")


def draws_params(tw, n, key=0):
    """The posterior draws the twin simulates (indices and parameter arrays)."""
    return tw._draw_params(n, key)


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(0)
