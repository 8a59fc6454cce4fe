#!/usr/bin/env bash
# The second half of `make test`: the trainer's data-parallel tests over Open
# MPI (trainer/tests/dist.rs, `mpirun -n 2`). They need wit-trainer's `mpi`
# feature, whose bindings are generated at build time, so Open MPI's headers
# and libclang must be installed before the build: this installs them from
# Debian's registry where they are missing (as root), and where that cannot
# be done skips with a message (and a line in $WIT_SKIP_LOG), or fails when
# WIT_NO_SKIP is set
# (CI: a green run means every check ran).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
PACKAGES=(openmpi-bin libopenmpi-dev libclang-dev)

ready() {
    command -v mpirun >/dev/null && command -v mpicc >/dev/null &&
        compgen -G '/usr/lib/llvm-*/lib/libclang.so' >/dev/null
}

if ! ready; then
    echo "test-mpi: installing ${PACKAGES[*]} (Debian)"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${PACKAGES[@]}" >/dev/null 2>&1 || true
    fi
fi
if ! ready; then
    msg="Open MPI and libclang are not installed and could not be (Debian: apt-get install ${PACKAGES[*]})"
    if [ -n "${WIT_NO_SKIP:-}" ] && [ "${WIT_NO_SKIP}" != 0 ]; then
        echo "test-mpi: error: the data-parallel tests cannot run (WIT_NO_SKIP is set): $msg" >&2
        exit 1
    fi
    echo "SKIP: the data-parallel tests: $msg"
    if [ -n "${WIT_SKIP_LOG:-}" ]; then
        echo "scripts/test-mpi.sh (trainer and e2e dist tests): $msg" >> "$WIT_SKIP_LOG"
    fi
    exit 0
fi
# The MPI code is compiled only here: lint it here too.
$CARGO clippy -p wit -p wit-trainer --features mpi --all-targets -- -D warnings
# The collectives and the loss over the global batch (the library), then
# `wit train` itself on two ranks (the e2e binary's dist module).
$CARGO test -p wit-trainer --features mpi --test dist
exec $CARGO test --features mpi --test e2e -- dist::
