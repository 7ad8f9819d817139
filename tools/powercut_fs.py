#!/usr/bin/env python3
"""powercut_fs: a FUSE file system that simulates power loss (our own LazyFS-alike).

    python3 tools/powercut_fs.py mount BACKING MOUNTPOINT [--meta strict|ext4]
                                 [--stats FILE] [--no-backing-sync]
                                 [--crash-writeback P [--crash-seed N]]
    python3 tools/powercut_fs.py crash MOUNTPOINT      # drop everything not yet synced
    python3 tools/powercut_fs.py sync MOUNTPOINT       # make everything durable (sync(2))
    python3 tools/powercut_fs.py umount MOUNTPOINT [--pid PID]
    python3 tools/powercut_fs.py selftest [--work DIR]

`mount` runs in the foreground (start it as a child process; it prints a `powercut: mounted`
line once the mount is up) and returns when the file system is unmounted. Needs root,
/dev/fuse and the `llfuse` module (libfuse 2, low-level API); `.ci/powercut-install.sh`
installs it.

Model
-----
BACKING, a directory on a real disk, holds exactly the *durable* state: what a fresh mount
shows after a power cut. Everything else lives in this daemon's memory:

* File data. write(), pwritev() and mmap'd stores (as the kernel writes dirty pages back)
  go to a per-file overlay of 4 KiB pages over the backing file, with a pending size;
  truncate and size changes are pending too. Reads see the overlay over the backing file.
  fsync/fdatasync of the file (from any descriptor, including io_uring's) writes the
  overlay and the size to the backing file and fsyncs it there. So a created file whose
  data was never synced comes back with 0 bytes, as on ext4 after a power cut.
  The file system has no fallocate and no renameat2 flags (llfuse wraps libfuse 2, whose
  protocol has neither): fallocate gets EOPNOTSUPP (glibc's posix_fallocate then writes one
  byte per 4 KiB block, pending like any write) and RENAME_NOREPLACE gets EINVAL, so a
  program under test runs its fallbacks for those two calls.
* Names (create, mkdir, rename, unlink, rmdir) are pending too, in one of two models:
  - `--meta strict` (default, POSIX-minimal): fsync of a *directory* makes that
    directory's entries durable (names added, renamed in, removed) - and nothing else: not
    the directory's own name in its parent (a new directory that was fsynced but whose
    parent was not is gone after the crash, files and all). fsync of a *file* makes its
    data and size durable but not its name: a new file needs an fsync of its directory,
    a renamed one too. A rename is atomic in the backing store: when the destination
    directory is synced, the name also leaves the source directory.
  - `--meta ext4` (what jbd2 gives in practice): any fsync, of a file or a directory,
    first makes *all* pending name operations durable, in order (one running
    transaction), then the file's data.
  Durable data of a file that has no durable name (fsynced, but its directory not; or
  unlinked while open, e.g. a mapped segment) is kept in BACKING/.powercut-orphans/, which
  is wiped at mount: like an orphan inode, it is gone after the crash.
* Background writeback: by default unsynced data never reaches the disk on its own and is
  lost whole at the crash - the harshest choice for what a crash loses (files appended but
  never fsynced, such as Warren's ack files, lose everything). With --crash-writeback P
  each unsynced 4 KiB page of a file that has a durable name reaches the disk at the
  crash with probability P, independently, so the durable state mixes old and new pages
  as after a real writeback (torn records, a later page without an earlier one, a size
  grown over a zero-filled gap). Sizes shrunk by truncate, and names, are not written
  back this way.
* Not simulated, so not found by this file system: (1) torn sectors inside a 4 KiB page.
  (2) Torn fsyncs: an fsync lands completely or, if the crash came first, not at all.
  (3) ext4 data=ordered flushing other files' data at a journal commit. (4) Metadata-only
  fields (mode, times), hard links, symlinks, special files, xattrs (not supported).

Control: the file `/.powercut` in the mount's root (not listed by readdir). Write `crash`
to it: from then on all pending state is dropped and every later write, fsync and name
operation is discarded (writes and fsyncs "succeed", name operations fail with EIO) until
the file system is unmounted - so the dirty mmap pages the kernel writes back after the
process is killed never reach BACKING. A fresh mount over BACKING then shows exactly the
durable state. Write `sync` to make everything durable (like sync(2)); `stats` to write
the counters to the --stats file. A clean unmount without a crash also makes everything
durable (like umount on a real file system).

Mount options: no direct_io (so MAP_SHARED writable maps work), big_writes, and statfs
reports the backing file system's figures (Warren's disk-free alarm reads them).
"""

import argparse
import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from powercut_store import (  # noqa: E402  (PAGE is used by the self-test too)
    CTL_NAME, PAGE, RESERVED, Node, PowercutStore, _now_ns,
)


def _import_llfuse():
    try:
        import llfuse  # noqa: F401
    except ImportError:
        sys.exit(
            "powercut_fs: the llfuse module is missing; run .ci/powercut-install.sh "
            "(apt: libfuse-dev pkg-config fuse3; pip: llfuse)"
        )
    return llfuse


def make_fs_class(llfuse):
    FUSEError = llfuse.FUSEError

    class PowercutFS(llfuse.Operations, PowercutStore):
        def __init__(self, backing, meta="strict", backing_sync=True, stats_path=None, log=None,
                     crash_writeback=0.0, crash_seed=None):
            llfuse.Operations.__init__(self)
            PowercutStore.__init__(self, backing, llfuse.ROOT_INODE, meta, backing_sync,
                                   stats_path, log, crash_writeback, crash_seed)


        def _control(self, buf):
            for cmd in bytes(buf).decode("ascii", "replace").split():
                if cmd == "crash":
                    self.crash()
                elif cmd == "sync":
                    if not self.crashed:
                        self._sync_everything()
                elif cmd == "stats":
                    self.write_stats()
                else:
                    self.log("unknown control command %r" % cmd)
                    raise FUSEError(errno.EINVAL)

        def unmounted(self):
            """After the main loop: a clean unmount makes everything durable."""
            if not self.crashed:
                self._sync_everything()
            for node in self.nodes.values():
                if node.bfd is not None:
                    os.close(node.bfd)
                    node.bfd = None
            self.write_stats()

        def _refuse_if_crashed(self):
            if self.crashed:
                self.stats["refused_name_ops"] += 1
                raise FUSEError(errno.EIO)

        # ---------------------------------------------------------------- FUSE operations

        def _node(self, ino):
            try:
                return self.nodes[ino]
            except KeyError:
                raise FUSEError(errno.ENOENT)

        def _attr(self, node):
            a = llfuse.EntryAttributes()
            a.st_ino = node.ino
            a.generation = 0
            a.entry_timeout = 1.0
            a.attr_timeout = 1.0
            a.st_mode = node.mode
            if node.isdir:
                a.st_nlink = 2 + sum(1 for n in node.entries.values() if n.isdir)
                a.st_size = 4096
            else:
                a.st_nlink = 1 if (node.cparent is not None or node is self.ctl) else 0
                a.st_size = node.size
            a.st_uid = 0
            a.st_gid = 0
            a.st_rdev = 0
            a.st_blksize = PAGE
            a.st_blocks = (a.st_size + 511) // 512
            a.st_atime_ns = node.atime
            a.st_mtime_ns = node.mtime
            a.st_ctime_ns = node.ctime
            return a

        def _maybe_free(self, node):
            if node.freed or node is self.root or node is self.ctl:
                return
            if node.cparent is not None or node.opens > 0 or node.lookups > 0:
                return
            node.freed = True
            node.pages = {}
            self.nodes.pop(node.ino, None)
            if node.orphan and not self.crashed:
                touched = set()
                self._destroy(node, touched)
            elif node.bfd is not None:
                os.close(node.bfd)
                node.bfd = None

        def lookup(self, parent_inode, name, ctx):
            parent = self._node(parent_inode)
            if name == b".":
                node = parent
            elif name == b"..":
                node = parent.cparent or self.root
            elif parent is self.root and name == CTL_NAME:
                node = self.ctl
            else:
                node = parent.entries.get(name)
                if node is None:
                    raise FUSEError(errno.ENOENT)
            node.lookups += 1
            return self._attr(node)

        def forget(self, inode_list):
            for ino, n in inode_list:
                node = self.nodes.get(ino)
                if node is None:
                    continue
                node.lookups -= n
                self._maybe_free(node)

        def getattr(self, inode, ctx):
            return self._attr(self._node(inode))

        def setattr(self, inode, attr, fields, fh, ctx):
            node = self._node(inode)
            if self.crashed or node is self.ctl:
                return self._attr(node)
            now = _now_ns()
            if fields.update_size:
                if node.isdir:
                    raise FUSEError(errno.EISDIR)
                self._truncate(node, attr.st_size)
                node.mtime = node.ctime = now
            if fields.update_mode:
                node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(attr.st_mode)
                node.ctime = now
            if fields.update_atime:
                node.atime = attr.st_atime_ns
            if fields.update_mtime:
                node.mtime = attr.st_mtime_ns
            return self._attr(node)

        def access(self, inode, mode, ctx):
            return True

        def statfs(self, ctx):
            st = os.statvfs(self.backing)
            s = llfuse.StatvfsData()
            for f in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                      "f_files", "f_ffree", "f_favail", "f_namemax"):
                setattr(s, f, getattr(st, f))
            return s

        def _link_new(self, parent, name, node):
            if parent.freed or (parent is not self.root and parent.cparent is None):
                raise FUSEError(errno.ENOENT)
            if parent is self.root and name in RESERVED:
                raise FUSEError(errno.EPERM)
            if name in parent.entries:
                raise FUSEError(errno.EEXIST)
            parent.entries[name] = node
            node.cparent = parent
            node.cname = name
            parent.mtime = parent.ctime = _now_ns()

        def create(self, parent_inode, name, mode, flags, ctx):
            self._refuse_if_crashed()
            parent = self._node(parent_inode)
            if parent is self.root and name in RESERVED:
                raise FUSEError(errno.EPERM)
            if name in parent.entries:
                raise FUSEError(errno.EEXIST)
            node = self._new_node(False, stat.S_IFREG | (mode & 0o7777))
            self._link_new(parent, name, node)
            node.lookups += 1
            node.opens += 1
            fh = self.next_fh
            self.next_fh += 1
            self.handles[fh] = node
            return fh, self._attr(node)

        def mknod(self, parent_inode, name, mode, rdev, ctx):
            self._refuse_if_crashed()
            if not stat.S_ISREG(mode):
                raise FUSEError(errno.EPERM)
            parent = self._node(parent_inode)
            node = Node(self.next_ino, False, stat.S_IFREG | (mode & 0o7777))
            self._link_new(parent, name, node)
            self.next_ino += 1
            self.nodes[node.ino] = node
            node.lookups += 1
            return self._attr(node)

        def mkdir(self, parent_inode, name, mode, ctx):
            self._refuse_if_crashed()
            parent = self._node(parent_inode)
            node = Node(self.next_ino, True, stat.S_IFDIR | (mode & 0o7777))
            self._link_new(parent, name, node)
            self.next_ino += 1
            self.nodes[node.ino] = node
            node.lookups += 1
            return self._attr(node)

        def symlink(self, parent_inode, name, target, ctx):
            raise FUSEError(errno.EPERM)

        def link(self, inode, new_parent_inode, new_name, ctx):
            raise FUSEError(errno.EPERM)

        def _unlink_node(self, node):
            parent = node.cparent
            del parent.entries[node.cname]
            node.cparent = None
            node.cname = None
            parent.mtime = parent.ctime = node.ctime = _now_ns()
            self._maybe_free(node)

        def unlink(self, parent_inode, name, ctx):
            self._refuse_if_crashed()
            parent = self._node(parent_inode)
            node = parent.entries.get(name)
            if node is None:
                raise FUSEError(errno.ENOENT)
            if node.isdir:
                raise FUSEError(errno.EISDIR)
            self._unlink_node(node)

        def rmdir(self, parent_inode, name, ctx):
            self._refuse_if_crashed()
            parent = self._node(parent_inode)
            node = parent.entries.get(name)
            if node is None:
                raise FUSEError(errno.ENOENT)
            if not node.isdir:
                raise FUSEError(errno.ENOTDIR)
            if node.entries:
                self.log("rmdir %r: ENOTEMPTY, still holds %r" % (name, sorted(node.entries)[:10]))
                raise FUSEError(errno.ENOTEMPTY)
            self._unlink_node(node)

        def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, ctx):
            self._refuse_if_crashed()
            src_dir = self._node(parent_inode_old)
            dst_dir = self._node(parent_inode_new)
            node = src_dir.entries.get(name_old)
            if node is None:
                raise FUSEError(errno.ENOENT)
            if dst_dir is self.root and name_new in RESERVED:
                raise FUSEError(errno.EPERM)
            target = dst_dir.entries.get(name_new)
            if target is node:
                return
            if node.isdir:
                p = dst_dir
                while p is not None:
                    if p is node:
                        raise FUSEError(errno.EINVAL)
                    p = p.cparent
            if target is not None:
                if node.isdir and not target.isdir:
                    raise FUSEError(errno.ENOTDIR)
                if target.isdir and not node.isdir:
                    raise FUSEError(errno.EISDIR)
                if target.isdir and target.entries:
                    raise FUSEError(errno.ENOTEMPTY)
                self._unlink_node(target)
            del src_dir.entries[name_old]
            dst_dir.entries[name_new] = node
            node.cparent = dst_dir
            node.cname = name_new
            now = _now_ns()
            src_dir.mtime = src_dir.ctime = dst_dir.mtime = dst_dir.ctime = node.ctime = now

        def _open_handle(self, node):
            node.opens += 1
            fh = self.next_fh
            self.next_fh += 1
            self.handles[fh] = node
            return fh

        def open(self, inode, flags, ctx):
            node = self._node(inode)
            if node.isdir:
                raise FUSEError(errno.EISDIR)
            return self._open_handle(node)

        def opendir(self, inode, ctx):
            node = self._node(inode)
            if not node.isdir:
                raise FUSEError(errno.ENOTDIR)
            return self._open_handle(node)

        def readdir(self, fh, off):
            # Offsets index a snapshot taken when reading starts (offset 0): entries removed
            # while a reader walks the directory (rm -r, remove_dir_all) must not shift the
            # ones it has not seen yet.
            node = self.handles[fh]
            if off == 0 or fh not in self.dir_snapshots:
                self.dir_snapshots[fh] = sorted(node.entries)
            names = self.dir_snapshots[fh]
            for i in range(off, len(names)):
                child = node.entries.get(names[i])
                if child is None:
                    continue
                yield names[i], self._attr(child), i + 1

        def _release(self, fh):
            self.dir_snapshots.pop(fh, None)
            node = self.handles.pop(fh)
            node.opens -= 1
            self._maybe_free(node)

        def release(self, fh):
            self._release(fh)

        def releasedir(self, fh):
            self._release(fh)

        def flush(self, fh):
            pass

        def read(self, fh, off, size):
            node = self.handles[fh]
            if node is self.ctl:
                return b""
            node.atime = _now_ns()
            return self._read(node, off, size)

        def write(self, fh, off, buf):
            node = self.handles[fh]
            if node is self.ctl:
                self._control(buf)
                return len(buf)
            if self.crashed:
                self.stats["discarded_writes"] += 1
                self.stats["discarded_bytes"] += len(buf)
                return len(buf)
            self.stats["writes"] += 1
            self.stats["write_bytes"] += len(buf)
            self._write(node, off, buf)
            node.mtime = node.ctime = _now_ns()
            return len(buf)

        def fsync(self, fh, datasync):
            node = self.handles[fh]
            if self.crashed:
                self.stats["discarded_syncs"] += 1
                return
            if node is self.ctl:
                return
            self.stats["fsyncs"] += 1
            self._sync_file(node)

        def fsyncdir(self, fh, datasync):
            node = self.handles[fh]
            if self.crashed:
                self.stats["discarded_syncs"] += 1
                return
            self.stats["fsyncdirs"] += 1
            if self.meta == "ext4":
                self._commit_all()
            else:
                self._commit_dir(node)

        def getxattr(self, inode, name, ctx):
            raise FUSEError(llfuse.ENOATTR)

        def listxattr(self, inode, ctx):
            return []

        def setxattr(self, inode, name, value, ctx):
            raise FUSEError(errno.ENOTSUP)

        def removexattr(self, inode, name, ctx):
            raise FUSEError(llfuse.ENOATTR)

    def guarded(fn):
        """A bug in this file must not take the mount down mid-campaign: log it, count it
        (stats internal_errors; the campaign driver fails on it) and answer EIO."""
        def wrapper(self, *a):
            try:
                return fn(self, *a)
            except FUSEError:
                raise
            except Exception:  # noqa: BLE001
                import traceback

                self.stats["internal_errors"] = self.stats.get("internal_errors", 0) + 1
                self.log("INTERNAL ERROR in %s%r:\n%s" % (fn.__name__, a[:2], traceback.format_exc()))
                raise FUSEError(errno.EIO)
        wrapper.__name__ = fn.__name__
        return wrapper

    for name in ("lookup", "forget", "getattr", "setattr", "statfs", "create", "mknod", "mkdir",
                 "unlink", "rmdir", "rename", "open", "opendir", "release", "releasedir",
                 "read", "write", "fsync", "fsyncdir"):
        setattr(PowercutFS, name, guarded(getattr(PowercutFS, name)))
    return PowercutFS


# -------------------------------------------------------------------- commands


def cmd_mount(args):
    llfuse = _import_llfuse()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    cls = make_fs_class(llfuse)
    fs = cls(args.backing, meta=args.meta, backing_sync=not args.no_backing_sync,
             stats_path=args.stats, crash_writeback=args.crash_writeback,
             crash_seed=args.crash_seed)
    opts = set(llfuse.default_options)
    opts.discard("default_permissions")
    opts |= {"fsname=powercut", "subtype=powercut", "big_writes", "max_write=131072", "allow_other"}
    llfuse.init(fs, args.mountpoint, opts)
    print("powercut: mounted %s on %s (meta=%s)" % (args.backing, args.mountpoint, args.meta),
          flush=True)
    unmounted = False
    try:
        unmounted = llfuse.main(workers=1) is None
    finally:
        llfuse.close(unmount=not unmounted)
        fs.unmounted()
        print("powercut: unmounted %s; %s" % (args.mountpoint, json.dumps(fs.stats)),
              file=sys.stderr, flush=True)


def control(mountpoint, command):
    fd = os.open(os.path.join(mountpoint, ".powercut"), os.O_WRONLY)
    try:
        os.write(fd, command.encode() + b"\n")
    finally:
        os.close(fd)


def is_mounted(mountpoint):
    mp = os.path.realpath(mountpoint)
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[1] == mp and parts[2].startswith("fuse"):
                return True
    return False


def _fuse_conn(mountpoint):
    with open("/proc/self/mountinfo") as f:
        mp = os.path.realpath(mountpoint)
        for line in f:
            parts = line.split()
            if parts[4] == mp:
                return parts[2].split(":")[1]
    return None


def unmount(mountpoint, pid=None, timeout=20.0):
    """Unmounts, lazily if busy; aborts the FUSE connection if the daemon does not exit.
    Returns True if the daemon (pid) exited on its own."""
    if is_mounted(mountpoint):
        conn = _fuse_conn(mountpoint)
        r = subprocess.run(["umount", mountpoint], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", mountpoint], capture_output=True)
    else:
        conn = None
    if pid is None:
        return True
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done == pid:
            return True
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    if conn is not None and os.path.exists("/sys/fs/fuse/connections/%s/abort" % conn):
        with open("/sys/fs/fuse/connections/%s/abort" % conn, "w") as f:
            f.write("1")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return False


def _pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def start_mount(backing, mountpoint, meta="strict", log_path=None, stats_path=None,
                backing_sync=True, timeout=20.0, script=None, crash_writeback=0.0,
                crash_seed=None):
    """Starts `mount` as a child process and waits for the mount. Returns the Popen.
    `script`: a copy of this file to run instead (a campaign pins the version it started with)."""
    os.makedirs(backing, exist_ok=True)
    os.makedirs(mountpoint, exist_ok=True)
    if is_mounted(mountpoint):
        raise RuntimeError("%s is already mounted" % mountpoint)
    cmd = [sys.executable, script or os.path.abspath(__file__), "mount", backing, mountpoint,
           "--meta", meta]
    if stats_path:
        cmd += ["--stats", stats_path]
    if not backing_sync:
        cmd += ["--no-backing-sync"]
    if crash_writeback:
        cmd += ["--crash-writeback", str(crash_writeback)]
        if crash_seed is not None:
            cmd += ["--crash-seed", str(crash_seed)]
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    if log_path:
        log.close()
    deadline = time.time() + timeout
    while time.time() < deadline:
        if is_mounted(mountpoint):
            return proc
        if proc.poll() is not None:
            raise RuntimeError("powercut mount exited with %s (log: %s)" % (proc.returncode, log_path))
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError("powercut mount did not come up in %.0f s" % timeout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("mount")
    p.add_argument("backing")
    p.add_argument("mountpoint")
    p.add_argument("--meta", choices=("strict", "ext4"), default="strict")
    p.add_argument("--stats")
    p.add_argument("--no-backing-sync", action="store_true",
                   help="do not fsync the backing files (faster; the simulated crash is unaffected)")
    p.add_argument("--crash-writeback", type=float, default=0.0, metavar="P",
                   help="at the crash, each unsynced page of a file that has a durable name "
                        "reaches the disk with probability P (background writeback that "
                        "happened before the power cut, in any order); default 0")
    p.add_argument("--crash-seed", type=int, help="seed for --crash-writeback's choices")
    for name in ("crash", "sync", "stats"):
        p = sub.add_parser(name)
        p.add_argument("mountpoint")
    p = sub.add_parser("umount")
    p.add_argument("mountpoint")
    p.add_argument("--pid", type=int)
    p = sub.add_parser("selftest")
    p.add_argument("--work")
    args = ap.parse_args()
    if args.cmd == "mount":
        cmd_mount(args)
        return 0
    if args.cmd in ("crash", "sync", "stats"):
        control(args.mountpoint, args.cmd)
        return 0
    if args.cmd == "umount":
        return 0 if unmount(args.mountpoint, args.pid) else 1
    if args.cmd == "selftest":
        import powercut_selftest

        return powercut_selftest.cmd_selftest(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
