#!/usr/bin/env python3
"""Self-test of the power-loss file system (tools/powercut_fs.py): mounts it, writes with and
without fsync, through write() and through mmap, renames, crashes, remounts, and checks what
survived against what a power cut may keep. Run: python3 tools/powercut_fs.py selftest
(or this file directly)."""

import errno
import mmap
import os
import shutil
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from powercut_fs import PAGE, _import_llfuse, control, start_mount, unmount  # noqa: E402



def _write_file(path, data, sync=False, mode="wb"):
    with open(path, mode) as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())


def _sync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


class SelfTest:
    def __init__(self, work):
        self.work = work
        self.failures = 0
        self.checks = 0

    def check(self, what, got, want):
        self.checks += 1
        if got != want:
            self.failures += 1
            g = got if got is None or len(got) < 80 else got[:40] + b"...(%d bytes)" % len(got)
            w = want if want is None or len(want) < 80 else want[:40] + b"...(%d bytes)" % len(want)
            print("FAIL %s: got %r, want %r" % (what, g, w), flush=True)
        else:
            print("ok   %s" % what, flush=True)

    def mount(self, backing, mnt, meta, **kw):
        self.log = os.path.join(self.work, "fs.log")
        return start_mount(backing, mnt, meta=meta, log_path=self.log,
                           stats_path=os.path.join(self.work, "stats.json"), **kw)

    def run_writeback_case(self):
        """--crash-writeback 1: every unsynced page of a durably named file reaches the disk
        at the crash; files without a durable name and pending names do not."""
        backing = os.path.join(self.work, "backing-wb")
        mnt = os.path.join(self.work, "mnt-wb")
        shutil.rmtree(backing, ignore_errors=True)
        os.makedirs(backing)
        os.makedirs(mnt, exist_ok=True)
        m = lambda *p: os.path.join(mnt, *p)  # noqa: E731
        proc = self.mount(backing, mnt, "strict", crash_writeback=1.0, crash_seed=1)
        try:
            _write_file(m("w"), b"o" * PAGE, sync=True)
            _sync_dir(mnt)
            _write_file(m("w"), b"n" * 10 + b"o" * (PAGE - 10) + b"x" * (2 * PAGE), mode="r+b")
            _write_file(m("new"), b"new-data")  # its name is never synced
            control(mnt, "crash")
        finally:
            unmount(mnt, proc.pid)
        self.check("writeback: unsynced pages of a durable file written back",
                   _read(os.path.join(backing, "w")),
                   b"n" * 10 + b"o" * (PAGE - 10) + b"x" * (2 * PAGE))
        self.check("writeback: a file without a durable name stays lost",
                   _read(os.path.join(backing, "new")), None)

    def run_case(self, meta):
        backing = os.path.join(self.work, "backing-" + meta)
        mnt = os.path.join(self.work, "mnt-" + meta)
        shutil.rmtree(backing, ignore_errors=True)
        os.makedirs(backing)
        os.makedirs(mnt, exist_ok=True)
        proc = self.mount(backing, mnt, meta)
        m = lambda *p: os.path.join(mnt, *p)  # noqa: E731
        strict = meta == "strict"
        big = os.urandom(3 << 20)
        try:
            # Setup, all durable: directories s (synced often), p (never synced again), q.
            for d in ("s", "p", "q"):
                os.mkdir(m(d))
            _sync_dir(mnt)
            _write_file(m("p", "h.tmp"), b"h-data", sync=True)
            _write_file(m("p", "i"), b"i-data", sync=True)
            _sync_dir(m("p"))
            # In p, name operations that are never made durable by a sync of p.
            _write_file(m("p", "b"), b"b-data", sync=True)  # data synced, name not
            os.rename(m("p", "h.tmp"), m("p", "h"))
            os.unlink(m("p", "i"))
            # In s: files and names synced.
            _write_file(m("s", "a"), b"hello", sync=True)
            _write_file(m("s", "c"), b"c-data", sync=True)
            _write_file(m("s", "d"), b"d-data")  # name synced below, data never
            _write_file(m("s", "g.tmp"), b"g-data", sync=True)
            _write_file(m("s", "e"), b"e" * 9000, sync=True)
            _write_file(m("s", "f"), b"f" * 9000, sync=True)
            _write_file(m("s", "j"), b"j-data", sync=True)
            _sync_dir(m("s"))
            _write_file(m("s", "a"), b"HELLO WORLD", mode="r+b")  # never synced
            os.rename(m("s", "g.tmp"), m("s", "g"))
            os.unlink(m("s", "j"))
            _sync_dir(m("s"))
            os.truncate(m("s", "e"), 10)  # never synced
            with open(m("s", "f"), "r+b") as fh:
                fh.truncate(10)
                fh.seek(20)
                fh.write(b"tail")
                fh.flush()
                os.fdatasync(fh.fileno())
            # Large pwritev + fdatasync, then more unsynced bytes over its end.
            fd = os.open(m("s", "big"), os.O_RDWR | os.O_CREAT, 0o644)
            os.pwritev(fd, [big[: 1 << 20], big[1 << 20:]], 0)
            os.fdatasync(fd)
            os.pwrite(fd, b"X" * 5000, len(big) - 2500)
            os.close(fd)
            # Writable shared mmap: synced with msync+fdatasync / never synced.
            for name in ("k", "l"):
                fd = os.open(m("s", name), os.O_RDWR | os.O_CREAT, 0o644)
                os.posix_fallocate(fd, 0, 65536)  # no fallocate: glibc's fallback
                os.fsync(fd)
                os.close(fd)
            _sync_dir(m("s"))
            fdk = os.open(m("s", "k"), os.O_RDWR)
            mk = mmap.mmap(fdk, 65536, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            mk[100:108] = b"MMAPDATA"
            mk[40000:40004] = b"KKKK"
            mk.flush()
            os.fdatasync(fdk)
            mk[200:204] = b"LATE"  # never synced
            fdl = os.open(m("s", "l"), os.O_RDWR)
            ml = mmap.mmap(fdl, 65536, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            ml[0:4] = b"LOST"
            # Reads see the overlay.
            self.check(meta + ": read-back of an unsynced overwrite", _read(m("s", "a")), b"HELLO WORLD")
            self.check(meta + ": read-back of a pending truncate", _read(m("s", "e")), b"e" * 10)
            self.check(meta + ": mmap write visible to read()", _read(m("s", "k"))[100:108], b"MMAPDATA")
            self.check(meta + ": pending rename visible", _read(m("p", "h")), b"h-data")
            self.check(meta + ": statfs reports the backing fs", os.statvfs(mnt).f_bavail > 0, True)
            # The Warren issue-8 pattern: a new file renamed over a live one, the old one
            # then "removed" by path (which names the new one), the directory synced, and
            # the new file's fdatasync goes to an unlinked inode.
            fd_old = os.open(m("q", "seg"), os.O_RDWR | os.O_CREAT, 0o644)
            os.fsync(fd_old)
            _sync_dir(m("q"))
            fd_new = os.open(m("q", "seg.tmp"), os.O_RDWR | os.O_CREAT, 0o644)
            os.rename(m("q", "seg.tmp"), m("q", "seg"))
            _sync_dir(m("q"))
            os.unlink(m("q", "seg"))
            _sync_dir(m("q"))
            os.pwrite(fd_new, b"confirmed", 0)
            os.fdatasync(fd_new)
            # Unlinking while listing (as Rust's remove_dir_all does) a directory with more
            # entries than one readdir reply holds: no entry may be skipped.
            os.mkdir(m("many"))
            for i in range(600):
                _write_file(m("many", "file-with-a-long-name-%04d" % i), b"")
            with os.scandir(m("many")) as it:
                for entry in it:
                    os.unlink(entry.path)
            self.check(meta + ": unlink while listing 600 entries leaves none",
                       len(os.listdir(m("many"))), 0)
            os.rmdir(m("many"))
            # A new directory that was fsynced, whose own name never was.
            os.mkdir(m("sub"))
            _write_file(m("sub", "x"), b"x-data", sync=True)
            _sync_dir(m("sub"))
            # CRASH. Then the process "dies": dirty mmap pages are written back on close,
            # and more writes and syncs arrive - none may reach the disk.
            control(mnt, "crash")
            mk[300:304] = b"POST"
            mk.close()
            ml.close()
            os.fsync(fdl)
            for fd in (fdk, fdl, fd_old, fd_new):
                os.close(fd)
            with open(m("s", "c"), "r+b") as fh:
                fh.write(b"C-AFTER")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                _write_file(m("s", "after-crash"), b"x", sync=True)
                self.check(meta + ": create after crash fails", False, True)
            except OSError as e:
                self.check(meta + ": create after crash fails with EIO", e.errno, errno.EIO)
        finally:
            ok = unmount(mnt, proc.pid)
        self.check(meta + ": daemon exits after unmount", ok, True)
        self.check(meta + ": nothing created after the crash",
                   os.path.exists(os.path.join(backing, "s", "after-crash")), False)
        # Fresh mount: exactly the durable state.
        proc = self.mount(backing, mnt, meta)
        try:
            self.check(meta + ": synced file, unsynced overwrite dropped", _read(m("s", "a")), b"hello")
            self.check(meta + ": file fsynced, its name not",
                       _read(m("p", "b")), None if strict else b"b-data")
            self.check(meta + ": synced file, write+fsync after crash dropped",
                       _read(m("s", "c")), b"c-data")
            self.check(meta + ": name synced, data never", _read(m("s", "d")), b"")
            self.check(meta + ": rename + dir sync: new name", _read(m("s", "g")), b"g-data")
            self.check(meta + ": rename + dir sync: old name gone", _read(m("s", "g.tmp")), None)
            self.check(meta + ": rename without dir sync: old name",
                       _read(m("p", "h.tmp")), b"h-data" if strict else None)
            self.check(meta + ": rename without dir sync: new name",
                       _read(m("p", "h")), None if strict else b"h-data")
            self.check(meta + ": unlink without dir sync",
                       _read(m("p", "i")), b"i-data" if strict else None)
            self.check(meta + ": unlink + dir sync", _read(m("s", "j")), None)
            self.check(meta + ": pending truncate dropped", _read(m("s", "e")), b"e" * 9000)
            self.check(meta + ": synced truncate + write", _read(m("s", "f")),
                       b"f" * 10 + bytes(10) + b"tail")
            self.check(meta + ": pwritev + fdatasync kept, later write dropped",
                       _read(m("s", "big")), big)
            k = _read(m("s", "k"))
            self.check(meta + ": mmap + msync + fdatasync", k[100:108] + k[40000:40004],
                       b"MMAPDATA" + b"KKKK")
            self.check(meta + ": mmap write never synced", k[200:204], bytes(4))
            self.check(meta + ": mmap write after crash (written back at close)",
                       k[300:304], bytes(4))
            self.check(meta + ": size kept, mmap write never synced, fsync after crash",
                       _read(m("s", "l")), bytes(65536))
            self.check(meta + ": fdatasync of a file unlinked by a synced dir is lost",
                       _read(m("q", "seg")), None)
            self.check(meta + ": directory fsynced but its own name not",
                       _read(m("sub", "x")), None if strict else b"x-data")
            self.check(meta + ": control file not listed", ".powercut" in os.listdir(mnt), False)
            self.check(meta + ": orphan area not visible",
                       ".powercut-orphans" in os.listdir(mnt), False)
            # A clean unmount makes pending state durable.
            _write_file(m("clean"), b"clean-data")
            os.mkdir(m("cleandir"))
            _write_file(m("cleandir", "y"), b"y-data")
        finally:
            ok = unmount(mnt, proc.pid)
        self.check(meta + ": daemon exits after clean unmount", ok, True)
        self.check(meta + ": clean unmount makes data durable",
                   _read(os.path.join(backing, "clean")), b"clean-data")
        self.check(meta + ": clean unmount makes new dirs durable",
                   _read(os.path.join(backing, "cleandir", "y")), b"y-data")

    def run(self):
        for meta in ("strict", "ext4"):
            self.run_case(meta)
        self.run_writeback_case()
        print("selftest: %d passed, %d failed" % (self.checks - self.failures, self.failures))
        return 0 if self.failures == 0 else 1


def cmd_selftest(args):
    _import_llfuse()
    work = args.work or "/tmp/powercut/selftest"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    try:
        rc = SelfTest(work).run()
    except Exception:
        import traceback

        traceback.print_exc()
        rc = 1
    if rc:
        log = os.path.join(work, "fs.log")
        if os.path.exists(log):
            print("--- fs log (%s) ---" % log)
            with open(log) as f:
                print(f.read()[-5000:])
    return rc



if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--work")
    sys.exit(cmd_selftest(ap.parse_args()))
