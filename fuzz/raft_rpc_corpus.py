#!/usr/bin/env python3
"""Seeds for the raft_rpc fuzz target from real cluster traffic.

Run the cluster tests with the proxies capturing what crosses them, then split each
captured stream into frames (after the 8-byte hello) and write one seed per frame, with
the target's mode byte in front (0: request frame, 1: response frame), plus a few whole
streams (mode 2):

    WARREN_CLUSTER_CAPTURE=/tmp/capture cargo test --release --test cluster cluster_nodes::
    python3 fuzz/raft_rpc_corpus.py /tmp/capture fuzz/corpus/raft_rpc
"""
import hashlib
import os
import struct
import sys

HELLO = b"WARRENR1"


def frames(data):
    if not data.startswith(HELLO):
        return
    at = len(HELLO)
    while at + 4 <= len(data):
        (n,) = struct.unpack(">I", data[at:at + 4])
        if at + 4 + n > len(data):
            return
        yield data[at + 4:at + 4 + n]
        at += 4 + n


def main():
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(dst, exist_ok=True)
    seen = set()
    # The shape of a frame (mode, kind, group, body length bucket) decides whether it is
    # worth a seed: thousands of heartbeats add nothing.
    written = 0
    streams = 0
    for name in sorted(os.listdir(src)):
        data = open(os.path.join(src, name), "rb").read()
        mode = 0 if name.endswith("-requests.bin") else 1
        for f in frames(data):
            if mode == 0 and len(f) >= 11:
                (glen,) = struct.unpack(">H", f[9:11])
                shape = (0, f[8], f[11:11 + glen], len(f) // 64)
            else:
                shape = (1, f[8:9], f[9:40], len(f) // 64)
            if shape in seen:
                continue
            seen.add(shape)
            seed = bytes([mode]) + f
            out = os.path.join(dst, hashlib.sha1(seed).hexdigest())
            open(out, "wb").write(seed)
            written += 1
        if mode == 0 and streams < 8 and len(data) < 64 * 1024:
            seed = bytes([2]) + data[len(HELLO):]
            open(os.path.join(dst, hashlib.sha1(seed).hexdigest()), "wb").write(seed)
            streams += 1
    print(f"{written} frame seeds and {streams} stream seeds in {dst}")


if __name__ == "__main__":
    main()
