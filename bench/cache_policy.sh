#!/usr/bin/env bash
# Hit ratio: S3-FIFO (the cache's policy) vs plain LRU on a Zipf trace, several seeds.
# Options are positional: [REQUESTS] [OBJECTS] [ZIPF_S] [BUDGET_PERCENT] [SEEDS]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --quiet --example cache_policy -- "$@"
