"""The wheel ships what the package loads from its own files."""

import os
import shutil
import subprocess
import sys
import zipfile

from tests.testing import TestCase
from tests.testing import only_under

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
PRESETS_DIR = os.path.join("keras_sdgm", "presets")


@only_under("jax", "packaging; the backend is not what it tests")
class WheelTest(TestCase):
    def test_wheel_holds_every_file_of_the_trained_presets(self):
        # Built from a copy: setuptools writes build/ and egg-info beside
        # the sources.
        source = os.path.join(self.get_temp_dir(), "source")
        shutil.copytree(
            os.path.join(ROOT, "keras_sdgm"),
            os.path.join(source, "keras_sdgm"),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(os.path.join(ROOT, name), source)
        out = os.path.join(self.get_temp_dir(), "wheel")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--wheel-dir",
                out,
                source,
            ],
            check=True,
        )
        (wheel,) = [name for name in os.listdir(out) if name.endswith(".whl")]
        with zipfile.ZipFile(os.path.join(out, wheel)) as f:
            shipped = set(f.namelist())
        expected = {
            os.path.relpath(os.path.join(folder, name), source).replace(
                os.sep, "/"
            )
            for folder, _, names in os.walk(os.path.join(source, PRESETS_DIR))
            for name in names
        }
        self.assertIn(
            "keras_sdgm/presets/ptb_sdgm_small/model.weights.h5", expected
        )
        self.assertLessEqual(expected, shipped)
