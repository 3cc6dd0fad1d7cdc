"""Plain-text corpora of your own: the splits, held out or from files."""

import os

from keras_sdgm import datasets
from tests.testing import TestCase


class LoadTextSplitsTest(TestCase):
    def write(self, name, lines, encoding="utf-8"):
        path = os.path.join(self.get_temp_dir(), name)
        with open(path, "w", encoding=encoding) as f:
            f.write("\n".join(lines) + "\n")
        return path

    def test_held_out_splits_come_from_the_end_in_order(self):
        lines = [f"line {i}" for i in range(20)]
        path = self.write("corpus.txt", lines)
        splits, sources = datasets.load_text_splits(path, holdout_fraction=0.1)
        self.assertEqual(splits["train"], lines[:16])
        self.assertEqual(splits["valid"], lines[16:18])
        self.assertEqual(splits["test"], lines[18:])
        digest = datasets.file_sha256(path)
        self.assertEqual(
            sources,
            {
                "train": {"path": path, "sha256": digest, "lines": [0, 16]},
                "valid": {"path": path, "sha256": digest, "lines": [16, 18]},
                "test": {"path": path, "sha256": digest, "lines": [18, 20]},
            },
        )

    def test_given_files_are_used_whole(self):
        train = self.write("train.txt", [f"t {i}" for i in range(10)])
        valid = self.write("valid.txt", ["v é"])
        splits, sources = datasets.load_text_splits(
            train, valid_file=valid, holdout_fraction=0.2
        )
        # Only the test split is held out (the last 2 of 10 lines).
        self.assertEqual(splits["valid"], ["v é"])
        self.assertEqual(splits["train"], [f"t {i}" for i in range(8)])
        self.assertEqual(splits["test"], ["t 8", "t 9"])
        self.assertNotIn("lines", sources["valid"])
        test = self.write("test.txt", ["x y"])
        splits, sources = datasets.load_text_splits(train, valid, test)
        self.assertLen(splits["train"], 10)
        self.assertEqual(
            {s: "lines" in source for s, source in sources.items()},
            {"train": False, "valid": False, "test": False},
        )

    def test_errors_name_the_argument(self):
        train = self.write("train.txt", ["a b"] * 5)
        missing = os.path.join(self.get_temp_dir(), "missing.txt")
        with self.assertRaisesRegex(FileNotFoundError, "`valid_file`"):
            datasets.load_text_splits(train, valid_file=missing)
        latin = self.write("latin.txt", ["caf\xe9"], encoding="latin-1")
        with self.assertRaisesRegex(ValueError, "`train_file` .* UTF-8"):
            datasets.load_text_splits(latin)
        for fraction in (0, 0.5, -0.1):
            with self.assertRaisesRegex(ValueError, "`holdout_fraction`"):
                datasets.load_text_splits(train, holdout_fraction=fraction)
        # 5 lines x 0.1 is no line: say so rather than give an empty split.
        with self.assertRaisesRegex(ValueError, "valid_file and test_file"):
            datasets.load_text_splits(train)
        blank = self.write("blank.txt", ["", "  "])
        with self.assertRaisesRegex(ValueError, "test split .* no words"):
            datasets.load_text_splits(train, test_file=blank, valid_file=train)
