from keras_sdgm.models.sdgm.sdgm_backbone import SDGMBackbone
from keras_sdgm.models.sdgm.sdgm_causal_lm import SDGMCausalLM
from keras_sdgm.models.sdgm.sdgm_causal_lm_preprocessor import (
    SDGMCausalLMPreprocessor,
)
from keras_sdgm.models.sdgm.sdgm_tokenizer import SDGMTokenizer
from keras_sdgm.models.sdgm.spectral_dictionary_block import (
    SpectralDictionaryBlock,
)

__all__ = [
    "SDGMBackbone",
    "SDGMCausalLM",
    "SDGMCausalLMPreprocessor",
    "SDGMTokenizer",
    "SpectralDictionaryBlock",
]
