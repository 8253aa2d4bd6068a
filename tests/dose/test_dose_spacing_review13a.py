"""Review 13A: the spacing check of voxel_dose / make_dose_plan takes any form of one or three
numbers (as twin.dose's one spacing check, ``_spacing3``) and raises typed errors otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from pbpk._errors import InvalidInputError
from twin.dose import lanconelli_kernel, make_dose_plan, voxel_dose
from twin.dose._errors import GridMismatchError, VoxelSizeError


@pytest.mark.parametrize("spacing", [np.array(4.0), np.array([4.0]), [4.0], np.float32(4.0)])
def test_isotropic_spacing_in_any_form_is_accepted(spacing):
    kernel = lanconelli_kernel("Lu-177", 4.0)
    tia = np.zeros((5, 5, 5))
    tia[2, 2, 2] = 1.0
    plan = make_dose_plan(kernel, tia.shape, spacing_mm=spacing)
    dose = np.asarray(voxel_dose(tia, plan, spacing_mm=spacing, density_g_cm3=np.ones(tia.shape),
                                 density_spacing_mm=spacing))
    # a point source of 1 MBq h: the centre voxel gets the kernel's self value x 1.04 / 1.0
    assert dose[2, 2, 2] == pytest.approx(kernel.self_value_gy_per_mbq_h * 1.04, rel=1e-5)


@pytest.mark.parametrize("bad, error", [(np.array(-4.0), VoxelSizeError), ((4.0, 4.0), VoxelSizeError),
                                        ("four", InvalidInputError), ((4.0, 4.0, 5.0), GridMismatchError)])
def test_bad_spacing_raises_typed_errors(bad, error):
    kernel = lanconelli_kernel("Lu-177", 4.0)
    plan = make_dose_plan(kernel, (4, 4, 4))
    with pytest.raises(error, match="spacing"):
        voxel_dose(np.ones((4, 4, 4)), plan, spacing_mm=bad)
