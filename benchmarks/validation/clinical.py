"""Published clinical dosimetry that the validation report compares with.

The entries come from ``../shared/research/dosimetry_reference.md`` §4 and ``pbpk_models.md``
§2.5/§4 with the tag given there, except three read in the published abstracts and cited
with their identifiers where they are defined: Kurth 2018 (whole-body T_eff, excretion at 4 and
12 h; doi:10.1186/s13550-018-0386-4), de Bakker 2023 (urinary excretion half-time; PMID
37421427) and the AAPM 2026 spleen range. Tags: ``V`` read in the source (abstract or full
text), ``M``/``U`` recalled, not verified against the paper (reported, flagged in the table).
``anchor`` marks values the shipped defaults were *fitted* to, or that set the fitted target
(``tools/calibrate_defaults.py``: the 0.60 Gy/GBq kidney target is the middle of Kabasakal,
Hohberg and Peters): agreement with them is a consistency check, not an independent
validation. ``n`` is the number of patients unless the source says otherwise. Doses in Gy/GBq
(per cycle, 177Lu), half-lives in h, fractions in %.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DOTATATE",
    "HALF_LIVES_DOTATATE",
    "HALF_LIVES_PSMA617",
    "PSMA617",
    "URINE_PSMA617",
    "Published",
]


@dataclass(frozen=True)
class Published:
    quantity: str          # kidney, salivary, lacrimal, red_marrow, liver, spleen, tumour, ...
    mean: float            # mean or median as published
    sd: float | None       # SD as published (None if not given)
    low: float | None      # published range (None if not given)
    high: float | None
    n: int | None
    source: str
    tag: str               # V (verified), M/U (unverified recollection)
    anchor: bool = False   # used to calibrate the shipped defaults


PSMA617 = (
    Published("kidney", 0.43, 0.16, None, None, 30, "VISION dosimetry sub-study, Herrmann et al., J Nucl Med 2024;65:71 (cycle 1)", "V"),
    Published("kidney", 0.82, 0.25, None, None, 7, "Kabasakal et al., Mol Imaging Radionucl Ther 2017 (PMC5472088)", "V",
              anchor=True),
    Published("kidney", 0.53, None, None, None, 9, "Hohberg et al., Mol Imaging Biol 2016;18:437", "V", anchor=True),
    Published("kidney", 0.49, 0.11, None, None, 10, "Peters et al., EJNMMI 2022 (mHSPC)", "V", anchor=True),
    Published("kidney", 0.75, None, None, None, None, "Kratochwil et al., J Nucl Med 2016;57:1170", "U"),
    Published("kidney", 0.6, 0.2, None, None, 5, "Delker et al., EJNMMI 2016;43:42", "U"),
    Published("salivary", 0.63, 0.36, None, None, 29, "VISION / Pluvicto label (Herrmann 2024)", "M"),
    Published("salivary", 0.72, None, None, None, 9, "Hohberg et al. 2016", "V", anchor=True),
    Published("salivary", 1.90, 1.19, None, None, 7, "Kabasakal 2017 (parotid)", "V"),
    Published("salivary", 0.39, 0.17, None, None, 10, "Peters 2022 (mHSPC)", "V"),
    Published("salivary", 1.28, None, None, None, None, "Kratochwil 2016", "U"),
    Published("salivary", 1.4, 0.5, None, None, 5, "Delker 2016", "U"),
    Published("lacrimal", 2.82, None, None, None, 9, "Hohberg et al. 2016", "V", anchor=True),
    Published("lacrimal", 2.1, 0.47, None, None, 29, "VISION / Pluvicto label (Herrmann 2024)", "M"),
    Published("red_marrow", 0.030, 0.008, None, None, 7, "Kabasakal 2017", "V"),
    Published("red_marrow", 0.035, 0.020, None, None, 29, "VISION / Pluvicto label (Herrmann 2024)", "M"),
    Published("red_marrow", 0.017, 0.008, None, None, 10, "Peters 2022 (mHSPC)", "V"),
    Published("red_marrow", 0.03, None, None, None, None, "Kratochwil 2016", "U"),
    Published("red_marrow", 0.012, None, None, None, 5, "Delker 2016", "U"),
    Published("liver", 0.09, 0.01, None, None, 10, "Peters 2022 (mHSPC)", "V"),
    Published("liver", 0.09, None, None, None, 29, "VISION / Pluvicto label (Herrmann 2024)", "M"),
    Published("tumour", 3.25, 3.19, None, None, 10, "Peters 2022 (mHSPC lesions)", "V"),
    Published("tumour", 13.1, None, 0.9, 147.0, 5, "Delker 2016 (lesions, median and range)", "U"),
)

URINE_PSMA617 = Published("urine_24h", 56.5, 8.8, 41.5, 65.4, 7,
                          "Kabasakal 2017 (PMC5472088), excreted at 24 h", "V", anchor=True)

# Urinary excretion kinetics of [177Lu]Lu-PSMA-617, Eur J Nucl Med Mol Imaging 2023;50:3572-3575
# (Radboudumc; urine samples up to 24 h after 28 cycles): mean excretion half-time over the first
# 20 h, 4.9 h (abstract; no spread given). Urine is filtered plasma, so this measures the plasma
# clearance the kidneys see, unlike whole-blood activity.
URINE_HALF_TIME_PSMA617 = Published("urine_half_time", 4.9, None, None, None, 28,
                                    "de Bakker et al., Eur J Nucl Med Mol Imaging 2023;50:3572 (PMID 37421427; "
                                    "urine samples, n = 28 cycles)", "V")
URINE_HALF_TIME_TIMES_H = (1.0, 2.0, 4.0, 8.0, 12.0, 20.0)

# Kurth et al., EJNMMI Res 2018;8:32 (50 patients, 6.3 +/- 0.5 GBq; dose rate at 2 m at 2, 24,
# 48, 72 h; whole-body counting at 7 time points in 25): whole-body effective half-life
# 40.5 +/- 9.6 h (range 21.7-85.7); about 50 % of the activity excreted after 4 h and 70 % after
# 12 h (abstract; "approximately", no spread). Our whole-body T_eff is fitted at 24, 48, 72 h
# (the abstract does not say which points it used); excreted = urine + released activity.
WHOLE_BODY_TEFF_PSMA617 = Published("whole_body", 40.5, 9.6, 21.7, 85.7, 50,
                                    "Kurth et al., EJNMMI Res 2018;8:32 (doi:10.1186/s13550-018-0386-4; dose rate at 2 m)", "V")
WHOLE_BODY_TEFF_TIMES_H = (24.0, 48.0, 72.0)
EXCRETED_PSMA617 = (
    Published("excreted_4h", 50.0, None, None, None, 25, "Kurth et al. 2018 (whole-body counting, 'approximately')", "V"),
    Published("excreted_12h", 70.0, None, None, None, 25, "Kurth et al. 2018 (whole-body counting, 'approximately')", "V"),
)

# AAPM 2026 abstract (n = 20, SPECT/CT 4, 24, 48, 72 h, mono-exponential): medians and ranges.
HALF_LIVES_PSMA617 = (
    Published("kidney", 35.5, None, 8.5, 152.0, 20, "AAPM 2026 abstract (177Lu-PSMA-617 STP study)", "V",
              anchor=True),
    Published("salivary", 42.2, None, 18.9, 160.8, 20, "AAPM 2026 abstract (parotid)", "V"),
    Published("liver", 22.9, None, 12.9, 63.4, 20, "AAPM 2026 abstract", "V", anchor=True),
    Published("spleen", 16.8, None, 9.3, 149.7, 20, "AAPM 2026 abstract (range read in the abstract)", "V",
              anchor=True),
    Published("red_marrow", 32.0, None, 5.9, 160.8, 20, "AAPM 2026 abstract", "V"),
)
HALF_LIVE_TIMES_PSMA617_H = (4.0, 24.0, 48.0, 72.0)

DOTATATE = (
    Published("kidney", 0.57, 0.09, None, None, 61, "Clin Nucl Med 2013 (61 pts, planar, OLINDA)", "V", anchor=True),
    Published("liver", 0.27, 0.05, None, None, 61, "Clin Nucl Med 2013", "V", anchor=True),
    Published("spleen", 1.17, 0.14, None, None, 61, "Clin Nucl Med 2013", "V", anchor=True),
    Published("kidney", 0.43, 0.13, 0.27, 0.91, 12, "EJNMMI Res 2018 (s13550-018-0459-4)", "V"),
    Published("kidney", 0.38, 0.19, None, None, 18, "EJNMMI Phys 2018 (Lutate, s40658-018-0232-9)", "V"),
    Published("kidney", 0.46, None, None, None, 56, "Staanum et al., EJNMMI Phys 2021;8:78 (mean; n = treatments)", "V"),
    Published("kidney", 0.654, None, None, None, None, "Lutathera label", "M"),
    Published("spleen", 0.846, None, None, None, None, "Lutathera label", "M"),
    Published("liver", 0.299, None, None, None, None, "Lutathera label", "M"),
)
# Spink et al., EJNMMI Phys 2024 (31 pts; SPECT d0, d4, d7): kidney T_eff 56 +/- 13 h.
# ASSUMPTION: the abstract gives days, not hours; we fit at 24, 96 and 168 h (the calibration
# anchor uses the same times). A same-day first scan (4 h) would read about 6 h longer on the
# reference patient (56.0 h at 24/96/168 h, 61.8 h at 4/96/168 h).
HALF_LIVES_DOTATATE = (
    Published("kidney", 56.0, 13.0, None, None, 31, "Spink et al., EJNMMI Phys 2024", "V",
              anchor=True),
)
HALF_LIVE_TIMES_DOTATATE_H = (24.0, 96.0, 168.0)
