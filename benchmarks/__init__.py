"""The benchmark scripts, importable as `benchmarks.<name>` (e.g. by the
tests); run them as files: `python benchmarks/run.py --help`. Their shared
timers and compiled calls are in `keras_sdgm.utils.timing`."""
