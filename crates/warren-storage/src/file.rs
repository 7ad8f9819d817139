//! The file under a segment: a preallocated, memory-mapped file, and the file-system
//! operations the engine relies on (reserve, zero-fill, rename without replacing, remove
//! by identity, directory sync).
//!
//! Rule for names (docs/FORMAT.md, "File names and their lifetimes"): a live segment's
//! name is never the target of a rename by anyone but the segment itself (compaction), and
//! a file is only removed or renamed away after checking that its path still names the
//! inode the segment has open.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

/// A mapped segment file, shared by the segment and every `Bytes` handed to readers.
pub struct SegmentFile {
    pub path: PathBuf,
    pub file: File,
    map: MmapRaw,
    len: usize,
    /// Set while the file sits in the group-commit dirty set (guarded by its lock).
    pub(crate) dirty: AtomicBool,
}

impl SegmentFile {
    pub(crate) fn map(path: PathBuf, file: File) -> io::Result<Arc<Self>> {
        let len = file.metadata()?.len() as usize;
        let map = MmapOptions::new().len(len).map_raw(&file)?;
        Ok(Arc::new(Self {
            path,
            file,
            map,
            len,
            dirty: AtomicBool::new(false),
        }))
    }

    /// The whole mapped file.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes and lives as long as `self`; bytes that a reader
        // can reach are never modified (see the module invariant).
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.len) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `src` into the map at `offset`.
    ///
    /// # Safety
    /// Nobody may be reading `offset..offset+src.len()` (it lies past the published end).
    pub(crate) unsafe fn write_at(&self, offset: usize, src: &[u8]) {
        assert!(offset + src.len() <= self.len);
        std::ptr::copy_nonoverlapping(src.as_ptr(), self.map.as_mut_ptr().add(offset), src.len());
    }

    /// A mutable view of unpublished bytes, for encoding a record in place.
    ///
    /// # Safety
    /// As for `write_at`.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn unpublished_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        assert!(offset + len <= self.len);
        std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(offset), len)
    }

    /// Drops this process's page-table entries for the map: the pages stay in the page
    /// cache (dirty ones are still written back) but stop counting as resident memory.
    pub fn release_pages(&self) {
        // SAFETY: advisory; MADV_DONTNEED on a shared file mapping loses no data.
        unsafe {
            libc::madvise(
                self.map.as_mut_ptr() as *mut libc::c_void,
                self.len,
                libc::MADV_DONTNEED,
            );
        }
    }

    /// Writes `header` then `parts` at `offset` with pwritev, finishing short writes.
    pub(crate) fn pwritev_all(
        &self,
        offset: usize,
        header: &[u8],
        parts: &[&[u8]],
    ) -> io::Result<()> {
        let mut slices: Vec<&[u8]> = Vec::with_capacity(1 + parts.len());
        slices.push(header);
        slices.extend_from_slice(parts);
        self.pwritev_slices(offset, &slices)
    }

    /// Writes `slices` back to back at `offset`: pwritev in groups of at most IOV_MAX
    /// (1024) buffers, finishing short writes.
    pub(crate) fn pwritev_slices(&self, offset: usize, slices: &[&[u8]]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let total: usize = slices.iter().map(|s| s.len()).sum();
        assert!(offset + total <= self.len);
        let mut at = offset;
        for group in slices.chunks(1024) {
            let iov: Vec<libc::iovec> = group
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| libc::iovec {
                    iov_base: s.as_ptr() as *mut libc::c_void,
                    iov_len: s.len(),
                })
                .collect();
            let want: usize = group.iter().map(|s| s.len()).sum();
            if want == 0 {
                continue;
            }
            // SAFETY: the iovecs point at live slices for the duration of the call.
            let n = unsafe {
                libc::pwritev(
                    self.raw_fd(),
                    iov.as_ptr(),
                    iov.len() as i32,
                    at as libc::off_t,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            if n < want {
                // Rare: finish with a plain write of the remainder.
                let all: Vec<u8> = group.concat();
                self.file.write_all_at(&all[n..], (at + n) as u64)?;
            }
            at += want;
        }
        Ok(())
    }

    /// fdatasync: makes the file's written bytes durable.
    pub fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }
}

/// Owner handed to `Bytes::from_owner`: keeps the mapping alive while a reader holds it.
struct MappedSlice {
    file: Arc<SegmentFile>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MappedSlice {
    fn as_ref(&self) -> &[u8] {
        &self.file.bytes()[self.start..self.end]
    }
}

/// A `Bytes` over a whole mapped file; it keeps the mapping alive.
pub(crate) fn whole_view(file: &Arc<SegmentFile>) -> Bytes {
    Bytes::from_owner(MappedSlice {
        file: file.clone(),
        start: 0,
        end: file.len(),
    })
}

/// Reserves `len` bytes of disk for `file` so that writes through the map can never hit an
/// unbacked page (SIGBUS on a full disk). Falls back to posix_fallocate where the file
/// system lacks fallocate.
pub(crate) fn reserve(file: &File, len: usize) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: plain syscalls on an owned descriptor.
    let rc = unsafe { libc::fallocate(fd, 0, 0, len as libc::off_t) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
        let rc = unsafe { libc::posix_fallocate(fd, 0, len as libc::off_t) };
        if rc == 0 {
            return Ok(());
        }
        return Err(io::Error::from_raw_os_error(rc));
    }
    Err(err)
}

/// Overwrites the reserved range with zeros. fallocate alone leaves *unwritten* extents:
/// the first write to each block then changes file-system metadata, so every fdatasync of
/// a fresh segment becomes a journal commit, and those serialise across files, which
/// defeats group commit. Written zeros make later fdatasyncs pure data flushes.
pub(crate) fn write_zeros(file: &mut File, len: usize) -> io::Result<()> {
    let mut left = len;
    while left > 0 {
        let n = left.min(ZEROS.len());
        file.write_all(&ZEROS[..n])?;
        left -= n;
    }
    Ok(())
}

/// What `write_zeros` writes from. Static (zero-initialised, so it takes no room in the
/// binary and its pages are the kernel's shared zero page): a 1 MiB buffer taken from the
/// heap for every new segment and freed after raised glibc's dynamic mmap threshold to
/// 1 MiB, after which every allocation below that size came from the heap's arenas, which
/// keep what is freed (a cluster node holding 1,000 idle quorum queues kept 140 MiB more,
/// measured with spares made ahead of time: 8 MiB segments from the start, stop 46).
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// fsyncs a directory so that renames and unlinks in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Renames `from` to `to`, failing with `AlreadyExists` if `to` exists: a new file must
/// never silently take the name of a live one (issue 8: an oversized first record made a
/// new segment with its empty predecessor's name; the rename replaced it and the
/// predecessor's removal then unlinked the new file, confirmed records and all).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
    };
    let (cf, ct) = (c(from)?, c(to)?);
    // SAFETY: two valid NUL-terminated paths.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cf.as_ptr(),
            libc::AT_FDCWD,
            ct.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // File systems without RENAME_NOREPLACE (some FUSE ones): check, then rename. The
        // engine is the only writer of a queue's directory, so nothing races the check.
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", to.display()),
                ));
            }
            std::fs::rename(from, to)
        }
        _ => Err(err),
    }
}

/// Checks that `path` still names the file `open` has open (same device and inode).
/// Removing or renaming a segment's file by path is only safe when this holds.
pub fn check_same_file(path: &Path, open: &File) -> io::Result<()> {
    let on_disk = std::fs::symlink_metadata(path)?;
    let ours = open.metadata()?;
    if on_disk.dev() == ours.dev() && on_disk.ino() == ours.ino() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{} names another file than the segment's own: refusing to remove it",
            path.display()
        )))
    }
}
