"""The validation gate: every snapshot is measured and checked by a Great
Expectations suite before it may be served.

Importing this package does not import Great Expectations; the first
validation does (a few seconds, once per process).
"""

from prodvec.validation.gate import GateConfig, ValidationReport, validate_embeddings
from prodvec.validation.metrics import centred_energy, isotropy, mean_pairwise_cosine

__all__ = [
    "GateConfig",
    "ValidationReport",
    "validate_embeddings",
    "isotropy",
    "mean_pairwise_cosine",
    "centred_energy",
]
