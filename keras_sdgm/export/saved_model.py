"""SavedModel export in TF Serving's layout, from every backend."""

import os

import keras

from keras_sdgm.export.export_utils import check_destination
from keras_sdgm.export.export_utils import export_under_tensorflow
from keras_sdgm.export.export_utils import remove_stale_staging
from keras_sdgm.export.export_utils import require_path
from keras_sdgm.export.export_utils import resolve_model
from keras_sdgm.export.export_utils import write_replacing
from keras_sdgm.export.signatures import INPUT_NAMES
from keras_sdgm.export.signatures import logits_function
from keras_sdgm.export.signatures import next_token_function
from keras_sdgm.utils.validation import require_positive_int

VOCABULARY_FILE = os.path.join("assets.extra", "vocabulary.txt")


def export_saved_model(model_or_path, export_dir, version=1, overwrite=False):
    """Exports an SDGM language model as a SavedModel for TF Serving.

    Writes `export_dir/<version>/` (`saved_model.pb`, `variables/`, and
    `assets.extra/vocabulary.txt`, one token per line in id order, when the
    model has a tokenizer), the layout TF Serving loads with
    `--model_base_path=export_dir`. The SavedModel needs neither Keras nor
    keras-sdgm to run. Its signatures:

    - `serving_default`: `token_ids` int32 `(batch, length)` and
      `padding_mask` int32 `(batch, length)` (1 for a token, 0 for padding)
      -> `logits` float32 `(batch, length, vocabulary)`;
    - `next_token`: the same inputs -> `log_probs` float32
      `(batch, vocabulary)`, the log-probabilities of the token after the
      last non-padding position of each row (NaN for a row that is all
      padding).

    The version is written to a staging folder beside `export_dir` (not in
    it, where TF Serving looks for versions) and moved into place when
    complete; staging folders that killed exports of earlier releases left
    in `export_dir` (`.export-*`) are deleted.

    Batch and length are dynamic. Under TensorFlow and JAX the model is
    exported in this process with `keras.export.ExportArchive`. Keras cannot
    export a SavedModel from torch, so under torch the model is saved as
    `.keras` and exported by the TensorFlow backend in a subprocess (same
    weights, same signatures).

    Args:
        model_or_path: an `SDGMCausalLM`, or the path of one saved as
            `.keras`.
        export_dir: the model's base folder (e.g. `saved_models/NAME`).
        version: positive int. The version subfolder to write.
        overwrite: bool. Replace an existing version folder. Without it an
            existing one raises `FileExistsError` and nothing is written.

    Returns:
        The path of the version folder.

    Example:
    ```python
    lm = keras.saving.load_model("runs/ptb/best.keras")
    keras_sdgm.export_saved_model(lm, "saved_models/ptb", version=1)
    # docker run -p 8501:8501 -e MODEL_NAME=ptb --mount type=bind,\\
    #   source=$PWD/saved_models/ptb,target=/models/ptb tensorflow/serving
    ```
    """
    export_dir = require_path("export_dir", export_dir)
    version = require_positive_int("version", version)
    target = os.path.join(export_dir, str(version))
    check_destination(target, overwrite)
    lm = resolve_model(model_or_path)
    remove_stale_staging(export_dir)
    if keras.config.backend() == "torch":
        export_under_tensorflow(
            lm,
            model_or_path,
            [os.fspath(export_dir), "--version", str(version)],
            overwrite,
        )
        return target
    return write_replacing(
        target,
        lambda path: _write_saved_model(lm, path),
        overwrite,
        staging_parent=os.path.dirname(os.path.abspath(export_dir)),
    )


def _write_saved_model(lm, path):
    import tensorflow as tf

    specs = [
        tf.TensorSpec((None, None), tf.int32, name=name) for name in INPUT_NAMES
    ]
    options = {}
    if keras.config.backend() == "jax":
        # One symbolic length for both inputs (by default each `None` gets
        # its own symbol, and the model cannot tell they are equal).
        options["jax2tf_kwargs"] = {"polymorphic_shapes": ["(b, l)"] * 2}
    archive = keras.export.ExportArchive()
    if keras.config.backend() == "jax":
        # jax2tf exports the variables that `track` converts to TensorFlow.
        # Under TensorFlow the endpoints capture the variables themselves;
        # tracking the model too would store every weight twice
        # (keras-team/keras#23553).
        archive.track(lm)
    archive.add_endpoint(
        "serving_default", logits_function(lm), input_signature=specs, **options
    )
    archive.add_endpoint(
        "next_token", next_token_function(lm), input_signature=specs, **options
    )
    archive.write_out(path, verbose=False)
    if lm.preprocessor is not None:
        vocabulary = lm.preprocessor.tokenizer.get_vocabulary()
        os.makedirs(os.path.join(path, "assets.extra"))
        with open(os.path.join(path, VOCABULARY_FILE), "w") as f:
            f.writelines(f"{token}\n" for token in vocabulary)
