#!/usr/bin/env bash
# One entry point for every benchmark: bench/run.sh NAME [options]   (bench/run.sh lists them)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
declare -A benches=(
  [proxy-vs-nginx]=proxy_vs_nginx.py
  [load-vs-wrk]=load_vs_wrk.py
  [shard-balance]=shard_balance.py
  [uring-vs-epoll]=uring_vs_epoll.py
  [cache-policy]=cache_policy.sh
  [cache-hits]=cache_hits.py
  [hit-instructions]=hit_instructions.py
  [cache-memory]=cache_memory.py
  [distill-vs-vips]=distill_vs_vips.py
  [webp]=webp.py
  [jpeg-variants]=jpeg_variants.py
  [distill-latency]=distill_latency.py
  [gif-stall]=gif_stall.py
  [text-compression]=text_compression.py
  [before-after]=before_after.py
  [admin-cost]=admin_cost.py
  [cluster-hop]=cluster_hop.py
  [cluster-storage]=cluster_storage.py
  [cluster-failover]=cluster_failover.py
  [cluster-hotspot]=cluster_hotspot.py
  [tunnel]=tunnel.py
)
name="${1:-}"
if [ -z "$name" ] || [ -z "${benches[$name]:-}" ]; then
  echo "usage: bench/run.sh NAME [options]   (NAME --help for options)"
  echo "benchmarks: ${!benches[*]}"
  exit 2
fi
shift
case "${benches[$name]}" in
  *.py) exec python3 "$here/${benches[$name]}" "$@" ;;
  *) exec bash "$here/${benches[$name]}" "$@" ;;
esac
