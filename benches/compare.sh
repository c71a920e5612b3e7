#!/usr/bin/env bash
# End-to-end comparison of hoard and restic on the same data in the same run: a copy of the
# Rust toolchain's lib/ and share/ (real files nobody here wrote), local repositories, warm
# cache; then forget+prune and check --read-data on the resulting repositories. Prints the median of RUNS runs per step, the ratio restic/hoard (>1 means hoard is
# faster), peak RSS and repository sizes.
#
#   bash benches/compare.sh            # RUNS=3 by default
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
need=()
command -v restic >/dev/null || need+=(restic)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --quiet --bin hoard
HOARD="$PWD/target/release/hoard"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sysroot=$(rustc --print sysroot)
mkdir -p "$work/data"
cp -a "$sysroot/lib" "$sysroot/share" "$work/data/"
files=$(find "$work/data" -type f | wc -l)
bytes=$(du -sb "$work/data" | cut -f1)
echo "data: $files files, $((bytes / 1048576)) MiB ($("$HOARD" --version), $(restic version | cut -d' ' -f1-2))"
cat "$work/data" >/dev/null 2>&1 || true
find "$work/data" -type f -exec cat {} + >/dev/null   # warm the page cache
export RESTIC_PASSWORD=bench

# measure NAME CMD...: appends "seconds rss_kib" to $work/NAME.times
measure() {
    local name=$1; shift
    /usr/bin/time -f "%e %M" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }
    tail -n 1 "$work/t" >> "$work/$name.times"
}

for run in $(seq "$RUNS"); do
    rm -rf "$work/h" "$work/r" "$work/hout" "$work/rout"
    "$HOARD" -r "$work/h" init -q
    restic -r "$work/r" init >/dev/null 2>&1
    measure hoard_backup "$HOARD" -r "$work/h" -q backup "$work/data"
    measure restic_backup restic -r "$work/r" backup -q "$work/data"
    measure hoard_rebackup "$HOARD" -r "$work/h" -q backup "$work/data"
    measure restic_rebackup restic -r "$work/r" backup -q "$work/data"
    measure hoard_restore "$HOARD" -r "$work/h" -q restore latest --target "$work/hout"
    measure restic_restore restic -r "$work/r" restore latest --target "$work/rout"
    diff -r -q "$work/data" "$work/hout$work/data" >/dev/null || { echo "hoard restore differs!"; exit 1; }
    # Maintenance: a snapshot of lib/ only (hard-linked copy), then forget everything else and
    # prune (share/ becomes garbage), then verify every pack.
    rm -rf "$work/data2" && mkdir "$work/data2" && cp -al "$work/data/lib" "$work/data2/"
    "$HOARD" -r "$work/h" -q backup "$work/data2"
    restic -r "$work/r" backup -q "$work/data2" >/dev/null
    "$HOARD" -r "$work/h" -q forget --group-by '' --keep-last 1
    restic -r "$work/r" forget -q --group-by '' --keep-last 1 >/dev/null
    measure hoard_prune "$HOARD" -r "$work/h" -q prune
    measure restic_prune restic -r "$work/r" prune
    measure hoard_check "$HOARD" -r "$work/h" -q check --read-data
    measure restic_check restic -r "$work/r" check --read-data
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf "%-10s %10s %10s %8s %12s %12s\n" step hoard_s restic_s ratio hoard_rss restic_rss
for step in backup rebackup restore prune check; do
    h=$(cut -d' ' -f1 "$work/hoard_$step.times" | median)
    r=$(cut -d' ' -f1 "$work/restic_$step.times" | median)
    hm=$(cut -d' ' -f2 "$work/hoard_$step.times" | sort -n | tail -1)
    rm_=$(cut -d' ' -f2 "$work/restic_$step.times" | sort -n | tail -1)
    ratio=$(awk -v h="$h" -v r="$r" 'BEGIN { if (h > 0) printf "%.2fx", r / h; else print "inf" }')
    printf "%-10s %10s %10s %8s %9s MiB %9s MiB\n" "$step" "$h" "$r" "$ratio" $((hm / 1024)) $((rm_ / 1024))
done
echo "repository size: hoard $(du -sb "$work/h" | cut -f1) B, restic $(du -sb "$work/r" | cut -f1) B"
