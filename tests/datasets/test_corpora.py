import hashlib
import os
import shutil
from unittest import mock

import pytest

from keras_sdgm import datasets
from tests.conftest import shared_data_dir
from tests.testing import TestCase

PUBLISHED_SIZES = {  # tokens + one <eos> per line (shared/data/README.md)
    ("ptb", "train"): 929589,
    ("ptb", "valid"): 73760,
    ("ptb", "test"): 82430,
}


class CorporaTest(TestCase):
    def setUp(self):
        super().setUp()
        self.data_dir = shared_data_dir()

    def test_reads_verified_files_from_data_dir(self):
        lines = datasets.load_lines("ptb", "valid", data_dir=self.data_dir)
        self.assertLen(lines, 3370)
        for (corpus, split), size in PUBLISHED_SIZES.items():
            lines = datasets.load_lines(corpus, split, data_dir=self.data_dir)
            self.assertEqual(sum(len(line.split()) + 1 for line in lines), size)

    def test_environment_variable_is_used(self):
        with mock.patch.dict(
            os.environ, {"KERAS_SDGM_DATA_DIR": self.data_dir}
        ):
            path = datasets.corpus_path("ptb", "test")
        self.assertEqual(path, os.path.join(self.data_dir, "ptb", "test.txt"))

    def test_checksum_mismatch_names_the_file(self):
        copy = os.path.join(self.get_temp_dir(), "corrupt")
        os.makedirs(os.path.join(copy, "ptb"))
        target = os.path.join(copy, "ptb", "valid.txt")
        shutil.copy(os.path.join(self.data_dir, "ptb", "valid.txt"), target)
        os.chmod(target, 0o644)
        with open(target, "a") as f:
            f.write(" one more line \n")
        with self.assertRaisesRegex(
            ValueError, r"Checksum mismatch.*valid\.txt"
        ):
            datasets.load_lines("ptb", "valid", data_dir=copy)

    def test_missing_folder_says_where_it_looked(self):
        empty = self.get_temp_dir()
        with self.assertRaisesRegex(FileNotFoundError, "ptb/test.txt"):
            datasets.load_lines("ptb", "test", data_dir=empty)

    def test_offline_with_empty_cache_explains_what_to_do(self):
        with _only_the_keras_cache(self.get_temp_dir()):
            with self.assertRaisesRegex(FileNotFoundError, "download=False"):
                datasets.load_lines("ptb", "test", download=False)

    def test_download_verifies_and_caches(self):
        # A file:// origin stands in for the public URL: same code path.
        published = datasets.CORPORA["ptb"]
        source = "file://" + os.path.join(self.data_dir, "ptb", "{split}.txt")

        def ptb_from(sha256):
            return {
                "ptb": type(published)(
                    folder=published.folder, sha256=sha256, origin=source
                )
            }

        with (
            _only_the_keras_cache(self.get_temp_dir()),
            mock.patch.dict(datasets.CORPORA, ptb_from(published.sha256)),
        ):
            path = datasets.corpus_path("ptb", "valid")
            self.assertTrue(path.startswith(datasets.cache_dir()))
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            self.assertEqual(digest, published.sha256["valid"])
        # A download that does not match its checksum is refused, not used.
        with (
            _only_the_keras_cache(self.get_temp_dir()),
            mock.patch.dict(
                datasets.CORPORA,
                ptb_from({**published.sha256, "test": "0" * 64}),
            ),
        ):
            with pytest.raises((ValueError, FileNotFoundError)):
                datasets.corpus_path("ptb", "test")

    def test_unknown_names(self):
        with self.assertRaisesRegex(ValueError, "wikitext2"):
            datasets.load_lines("wt103", "train")
        with self.assertRaisesRegex(ValueError, "valid"):
            datasets.load_lines("ptb", "validation", data_dir=self.data_dir)


def _only_the_keras_cache(keras_home):
    """No data folder set, and the Keras cache in `keras_home`."""
    environ = {
        k: v for k, v in os.environ.items() if k != "KERAS_SDGM_DATA_DIR"
    }
    environ["KERAS_HOME"] = keras_home
    return mock.patch.dict(os.environ, environ, clear=True)
