#!/usr/bin/env bash
# End-to-end comparison of hoard and restic on the same data in the same run: a copy of the
# Rust toolchain's lib/ and share/ (real files nobody here wrote), local repositories, warm
# cache; then forget+prune and check --read-data on the resulting repositories. Prints the median of RUNS runs per step, the ratio restic/hoard (>1 means hoard is
# faster), peak RSS and repository sizes.
#
#   bash benches/compare.sh            # RUNS=3 by default
#   MODE=s3 bash benches/compare.sh    # both against Garage on 127.0.0.1 (installed with
#                                      # `cargo install garage` when missing, ~6 min), each
#                                      # with its metadata cache in a fresh directory per run
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
MODE=${MODE:-local}
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

# start_garage: one node on loopback, a bucket and a key for it; exports the key.
start_garage() {
    command -v garage >/dev/null || cargo install garage --locked --quiet
    local g="$work/garage"
    mkdir -p "$g/meta" "$g/data"
    cat > "$g/garage.toml" <<TOML
metadata_dir = "$g/meta"
data_dir = "$g/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:3901"
rpc_public_addr = "127.0.0.1:3901"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:3900"
root_domain = ".s3.garage.localhost"
TOML
    garage -c "$g/garage.toml" server >"$g/log" 2>&1 &
    GARAGE_PID=$!
    local node=""
    for _ in $(seq 50); do
        node=$(garage -c "$g/garage.toml" node id -q 2>/dev/null | cut -d@ -f1) && [ -n "$node" ] && break
        sleep 0.2
    done
    garage -c "$g/garage.toml" layout assign -z dc1 -c 10G "$node" >/dev/null
    garage -c "$g/garage.toml" layout apply --version 1 >/dev/null
    garage -c "$g/garage.toml" bucket create bench >/dev/null
    local info
    info=$(garage -c "$g/garage.toml" key create bench-key)
    export AWS_ACCESS_KEY_ID=$(echo "$info" | awk '/Key ID/ {print $NF}')
    export AWS_SECRET_ACCESS_KEY=$(echo "$info" | awk '/Secret key/ {print $NF}')
    garage -c "$g/garage.toml" bucket allow --read --write --owner bench --key bench-key >/dev/null
    export AWS_REGION=garage AWS_DEFAULT_REGION=garage AWS_EC2_METADATA_DISABLED=true
}
GARAGE_PID=""
trap 'rm -rf "$work"; [ -n "$GARAGE_PID" ] && kill "$GARAGE_PID" 2>/dev/null || true' EXIT
if [ "$MODE" = s3 ]; then
    start_garage
fi

# repo TOOL RUN: where a run's repository lives.
repo() {
    if [ "$MODE" = s3 ]; then echo "s3:http://127.0.0.1:3900/bench/$1-$2"; else echo "$work/$1"; fi
}

# measure NAME CMD...: appends "seconds rss_kib" to $work/NAME.times
measure() {
    local name=$1; shift
    /usr/bin/time -f "%e %M" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }
    tail -n 1 "$work/t" >> "$work/$name.times"
}

for run in $(seq "$RUNS"); do
    rm -rf "$work/h" "$work/r" "$work/hout" "$work/rout" "$work/hcache" "$work/rcache"
    H=("$HOARD" -r "$(repo h "$run")" --cache-dir "$work/hcache")
    R=(restic -r "$(repo r "$run")" --cache-dir "$work/rcache")
    "${H[@]}" init -q
    "${R[@]}" init >/dev/null 2>&1
    measure hoard_backup "${H[@]}" -q backup "$work/data"
    measure restic_backup "${R[@]}" backup -q "$work/data"
    measure hoard_rebackup "${H[@]}" -q backup "$work/data"
    measure restic_rebackup "${R[@]}" backup -q "$work/data"
    measure hoard_restore "${H[@]}" -q restore latest --target "$work/hout"
    measure restic_restore "${R[@]}" restore latest --target "$work/rout"
    diff -r -q "$work/data" "$work/hout$work/data" >/dev/null || { echo "hoard restore differs!"; exit 1; }
    # Maintenance: a snapshot of lib/ only (hard-linked copy), then forget everything else and
    # prune (share/ becomes garbage), then verify every pack.
    rm -rf "$work/data2" && mkdir "$work/data2" && cp -al "$work/data/lib" "$work/data2/"
    "${H[@]}" -q backup "$work/data2"
    "${R[@]}" backup -q "$work/data2" >/dev/null
    "${H[@]}" -q forget --group-by '' --keep-last 1
    "${R[@]}" forget -q --group-by '' --keep-last 1 >/dev/null
    measure hoard_prune "${H[@]}" -q prune
    measure restic_prune "${R[@]}" prune
    measure hoard_check "${H[@]}" -q check --read-data
    measure restic_check "${R[@]}" check --read-data
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
if [ "$MODE" = local ]; then
    echo "repository size: hoard $(du -sb "$work/h" | cut -f1) B, restic $(du -sb "$work/r" | cut -f1) B"
fi
