#!/usr/bin/env bash
# The main job on the embedded default: build the hoard CLI, create a local repository, back up
# a sample directory twice, restore it, and check the restore is byte-identical.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin hoard
hoard="$PWD/target/release/hoard"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RESTIC_REPOSITORY="$work/repo" RESTIC_PASSWORD="demo password"

echo "== sample data in $work/sample"
mkdir -p "$work/sample/docs" "$work/sample/bin"
cp -r crates docs "$work/sample/docs/" 2>/dev/null || cp -r crates "$work/sample/docs/"
head -c 4000000 /dev/urandom > "$work/sample/random.bin"
ln -s docs "$work/sample/link-to-docs"
cp "$hoard" "$work/sample/bin/hoard"

echo "== hoard init";     "$hoard" init
echo "== hoard backup";   "$hoard" backup "$work/sample" --tag demo
echo "== hoard backup (unchanged: nothing is read again)"; "$hoard" backup "$work/sample"
echo "== hoard snapshots"; "$hoard" snapshots
echo "== hoard restore";  "$hoard" restore latest --target "$work/restored"
diff -r --no-dereference "$work/sample" "$work/restored$work/sample"
echo "== restore is byte-identical"
"$hoard" stats
