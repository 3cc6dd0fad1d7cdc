import keras
from keras_hub.models import CausalLMPreprocessor

from keras_sdgm.models.sdgm.sdgm_backbone import SDGMBackbone
from keras_sdgm.models.sdgm.sdgm_presets import TrainedPresetsMixin
from keras_sdgm.models.sdgm.sdgm_tokenizer import SDGMTokenizer
from keras_sdgm.utils.validation import check_token_inputs

MODEL_INPUT_KEYS = ("padding_mask", "token_ids")


@keras.saving.register_keras_serializable(package="keras_sdgm")
class SDGMCausalLMPreprocessor(TrainedPresetsMixin, CausalLMPreprocessor):
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

    A dict with exactly the model's keys `"token_ids"` and `"padding_mask"`
    is already preprocessed: it passes through unchanged (with `y` and
    `sample_weight` as given), in `fit`, `evaluate`, `predict` and
    `generate`, after the checks of the model's own inputs (integer ids of
    rank 2 in `[0, vocabulary_size)`, a mask of their shape). Any other
    dict raises `ValueError`, as do integer ids outside the vocabulary.

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

    def call(self, x, y=None, sample_weight=None, sequence_length=None):
        if isinstance(x, dict):
            self.check_model_inputs(x)
            return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
        self._check_integer_ids(x)
        return super().call(
            x, y=y, sample_weight=sample_weight, sequence_length=sequence_length
        )

    def generate_preprocess(self, x, sequence_length=None):
        """Packs prompts for `generate()`; a model-input dict passes through.

        Args:
            x: strings, an integer array of token ids, or a dict of
                `"token_ids"` and `"padding_mask"` `(batch, max_length)`
                with the prompts left-aligned (see the class doc).
            sequence_length: int or `None`. The length to pack to (the
                `max_length` of `generate`); a dict is already packed, so it
                must be `None` or the dict's length.
        """
        if isinstance(x, dict):
            self.check_model_inputs(x)
            length = x["token_ids"].shape[-1]
            if sequence_length is not None and sequence_length != length:
                raise ValueError(
                    "A dict of token ids is already packed: its length is "
                    "the generation length. Pass `max_length=None` or pad "
                    "the dict to `max_length`. Received: "
                    f"max_length={sequence_length}, token_ids of length "
                    f"{length}."
                )
            return {key: x[key] for key in ("token_ids", "padding_mask")}
        self._check_integer_ids(x)
        return super().generate_preprocess(x, sequence_length=sequence_length)

    def check_model_inputs(self, x):
        """Raises unless `x` is a valid `{"token_ids", "padding_mask"}`.

        Args:
            x: dict. What is given to the model.

        Raises:
            ValueError: other keys, or ids that are not integers of rank 2
                in `[0, vocabulary_size)`, or a mask of another shape.
        """
        if tuple(sorted(x)) != MODEL_INPUT_KEYS:
            raise ValueError(
                "A dict given to the preprocessor must be the model's input, "
                "with exactly the keys 'token_ids' and 'padding_mask'; pass "
                "text as strings instead. Received keys: "
                f"{sorted(x)}"
            )
        check_token_inputs(x, self.tokenizer.vocabulary_size())

    def _check_integer_ids(self, x):
        """Raises if integer input `x` holds ids outside the vocabulary."""
        if not hasattr(x, "dtype") or "int" not in str(x.dtype):
            return
        shape = tuple(x.shape)
        if len(shape) not in (1, 2):
            raise ValueError(
                "Integer input to the preprocessor must be token ids of shape "
                f"(batch, length) or (length,). Received shape: {shape}"
            )
        rows = x if len(shape) == 2 else x[None]
        check_token_inputs(
            {"token_ids": rows}, self.tokenizer.vocabulary_size()
        )
