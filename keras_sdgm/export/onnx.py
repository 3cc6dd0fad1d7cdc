"""ONNX export of an SDGM language model's logits."""

import keras
import numpy as np

from keras_sdgm.export.export_utils import check_destination
from keras_sdgm.export.export_utils import export_under_tensorflow
from keras_sdgm.export.export_utils import require_path
from keras_sdgm.export.export_utils import resolve_model
from keras_sdgm.export.export_utils import write_replacing
from keras_sdgm.export.signatures import INPUT_NAMES
from keras_sdgm.export.signatures import logits_function
from keras_sdgm.utils.validation import require_positive_int

DEFAULT_OPSET = 17


def export_onnx(model_or_path, filepath, overwrite=False, opset=DEFAULT_OPSET):
    """Exports an SDGM language model's logits as an ONNX file.

    The graph takes `token_ids` and `padding_mask` (int32, `(batch,
    length)`, both dynamic) and returns `logits` (float32, `(batch, length,
    vocabulary)`), the `serving_default` signature of the SavedModel. It
    runs under onnxruntime with no Python model code.

    The graph is always converted from TensorFlow by `tf2onnx`; under JAX
    and torch the model is saved as `.keras` and converted by the
    TensorFlow backend in a subprocess. The backends' own ONNX routes in
    Keras 3.15 do not give an SDGM graph with a dynamic length: JAX's
    (`jax2onnx`) fails on the symbolic length, and torch's (TorchScript
    tracing with dynamic axes) fails on the tied embedding ("Cannot insert
    a Tensor that requires grad as a constant").

    Args:
        model_or_path: an `SDGMCausalLM`, or the path of one saved as
            `.keras`.
        filepath: the `.onnx` file to write.
        overwrite: bool. Replace an existing file. Without it an existing
            file raises `FileExistsError` and nothing is written.
        opset: int. The ONNX opset.

    Returns:
        `filepath`.

    Example:
    ```python
    keras_sdgm.export_onnx("runs/ptb/best.keras", "ptb.onnx")
    session = onnxruntime.InferenceSession("ptb.onnx")
    logits = session.run(None, {"token_ids": ids, "padding_mask": mask})[0]
    ```
    """
    filepath = require_path("filepath", filepath)
    opset = require_positive_int("opset", opset)
    check_destination(filepath, overwrite)
    lm = resolve_model(model_or_path)
    if keras.config.backend() != "tensorflow":
        export_under_tensorflow(
            lm,
            model_or_path,
            [filepath, "--format", "onnx", "--opset", str(opset)],
            overwrite,
        )
        return filepath
    return write_replacing(
        filepath, lambda path: _write_onnx(lm, path, opset), overwrite
    )


def _write_onnx(lm, path, opset):
    import tensorflow as tf
    import tf2onnx

    specs = [
        tf.TensorSpec((None, None), tf.int32, name=name) for name in INPUT_NAMES
    ]
    function = tf.function(logits_function(lm), input_signature=specs)
    tf2onnx.convert.from_function(
        function,
        specs,
        opset=opset,
        output_path=path,
        custom_op_handlers={"Erfc": (_erfc_as_one_minus_erf, [])},
    )


def _erfc_as_one_minus_erf(ctx, node, name, args):
    """tf2onnx handler: ONNX has `Erf` but no `Erfc` (used by exact GELU)."""
    from tf2onnx import utils

    erf = ctx.make_node("Erf", [node.input[0]])
    one = ctx.make_const(utils.make_name("one"), np.array(1.0, np.float32))
    node.type = "Sub"
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])
