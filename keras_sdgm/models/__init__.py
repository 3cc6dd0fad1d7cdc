from keras_sdgm.models.sdgm.sdgm_backbone import SDGMBackbone
from keras_sdgm.models.sdgm.sdgm_causal_lm import SDGMCausalLM
from keras_sdgm.models.sdgm.sdgm_causal_lm_preprocessor import (
    SDGMCausalLMPreprocessor,
)
from keras_sdgm.models.sdgm.sdgm_tokenizer import SDGMTokenizer

__all__ = [
    "SDGMBackbone",
    "SDGMCausalLM",
    "SDGMCausalLMPreprocessor",
    "SDGMTokenizer",
]
