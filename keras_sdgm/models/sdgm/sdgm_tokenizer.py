import collections

import keras
import numpy as np
from keras_hub.tokenizers import WordPieceTokenizer

from keras_sdgm.models.sdgm.sdgm_backbone import SDGMBackbone
from keras_sdgm.models.sdgm.sdgm_presets import TrainedPresetsMixin

try:
    import tensorflow as tf
except ImportError:  # The Python (grain) workflow needs no TensorFlow.
    tf = None

EOS_TOKEN = "<eos>"
UNK_TOKEN = "<unk>"


@keras.saving.register_keras_serializable(package="keras_sdgm")
class SDGMTokenizer(TrainedPresetsMixin, WordPieceTokenizer):
    """Word-level tokenizer of the WikiText-2 and Penn Treebank corpora.

    Text is split on whitespace only, and each word maps to one id; a word
    outside the vocabulary (or longer than 100 bytes) maps to `<unk>`. This
    is the tokenization the corpora were published in: punctuation is
    already spaced out, and rare words are already `<unk>`. `<eos>` ends
    each line of a corpus (see `keras_sdgm.datasets.tokenize_corpus`) and is
    the start, end and padding token of the preprocessor.

    Integer input is taken as token ids already and returned unchanged, so
    the windows of a tokenized corpus pass through `SDGMCausalLMPreprocessor`
    untouched but for the next-token shift. Anything that is neither text
    nor an integer array (floats, a list of numbers, `None`) raises
    `TypeError` rather than being read as the text of its digits.

    It is keras-hub's `WordPieceTokenizer` with a vocabulary of whole words
    and no sub-word pieces: it runs in `tf.data` and in Python (grain)
    pipelines, and the vocabulary is saved with the model as an asset, so a
    loaded model tokenizes identically.

    Args:
        vocabulary: list of words or the path of a one-word-per-line file;
            must contain `<eos>` and `<unk>`. Build one from a training split
            with `SDGMTokenizer.build_vocabulary(lines)`.
        **kwargs: other `keras_hub.tokenizers.Tokenizer` arguments.

    Example:
    >>> vocabulary = SDGMTokenizer.build_vocabulary(["the cat sat", "the dog"])
    >>> tokenizer = SDGMTokenizer(vocabulary)
    >>> tokenizer("the bird sat")  # "bird" is unknown
    array([2, 1, 5], dtype=int32)
    >>> tokenizer.detokenize([2, 3, 5])
    'the cat sat'
    """

    backbone_cls = SDGMBackbone

    def __init__(self, vocabulary=None, **kwargs):
        for fixed in ("split", "lowercase", "strip_accents", "oov_token"):
            kwargs.pop(fixed, None)
        self._add_special_token(EOS_TOKEN, "start_token")
        self._add_special_token(EOS_TOKEN, "end_token")
        self._add_special_token(EOS_TOKEN, "pad_token")
        super().__init__(
            vocabulary=vocabulary,
            split=False,
            lowercase=False,
            strip_accents=False,
            oov_token=UNK_TOKEN,
            **kwargs,
        )

    @staticmethod
    def build_vocabulary(lines, max_size=None, min_count=1):
        """The vocabulary of a training split.

        Words are ordered by decreasing count, ties alphabetically, after
        `<eos>` (id 0) and `<unk>` (id 1).

        Args:
            lines: iterable of strings (the training split's lines).
            max_size: int or `None`. Keep at most this many entries, the
                two special tokens included; the rarest words are left out
                (and become `<unk>`).
            min_count: int. Leave out the words seen fewer times than this
                (they become `<unk>`).

        Returns:
            A list of words.
        """
        if max_size is not None and (
            isinstance(max_size, bool)
            or not isinstance(max_size, int)
            or max_size < 3
        ):
            raise ValueError(
                "`max_size` must be an integer of at least 3 (`<eos>`, "
                f"`<unk>` and a word) or None; received {max_size!r}."
            )
        if (
            isinstance(min_count, bool)
            or not isinstance(min_count, int)
            or min_count < 1
        ):
            raise ValueError(
                "`min_count` must be a positive integer; received "
                f"{min_count!r}."
            )
        counts = collections.Counter(
            word for line in lines for word in line.split()
        )
        counts.pop(EOS_TOKEN, None)
        counts.pop(UNK_TOKEN, None)
        words = sorted(
            (w for w in counts if counts[w] >= min_count),
            key=lambda w: (-counts[w], w),
        )
        vocabulary = [EOS_TOKEN, UNK_TOKEN] + words
        return vocabulary[:max_size] if max_size else vocabulary

    def tokenize(self, inputs):
        if _is_integer(inputs):
            return inputs
        if self._use_tf_workflow():
            inputs = tf.convert_to_tensor(inputs)
            if inputs.dtype != tf.string:
                raise TypeError(
                    "`inputs` must be text or integer token ids: "
                    "`SDGMTokenizer` received a tensor of dtype "
                    f"{inputs.dtype.name}."
                )
            words = tf.strings.split(inputs)
        elif isinstance(inputs, str):
            words = inputs.split()
        else:
            words = [str(text).split() for text in _to_python_strings(inputs)]
        return super().tokenize(words)


def _is_integer(inputs):
    dtype = getattr(inputs, "dtype", None)
    if dtype is None:
        return False
    if tf is not None and isinstance(dtype, tf.DType):
        return dtype.is_integer
    return "int" in keras.backend.standardize_dtype(dtype)


def _to_python_strings(inputs):
    array = np.asarray(inputs, dtype=object)
    texts = []
    for text in array.reshape(-1):
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise TypeError(
                "`inputs` must be text (a string, or a list or array of "
                "strings) or an integer array of token ids: `SDGMTokenizer` "
                f"received an element of type {type(text).__name__}: "
                f"{text!r}"
            )
        texts.append(text)
    return texts
