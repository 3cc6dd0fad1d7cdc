"""What every export shares: checking the model and writing without loss."""

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

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
        model = load_keras_file(model_or_path, compile=False)
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
            "`.keras`) as `model_or_path`. Received: "
            f"{type(model).__name__}. For a backbone, wrap it: "
            "`SDGMCausalLM(backbone)`."
        )
    return model


def require_path(name, value):
    """Returns `value` as a `str` path, or raises naming the argument."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise TypeError(
            f"`{name}` must be a path (a non-empty `str` or `os.PathLike`). "
            f"Received: {name}={value!r}"
        )
    return os.fspath(value)


def load_keras_file(path, compile=True):
    """Loads a `.keras` file, saying plainly what is wrong with a bad one.

    Keras reports a truncated or corrupt `.keras` file (an incomplete zip
    archive, e.g. from a save that was killed) as "File not found"; this
    says the file is there but broken.

    Args:
        path: the `.keras` file.
        compile: bool. Compile the model as it was saved.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is truncated, corrupt or not a Keras model.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No saved model at {path!r}. Pass the path of a `.keras` "
            "file written by `model.save()` or by a recipe "
            "(`best.keras` in its output folder)."
        )
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path!r} is truncated or corrupt: a `.keras` file is a zip "
            f"archive, and this one ({os.path.getsize(path)} bytes) is not a "
            "complete one. Save the model again (a save that was "
            "interrupted leaves such a file)."
        )
    try:
        return keras.saving.load_model(path, compile=compile)
    except Exception as error:
        raise ValueError(
            f"Could not load {path!r} as a Keras model ({error}). It must "
            "be a `.keras` file saved from an `SDGMCausalLM`; if it is one, "
            "the file may be truncated or corrupt: save it again."
        ) from error


def check_destination(path, overwrite):
    """Refuses to replace an existing export unless asked to."""
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path!r} already exists; nothing was written. Pass "
            "`overwrite=True` (`--overwrite`) to replace it, or choose "
            "another version or path."
        )


STAGING_PREFIX = ".export-"


def write_replacing(path, write, overwrite, staging_parent=None):
    """Runs `write(temporary_path)` and moves the result to `path`.

    The new export is written to a staging folder first, so a failed export
    leaves an existing one untouched; it replaces `path` only when complete
    (and only with `overwrite=True`).

    Args:
        path: the file or folder to write.
        write: function of the path to write to.
        overwrite: bool. Replace an existing `path`.
        staging_parent: the folder to stage in (on the same file system as
            `path`); default: beside `path`. A SavedModel is staged outside
            its TF Serving base path, where a killed export would otherwise
            leave a half-written folder among the versions TF Serving scans.
    """
    check_destination(path, overwrite)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging_parent = staging_parent or parent
    prefix = f".{os.path.basename(parent)}{STAGING_PREFIX}"
    staging = tempfile.mkdtemp(prefix=prefix, dir=staging_parent)
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


def remove_stale_staging(base_path):
    """Deletes `.export-*` folders in `base_path` left by killed exports.

    Earlier versions staged SavedModels inside the TF Serving base path;
    a killed export left its staging folder there.
    """
    if not os.path.isdir(base_path):
        return
    for name in os.listdir(base_path):
        stale = os.path.join(base_path, name)
        if name.startswith(STAGING_PREFIX) and os.path.isdir(stale):
            shutil.rmtree(stale, ignore_errors=True)


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
