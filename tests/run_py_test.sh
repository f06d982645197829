#!/bin/sh
# Runs one Python test file with Debian's /usr/bin/python3 (stdlib only).
# Usage: run_py_test.sh [--dlsend PATH] [--dlrecv PATH] [--dlping PATH] TEST.py [unittest args...]
# Used by the sh_test targets in tests/BUILD (Bazel passes $(location ...) paths, relative to
# the runfiles root, which is the working directory); also usable by hand from the repo root.
set -e
abs() {
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$(pwd)" "$1" ;;
  esac
}
while [ $# -gt 0 ]; do
  case "$1" in
    --dlsend) DLSEND=$(abs "$2"); export DLSEND; shift 2 ;;
    --dlrecv) DLRECV=$(abs "$2"); export DLRECV; shift 2 ;;
    --dlping) DLPING=$(abs "$2"); export DLPING; shift 2 ;;
    *) break ;;
  esac
done
if [ $# -eq 0 ]; then
  echo "usage: $0 [--dlsend PATH] [--dlrecv PATH] TEST.py [args...]" >&2
  exit 2
fi
PYTHONDONTWRITEBYTECODE=1; export PYTHONDONTWRITEBYTECODE
exec /usr/bin/python3 "$@"
