"""The ledger of a crash campaign (tools/crash/workload.py): what was published, confirmed
and acked, in append-only files on real disk with a CRC per line, so a line torn by a kill
is ignored."""

import collections
import os
import threading
import time
import zlib


class Ledger:
    FILES = ("published", "confirmed", "delivered", "acked", "lost", "queues", "runs")

    def __init__(self, path, load=True, fsync=False):
        self.path = os.path.abspath(path)
        self.fsync = fsync
        os.makedirs(self.path, exist_ok=True)
        self._fds = {}
        self._lock = threading.Lock()
        self._offsets = {n: 0 for n in self.FILES}
        self._tails = {n: b"" for n in self.FILES}
        self.bad_lines = 0
        self.meta = {}
        self.confirmed = set()
        self.nacked = set()
        self.acked = set()
        self.acked_at = {}  # mid -> wall-clock time of its (last) recorded ack
        self.delivered = set()
        self.lost = set()
        self.outstanding = collections.defaultdict(set)
        self.nqueues = 0
        self.runs = 0
        if load:
            self.refresh()

    # ---- writing

    def _fd(self, name):
        fd = self._fds.get(name)
        if fd is None:
            fd = os.open(
                os.path.join(self.path, name + ".log"),
                os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                0o644,
            )
            # A writer SIGKILLed mid-line left a fragment: end it so it stays one bad line.
            size = os.fstat(fd).st_size
            if size:
                with open(os.path.join(self.path, name + ".log"), "rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        os.write(fd, b"\n")
            self._fds[name] = fd
        return fd

    def _append(self, name, lines):
        if not lines:
            return
        data = "".join(f"{line} {zlib.crc32(line.encode()):08x}\n" for line in lines).encode()
        with self._lock:
            fd = self._fd(name)
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if self.fsync:
                os.fsync(fd)

    def record_published(self, mid, q, persistent, size):
        self._append("published", [f"P {mid} {q} {int(bool(persistent))} {size}"])

    def record_confirms(self, items):
        self._append("confirmed", [f"{'C' if ok else 'N'} {mid}" for mid, ok in items])

    def record_delivered(self, items):
        t = time.time()
        self._append("delivered", [f"D {mid} {int(bool(r))} {t:.3f}" for mid, r in items])

    def record_acks(self, mids):
        t = time.time()
        self._append("acked", [f"A {mid} {t:.3f}" for mid in mids])

    def record_lost(self, mids):
        self._append("lost", [f"L {mid}" for mid in mids])

    def record_queues(self, n):
        self._append("queues", [f"Q {n}"])

    def next_run(self, kind):
        """A new run number (1, 2, ...), unique in this ledger; runs do not overlap."""
        self._read("runs")
        n = self.runs + 1
        self._append("runs", [f"R {n} {kind} {time.time():.3f}"])
        self._read("runs")
        return n

    def close(self):
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    # ---- reading

    def _read(self, name):
        path = os.path.join(self.path, name + ".log")
        try:
            with open(path, "rb") as f:
                f.seek(self._offsets[name])
                data = f.read()
        except FileNotFoundError:
            return
        self._offsets[name] += len(data)
        data = self._tails[name] + data
        cut = data.rfind(b"\n") + 1
        self._tails[name] = data[cut:]
        for raw in data[:cut].split(b"\n"):
            if not raw:
                continue
            try:
                line, crc = raw.decode().rsplit(" ", 1)
                if int(crc, 16) != zlib.crc32(line.encode()):
                    raise ValueError("crc")
                self._apply(line.split())
            except (ValueError, IndexError, UnicodeDecodeError):
                self.bad_lines += 1

    def _apply(self, f):
        kind = f[0]
        if kind == "P":
            mid, q, p, size = int(f[1]), int(f[2]), f[3] == "1", int(f[4])
            self.meta[mid] = (q, p, size)
            if mid in self.confirmed:
                self._maybe_outstanding(mid)
        elif kind == "C":
            mid = int(f[1])
            self.confirmed.add(mid)
            self._maybe_outstanding(mid)
        elif kind == "N":
            self.nacked.add(int(f[1]))
        elif kind == "D":
            self.delivered.add(int(f[1]))
        elif kind == "A":
            mid = int(f[1])
            self.acked.add(mid)
            if len(f) > 2:
                self.acked_at[mid] = float(f[2])
            m = self.meta.get(mid)
            if m:
                self.outstanding[m[0]].discard(mid)
        elif kind == "L":
            mid = int(f[1])
            self.lost.add(mid)
            m = self.meta.get(mid)
            if m:
                self.outstanding[m[0]].discard(mid)
        elif kind == "Q":
            self.nqueues = max(self.nqueues, int(f[1]))
        elif kind == "R":
            self.runs = max(self.runs, int(f[1]))
        else:
            raise ValueError(kind)

    def _maybe_outstanding(self, mid):
        m = self.meta.get(mid)
        if m and m[1] and mid not in self.acked and mid not in self.lost:
            self.outstanding[m[0]].add(mid)

    def refresh(self):
        # Published before confirmed, so a confirm finds its metadata.
        for name in ("published", "confirmed", "acked", "lost", "delivered", "queues", "runs"):
            self._read(name)
        return self

    def expected(self, q):
        return set(self.outstanding.get(q, ()))
