"""Shared test setup. Run once per backend: KERAS_BACKEND=jax|tensorflow|torch."""

import os

import keras
import pytest


def pytest_report_header(config):
    return f"keras backend: {keras.config.backend()}"


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Each test starts from float32 and a fixed seed."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1337)
    yield
    keras.config.set_dtype_policy("float32")


def shared_data_dir():
    """The corpora folder: KERAS_SDGM_DATA_DIR, else ../shared/data."""
    default = os.path.join(
        os.path.dirname(__file__), os.pardir, os.pardir, "shared", "data"
    )
    return os.path.abspath(os.environ.get("KERAS_SDGM_DATA_DIR", default))
