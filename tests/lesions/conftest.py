import pytest


@pytest.fixture(scope="session")
def psma_phantom():
    """68Ga-PSMA-11 virtual patient: FWHM 7 mm, 4 mm voxels, Poisson noise (3e7 counts), 15 %
    texture; lesions of lesion_helpers.PHANTOM_TUMOURS_ML."""
    from lesion_helpers import PHANTOM_CENTRES_MM, PHANTOM_TUMOURS_ML

    from twin.patient import make_phantom

    return make_phantom(0, agent="PSMA-11", spacing_mm=4.0, fwhm_mm=7.0, total_counts=3e7,
                        heterogeneity=0.15, tumour_volumes_ml=PHANTOM_TUMOURS_ML,
                        tumour_centres_mm=PHANTOM_CENTRES_MM, times_h=(1.0,))
