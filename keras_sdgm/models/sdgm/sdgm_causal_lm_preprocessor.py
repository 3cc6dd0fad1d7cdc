import keras
from keras_hub.models import CausalLMPreprocessor

from keras_sdgm.models.sdgm.sdgm_backbone import SDGMBackbone
from keras_sdgm.models.sdgm.sdgm_tokenizer import SDGMTokenizer


@keras.saving.register_keras_serializable(package="keras_sdgm")
class SDGMCausalLMPreprocessor(CausalLMPreprocessor):
    """Tokenizes, packs and shifts text or token windows for `SDGMCausalLM`.

    keras-hub's `CausalLMPreprocessor` with an `SDGMTokenizer`: strings are
    tokenized, packed to `sequence_length + 1` (padded with `<eos>` ids and
    masked) and shifted, so that `x = ids[:-1]`, `y = ids[1:]` and
    `sample_weight = padding_mask[1:]`. This is the one place the package
    derives next-token targets.

    Integer input of shape `(batch, sequence_length + 1)` is taken as
    windows of a tokenized corpus: only the shift applies. Since a corpus
    stream already has an `<eos>` after each line, no start or end token is
    added by default.

    Args:
        tokenizer: an `SDGMTokenizer`.
        sequence_length: int. Length of the model inputs.
        add_start_token: bool. Prepend `<eos>` to each string.
        add_end_token: bool. Append `<eos>` to each string.

    Example:
    >>> tokenizer = SDGMTokenizer(
    ...     SDGMTokenizer.build_vocabulary(["the cat sat on the mat"]))
    >>> preprocessor = SDGMCausalLMPreprocessor(tokenizer, sequence_length=4)
    >>> x, y, sample_weight = preprocessor(["the cat sat"])
    """

    backbone_cls = SDGMBackbone
    tokenizer_cls = SDGMTokenizer

    def __init__(
        self,
        tokenizer,
        sequence_length=128,
        add_start_token=False,
        add_end_token=False,
        **kwargs,
    ):
        super().__init__(
            tokenizer=tokenizer,
            sequence_length=sequence_length,
            add_start_token=add_start_token,
            add_end_token=add_end_token,
            **kwargs,
        )
