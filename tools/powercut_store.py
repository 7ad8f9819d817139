"""The state behind tools/powercut_fs.py, without FUSE: a tree of inodes, each in a current
and a durable view, file data as page overlays over the backing files, and what a sync, a
crash and partial writeback do to them. `PowercutFS` (powercut_fs.py) puts FUSE operations
on top; the model of durability is documented there."""

import json
import os
import shutil
import stat
import sys
import time

PAGE = 4096
ZERO_PAGE = bytes(PAGE)
CTL_NAME = b".powercut"
ORPHANS = b".powercut-orphans"
RESERVED = (CTL_NAME, ORPHANS)
CTL_INO = 2


def _now_ns():
    return time.time_ns()


class Node:
    """One inode: a regular file or a directory, in the current and in the durable view."""

    __slots__ = (
        "ino", "isdir", "mode", "cparent", "cname", "dparent", "dname", "orphan",
        "lookups", "opens", "atime", "mtime", "ctime",
        "size", "floor", "dsize", "pages", "bfd", "entries", "dentries", "freed",
    )

    def __init__(self, ino, isdir, mode):
        self.ino = ino
        self.isdir = isdir
        self.mode = mode  # full st_mode
        self.cparent = None  # current parent directory (None: unlinked)
        self.cname = None
        self.dparent = None  # durable parent directory (None: no durable name)
        self.dname = None
        self.orphan = False  # durable data lives in BACKING/.powercut-orphans/<ino>
        self.lookups = 0
        self.opens = 0
        t = _now_ns()
        self.atime = self.mtime = self.ctime = t
        # Regular files: current size; bytes below `floor` that no overlay page covers come
        # from the backing file, the rest read as zeros; `dsize` is the backing file's size.
        self.size = 0
        self.floor = 0
        self.dsize = 0
        self.pages = {}
        self.bfd = None
        # Directories: current and durable entries, name (bytes) -> Node.
        self.entries = {}
        self.dentries = {}
        self.freed = False



class PowercutStore:
    """Durable and pending state of the simulated file system (see the module doc)."""

    def __init__(self, backing, root_ino, meta="strict", backing_sync=True, stats_path=None,
                 log=None, crash_writeback=0.0, crash_seed=None):
        self.crash_writeback = crash_writeback
        self.crash_seed = crash_seed
        if meta not in ("strict", "ext4"):
            raise ValueError("meta must be strict or ext4")
        self.backing = os.fsencode(os.path.abspath(backing))
        self.orphan_root = os.path.join(self.backing, ORPHANS)
        self.meta = meta
        self.backing_sync = backing_sync
        self.stats_path = stats_path
        self.log = log or (lambda msg: print("powercut: " + msg, file=sys.stderr, flush=True))
        self.crashed = False
        self.nodes = {}
        self.handles = {}
        self.dir_snapshots = {}
        self.next_fh = 1
        self.next_ino = CTL_INO + 1
        self.stats = dict(
            writes=0, write_bytes=0, fsyncs=0, fsyncdirs=0, synced_bytes=0,
            name_ops=0, crashed=False, dropped_pending_bytes=0, dropped_pending_files=0,
            dropped_pending_names=0, discarded_writes=0, discarded_bytes=0,
            discarded_syncs=0, refused_name_ops=0, internal_errors=0,
            writeback_pages=0, writeback_files=0,
        )
        # The orphan area is wiped: orphan inodes do not survive a crash.
        if os.path.isdir(self.orphan_root):
            shutil.rmtree(self.orphan_root)
        os.mkdir(self.orphan_root, 0o700)
        self._fsync_dir(self.backing)
        self.root = Node(root_ino, True, stat.S_IFDIR | 0o755)
        self.root.lookups = 1 << 40
        self.nodes[self.root.ino] = self.root
        self._load(self.root, self.backing, top=True)
        self.ctl = Node(CTL_INO, False, stat.S_IFREG | 0o600)
        self.ctl.lookups = 1 << 40
        self.nodes[CTL_INO] = self.ctl

    # ---------------------------------------------------------------- backing store

    def _load(self, dnode, path, top=False):
        st = os.stat(path)
        dnode.mode = st.st_mode
        dnode.atime, dnode.mtime, dnode.ctime = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        with os.scandir(path) as it:
            for de in it:
                name = os.fsencode(de.name)
                if top and name in RESERVED:
                    continue
                st = de.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    node = self._new_node(True, st.st_mode)
                elif stat.S_ISREG(st.st_mode):
                    node = self._new_node(False, st.st_mode)
                    node.size = node.floor = node.dsize = st.st_size
                else:
                    self.log("ignoring %r (not a file or directory)" % de.path)
                    continue
                node.atime, node.mtime, node.ctime = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
                node.cparent = node.dparent = dnode
                node.cname = node.dname = name
                dnode.entries[name] = dnode.dentries[name] = node
                if node.isdir:
                    self._load(node, os.fsencode(de.path))

    def _new_node(self, isdir, mode):
        node = Node(self.next_ino, isdir, mode)
        self.next_ino += 1
        self.nodes[node.ino] = node
        return node

    def _bpath(self, node):
        """Where the node's durable state lives in BACKING, or None."""
        if node is self.root:
            return self.backing
        if node.orphan:
            return os.path.join(self.orphan_root, b"%d" % node.ino)
        if node.dparent is None:
            return None
        parent = self._bpath(node.dparent)
        return None if parent is None else os.path.join(parent, node.dname)

    def _fsync_dir(self, path):
        if not self.backing_sync:
            return
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _bfd(self, node):
        if node.bfd is None:
            path = self._bpath(node)
            if path is None:
                return None
            node.bfd = os.open(path, os.O_RDWR)
        return node.bfd

    def _alive(self, node):
        return node is self.root or node.cparent is not None or node.opens > 0

    def _detach_durable(self, node, touched):
        if node.orphan:
            node.orphan = False
        elif node.dparent is not None:
            touched.add(node.dparent)
            del node.dparent.dentries[node.dname]
            node.dparent = None
            node.dname = None

    def _evict(self, node, touched):
        """Removes `node` from its durable place: to the orphan area if the node is still
        in use (renamed elsewhere, or open), else for good."""
        if self._alive(node):
            if node.orphan:
                return
            src = self._bpath(node)
            dst = os.path.join(self.orphan_root, b"%d" % node.ino)
            os.rename(src, dst)
            self._detach_durable(node, touched)
            node.orphan = True
        else:
            self._destroy(node, touched)

    def _destroy(self, node, touched):
        path = self._bpath(node)
        if path is None:
            return
        if node.isdir:
            for child in list(node.dentries.values()):
                self._evict(child, touched)
            os.rmdir(path)
        else:
            os.unlink(path)
            if node.bfd is not None:
                os.close(node.bfd)
                node.bfd = None
            node.dsize = node.floor = 0
        self._detach_durable(node, touched)

    def _commit_dir(self, d):
        """Makes the durable entries of directory `d` equal to its current entries."""
        touched = set()
        if self._bpath(d) is None:
            os.mkdir(os.path.join(self.orphan_root, b"%d" % d.ino), d.mode & 0o7777)
            d.orphan = True
        for name, node in list(d.dentries.items()):
            if d.entries.get(name) is not node:
                self._evict(node, touched)
                self.stats["name_ops"] += 1
        for name, node in list(d.entries.items()):
            if d.dentries.get(name) is node:
                continue
            self.stats["name_ops"] += 1
            src = self._bpath(node)
            dpath = self._bpath(d)
            if src is not None and (dpath + b"/").startswith(src + b"/"):
                # The directory's durable place is inside the one being moved into it
                # (a directory renamed into what was its own child): move d out first.
                self._evict(d, touched)
                dpath = self._bpath(d)
                src = self._bpath(node)
            dst = os.path.join(dpath, name)
            if src is not None:
                os.rename(src, dst)
                self._detach_durable(node, touched)
            elif node.isdir:
                os.mkdir(dst, node.mode & 0o7777)
            else:
                fd = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_EXCL, node.mode & 0o7777)
                if node.bfd is not None:
                    os.close(node.bfd)
                node.bfd = fd
                node.dsize = node.floor = 0
            node.dparent = d
            node.dname = name
            d.dentries[name] = node
            touched.add(d)
        for t in touched:
            # Directories that were removed or moved to the orphan area meanwhile need
            # no sync (the orphan area does not survive a crash anyway).
            if t is self.root or (t.dparent is not None and not t.orphan):
                path = self._bpath(t)
                if path is not None:
                    self._fsync_dir(path)

    def _commit_all(self):
        todo = [self.root]
        while todo:
            d = todo.pop(0)
            self._commit_dir(d)
            todo.extend(n for n in d.entries.values() if n.isdir)

    def _sync_file(self, node):
        if self.meta == "ext4":
            self._commit_all()
        if not node.pages and node.size == node.dsize and node.floor == node.dsize:
            return
        fd = self._bfd(node)
        if fd is None:
            path = os.path.join(self.orphan_root, b"%d" % node.ino)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, node.mode & 0o7777)
            node.bfd = fd
            node.orphan = True
            node.dsize = node.floor = 0
        if node.floor < node.dsize:
            os.ftruncate(fd, node.floor)
        run_start, run = None, []
        written = 0

        def flush_run():
            nonlocal written
            if run:
                data = b"".join(run)
                os.pwrite(fd, data, run_start)
                written += len(data)

        for idx in sorted(node.pages):
            start = idx * PAGE
            if start >= node.size:
                break
            page = node.pages[idx]
            if start + PAGE > node.size:
                page = page[: node.size - start]
            if run_start is not None and run_start + sum(map(len, run)) == start and len(run) < 256:
                run.append(page)
            else:
                flush_run()
                run_start, run = start, [page]
        flush_run()
        os.ftruncate(fd, node.size)
        if self.backing_sync:
            os.fdatasync(fd)
        node.pages = {}
        node.floor = node.dsize = node.size
        self.stats["synced_bytes"] += written

    def _sync_everything(self):
        self._commit_all()
        for node in list(self.nodes.values()):
            if not node.isdir and node is not self.ctl and node.cparent is not None:
                self._sync_file(node)

    # ---------------------------------------------------------------- file data

    def _base_page(self, node, idx):
        start = idx * PAGE
        if start >= node.floor:
            return ZERO_PAGE
        fd = self._bfd(node)
        n = min(PAGE, node.floor - start)
        data = os.pread(fd, n, start) if fd is not None else b""
        if len(data) < PAGE:
            data = data + bytes(PAGE - len(data))
        return data

    def _page(self, node, idx):
        p = node.pages.get(idx)
        return p if p is not None else self._base_page(node, idx)

    def _write(self, node, off, buf):
        mv = memoryview(buf)
        end = off + len(buf)
        pos = off
        while pos < end:
            idx, po = divmod(pos, PAGE)
            n = min(PAGE - po, end - pos)
            if n == PAGE:
                page = bytes(mv[pos - off: pos - off + PAGE])
            else:
                page = bytearray(self._page(node, idx))
                page[po: po + n] = mv[pos - off: pos - off + n]
                page = bytes(page)
            node.pages[idx] = ZERO_PAGE if page == ZERO_PAGE else page
            pos += n
        if end > node.size:
            node.size = end

    def _read(self, node, off, size):
        end = min(off + size, node.size)
        if off >= end:
            return b""
        out = []
        pos = off
        while pos < end:
            idx, po = divmod(pos, PAGE)
            n = min(PAGE - po, end - pos)
            page = node.pages.get(idx)
            if page is None and idx * PAGE >= node.floor:
                page = ZERO_PAGE
            if page is not None:
                out.append(page[po: po + n])
                pos += n
                continue
            # A run of pages that come from the backing file: one pread.
            run_end = pos
            while run_end < end and (run_end // PAGE) not in node.pages and run_end < node.floor:
                run_end = min((run_end // PAGE + 1) * PAGE, end)
            stop = min(run_end, node.floor)
            data = os.pread(self._bfd(node), stop - pos, pos)
            if len(data) < run_end - pos:
                data = data + bytes(run_end - pos - len(data))
            out.append(data)
            pos = run_end
        return b"".join(out)

    def _truncate(self, node, size):
        if size < node.size:
            for idx in [i for i in node.pages if i * PAGE >= size]:
                del node.pages[idx]
            if size % PAGE:
                idx = size // PAGE
                page = bytearray(self._page(node, idx))
                page[size % PAGE:] = bytes(PAGE - size % PAGE)
                node.pages[idx] = bytes(page)
            node.floor = min(node.floor, size)
        node.size = size

    # ---------------------------------------------------------------- crash & control

    def crash(self):
        if self.crashed:
            return
        self.crashed = True
        s = self.stats
        s["crashed"] = True
        if self.crash_writeback > 0:
            import random

            rng = random.Random(self.crash_seed)
            for node in sorted(self.nodes.values(), key=lambda n: n.ino):
                if not node.isdir and node is not self.ctl:
                    n = self._writeback_some(node, rng)
                    if n:
                        s["writeback_pages"] += n
                        s["writeback_files"] += 1
        for node in self.nodes.values():
            if node.pages or node.size != node.dsize or node.floor != node.dsize:
                s["dropped_pending_files"] += 1
                s["dropped_pending_bytes"] += len(node.pages) * PAGE
            node.pages = {}
            if node.isdir:
                s["dropped_pending_names"] += sum(
                    1 for k, v in node.entries.items() if node.dentries.get(k) is not v
                ) + sum(1 for k, v in node.dentries.items() if node.entries.get(k) is not v)
        self.log("crash: dropped %(dropped_pending_bytes)d pending bytes in "
                 "%(dropped_pending_files)d files, %(dropped_pending_names)d pending names" % s)
        self.write_stats()

    def _writeback_some(self, node, rng):
        """At the crash: the kernel had already written back some of the file's unsynced
        pages (each with probability crash_writeback, in no particular order). They
        reach the backing file, beyond its durable size if need be (the gap reads as
        zeros); the rest is lost."""
        if not node.pages or node.orphan or self._bpath(node) is None:
            return 0
        chosen = [i for i in sorted(node.pages)
                  if i * PAGE < node.size and rng.random() < self.crash_writeback]
        if not chosen:
            return 0
        fd = self._bfd(node)
        for i in chosen:
            page = node.pages[i]
            os.pwrite(fd, page[: min(PAGE, node.size - i * PAGE)], i * PAGE)
        if self.backing_sync:
            os.fdatasync(fd)
        return len(chosen)

    def write_stats(self):
        if self.stats_path:
            tmp = self.stats_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.stats, f, indent=1)
            os.replace(tmp, self.stats_path)

