"""keras-sdgm: the Spectral Dictionary Generative Model for Keras 3."""

from keras_sdgm import datasets
from keras_sdgm import export
from keras_sdgm import interpret
from keras_sdgm import layers
from keras_sdgm import losses
from keras_sdgm import models
from keras_sdgm.coefficient_gmm import fit_coefficient_gmm
from keras_sdgm.evaluation import evaluate_perplexity
from keras_sdgm.export import export_onnx
from keras_sdgm.export import export_saved_model
from keras_sdgm.version import __version__

__all__ = [
    "datasets",
    "evaluate_perplexity",
    "export",
    "export_onnx",
    "export_saved_model",
    "fit_coefficient_gmm",
    "interpret",
    "layers",
    "losses",
    "models",
    "__version__",
]
