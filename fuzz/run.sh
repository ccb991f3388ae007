#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time and reports executions and findings:
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]      (default 60 s, every target)
# Seeds: fuzz/seeds/<target>/ (cases from the tests), and for the image decoders the test
# corpus and the hostile images of tests/data. The working corpus grows in
# fuzz/corpus/<target>/ (not committed); a crash lands in fuzz/artifacts/<target>/ and
# becomes a regression test (tests/fuzz_regressions.rs) once understood.
# Needs the nightly toolchain (libFuzzer's sanitizer flags) and cargo-fuzz (installed
# from crates.io if missing).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(request_head chunked response_head config cache_control access image_jpeg image_png image_gif)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cd "$here"

seed() {
  local target="$1" dir="$here/corpus/$1"
  mkdir -p "$dir"
  [ -d "$here/seeds/$target" ] && cp -n "$here/seeds/$target"/* "$dir/" 2>/dev/null || true
  local pattern=""
  case "$target" in
    image_jpeg) pattern='*.jp*g' ;;
    image_png) pattern='*.png' ;;
    image_gif) pattern='*.gif' ;;
  esac
  if [ -n "$pattern" ]; then
    find "$root/tests/data/corpus" "$root/tests/data/image-attacks" -type f -iname "$pattern" \
      -size -512k -exec cp -n {} "$dir/" \; 2>/dev/null || true
  fi
}

printf '%-15s %12s %10s %9s\n' target executions exec/s findings
status=0
for t in "${targets[@]}"; do
  seed "$t"
  log="$here/corpus/$t.log"
  mkdir -p "$here/artifacts/$t"
  # -rss_limit_mb: a decoder that wants more is a finding; -timeout: so is one input
  # that runs longer than 10 s.
  if ! cargo +nightly fuzz run "$t" "$here/corpus/$t" -- -max_total_time="$seconds" \
      -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$here/artifacts/$t/" >"$log" 2>&1; then
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  found=$(find "$here/artifacts/$t" -type f | wc -l)
  printf '%-15s %12s %10s %9s\n' "$t" "${execs:-?}" "${rate:-?}" "$found"
done
exit $status
