#!/usr/bin/env bash
# Create (or repair) the project's virtual environment and install bpfring
# into it, editable, with its test and docs extras.
#
#   usage: scripts/install-venv.sh PYTHON VENV
#
# A .venv left half-made by an earlier failure (no python, or no working pip:
# python3-venv was missing when it was created) is removed and made again.
#
# The C accelerator (bpfring._speedups) is part of the product: when it did
# not build, the compiler's output is shown, and with BPFRING_REQUIRE_ACCEL=1
# or BPFRING_REQUIRE_KERNEL=1 (CI) this script fails.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
py=$venv/bin/python

if [[ -e $venv ]] && ! "$py" -m pip --version >/dev/null 2>&1; then
    echo "setup: $venv is broken (no working python or pip); making it again"
    rm -rf "$venv"
fi
if [[ ! -e $venv ]]; then
    if ! "$python" -m venv "$venv"; then
        rm -rf "$venv"
        echo "setup: '$python -m venv' failed; on Debian: apt-get install python3-venv" >&2
        exit 1
    fi
fi

log=$venv/install.log
if ! { "$py" -m pip install --upgrade pip && "$py" -m pip install -v -e '.[test,docs]'; } \
        >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "setup: installing bpfring into $venv failed (full log: $log)" >&2
    exit 1
fi

if ! "$py" -c 'import bpfring._speedups' 2>/dev/null; then
    echo "setup: the C accelerator bpfring._speedups was not built; the build said:" >&2
    grep -iE "building '|gcc|error|failed" "$log" | grep -v '^ *writing' | tail -n 30 >&2 || true
    echo "setup: install a C compiler and the Python headers (Debian: apt-get install" \
         "gcc python3-dev), then run make again" >&2
    if [[ ${BPFRING_REQUIRE_ACCEL:-} == 1 || ${BPFRING_REQUIRE_KERNEL:-} == 1 ]]; then
        exit 1
    fi
fi
