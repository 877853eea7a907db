"""The public API: what a program needs to merge, bound, decide, assure and repair, in one place.

    from nnbisim.api import EpsilonOptions, InputSet, Box, compute_epsilon
    rep = compute_epsilon("n1.onnx", "n2.onnx", InputSet.of(Box(lo, hi)),
                          EpsilonOptions(verifier="bounds", time_budget=30))
    print(rep.table())

Everything here is defined in the layers below (see the README's layout); this module only
gathers the names that are meant to stay.
"""

from __future__ import annotations

from nnbisim.adapters.compress import compress, distill
from nnbisim.adapters.merge import merge_networks
from nnbisim.adapters.merged_onnx import merge_files, merged_network
from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.onnx_write import network_to_model, save_model
from nnbisim.adapters.options import CompressOptions, DistillOptions
from nnbisim.bounds.crown import CrownOptions, crown_bounds, interval_bounds
from nnbisim.bounds.diffbounds import DiffEngine, differential_bounds
from nnbisim.bounds.qbounds import DiscrepancyOptions, discrepancy
from nnbisim.core.errors import InputError, NnbisimError, VerifierError
from nnbisim.core.model import Layer, Network
from nnbisim.core.quant import QuantizedNetwork
from nnbisim.core.reports import AssureReport, EpsilonReport, OutputBounds, Piece
from nnbisim.core.verdict import Status, Verdict, Verifier
from nnbisim.search.bab_types import BabOptions
from nnbisim.search.decide import DecideOptions, Decision, decide
from nnbisim.search.subjects import pair, single, through
from nnbisim.specs.coupled import CoupledQuery
from nnbisim.specs.io import read_spec, read_spec_cases
from nnbisim.specs.sets import Box, InputSet, OutputConstraint, Polytope, SpecCase
from nnbisim.tasks.agree import Agreement, AgreeOptions, decide_agreement
from nnbisim.tasks.assure import assure
from nnbisim.tasks.check import check_merged
from nnbisim.tasks.coupled import CoupledAnswer, decide_coupled
from nnbisim.tasks.enlarge import enlarged_cases
from nnbisim.tasks.eps_decision import EpsDecision, decide_epsilon
from nnbisim.tasks.epsilon import compute_epsilon
from nnbisim.tasks.options import AssureOptions, EpsilonOptions, RepairOptions
from nnbisim.tasks.repair import Region, repair
from nnbisim.verifiers.registry import available_verifiers, get_verifier

__all__ = [
    "AgreeOptions", "Agreement", "AssureOptions", "AssureReport", "BabOptions", "Box",
    "CompressOptions", "CoupledAnswer", "CoupledQuery", "CrownOptions", "DecideOptions",
    "Decision", "DiffEngine", "DiscrepancyOptions", "DistillOptions", "EpsDecision",
    "EpsilonOptions", "EpsilonReport", "InputError", "InputSet", "Layer", "Network",
    "NnbisimError", "OutputBounds", "OutputConstraint", "Piece", "Polytope", "QuantizedNetwork",
    "Region", "RepairOptions", "SpecCase", "Status", "Verdict", "Verifier", "VerifierError",
    "assure", "available_verifiers", "check_merged", "compress", "compute_epsilon", "crown_bounds",
    "decide", "decide_agreement", "decide_coupled", "decide_epsilon", "differential_bounds",
    "discrepancy", "distill", "enlarged_cases", "get_verifier", "interval_bounds", "load_network",
    "merge_files", "merge_networks", "merged_network", "network_to_model", "pair", "read_spec",
    "read_spec_cases", "repair", "save_model", "single", "through",
]
