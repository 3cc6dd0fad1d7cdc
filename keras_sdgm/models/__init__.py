from keras_sdgm.models.sdgm.sdgm_backbone import SDGMBackbone
from keras_sdgm.models.sdgm.sdgm_causal_lm import SDGMCausalLM

__all__ = ["SDGMBackbone", "SDGMCausalLM"]
