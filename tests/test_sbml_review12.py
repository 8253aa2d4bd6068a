"""Review 12K, findings 2-3: from_sbml must not read a local parameter's declared units unscaled,
nor ignore SBML conversion factors. Reference: libroadrunner (an independent SBML simulator)
shows the number pbpk would otherwise have imported is wrong; the import must then be refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pbpk import UnitError
from pbpk._sbml import from_sbml

roadrunner = pytest.importorskip("roadrunner")
pytest.importorskip("libsbml")

UNITS = ('<listOfUnitDefinitions>'
         '<unitDefinition id="per_s"><listOfUnits><unit kind="second" exponent="-1" scale="0" multiplier="1"/>'
         '</listOfUnits></unitDefinition>'
         '<unitDefinition id="per_h"><listOfUnits><unit kind="second" exponent="-1" scale="0" multiplier="3600"/>'
         '</listOfUnits></unitDefinition></listOfUnitDefinitions>')


def _doc(law="<apply><times/><ci>k</ci><ci>A</ci></apply>", local="", model_attr="", species_attr=""):
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<sbml xmlns="http://www.sbml.org/sbml/level3/version2/core" level="3" version="2">
 <model id="m" {model_attr}>
  {UNITS}
  <listOfCompartments><compartment id="c" size="2" spatialDimensions="3" constant="true"/></listOfCompartments>
  <listOfSpecies><species id="A" compartment="c" initialAmount="10" hasOnlySubstanceUnits="true"
    boundaryCondition="false" constant="false" {species_attr}/></listOfSpecies>
  <listOfParameters><parameter id="k" value="0.3" constant="true"/><parameter id="cf" value="5" constant="true"/>
  </listOfParameters>
  <listOfReactions><reaction id="elim" reversible="false">
    <listOfReactants><speciesReference species="A" stoichiometry="1" constant="true"/></listOfReactants>
    <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML">{law}</math>{local}</kineticLaw>
  </reaction></listOfReactions>
 </model>
</sbml>"""


def _roadrunner_a(text, t):
    rr = roadrunner.RoadRunner(text)
    rr.timeCourseSelections = ["time", "A"]
    return float(np.asarray(rr.simulate(0.0, t, 2))[-1, 1])


def _local(units):
    return _doc("<apply><times/><ci>kl</ci><ci>A</ci></apply>",
                local=f'<listOfLocalParameters><localParameter id="kl" value="0.3" units="{units}"/>'
                      "</listOfLocalParameters>")


def test_local_parameter_in_per_second_is_refused():
    text = _local("per_s")
    # roadrunner with time in s: A(3600 s) = 10 exp(-0.3 * 3600); unscaled pbpk would give 10 exp(-0.3)
    assert _roadrunner_a(text, 3600.0) < 1e-6 * 10.0 * math.exp(-0.3)
    with pytest.raises(UnitError, match=r"(?s)local parameter 'kl'.*per_s.*3600"):
        from_sbml(text)


def test_local_parameter_in_per_hour_is_accepted():
    _, params = from_sbml(_local("per_h"))
    assert params["elim_kl"] == 0.3


@pytest.mark.parametrize("where", ["model", "species"])
def test_conversion_factor_is_refused(where):
    kw = {"model_attr": 'conversionFactor="cf"'} if where == "model" else {"species_attr": 'conversionFactor="cf"'}
    text = _doc(**kw)
    # SBML semantics (roadrunner): dA/dt = -cf k A, not the -k A pbpk would import
    assert _roadrunner_a(text, 1.0) == pytest.approx(10.0 * math.exp(-5 * 0.3), rel=1e-5)
    with pytest.raises(UnitError, match="conversionFactor"):
        from_sbml(text)
