#!/usr/bin/env python3
"""An independent reader of hoard repositories, written from docs/FORMAT.md alone.

It shares no code with hoard: if this program restores a snapshot byte for byte, the
document is enough to get data back without hoard. It follows the document's section
"Reading a repository by hand" step by step; the step numbers below are that section's.

    python3 tools/hoard-read.py REPO_DIR snapshots
    python3 tools/hoard-read.py REPO_DIR restore SNAPSHOT_ID_OR_latest TARGET

The password comes from RESTIC_PASSWORD. REPO_DIR is a local repository, or the folder
that holds a repository's objects (an S3 bucket copied to disk, or an S3 server's files).
Every file is checked against its name, every sealed object against its tag, every blob
against its id; any mismatch stops the program with exit code 1.

Packages: tools/requirements.txt (argon2-cffi, PyNaCl, blake3, zstandard).
"""

import base64
import collections
import json
import os
import stat
import struct
import sys

try:
    import blake3
    import zstandard
    from argon2.low_level import Type, hash_secret_raw
    from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt
    from nacl.exceptions import CryptoError
except ImportError as e:  # pragma: no cover - only without the packages
    sys.exit(f"hoard-read: {e}; install the packages: pip install -r tools/requirements.txt")

NONCE = 24
TAG = 16
ENTRY = 42
MAX_DOC = 1 << 30


class Damaged(Exception):
    """The repository is not what the document says."""


# --- Files and sealed objects -------------------------------------------------------------


def read_checked(root, rel):
    """Step 2: every file but config is named by the BLAKE3-256 of its bytes."""
    with open(os.path.join(root, rel), "rb") as f:
        data = f.read()
    name = os.path.basename(rel)
    if blake3.blake3(data).hexdigest() != name:
        raise Damaged(f"{rel}: content does not match its name")
    return data


def ids_in(root, folder):
    """The files of a folder whose names are ids (anything else is not part of the format)."""
    path = os.path.join(root, folder)
    if not os.path.isdir(path):
        return []
    return sorted(n for n in os.listdir(path) if is_id(n))


def is_id(name):
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def open_sealed(key, sealed, what):
    """nonce (24) ‖ ciphertext ‖ tag (16), XChaCha20-Poly1305, no associated data."""
    if len(sealed) < NONCE + TAG:
        raise Damaged(f"{what}: too short to be sealed")
    try:
        return crypto_aead_xchacha20poly1305_ietf_decrypt(sealed[NONCE:], None, sealed[:NONCE], key)
    except CryptoError:
        raise Damaged(f"{what}: failed authentication") from None


def unzstd(data, limit):
    """A zstd stream, whether or not its frame header records the size; at most `limit` bytes."""
    out = zstandard.ZstdDecompressor().stream_reader(data).read(limit + 1)
    if len(out) > limit:
        raise Damaged(f"decompresses to more than {limit} bytes")
    return out


def open_document(key, sealed, what):
    """Documents: seal(format ‖ payload); format 1 is zstd JSON, 0 plain JSON."""
    plain = open_sealed(key, sealed, what)
    if not plain:
        raise Damaged(f"{what}: empty document")
    fmt, payload = plain[0], plain[1:]
    if fmt == 1:
        payload = unzstd(payload, MAX_DOC)
    elif fmt != 0:
        raise Damaged(f"{what}: unknown document format {fmt}")
    return json.loads(payload)


# --- Step 1: the master key ----------------------------------------------------------------


def master_key(root, password):
    for kid in ids_in(root, "keys"):
        doc = json.loads(read_checked(root, f"keys/{kid}"))
        if doc.get("kdf") != "argon2id":
            continue
        wrapping = hash_secret_raw(
            secret=password,
            salt=base64.b64decode(doc["salt"]),
            time_cost=doc["iterations"],
            memory_cost=doc["memory_kib"],
            parallelism=doc["parallelism"],
            hash_len=32,
            type=Type.ID,
            version=0x13,
        )
        try:
            mk = open_sealed(wrapping, base64.b64decode(doc["data"]), f"keys/{kid}")
        except Damaged:
            continue  # another password's key
        if len(mk) != 64:
            raise Damaged(f"keys/{kid}: master key of {len(mk)} bytes")
        return mk[:32], mk[32:]
    raise Damaged("wrong password: no key file opens with it")


# --- Step 3: config ------------------------------------------------------------------------


def check_config(root, enc):
    path = os.path.join(root, "config")
    if not os.path.exists(path):
        raise Damaged("no config: this is not a repository (or its config is lost)")
    with open(path, "rb") as f:
        config = open_document(enc, f.read(), "config")
    if config.get("version") != 1:
        raise Damaged(f"config: version {config.get('version')}, this reader knows 1")
    return config


# --- Step 4: the index ---------------------------------------------------------------------


def load_index(root, enc):
    """blob id -> (pack id, offset, length, raw_length, compressed), from the index files
    that no other index file supersedes."""
    docs = {}
    for iid in ids_in(root, "index"):
        docs[iid] = open_document(enc, read_checked(root, f"index/{iid}"), f"index/{iid}")
    superseded = {s for d in docs.values() for s in d.get("supersedes", [])}
    blobs = {}
    for iid, doc in docs.items():
        if iid in superseded:
            continue
        for pack in doc.get("packs", []):
            for b in pack.get("blobs", []):
                blobs.setdefault(
                    b["id"],
                    (pack["id"], b["offset"], b["length"], b["raw_length"], b.get("compressed", False)),
                )
    return blobs


# --- Step 5: snapshots ---------------------------------------------------------------------


def load_snapshots(root, enc):
    snaps = []
    for sid in ids_in(root, "snapshots"):
        doc = open_document(enc, read_checked(root, f"snapshots/{sid}"), f"snapshots/{sid}")
        snaps.append((sid, doc))
    snaps.sort(key=lambda s: (s[1]["time"], s[0]))
    return snaps


def find_snapshot(snaps, spec):
    if spec == "latest":
        if not snaps:
            raise Damaged("the repository has no snapshots")
        return snaps[-1]
    found = [s for s in snaps if s[0].startswith(spec)]
    if len(found) != 1:
        raise Damaged(f"{len(found)} snapshots match {spec!r}")
    return found[0]


# --- Step 6: blobs -------------------------------------------------------------------------


class Blobs:
    """Reads blobs through the index; a pack is read whole, checked against its name, and
    its header is compared with the index; the last four packs are kept."""

    def __init__(self, root, enc, idkey, index):
        self.root, self.enc, self.idkey, self.index = root, enc, idkey, index
        self.packs = collections.OrderedDict()  # the last few packs read, newest last

    def load_pack(self, pid):
        if pid in self.packs:
            self.packs.move_to_end(pid)
            return self.packs[pid]
        data = read_checked(self.root, f"data/{pid[:2]}/{pid}")
        self.check_header(pid, data)
        self.packs[pid] = data
        if len(self.packs) > 4:
            self.packs.popitem(last=False)
        return data

    def check_header(self, pid, data):
        """pack = blob* ‖ header ‖ header_len (u32 LE); header = seal(entry*)."""
        if len(data) < 4:
            raise Damaged(f"pack {pid}: too short")
        (hlen,) = struct.unpack("<I", data[-4:])
        if hlen + 4 > len(data):
            raise Damaged(f"pack {pid}: header length {hlen} does not fit")
        header = open_sealed(self.enc, data[-4 - hlen : -4], f"pack {pid} header")
        if len(header) % ENTRY:
            raise Damaged(f"pack {pid}: header of {len(header)} bytes")
        offset = 0
        for i in range(0, len(header), ENTRY):
            _type, _flags, length, _raw = struct.unpack("<BBII", header[i : i + 10])
            bid = header[i + 10 : i + ENTRY].hex()
            known = self.index.get(bid)
            if known and known[0] == pid and known[1:3] != (offset, length):
                raise Damaged(f"pack {pid}: blob {bid} is at {offset}+{length}, the index says otherwise")
            offset += length
        if offset != len(data) - 4 - hlen:
            raise Damaged(f"pack {pid}: blobs end at {offset}, the header starts at {len(data) - 4 - hlen}")

    def read(self, bid):
        if bid not in self.index:
            raise Damaged(f"blob {bid} is in no index")
        pid, offset, length, raw_length, compressed = self.index[bid]
        pack = self.load_pack(pid)
        if offset + length > len(pack):
            raise Damaged(f"blob {bid} lies beyond the end of pack {pid}")
        plain = open_sealed(self.enc, pack[offset : offset + length], f"blob {bid}")
        if compressed:
            plain = unzstd(plain, raw_length)
        if len(plain) != raw_length:
            raise Damaged(f"blob {bid}: {len(plain)} bytes, the index says {raw_length}")
        if blake3.blake3(plain, key=self.idkey).hexdigest() != bid:
            raise Damaged(f"blob {bid}: content does not match its id")
        return plain

    def tree(self, tid):
        return json.loads(self.read(tid))["nodes"]


# --- Step 7: trees and restore -------------------------------------------------------------


def raw_name(v):
    """Names and link targets: a JSON string when valid UTF-8, else a list of byte values."""
    if isinstance(v, str):
        return v.encode("utf-8")
    return bytes(v)


def safe_name(name):
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise Damaged(f"tree entry with an unsafe name {name!r}")
    return name


def restore(blobs, snapshot, target):
    """Writes the snapshot's root tree below `target`; returns (files, bytes)."""
    target = os.fsencode(target)
    os.makedirs(target, exist_ok=True)
    links = {}  # (device, inode) -> first path restored, for hard links
    dirs = []  # (path, node): metadata set after their contents
    files = written = 0
    stack = [(target, snapshot["tree"])]
    while stack:
        parent, tid = stack.pop()
        for node in blobs.tree(tid):
            path = os.path.join(parent, safe_name(raw_name(node["name"])))
            kind = node["type"]
            if kind == "dir":
                os.makedirs(path, exist_ok=True)
                dirs.append((path, node))
                if node.get("subtree"):
                    stack.append((path, node["subtree"]))
                continue
            if kind == "file":
                key = (node.get("device"), node.get("inode"))
                if node.get("links", 1) > 1 and key in links:
                    os.link(links[key], path)
                    continue
                with open(path, "wb") as f:
                    for bid in node.get("content") or []:
                        data = blobs.read(bid)
                        f.write(data)
                        written += len(data)
                    if f.tell() != node.get("size", 0):
                        raise Damaged(f"{path!r}: {f.tell()} bytes, the tree says {node.get('size')}")
                files += 1
                if node.get("links", 1) > 1:
                    links[key] = path
            elif kind == "symlink":
                os.symlink(raw_name(node.get("link_target", "")), path)
            elif kind == "fifo":
                os.mkfifo(path)
            else:  # dev, chardev, socket: not recreated by this reader
                print(f"hoard-read: skipped {os.fsdecode(path)} ({kind})", file=sys.stderr)
                continue
            set_metadata(path, node)
    for path, node in reversed(dirs):
        set_metadata(path, node)
    return files, written


def set_metadata(path, node):
    mtime = node.get("mtime", 0)
    if node["type"] != "symlink":
        os.chmod(path, stat.S_IMODE(node.get("mode", 0o644)))
    os.utime(path, ns=(node.get("atime", mtime), mtime), follow_symlinks=False)


# --- Command line --------------------------------------------------------------------------


def main(argv):
    if len(argv) < 2 or argv[1] not in ("snapshots", "restore") or (argv[1] == "restore" and len(argv) != 4):
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    root = argv[0]
    password = os.environ.get("RESTIC_PASSWORD")
    if password is None:
        print("hoard-read: set RESTIC_PASSWORD to the repository password", file=sys.stderr)
        return 2
    try:
        enc, idkey = master_key(root, password.encode("utf-8"))
        check_config(root, enc)
        snaps = load_snapshots(root, enc)
        if argv[1] == "snapshots":
            for sid, s in snaps:
                tags = ",".join(s.get("tags") or [])
                paths = " ".join(s.get("paths") or [])
                print(f"{sid[:8]}  {s['time'][:19]}  {s.get('hostname', '')}  {tags}  {paths}")
            print(f"{len(snaps)} snapshots")
            return 0
        sid, snap = find_snapshot(snaps, argv[2])
        blobs = Blobs(root, enc, idkey, load_index(root, enc))
        files, written = restore(blobs, snap, argv[3])
        print(f"restored snapshot {sid[:8]}: {files} files, {written} bytes")
        return 0
    except (Damaged, OSError, ValueError, KeyError) as e:
        print(f"hoard-read: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
