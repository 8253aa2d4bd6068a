"""Labs and demographics of a patient, from a CSV file or a dict, validated at entry.

Accepted fields (units in the names): ``sex``, ``age_y``, ``weight_kg``, ``height_cm``,
``creatinine`` with ``creatinine_unit`` (``mg/dL`` or ``umol/L``; or the columns
``creatinine_mg_dl`` / ``creatinine_umol_l``), ``haematocrit`` (fraction, 0.15-0.65),
``albumin_g_l``. A CSV is either one row with these columns, or long format with the
columns ``field,value`` (and optionally ``unit``).

In the long format the ``unit`` of a row is the unit of its value: an empty unit means the unit
in the field's name; other units are converted where the conversion is exact (:data:`LAB_UNITS`:
weight in lb or g, height in m, mm or in, haematocrit in %, albumin in g/dL, creatinine in
mg/dL or umol/L); any other unit is a :class:`LabUnitError` naming the expected unit. ``sex``
and ``patient_id`` take no unit.

A field given twice (two rows of the long format, two columns of the same name, or creatinine
as more than one of ``creatinine``, ``creatinine_mg_dl``, ``creatinine_umol_l``) must have one
value: identical when both are in the same unit; in different units, equal within the rounding
of the values as written (half a unit of each value's last digit, plus 0.5 % for conversion
factors that labs round differently): 0.7 mg/dL and 65 umol/L agree (0.65-0.75 and 64.5-65.5). Conflicting values are a :class:`LabRangeError` naming
the field and both values.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pbpk
from twin.patient._errors import CorruptFileError, LabRangeError, LabUnitError, UnknownSexError

__all__ = ["LAB_RANGES", "LAB_UNITS", "Labs", "read_labs"]

UMOL_PER_L_PER_MG_DL = 88.4  # creatinine, 113.12 g/mol

#: Accepted physiological ranges (inclusive) of each field, with their units.
LAB_RANGES = {
    "age_y": (18.0, 110.0, "y"),
    "weight_kg": (30.0, 250.0, "kg"),
    "height_cm": (120.0, 230.0, "cm"),
    "creatinine_mg_dl": (0.1, 20.0, "mg/dL"),
    "haematocrit": (0.15, 0.65, "fraction"),
    "albumin_g_l": (10.0, 70.0, "g/L"),
}
_SEX_CODES = {"male": "male", "m": "male", "man": "male", "female": "female", "f": "female",
              "woman": "female"}
_KNOWN = {"sex", "age_y", "weight_kg", "height_cm", "creatinine", "creatinine_unit",
          "creatinine_mg_dl", "creatinine_umol_l", "haematocrit", "albumin_g_l", "patient_id"}

# Exact conversion factors (by definition): international avoirdupois pound 1 lb = 0.45359237 kg
# and international inch 1 in = 2.54 cm (International Yard and Pound Agreement, 1959; NIST
# SP 811, appendix B); 1 dL = 0.1 L, so 1 g/dL = 10 g/L; haematocrit 1 % = 0.01 L/L (L/L is
# the SI unit of the volume fraction).
KG_PER_LB = 0.45359237
CM_PER_INCH = 2.54

#: Units accepted in the ``unit`` column of a long-format labs CSV, per field (lower case):
#: unit -> factor to the unit in the field's name. ``creatinine`` converts to mg/dL.
LAB_UNITS = {
    "age_y": {"y": 1.0, "yr": 1.0, "yrs": 1.0, "year": 1.0, "years": 1.0},
    "weight_kg": {"kg": 1.0, "g": 1e-3, "lb": KG_PER_LB, "lbs": KG_PER_LB},
    "height_cm": {"cm": 1.0, "m": 100.0, "mm": 0.1, "in": CM_PER_INCH},
    "haematocrit": {"fraction": 1.0, "l/l": 1.0, "%": 0.01},
    "albumin_g_l": {"g/l": 1.0, "g/dl": 10.0},
    "creatinine": {"mg/dl": 1.0, "umol/l": 1.0 / UMOL_PER_L_PER_MG_DL},
    "creatinine_mg_dl": {"mg/dl": 1.0, "umol/l": 1.0 / UMOL_PER_L_PER_MG_DL},
    "creatinine_umol_l": {"umol/l": 1.0, "mg/dl": UMOL_PER_L_PER_MG_DL},
}
_EXPECTED_UNIT = {"age_y": "y", "weight_kg": "kg", "height_cm": "cm", "haematocrit": "fraction",
                  "albumin_g_l": "g/L", "creatinine": "mg/dL or umol/L", "creatinine_mg_dl": "mg/dL",
                  "creatinine_umol_l": "umol/L"}
_UNITLESS = ("sex", "patient_id", "creatinine_unit")
_UNIT_COLUMN_NAMES = frozenset({"unit", "units", "uom", "unit of measure", "unit_of_measure"})
_CREATININE_FIELDS = ("creatinine", "creatinine_mg_dl", "creatinine_umol_l")
#: Values of one field given in different units agree if their rounding intervals overlap, with
#: this relative slack for the conversion factor (88.4 or 88.42 umol/L per mg/dL).
_CROSS_UNIT_RTOL = 0.005


def _unit_key(unit) -> str:
    """Unit as a lookup key: stripped, lower case, micro sign as 'u', no spaces."""
    return str(unit).strip().lower().replace("µ", "u").replace("μ", "u").replace(" ", "")  # micro, mu


def _half_step(raw) -> float:
    """Half a unit of the last digit of a value as written: 0.05 for '0.7', 0.5 for 65."""
    try:
        exponent = Decimal(raw.strip() if isinstance(raw, str) else repr(raw)).as_tuple().exponent
    except (InvalidOperation, TypeError, ValueError):
        return 0.0
    return 0.5 * 10.0 ** exponent if isinstance(exponent, int) else 0.0


def _agree(a: float, b: float, same_unit: bool, slack: float = 0.0) -> bool:
    """Two values of one field agree: equal in the same unit; in different units, within
    ``slack`` (the two rounding half-steps, in the common unit) plus the conversion slack."""
    if same_unit:
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return abs(a - b) <= slack + _CROSS_UNIT_RTOL * max(abs(a), abs(b))


def _as_float(name: str, value) -> float:
    if isinstance(value, bool):
        raise LabRangeError(f"{name} = {value!r} is not a number.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise LabRangeError(f"{name} = {value!r} is not a number.") from None


def _number(name: str, value) -> float:
    low, high, unit = LAB_RANGES[name]
    if value is None or (isinstance(value, str) and not value.strip()):
        raise LabRangeError(f"{name} is missing; give a number in {unit} ({low:g}-{high:g}).")
    if isinstance(value, bool):
        raise LabRangeError(f"{name} = {value!r} is not a number; give it in {unit}.")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise LabRangeError(f"{name} = {value!r} is not a number; give it in {unit}.") from None
    if not math.isfinite(v) or not low <= v <= high:
        hint = ""
        if name == "haematocrit" and 15 <= v <= 65:
            hint = " It looks like a percentage: give the fraction (e.g. 0.40 for 40 %)."
        raise LabRangeError(
            f"{name} = {value!r} {unit} is outside the physiological range {low:g}-{high:g} {unit};"
            f" check the value and its unit.{hint}"
        )
    return v


def _sex(value) -> str:
    code = str(value).strip().lower() if value is not None else ""
    if code not in _SEX_CODES:
        raise UnknownSexError(
            f"sex = {value!r} is not an accepted code; use 'male'/'M' or 'female'/'F'."
        )
    return _SEX_CODES[code]


def _given(fields: Mapping, name: str) -> bool:
    v = fields.get(name)
    return v is not None and not (isinstance(v, str) and not v.strip())


def _creatinine_mg_dl(fields: Mapping) -> float | None:
    """Creatinine in mg/dL from ``creatinine_mg_dl``, ``creatinine_umol_l`` or ``creatinine`` +
    ``creatinine_unit``; when more than one is given they must agree."""
    sources = []  # (description, mg/dL, unit key, rounding half-step in mg/dL)
    if _given(fields, "creatinine_mg_dl"):
        raw = fields["creatinine_mg_dl"]
        sources.append((f"creatinine_mg_dl = {raw!r}", _as_float("creatinine_mg_dl", raw), "mg/dl",
                        _half_step(raw)))
    if _given(fields, "creatinine_umol_l"):
        raw = fields["creatinine_umol_l"]
        sources.append((f"creatinine_umol_l = {raw!r}",
                        _as_float("creatinine_umol_l", raw) / UMOL_PER_L_PER_MG_DL, "umol/l",
                        _half_step(raw) / UMOL_PER_L_PER_MG_DL))
    if _given(fields, "creatinine"):
        value = fields["creatinine"]
        unit = fields.get("creatinine_unit")
        if unit is None or not str(unit).strip():
            raise LabUnitError(
                f"creatinine = {value!r} has no unit; add creatinine_unit 'mg/dL' or 'umol/L' (or use "
                "the column creatinine_mg_dl / creatinine_umol_l)."
            )
        key = _unit_key(unit)
        if key not in LAB_UNITS["creatinine"]:
            raise LabUnitError(f"creatinine_unit = {unit!r} is not accepted; use 'mg/dL' or 'umol/L'.")
        sources.append((f"creatinine = {value!r} {str(unit).strip()}",
                        _as_float("creatinine", value) * LAB_UNITS["creatinine"][key], key,
                        _half_step(value) * LAB_UNITS["creatinine"][key]))
    if not sources:
        return None
    first = sources[0]
    for other in sources[1:]:
        if not (math.isfinite(first[1]) and math.isfinite(other[1])
                and _agree(first[1], other[1], first[2] == other[2], first[3] + other[3])):
            raise LabRangeError(
                f"creatinine is given twice with different values: {first[0]} ({first[1]:.4g} mg/dL) "
                f"and {other[0]} ({other[1]:.4g} mg/dL); keep the one that is right and drop the other."
            )
    return _number("creatinine_mg_dl", first[1])


@dataclass(frozen=True)
class Labs:
    """Validated demographics and labs. Creatinine is stored in mg/dL.

    Build with :meth:`from_dict` or :func:`read_labs` (they validate); the constructor
    validates too.
    """

    sex: str
    age_y: float
    weight_kg: float
    height_cm: float
    creatinine_mg_dl: float | None = None
    haematocrit: float = 0.40
    albumin_g_l: float | None = None
    patient_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "sex", _sex(self.sex))
        for name in ("age_y", "weight_kg", "height_cm", "haematocrit"):
            object.__setattr__(self, name, _number(name, getattr(self, name)))
        for name in ("creatinine_mg_dl", "albumin_g_l"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _number(name, getattr(self, name)))

    @classmethod
    def from_dict(cls, fields: Mapping) -> Labs:
        """Labs from a mapping of field -> value (see the module doc for the names)."""
        fields = {str(k).strip(): v for k, v in dict(fields).items()}
        unknown = sorted(set(fields) - _KNOWN)
        if unknown:
            raise LabRangeError(
                f"unknown lab field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(_KNOWN))}."
            )
        for name in ("sex", "age_y", "weight_kg", "height_cm"):
            if fields.get(name) in (None, ""):
                raise LabRangeError(f"{name} is missing from the labs; it is required.")
        hct = fields.get("haematocrit")
        alb = fields.get("albumin_g_l")
        return cls(sex=fields["sex"], age_y=fields["age_y"], weight_kg=fields["weight_kg"],
                   height_cm=fields["height_cm"], creatinine_mg_dl=_creatinine_mg_dl(fields),
                   haematocrit=0.40 if hct in (None, "") else hct,
                   albumin_g_l=None if alb in (None, "") else alb,
                   patient_id=str(fields.get("patient_id") or ""))

    def to_dict(self) -> dict:
        return asdict(self)

    def to_csv(self, path: str | Path) -> Path:
        """Write the labs as a one-row CSV that :func:`read_labs` reads back."""
        path = Path(path)
        row = {k: ("" if v is None else v) for k, v in self.to_dict().items()}
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(row))
            w.writeheader()
            w.writerow(row)
        return path

    @property
    def egfr_ml_min_173(self) -> float | None:
        """CKD-EPI 2021 eGFR (mL/min/1.73 m2), or None without creatinine."""
        if self.creatinine_mg_dl is None:
            return None
        return float(pbpk.egfr_ckd_epi_2021(self.creatinine_mg_dl, "mg/dL", self.age_y, self.sex))

    def physiology(self, organ_volumes_l: Mapping[str, float] | None = None,
                   gfr_ml_min: float | None = None, *,
                   measured_volumes_l: Mapping[str, float] | None = None) -> pbpk.Physiology:
        """The :class:`pbpk.Physiology` of this patient (GFR from creatinine unless given).

        ``measured_volumes_l``: organ volumes segmented on CT (physical L, e.g.
        :meth:`twin.patient.Patient.organ_volumes_l`); ``organ_volumes_l``: volumes already in
        the models' convention (mass in kg ~ L), see :func:`pbpk.model_volume_l`.
        """
        if gfr_ml_min is None and self.creatinine_mg_dl is None:
            raise LabRangeError("creatinine is missing: give it (with its unit) or a measured gfr_ml_min.")
        return pbpk.Physiology.for_patient(
            self.sex, self.weight_kg, self.height_cm, self.age_y,
            creatinine=None if gfr_ml_min is not None else self.creatinine_mg_dl,
            creatinine_unit="mg/dL", gfr_ml_min=gfr_ml_min, haematocrit=self.haematocrit,
            organ_volumes_l=organ_volumes_l, measured_volumes_l=measured_volumes_l)


@dataclass
class _Entry:
    """One value of a field read from a CSV: as written, and as a number in the field's unit."""

    value: str
    unit: str  # as written ('' if none)
    where: str  # e.g. 'line 3'
    number: float | None = None  # in the field's unit (creatinine: mg/dL); None if not numeric
    factor: float | None = None  # factor of the unit to the field's unit; None if unknown

    def describe(self) -> str:
        return f"{self.value!r}{' ' + self.unit if self.unit else ''} ({self.where})"


def _same_value(name: str, a: _Entry, b: _Entry) -> bool:
    if a.value.strip() == b.value.strip() and _unit_key(a.unit) == _unit_key(b.unit):
        return True  # written identically
    if a.number is not None and b.number is not None and a.factor is not None and b.factor is not None:
        return _agree(a.number, b.number, a.factor == b.factor,
                      _half_step(a.value) * a.factor + _half_step(b.value) * b.factor)
    if a.factor is None and b.factor is None and a.unit == b.unit == "":
        try:  # unit-less numbers: 60 and 60.0 are the same value
            return float(a.value) == float(b.value)
        except ValueError:
            pass
    if a.number is not None or b.number is not None:
        return False
    x, y = a.value.strip().lower(), b.value.strip().lower()
    if name == "sex":
        x, y = _SEX_CODES.get(x, x), _SEX_CODES.get(y, y)
    if name == "creatinine_unit":
        x, y = _unit_key(x), _unit_key(y)
    return x == y


def _one_value(name: str, entries: list[_Entry], path: Path) -> _Entry:
    """The value of a field given once or more; :class:`LabRangeError` if the values conflict.
    Empty cells give no value, so they conflict with nothing."""
    entries = [e for e in entries if e.value.strip()] or entries
    first = entries[0]
    for other in entries[1:]:
        if not _same_value(name, first, other):
            raise LabRangeError(
                f"{name} is given twice in the labs CSV {str(path)!r} with different values: "
                f"{first.describe()} and {other.describe()}; keep the right one and delete the other."
            )
    return first


def _entry(name: str, value: str, unit: str, where: str) -> _Entry:
    """A long-format row as an :class:`_Entry`, with its unit checked (and converted)."""
    if unit and name in _UNITLESS:
        raise LabUnitError(f"{name} takes no unit, but {where} gives the unit {unit!r}; leave its unit "
                           "cell empty.")
    if name not in LAB_UNITS:
        return _Entry(value, unit, where)
    if unit:
        key = _unit_key(unit)
        if key not in LAB_UNITS[name]:
            raise LabUnitError(
                f"{name} = {value!r} has the unit {unit!r} ({where}), which is not accepted; {name} is in "
                f"{_EXPECTED_UNIT[name]} (also accepted: {', '.join(LAB_UNITS[name])}). Give the value in "
                f"{_EXPECTED_UNIT[name]}"
                + (" with that unit." if name == "creatinine" else " or leave the unit empty.")
            )
        factor = LAB_UNITS[name][key]
    else:
        factor = None if name == "creatinine" else 1.0  # creatinine: unit from creatinine_unit
    try:
        number = float(value)
    except ValueError:
        number = None  # Labs.from_dict says it is not a number
    if number is not None and factor is not None:
        number *= factor
    return _Entry(value, unit, where, number, factor)


def _long_fields(rows: list[tuple[int, dict]], path: Path) -> dict:
    """Fields of a long-format (field,value[,unit]) labs CSV, units converted, duplicates checked."""
    entries: dict[str, list[_Entry]] = {}
    for line, r in rows:
        name, value, unit = r.get("field", ""), r.get("value", ""), r.get("unit", "")
        if not (name or value or unit):
            continue
        e = _entry(name, value, unit, f"line {line}")
        # creatinine_mg_dl / creatinine_umol_l with an explicit unit are creatinine in that unit
        if name in _CREATININE_FIELDS and unit:
            name = "creatinine"
            e = _entry(name, value, unit, e.where)
        entries.setdefault(name, []).append(e)
    cunit = entries.pop("creatinine_unit", None)
    if cunit:
        unit = _one_value("creatinine_unit", cunit, path)
        key = _unit_key(unit.value)
        for i, e in enumerate(entries.get("creatinine", [])):
            if e.factor is None and key in LAB_UNITS["creatinine"]:
                entries["creatinine"][i] = _entry("creatinine", e.value, unit.value, e.where)
            elif e.factor is not None and key in LAB_UNITS["creatinine"] and \
                    LAB_UNITS["creatinine"][key] != e.factor:
                raise LabUnitError(
                    f"creatinine_unit = {unit.value!r} ({unit.where}) contradicts the unit {e.unit!r} of "
                    f"creatinine = {e.value!r} ({e.where}); give the unit once, in the unit column.")
    fields: dict = {}
    for name, es in entries.items():
        if name == "creatinine":
            known = [e for e in es if e.factor is not None]
            if known and len(known) != len(es):
                e = next(e for e in es if e.factor is None)
                raise LabUnitError(f"creatinine = {e.value!r} ({e.where}) has no unit; add its unit "
                                   "'mg/dL' or 'umol/L' in the unit column.")
        e = _one_value(name, es, path)
        if name == "creatinine":
            fields["creatinine"] = e.value
            if e.unit:
                fields["creatinine_unit"] = e.unit
            elif cunit:
                fields["creatinine_unit"] = cunit[0].value
        elif e.unit and e.number is not None:
            fields[name] = e.number  # converted to the unit in the field's name
        else:
            fields[name] = e.value
    if cunit and "creatinine" not in entries:
        fields["creatinine_unit"] = cunit[0].value
    return fields


def _read_csv_rows(path: Path) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """Header and non-empty rows of a CSV in UTF-8 (with or without BOM) or, failing that, in
    Windows-1252, which spreadsheet exports on Windows write (``µmol/L`` as one byte); the
    fallback is announced with a warning because it guesses the encoding."""
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            with open(path, newline="", encoding=encoding) as fh:
                reader = csv.reader(fh)
                header = next(reader, None)
                lines = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
        except UnicodeDecodeError as exc:
            if encoding == "cp1252":
                raise CorruptFileError(
                    f"cannot read the labs CSV {str(path)!r}: it is neither UTF-8 nor Windows-1252 "
                    f"text ({exc}); save it as UTF-8 CSV.") from None
            continue
        except (OSError, csv.Error) as exc:
            raise CorruptFileError(f"cannot read the labs CSV {str(path)!r}: {exc}.") from None
        if encoding == "cp1252":
            warnings.warn(f"labs CSV {str(path)!r} is not UTF-8; read it as Windows-1252 (the "
                          "encoding of spreadsheet exports on Windows). Save it as UTF-8 CSV to "
                          "silence this warning.", UserWarning, stacklevel=3)
        return header, lines
    raise AssertionError("unreachable")  # pragma: no cover


def read_labs(source) -> Labs:
    """Labs from a dict, a :class:`Labs`, or a CSV path (wide one-row or long field,value[,unit]).

    See the module doc for units and for fields given twice.
    """
    if isinstance(source, Labs):
        return source
    if isinstance(source, Mapping):
        return Labs.from_dict(source)
    path = Path(source)
    if not path.is_file():
        raise CorruptFileError(f"labs file {str(path)!r} does not exist; give a CSV path or a dict.")
    header, lines = _read_csv_rows(path)
    if not header or not lines:
        raise CorruptFileError(f"labs CSV {str(path)!r} has no data row.")
    names = [h.strip() for h in header]
    lower = [n.lower() for n in names]
    if {"field", "value"} <= set(lower):  # long format
        # the unit column under the other names lab exports give it (a missed unit column would
        # read 176 lb as 176 kg)
        lower = ["unit" if n in _UNIT_COLUMN_NAMES else n for n in lower]
        for col in ("field", "value", "unit"):
            if lower.count(col) > 1:
                raise CorruptFileError(f"labs CSV {str(path)!r} has the column {col!r} twice; keep one.")
        rows = [(line, {lower[i]: (row[i] if i < len(row) else "").strip() for i in range(len(lower))
                        if lower[i]}) for line, row in lines]
        return Labs.from_dict(_long_fields(rows, path))
    if len(lines) != 1:
        raise CorruptFileError(
            f"labs CSV {str(path)!r} has {len(lines)} rows; give one patient per file (one row)."
        )
    line, row = lines[0]
    entries: dict[str, list[_Entry]] = {}
    for i, name in enumerate(names):
        if name:
            value = row[i].strip() if i < len(row) else ""
            entries.setdefault(name, []).append(_Entry(value, "", f"column {i + 1}"))
    return Labs.from_dict({name: _one_value(name, es, path).value for name, es in entries.items()})
