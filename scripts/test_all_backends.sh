#!/usr/bin/env bash
# Installs keras-sdgm with every backend and its test dependencies, then runs
# the whole test suite once per Keras backend. Extra arguments go to pytest
# (e.g. `-m "not slow"` or `-x`). Exits non-zero if any backend fails.
set -uo pipefail
cd "$(dirname "$0")/.."

# The CPU build of torch: an unpinned torch pulls a multi-GB CUDA build.
python -m pip install --quiet "torch==2.13.0" || exit 1
python -m pip install --quiet -e ".[all,dev]" || exit 1

# The corpora: ../shared/data beside the checkout unless told otherwise.
export KERAS_SDGM_DATA_DIR="${KERAS_SDGM_DATA_DIR:-$(cd .. && pwd)/shared/data}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

failed=()
for backend in tensorflow jax torch; do
  echo "=== KERAS_BACKEND=${backend} ==="
  KERAS_BACKEND="${backend}" python -m pytest -p no:cacheprovider "$@" \
    || failed+=("${backend}")
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "Test suite failed under: ${failed[*]}"
  exit 1
fi
echo "Test suite passed under tensorflow, jax and torch."
