"""A PSMA model without lesions (a patient with no visible tumour) builds and conserves ligand."""

import numpy as np

import pbpk


def test_psma_model_without_lesions_conserves_ligand():
    model = pbpk.psma_model("PSMA-617", lesion_volumes_l=(), tumour_rest_volume_l=0.0)
    assert not any(r.startswith("tumour") for r in model.regions)
    res = pbpk.simulate(model, pbpk.Schedule.single(7400.0), [1.0, 24.0, 168.0])
    # invariant: every administered molecule is somewhere in the body, in urine or decayed
    assert np.max(np.abs(np.asarray(res.mass_balance_residual))) < 1e-8
    # physical decay alone: total hot activity never exceeds A0 exp(-lambda t)
    lam = np.log(2) / (6.647 * 24)   # 177Lu half-life 6.647 d (radioactivedecay/ICRP-107)
    total = sum(np.asarray(res.activity(r)) for r in model.regions)
    assert np.all(total <= 7400.0 * np.exp(-lam * np.array([1.0, 24.0, 168.0])) * (1 + 1e-6))
