"""Shared test setup. Run once per backend: KERAS_BACKEND=jax|tensorflow|torch."""

import os


def _pin_to_a_share_of_the_cores():
    """Gives each pytest-xdist worker its own cores, before any backend starts.

    Every backend sizes its thread pools to the cores a process may use
    (TensorFlow's and XLA's Eigen pools, torch's OpenMP), so two workers
    that may each use every core run twice as many busy threads as there
    are cores, and the spinning threads slow both down: `tests/models`
    under torch with `-n 2` took 201-284 s with both workers on both cores
    and 125 s with OMP_NUM_THREADS=1 (CONTRIBUTING.md). Pinning worker i
    to cores i, i + n, ... (n workers) sizes every backend's pools alike.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if workers < 2 or not worker.startswith("gw"):
        return
    if not hasattr(os, "sched_setaffinity"):  # not on macOS or Windows
        return
    cores = sorted(os.sched_getaffinity(0))
    share = cores[int(worker.removeprefix("gw")) % workers :: workers]
    if share:
        os.sched_setaffinity(0, share)


_pin_to_a_share_of_the_cores()

import keras  # noqa: E402
import pytest  # noqa: E402


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
