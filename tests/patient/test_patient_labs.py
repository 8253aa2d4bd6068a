import pytest

import pbpk
from twin import patient as P


def test_labs_from_dict_and_csv(tmp_path):
    d = {"sex": "M", "age_y": 70, "weight_kg": 82.5, "height_cm": 178, "creatinine": 97.24,
         "creatinine_unit": "umol/L", "haematocrit": 0.41, "albumin_g_l": 40}
    labs = P.read_labs(d)
    assert labs.sex == "male"
    assert labs.creatinine_mg_dl == pytest.approx(97.24 / 88.4)  # 1.1 mg/dL by hand
    path = labs.to_csv(tmp_path / "labs.csv")
    assert P.read_labs(path) == labs
    (tmp_path / "long.csv").write_text(
        "field,value,unit\nsex,female,\nage_y,55,y\nweight_kg,60,kg\nheight_cm,165,cm\n"
        "creatinine,0.8,mg/dL\n")
    long = P.read_labs(tmp_path / "long.csv")
    assert long.sex == "female" and long.creatinine_mg_dl == pytest.approx(0.8)
    assert long.haematocrit == pytest.approx(0.40)


def test_egfr_and_physiology():
    labs = P.Labs(sex="male", age_y=60, weight_kg=73, height_cm=176, creatinine_mg_dl=0.9)
    # CKD-EPI 2021, male, Scr = kappa = 0.9: 142 x 0.9938^60 (hand)
    assert labs.egfr_ml_min_173 == pytest.approx(142 * 0.9938**60, rel=1e-9)
    phys = labs.physiology(organ_volumes_l={"kidney": 0.3})
    assert isinstance(phys, pbpk.Physiology) and phys.organ_volume_l("kidney") == pytest.approx(0.3)
    bsa = (176 * 73 / 3600) ** 0.5  # Mosteller
    assert phys.gfr_ml_min == pytest.approx(142 * 0.9938**60 * bsa / 1.73, rel=1e-9)


# ----------------------------------------------------------------------------- duplicates and units
LONG = "field,value,unit\nsex,female,\nage_y,55,y\nweight_kg,60,kg\nheight_cm,165,cm\n"


def _long(tmp_path, extra, base=LONG):
    path = tmp_path / "labs.csv"
    path.write_text(base + extra, encoding="utf-8")
    return path


def test_conflicting_duplicate_rows_are_refused(tmp_path):
    with pytest.raises(P.LabRangeError, match=r"weight_kg is given twice.*'60' kg \(line 4\).*'65' kg"):
        P.read_labs(_long(tmp_path, "weight_kg,65,kg\ncreatinine,0.8,mg/dL\n"))
    with pytest.raises(P.LabRangeError, match=r"creatinine is given twice.*'0.8' mg/dL.*'1.4' mg/dL"):
        P.read_labs(_long(tmp_path, "creatinine,0.8,mg/dL\ncreatinine,1.4,mg/dL\n"))
    with pytest.raises(P.LabRangeError, match="sex is given twice.*'female'.*'male'"):
        P.read_labs(_long(tmp_path, "sex,male,\n"))
    # 0.8 mg/dL is 70.7 umol/L: 120 umol/L is another value
    with pytest.raises(P.LabRangeError, match="creatinine is given twice.*creatinine_umol_l = '120'.*creatinine = '0.8' mg/dL"):
        P.read_labs(_long(tmp_path, "creatinine,0.8,mg/dL\ncreatinine_umol_l,120,\n"))


def test_identical_duplicates_are_accepted(tmp_path):
    labs = P.read_labs(_long(tmp_path, "weight_kg,60.0,\nsex,F,\ncreatinine,0.8,mg/dL\ncreatinine,0.8,mg/dL\n"))
    assert (labs.weight_kg, labs.sex, labs.creatinine_mg_dl) == (60.0, "female", 0.8)
    # the same creatinine in two units, rounded as reported: 1.0 mg/dL = 88.4 umol/L
    labs = P.read_labs(_long(tmp_path, "creatinine,1.0,mg/dL\ncreatinine,88,umol/L\n"))
    assert labs.creatinine_mg_dl == pytest.approx(1.0)


def test_conflicting_creatinine_columns_are_refused(tmp_path):
    base = {"sex": "female", "age_y": 60, "weight_kg": 65, "height_cm": 165}
    with pytest.raises(P.LabRangeError, match=r"creatinine is given twice.*creatinine_mg_dl = 0.8.*"
                                              r"creatinine = 1.6 mg/dL"):
        P.read_labs({**base, "creatinine_mg_dl": 0.8, "creatinine": 1.6, "creatinine_unit": "mg/dL"})
    with pytest.raises(P.LabRangeError, match="creatinine_mg_dl = 0.8.*creatinine_umol_l = 150"):
        P.read_labs({**base, "creatinine_mg_dl": 0.8, "creatinine_umol_l": 150})
    agree = P.read_labs({**base, "creatinine_mg_dl": 0.8, "creatinine_umol_l": 71})  # 0.8 x 88.4 = 70.7
    assert agree.creatinine_mg_dl == 0.8
    (tmp_path / "wide.csv").write_text("sex,age_y,weight_kg,weight_kg,height_cm\nF,60,65,70,165\n")
    with pytest.raises(P.LabRangeError, match=r"weight_kg is given twice.*'65' \(column 3\).*'70' \(column 4\)"):
        P.read_labs(tmp_path / "wide.csv")


def test_units_of_other_fields_are_converted(tmp_path):
    base = "field,value,unit\nsex,M,\nage_y,70,years\ncreatinine,88.4,µmol/L\n"
    labs = P.read_labs(_long(tmp_path, "weight_kg,154,lb\nheight_cm,1.78,m\nhaematocrit,42,%\n"
                                       "albumin_g_l,4.1,g/dL\n", base))
    assert labs.weight_kg == pytest.approx(154 * 0.45359237)  # international pound (exact)
    assert labs.height_cm == pytest.approx(178.0)
    assert labs.haematocrit == pytest.approx(0.42)
    assert labs.albumin_g_l == pytest.approx(41.0)  # 1 g/dL = 10 g/L
    assert labs.creatinine_mg_dl == pytest.approx(1.0)
    labs = P.read_labs(_long(tmp_path, "height_cm,70,in\ncreatinine_mg_dl,1.0,\n", "field,value,unit\n"
                                       "sex,M,\nage_y,70,\nweight_kg,80,\n"))
    assert labs.height_cm == pytest.approx(70 * 2.54)  # international inch (exact)


@pytest.mark.parametrize("row, match", [
    ("weight_kg,11,st", r"weight_kg = '11' has the unit 'st' \(line 6\).*weight_kg is in kg"),
    ("height_cm,165,kg", "height_cm is in cm"),
    ("age_y,55,months", "age_y is in y"),
    ("albumin_g_l,40,mg/L", "albumin_g_l is in g/L"),
    ("haematocrit,0.4,mL", "haematocrit is in fraction"),
    ("creatinine,0.8,mmol/L", "creatinine is in mg/dL or umol/L"),
    ("creatinine_mg_dl,0.8,mg/L", "creatinine_mg_dl is in mg/dL"),
    ("sex,female,kg", "sex takes no unit"),
])
def test_wrong_unit_on_a_field(tmp_path, row, match):
    with pytest.raises(P.LabUnitError, match=match):
        P.read_labs(_long(tmp_path, row + "\n"))


@pytest.mark.parametrize("mg_dl, umol_l", [(0.7, 65), (1.1, 93), (0.5, 40), (0.20, 17), (1.0, 88)])
def test_creatinine_in_both_units_agrees_within_the_rounding_as_written(mg_dl, umol_l):
    # each pair is one true value rounded in each unit (1 mg/dL = 88.4 umol/L): 0.7 mg/dL is
    # 0.65-0.75 mg/dL = 57.5-66.3 umol/L, and 65 umol/L is 64.5-65.5 umol/L, so they overlap
    base = {"sex": "female", "age_y": 60, "weight_kg": 65, "height_cm": 165}
    assert P.read_labs({**base, "creatinine_mg_dl": mg_dl, "creatinine_umol_l": umol_l}).creatinine_mg_dl == mg_dl
    # ... but not values outside each other's rounding: 0.7 mg/dL is at most 66.3 umol/L
    with pytest.raises(P.LabRangeError, match="given twice"):
        P.read_labs({**base, "creatinine_mg_dl": 0.7, "creatinine_umol_l": 68})


@pytest.mark.parametrize("header", ["units", "Units", "UOM", "Unit of measure"])
def test_unit_column_under_other_names_is_read(tmp_path, header):
    labs = P.read_labs(_long(tmp_path, "weight_kg,176,lb\n", f"field,value,{header}\nsex,M,\nage_y,70,\n"
                                                             "height_cm,178,\ncreatinine_mg_dl,1.0,\n"))
    assert labs.weight_kg == pytest.approx(176 * 0.45359237)  # not 176 kg


def test_an_empty_duplicate_cell_is_no_conflict(tmp_path):
    (tmp_path / "wide.csv").write_text("sex,age_y,weight_kg,height_cm,creatinine_mg_dl,weight_kg\n"
                                       "F,60,65,165,0.8,\n")
    assert P.read_labs(tmp_path / "wide.csv").weight_kg == 65.0


def test_windows_1252_export_is_read_with_a_warning(tmp_path):
    # Excel on Windows writes the micro sign as the single byte 0xB5 (Windows-1252)
    text = ("field,value,unit\nsex,male,\nage_y,64,y\nweight_kg,80,kg\nheight_cm,180,cm\n"
            "creatinine,88.4,\u00b5mol/L\n")
    path = tmp_path / "labs_cp1252.csv"
    path.write_bytes(text.encode("cp1252"))
    with pytest.warns(UserWarning, match="Windows-1252"):
        labs = P.read_labs(path)
    assert labs.creatinine_mg_dl == pytest.approx(1.0)  # 88.4 umol/L = 1 mg/dL (factor 88.4)
    # bytes that are not text in either encoding (0x81 is unassigned in Windows-1252)
    bad = tmp_path / "binary.csv"
    bad.write_bytes(b"field,value\nsex,\x81\xff\n")
    with pytest.raises(P.CorruptFileError, match="UTF-8"):
        P.read_labs(bad)
