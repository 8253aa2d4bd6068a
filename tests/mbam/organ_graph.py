"""The one-organ graph several MBAM tests reduce: plasma (dosed, cleared to urine at CL)
perfusing an organ's vascular space (flow Q in and out), which exchanges with the
interstitium (PS); the interstitium loses ligand to urine at kt. Each test module sets its
own parameter values."""

from pbpk import Compartment, ModelGraph, exchange, flow, transfer


def organ_graph(name: str = "organ_model") -> ModelGraph:
    return ModelGraph(
        name,
        (
            Compartment("plasma.plasma", "plasma", "plasma", "V_p"),
            Compartment("organ.vascular", "organ", "vascular", "V_v"),
            Compartment("organ.interstitial", "organ", "interstitial", "V_i"),
            Compartment("urine.bladder", "urine", "excreta", None, in_body=False),
        ),
        (
            flow("plasma.plasma", "organ.vascular", "Q"),
            flow("organ.vascular", "plasma.plasma", "Q"),
            exchange("organ.vascular", "organ.interstitial", "PS"),
            flow("plasma.plasma", "urine.bladder", "CL"),
            transfer("organ.interstitial", "urine.bladder", "kt"),
        ),
        dose_compartment="plasma.plasma",
    )
