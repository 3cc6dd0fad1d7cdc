"""What TF Serving does with a REST request, for tests without a server."""

import numpy as np


def rest_predict(saved_model, body):
    """Answers a TF Serving REST `:predict` body in the columnar form.

    `body` is `{"signature_name": ..., "inputs": {name: nested lists}}`
    (signature_name defaults to `serving_default`). The inputs are cast to
    the signature's dtypes and the answer is `{"outputs": ...}`: the one
    output's nested lists when the signature has a single output (TF
    Serving omits its name then), otherwise a dict of them.

    Args:
        saved_model: the object `tf.saved_model.load` returned.
        body: the parsed JSON body.
    """
    import tensorflow as tf

    signature = saved_model.signatures[
        body.get("signature_name", "serving_default")
    ]
    specs = signature.structured_input_signature[1]
    inputs = {
        name: tf.constant(np.asarray(value), dtype=specs[name].dtype)
        for name, value in body["inputs"].items()
    }
    outputs = {
        name: value.numpy().tolist()
        for name, value in signature(**inputs).items()
    }
    if len(outputs) == 1:
        return {"outputs": next(iter(outputs.values()))}
    return {"outputs": outputs}
