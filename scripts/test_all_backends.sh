#!/usr/bin/env bash
# Installs keras-sdgm with every backend and its test dependencies, checks
# formatting and lint (ruff), then runs the whole test suite once per Keras
# backend, two test processes at a time (pytest-xdist). Extra arguments go
# to pytest (e.g. `-m "not slow"` or `-x`). Exits non-zero if the lint or
# any backend fails.
set -uo pipefail
cd "$(dirname "$0")/.."

# The CPU build of torch (an unpinned torch pulls a multi-GB CUDA build),
# by pip, which takes it from this machine's disk; then the rest by uv,
# which resolves the same versions and installs them faster (a fresh venv
# here: 42 s against pip's 99 s).
python -m pip install --quiet "torch==2.13.0" uv || exit 1
python -m uv pip install --quiet --python "$(python -c 'import sys; print(sys.executable)')" \
  -e ".[all,dev]" || exit 1

# The corpora: ../shared/data beside the checkout unless told otherwise.
export KERAS_SDGM_DATA_DIR="${KERAS_SDGM_DATA_DIR:-$(cd .. && pwd)/shared/data}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# JAX's persistent compilation cache, empty at the start of each run: the
# tests and child processes that compile the same program (a recipe run and
# its resumed run, the same tiny model in several tests) compile it once.
if [ -z "${JAX_COMPILATION_CACHE_DIR:-}" ]; then
  JAX_COMPILATION_CACHE_DIR="$(mktemp -d)"
  trap 'rm -rf "${JAX_COMPILATION_CACHE_DIR}"' EXIT
fi
export JAX_COMPILATION_CACHE_DIR
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0.2
# XLA (JAX, and TensorFlow's `jit_compile`) without LLVM's optimization
# passes: the tests' programs are tiny and mostly run a few times, so their
# compile time dominates (tests/layers and the generate tests under JAX:
# 198 -> 145 s). The numerics are IEEE either way (no fast-math); the
# benchmarks, which the tests only smoke-test, run at the default level.
# Flags already in XLA_FLAGS come last and win.
export XLA_FLAGS="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true ${XLA_FLAGS:-}"

# glibc (2.35+; ignored elsewhere) asks the kernel for 2 MiB pages for the
# large buffers that XLA allocates anew at every step, instead of
# faulting them in 4 KiB at a time: same numbers, less time in the kernel
# (the quick start under JAX: 1.7x the training speed; docs/PERFORMANCE.md).
export GLIBC_TUNABLES="glibc.malloc.hugetlb=1${GLIBC_TUNABLES:+:${GLIBC_TUNABLES}}"

echo "=== ruff ==="
python -m ruff format --check . && python -m ruff check . || exit 1

failed=()
for backend in tensorflow jax torch; do
  echo "=== KERAS_BACKEND=${backend} ==="
  start=${SECONDS}
  KERAS_BACKEND="${backend}" python -m pytest -p no:cacheprovider \
    -n "${PYTEST_WORKERS:-2}" --dist worksteal --durations=15 "$@" \
    || failed+=("${backend}")
  echo "=== ${backend}: $((SECONDS - start)) s ==="
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "Test suite failed under: ${failed[*]}"
  exit 1
fi
echo "Test suite passed under tensorflow, jax and torch."
