#!/usr/bin/env bash
# End-to-end comparison of hoard and restic on the same data in the same run: local
# repositories (or Garage), warm cache; then forget+prune and check --read-data on the
# resulting repositories. Prints the median of RUNS runs per step, the ratio restic/hoard
# (>1 means hoard is faster), CPU seconds (user+sys), peak RSS, peak RSS above each tool's
# own floor (its `init`: for hoard the argon2id KDF every command pays), and repository sizes;
# with MODE=s3 also the S3 requests each step made (all of them, and GetObject), as Garage
# counts them.
#
#   bash benches/compare.sh                  # RUNS=3, DATA=toolchain
#   DATA=random bash benches/compare.sh      # 1 GiB of random bytes in 8 files (incompressible)
#   DATA=small bash benches/compare.sh       # 100,000 files of 1-4 KiB in 1,000 directories
#   MODE=s3 bash benches/compare.sh          # both against Garage on 127.0.0.1 (installed with
#                                            # `cargo install garage` when missing, ~6 min), each
#                                            # with its metadata cache in a fresh directory per run
#   TARGET_FS=ext4 bash benches/compare.sh   # restore onto a fresh journaled ext4 (a loop
#                                            # device; needs root) instead of the work directory
#
# Why TARGET_FS: on an ext4 without a journal (this machine kind's root file system), creating
# an inode skips every inode deleted in the last 12 hours (`recently_deleted`, checked against
# vm.dirtytime_expire_seconds), scanning the group's bitmap from its start each time. After a
# few `rm -rf` of restored trees that kernel path is most of a restore, for both tools alike,
# and restore times swing 2x from run to run. A journaled ext4, the usual case, skips that
# check.
#
# DATA=toolchain is a copy of the Rust toolchain's lib/ and share/ (real files nobody here
# wrote).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
MODE=${MODE:-local}
need=()
command -v restic >/dev/null || need+=(restic)
if [ "$MODE" = s3 ]; then command -v curl >/dev/null || need+=(curl); fi
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --quiet --bin hoard
HOARD="$PWD/target/release/hoard"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
DATA=${DATA:-toolchain}
mkdir -p "$work/data"
case "$DATA" in
toolchain)
    sysroot=$(rustc --print sysroot)
    cp -a "$sysroot/lib" "$sysroot/share" "$work/data/"
    ;;
random)
    for i in $(seq 8); do head -c 128M /dev/urandom > "$work/data/random-$i.bin"; done
    ;;
small)
    python3 - "$work/data" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(7)
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz \n") for _ in range(64)) for _ in range(512)]
for d in range(1000):
    path = os.path.join(root, f"d{d:03}")
    os.mkdir(path)
    for f in range(100):
        size = rng.randint(1024, 4096)
        body = b"".join(rng.choice(words) for _ in range(size // 64 + 1))[:size]
        with open(os.path.join(path, f"f{f:03}.txt"), "wb") as out:
            out.write(body)
PY
    ;;
*) echo "DATA=$DATA: toolchain, random or small"; exit 2 ;;
esac
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
    GARAGE_METRICS_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
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
[admin]
api_bind_addr = "127.0.0.1:3903"
metrics_token = "$GARAGE_METRICS_TOKEN"
TOML
    garage -c "$g/garage.toml" server >"$g/log" 2>&1 &
    GARAGE_PID=$!
    local node=""
    for _ in $(seq 50); do
        node=$(garage -c "$g/garage.toml" node id -q 2>/dev/null | cut -d@ -f1) && [ -n "$node" ] && break
        sleep 0.2
    done
    # `node id` reads the key from disk: the server may not answer RPC yet.
    for _ in $(seq 50); do
        garage -c "$g/garage.toml" status >/dev/null 2>&1 && break
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

# s3_requests: "all get", the S3 requests Garage has served so far (its admin metrics).
s3_requests() {
    curl -sf -H "Authorization: Bearer $GARAGE_METRICS_TOKEN" http://127.0.0.1:3903/metrics |
        awk '/^api_s3_request_counter\{/ { all += $NF; if ($0 ~ /api_endpoint="GetObject"/) get += $NF }
             END { printf "%d %d\n", all, get }' || true
}

# measure NAME CMD...: appends "seconds rss_kib cpu_seconds requests gets" to $work/NAME.times
# (the S3 requests of the step; 0 0 locally)
measure() {
    local name=$1; shift
    # Each step starts with nothing of the one before left to write back (restic's backup
    # wrote ~180 MB just before hoard's re-backup): neither tool pays for the other's writes.
    sync
    local before="0 0" after="0 0"
    if [ "$MODE" = s3 ]; then before=$(s3_requests); fi
    /usr/bin/time -f "%e %M %U %S" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }
    if [ "$MODE" = s3 ]; then after=$(s3_requests); fi
    tail -n 1 "$work/t" | awk -v b="$before" -v a="$after" '{
        split(b, x, " "); split(a, y, " ")
        printf "%s %s %.2f %d %d\n", $1, $2, $3 + $4, y[1] - x[1], y[2] - x[2] }' >> "$work/$name.times"
}

out="$work"
if [ "${TARGET_FS:-}" = ext4 ]; then
    truncate -s $((bytes * 3 + 2 * 1024 * 1024 * 1024)) "$work/target.img"
    # An inode for each restored file of both tools (the default ratio runs out on DATA=small).
    mkfs.ext4 -q -F -N $((files * 3 + 100000)) "$work/target.img"
    mkdir "$work/target"
    mount -o loop "$work/target.img" "$work/target"
    out="$work/target"
    trap 'umount "$work/target" 2>/dev/null; rm -rf "$work"; [ -n "$GARAGE_PID" ] && kill "$GARAGE_PID" 2>/dev/null || true' EXIT
fi

for run in $(seq "$RUNS"); do
    rm -rf "$work/h" "$work/r" "$out/hout" "$out/rout" "$work/hcache" "$work/rcache"
    H=("$HOARD" -r "$(repo h "$run")" --cache-dir "$work/hcache")
    R=(restic -r "$(repo r "$run")" --cache-dir "$work/rcache")
    measure hoard_init "${H[@]}" init -q
    measure restic_init "${R[@]}" init
    measure hoard_backup "${H[@]}" -q backup "$work/data"
    measure restic_backup "${R[@]}" backup -q "$work/data"
    measure hoard_rebackup "${H[@]}" -q backup "$work/data"
    measure restic_rebackup "${R[@]}" backup -q "$work/data"
    measure hoard_restore "${H[@]}" -q restore latest --target "$out/hout"
    measure restic_restore "${R[@]}" restore latest --target "$out/rout"
    diff -r -q "$work/data" "$out/hout$work/data" >/dev/null || { echo "hoard restore differs!"; exit 1; }
    # Maintenance: a snapshot of the first half of the top-level entries (lib/ of the
    # toolchain; a hard-linked copy), then forget everything else and prune (the rest
    # becomes garbage), then verify every pack.
    rm -rf "$work/data2" && mkdir "$work/data2"
    entries=$(ls "$work/data" | wc -l)
    ls "$work/data" | head -n $(((entries + 1) / 2)) | while read -r e; do cp -al "$work/data/$e" "$work/data2/"; done
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
peak() { cut -d' ' -f2 "$1" | sort -n | tail -1; }
hfloor=$(peak "$work/hoard_init.times")
rfloor=$(peak "$work/restic_init.times")
echo "dataset $DATA; RSS floors (init): hoard $((hfloor / 1024)) MiB, restic $((rfloor / 1024)) MiB"
printf "%-9s %8s %8s %7s %8s %8s %9s %9s %10s %10s\n" step hoard_s restic_s ratio hoard_cpu restic_cpu hoard_rss restic_rss hoard_above restic_above
for step in backup rebackup restore prune check; do
    h=$(cut -d' ' -f1 "$work/hoard_$step.times" | median)
    r=$(cut -d' ' -f1 "$work/restic_$step.times" | median)
    hc=$(cut -d' ' -f3 "$work/hoard_$step.times" | median)
    rc=$(cut -d' ' -f3 "$work/restic_$step.times" | median)
    hm=$(peak "$work/hoard_$step.times")
    rm_=$(peak "$work/restic_$step.times")
    ratio=$(awk -v h="$h" -v r="$r" 'BEGIN { if (h > 0) printf "%.2fx", r / h; else print "inf" }')
    printf "%-9s %8s %8s %7s %8s %8s %5s MiB %5s MiB %6s MiB %6s MiB\n" "$step" "$h" "$r" "$ratio" "$hc" "$rc" \
        $((hm / 1024)) $((rm_ / 1024)) $(((hm - hfloor) / 1024)) $(((rm_ - rfloor) / 1024))
done
if [ "$MODE" = s3 ]; then
    echo "S3 requests per step (median; all / GetObject):"
    for step in backup rebackup restore prune check; do
        printf "  %-9s hoard %6s / %-6s restic %6s / %s\n" "$step" \
            "$(cut -d' ' -f4 "$work/hoard_$step.times" | median)" "$(cut -d' ' -f5 "$work/hoard_$step.times" | median)" \
            "$(cut -d' ' -f4 "$work/restic_$step.times" | median)" "$(cut -d' ' -f5 "$work/restic_$step.times" | median)"
    done
fi
if [ "$MODE" = local ]; then
    echo "repository size: hoard $(du -sb "$work/h" | cut -f1) B, restic $(du -sb "$work/r" | cut -f1) B"
fi
