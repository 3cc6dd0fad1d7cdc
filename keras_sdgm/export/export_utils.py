"""What every export shares: checking the model and writing without loss."""

import os
import shutil
import subprocess
import sys
import tempfile

import keras

from keras_sdgm.models import SDGMCausalLM


def resolve_model(model_or_path):
    """Returns the `SDGMCausalLM` to export, loading it from a path.

    Args:
        model_or_path: an `SDGMCausalLM`, or the path of one saved as
            `.keras`.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is not a loadable Keras model, the model is not
            built, or it is not an `SDGMCausalLM`; the message says which.
    """
    if isinstance(model_or_path, (str, os.PathLike)):
        path = os.fspath(model_or_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"No saved model at {path!r}. Pass the path of a `.keras` "
                "file written by `model.save()` or by a recipe "
                "(`best.keras` in its output folder)."
            )
        try:
            model = keras.saving.load_model(path, compile=False)
        except Exception as error:
            raise ValueError(
                f"Could not load {path!r} as a Keras model ({error}). Export "
                "takes a `.keras` file saved from an `SDGMCausalLM`; if it "
                "is one, the file may be truncated or corrupt: save it again."
            ) from error
    else:
        model = model_or_path
    if isinstance(model, keras.Model) and not model.built:
        raise ValueError(
            f"The model {model.name!r} is not built, so it has no weights "
            "to export. Call it on a batch or load a trained model first."
        )
    if not isinstance(model, SDGMCausalLM):
        raise ValueError(
            "Export takes an `SDGMCausalLM` (or the path of one saved as "
            f"`.keras`). Received: {type(model).__name__}. For a backbone, "
            "wrap it: `SDGMCausalLM(backbone)`."
        )
    return model


def check_destination(path, overwrite):
    """Refuses to replace an existing export unless asked to."""
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path!r} already exists; nothing was written. Pass "
            "`overwrite=True` (`--overwrite`) to replace it, or choose "
            "another version or path."
        )


def write_replacing(path, write, overwrite):
    """Runs `write(temporary_path)` and moves the result to `path`.

    The new export is written beside `path` first, so a failed export
    leaves an existing one untouched; it replaces `path` only when complete
    (and only with `overwrite=True`).
    """
    check_destination(path, overwrite)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        written = os.path.join(staging, os.path.basename(path))
        write(written)
        if os.path.exists(path):
            old = os.path.join(staging, "replaced")
            os.replace(path, old)
        os.replace(written, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def export_under_tensorflow(lm, model_or_path, cli_arguments, overwrite):
    """Runs the export CLI in a TensorFlow-backend subprocess.

    The route for backends whose own export cannot give the artifact (see
    the callers): the weights travel as a `.keras` file, which every backend
    reads identically.

    Args:
        lm: the resolved model.
        model_or_path: what the caller was given: a model (saved to a
            temporary `.keras` file) or the `.keras` file it came from.
        cli_arguments: the arguments after the model path.
        overwrite: bool. Pass `--overwrite` on.
    """
    with tempfile.TemporaryDirectory(prefix="sdgm-export-") as scratch:
        if isinstance(model_or_path, keras.Model):
            model_path = os.path.join(scratch, "model.keras")
            lm.save(model_path)
        else:
            model_path = model_or_path
        cli_arguments = list(cli_arguments) + (
            ["--overwrite"] if overwrite else []
        )
        package_parent = os.path.dirname(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        )
        environment = {
            **os.environ,
            "KERAS_BACKEND": "tensorflow",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [package_parent, os.environ.get("PYTHONPATH")])
            ),
        }
        command = [
            sys.executable,
            "-m",
            "keras_sdgm.export",
            os.fspath(model_path),
            *cli_arguments,
        ]
        result = subprocess.run(
            command, env=environment, capture_output=True, text=True
        )
    if result.returncode != 0:
        raise RuntimeError(
            "Exporting through the TensorFlow backend failed (is tensorflow "
            "installed? `pip install keras-sdgm[export]`). Command: "
            f"{' '.join(command)}\n{result.stderr[-4000:]}"
        )
