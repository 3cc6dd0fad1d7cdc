"""Interpretability: what the spectral dictionary and its coefficients learned."""

from keras_sdgm.interpret.analysis import atom_table
from keras_sdgm.interpret.analysis import reconstruction_similarity
from keras_sdgm.interpret.analysis import sentence_coefficients
from keras_sdgm.interpret.analysis import top_activating_tokens
from keras_sdgm.interpret.report import write_report

__all__ = [
    "atom_table",
    "reconstruction_similarity",
    "sentence_coefficients",
    "top_activating_tokens",
    "write_report",
]
