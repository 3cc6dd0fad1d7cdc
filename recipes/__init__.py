"""The recipe scripts, importable as `recipes.<name>` (e.g. by the tests);
run them as files: `python recipes/ptb.py --help`."""
