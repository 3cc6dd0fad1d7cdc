from keras_sdgm.layers.add_loss import AddLoss
from keras_sdgm.layers.causal_mixer import CausalMixer
from keras_sdgm.layers.coefficient_encoder import CoefficientEncoder
from keras_sdgm.layers.depthwise_coefficient_encoder import (
    DepthwiseCoefficientEncoder,
)
from keras_sdgm.layers.frequency_initializer import FrequencyBandInitializer
from keras_sdgm.layers.gated_coefficient_encoder import GatedCoefficientEncoder
from keras_sdgm.layers.gated_retention_coefficient_encoder import (
    GatedRetentionCoefficientEncoder,
)
from keras_sdgm.layers.gated_spectral_coefficient_encoder import (
    GatedSpectralCoefficientEncoder,
)
from keras_sdgm.layers.gaussian_mixture_prior import GaussianMixturePrior
from keras_sdgm.layers.retention_coefficient_encoder import (
    RetentionCoefficientEncoder,
)
from keras_sdgm.layers.separable_frequency_dictionary import (
    SeparableFrequencyDictionary,
)
from keras_sdgm.layers.shared_frequency_dictionary import (
    SharedFrequencyDictionary,
)
from keras_sdgm.layers.spectral_coefficient_encoder import (
    SpectralCoefficientEncoder,
)
from keras_sdgm.layers.spectral_dictionary import SpectralDictionary
from keras_sdgm.layers.static_dictionary import StaticDictionary

__all__ = [
    "AddLoss",
    "CausalMixer",
    "CoefficientEncoder",
    "DepthwiseCoefficientEncoder",
    "FrequencyBandInitializer",
    "GatedCoefficientEncoder",
    "GatedRetentionCoefficientEncoder",
    "GatedSpectralCoefficientEncoder",
    "GaussianMixturePrior",
    "RetentionCoefficientEncoder",
    "SeparableFrequencyDictionary",
    "SharedFrequencyDictionary",
    "SpectralCoefficientEncoder",
    "SpectralDictionary",
    "StaticDictionary",
]
