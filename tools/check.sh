#!/usr/bin/env bash
# The static checks, as CI runs them (.ci/run) and pre-commit runs them locally
# (.pre-commit-config.yaml): lint and format of the Python, types of the package, format of the
# C++. The tools and their versions come from the dev extra: pip install -e ".[dev]".
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== ruff check"
ruff check python tests bench
echo "== ruff format --check"
ruff format --check python tests bench
echo "== mypy (settings in pyproject.toml)"
mypy
echo "== clang-format --dry-run -Werror"
find cpp \( -name '*.cpp' -o -name '*.hpp' \) -print0 | sort -z | xargs -0 clang-format --dry-run -Werror
echo "all checks passed"
