#!/usr/bin/env bash
# Run the SIGKILL crash test for many cycles (default 200). Not part of the default run.
set -euo pipefail
cd "$(dirname "$0")/.."
OUTPOST_CRASH_CYCLES="${1:-200}" cargo test -p outpost-server --test crash -- --nocapture
