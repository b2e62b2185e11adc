//! The FUSE side: a passthrough to the backing directory, with file data and sizes
//! going through [`Pending`] until an fsync.
//!
//! One lock over the whole state: the session runs one thread, and the state is shared
//! only with [`crate::LazyFs`], which takes the lock to crash or count.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirEntryExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::pending::{Pending, read_plain};

/// How long the kernel may cache names and attributes. Every change goes through this
/// filesystem, so the cache never goes stale while mounted; a crash unmounts.
const TTL: Duration = Duration::from_secs(1);

/// An open file or directory.
#[derive(Debug)]
enum Handle {
    File {
        ino: u64,
        file: File,
    },
    Dir {
        entries: Vec<(u64, FileType, OsString)>,
    },
}

/// Everything the filesystem knows; shared with the [`crate::LazyFs`] that mounted it.
#[derive(Debug)]
pub(crate) struct State {
    root: PathBuf,
    /// Our inode number -> path under the root ("" for the root).
    paths: HashMap<u64, PathBuf>,
    /// The backing file's inode number -> ours.
    by_backing: HashMap<u64, u64>,
    next_ino: u64,
    /// Unsynced writes, by our inode number.
    pub(crate) pending: HashMap<u64, Pending>,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    /// Open file handles per inode.
    open: HashMap<u64, usize>,
    /// Inodes whose last name is gone: their pending writes go with the last handle.
    orphans: std::collections::HashSet<u64>,
    /// Set by a crash: every later request fails with EIO until the unmount.
    pub(crate) crashed: bool,
    /// Fsyncs that wrote something, for the caller's report.
    pub(crate) syncs: u64,
}

impl State {
    pub(crate) fn new(root: &Path) -> std::io::Result<State> {
        let md = std::fs::metadata(root)?;
        let mut s = State {
            root: root.to_path_buf(),
            paths: HashMap::new(),
            by_backing: HashMap::new(),
            next_ino: 2,
            pending: HashMap::new(),
            handles: HashMap::new(),
            next_fh: 1,
            open: HashMap::new(),
            orphans: Default::default(),
            crashed: false,
            syncs: 0,
        };
        s.paths.insert(1, PathBuf::new());
        s.by_backing.insert(md.ino(), 1);
        Ok(s)
    }

    fn path(&self, ino: u64) -> Result<PathBuf, Errno> {
        self.paths
            .get(&ino)
            .map(|p| self.root.join(p))
            .ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: u64, name: &OsStr) -> Result<(PathBuf, PathBuf), Errno> {
        let rel = self.paths.get(&parent).ok_or(Errno::ENOENT)?.join(name);
        Ok((self.root.join(&rel), rel))
    }

    /// Our inode number for the backing file at `rel`, remembering its path.
    fn ino_for(&mut self, rel: &Path, backing_ino: u64) -> u64 {
        let ino = match self.by_backing.get(&backing_ino) {
            Some(&i) => i,
            None => {
                let i = self.next_ino;
                self.next_ino += 1;
                self.by_backing.insert(backing_ino, i);
                i
            }
        };
        self.paths.insert(ino, rel.to_path_buf());
        ino
    }

    fn attr(&self, ino: u64, md: &std::fs::Metadata) -> FileAttr {
        let size = self.pending.get(&ino).map_or(md.len(), Pending::size);
        let time = |s: i64, ns: i64| {
            if s >= 0 {
                UNIX_EPOCH + Duration::new(s as u64, ns as u32)
            } else {
                UNIX_EPOCH
            }
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time(md.atime(), md.atime_nsec()),
            mtime: time(md.mtime(), md.mtime_nsec()),
            ctime: time(md.ctime(), md.ctime_nsec()),
            crtime: UNIX_EPOCH,
            kind: kind(md.file_type()),
            perm: (md.mode() & 0o7777) as u16,
            nlink: md.nlink() as u32,
            uid: md.uid(),
            gid: md.gid(),
            rdev: md.rdev() as u32,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Lookup of a path that exists: its inode and attributes.
    fn entry(&mut self, full: &Path, rel: &Path) -> Result<FileAttr, Errno> {
        let md = std::fs::symlink_metadata(full)?;
        let ino = self.ino_for(rel, md.ino());
        Ok(self.attr(ino, &md))
    }

    /// The name at `full` is about to go (unlink, rmdir, or replaced by a rename): its
    /// inode forgets the name, and its pending writes go now or with its last handle.
    fn name_gone(&mut self, full: &Path) {
        let Ok(md) = std::fs::symlink_metadata(full) else {
            return;
        };
        if md.nlink() > 1 && !md.is_dir() {
            return;
        }
        if let Some(ino) = self.by_backing.remove(&md.ino()) {
            self.paths.remove(&ino);
            if self.open.get(&ino).copied().unwrap_or(0) == 0 {
                self.pending.remove(&ino);
            } else {
                self.orphans.insert(ino);
            }
        }
    }

    /// Make every pending write durable (a clean shutdown's `sync`).
    pub(crate) fn sync_everything(&mut self) -> std::io::Result<()> {
        let inos: Vec<u64> = self.pending.keys().copied().collect();
        for ino in inos {
            let Some(p) = self.pending.remove(&ino) else {
                continue;
            };
            if self.orphans.contains(&ino) {
                continue;
            }
            let file = match self.handles.values().find_map(|h| match h {
                Handle::File { ino: i, file } if *i == ino => Some(file.try_clone()),
                _ => None,
            }) {
                Some(f) => f?,
                None => open_backing(
                    &self
                        .path(ino)
                        .map_err(|e| std::io::Error::from_raw_os_error(i32::from(e)))?,
                    None,
                )?,
            };
            p.persist(&file)?;
            self.syncs += 1;
        }
        Ok(())
    }

    fn add_handle(&mut self, h: Handle) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        if let Handle::File { ino, .. } = &h {
            *self.open.entry(*ino).or_default() += 1;
        }
        self.handles.insert(fh, h);
        fh
    }

    fn file(&self, fh: FileHandle) -> Result<(u64, &File), Errno> {
        match self.handles.get(&fh.0) {
            Some(Handle::File { ino, file }) => Ok((*ino, file)),
            _ => Err(Errno::EBADF),
        }
    }

    fn truncate(&mut self, ino: u64, file: &File, size: u64) -> Result<(), Errno> {
        let p = match self.pending.get_mut(&ino) {
            Some(p) => p,
            None => {
                let len = file.metadata()?.len();
                self.pending.entry(ino).or_insert(Pending::new(len))
            }
        };
        p.truncate(file, size)?;
        Ok(())
    }
}

fn kind(t: std::fs::FileType) -> FileType {
    FileType::from_std(t).unwrap_or(FileType::RegularFile)
}

fn open_backing(path: &Path, create: Option<(u32, bool)>) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    if let Some((mode, exclusive)) = create {
        if exclusive {
            o.create_new(true);
        } else {
            o.create(true);
        }
        o.mode(mode);
    }
    match o.open(path) {
        // A file that cannot be written (read-only mode for a non-root user) is opened
        // for reading; a write or sync through it then fails as it would have.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && create.is_none() => {
            File::open(path)
        }
        r => r,
    }
}

/// The filesystem handed to fuser.
#[derive(Debug)]
pub(crate) struct LazyFsInner {
    pub(crate) state: Arc<Mutex<State>>,
}

impl LazyFsInner {
    /// The state, refusing every request after a crash. A poisoned lock (a panic in a
    /// request) still serves: the state is plain data.
    fn live(&self) -> Result<MutexGuard<'_, State>, Errno> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.crashed {
            return Err(Errno::EIO);
        }
        Ok(s)
    }
}

macro_rules! tri {
    ($reply:ident, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $reply.error(Errno::from(e)),
        }
    };
}

impl Filesystem for LazyFsInner {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut s = tri!(reply, self.live());
        let (full, rel) = tri!(reply, s.child(parent.0, name));
        let attr = tri!(reply, s.entry(&full, &rel));
        reply.entry(&TTL, &attr, Generation(0));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let s = tri!(reply, self.live());
        let md = match fh.map(|fh| s.file(fh)) {
            Some(Ok((_, f))) => tri!(reply, f.metadata()),
            _ => tri!(reply, std::fs::symlink_metadata(tri!(reply, s.path(ino.0)))),
        };
        reply.attr(&TTL, &s.attr(ino.0, &md));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = tri!(reply, self.live());
        let path = s.path(ino.0);
        if let Some(mode) = mode {
            let path = tri!(reply, path.clone());
            tri!(
                reply,
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
            );
        }
        if uid.is_some() || gid.is_some() {
            let path = tri!(reply, path.clone());
            tri!(reply, std::os::unix::fs::lchown(&path, uid, gid));
        }
        // A handle of this inode serves for unlinked files; otherwise open by path.
        let by_handle = fh
            .and_then(|fh| s.file(fh).ok())
            .map(|(_, f)| f.try_clone());
        let file = || -> Result<File, Errno> {
            match by_handle {
                Some(f) => Ok(f?),
                None => Ok(open_backing(&path.clone()?, None)?),
            }
        };
        if size.is_some() || atime.is_some() || mtime.is_some() {
            let f = tri!(reply, file());
            if let Some(size) = size {
                tri!(reply, s.truncate(ino.0, &f, size));
            }
            let at = |t: TimeOrNow| match t {
                TimeOrNow::SpecificTime(t) => t,
                TimeOrNow::Now => SystemTime::now(),
            };
            let mut times = std::fs::FileTimes::new();
            if let Some(t) = atime {
                times = times.set_accessed(at(t));
            }
            if let Some(t) = mtime {
                times = times.set_modified(at(t));
            }
            if atime.is_some() || mtime.is_some() {
                tri!(reply, f.set_times(times));
            }
            let md = tri!(reply, f.metadata());
            return reply.attr(&TTL, &s.attr(ino.0, &md));
        }
        let md = tri!(reply, std::fs::symlink_metadata(tri!(reply, path)));
        reply.attr(&TTL, &s.attr(ino.0, &md));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let s = tri!(reply, self.live());
        let target = tri!(reply, std::fs::read_link(tri!(reply, s.path(ino.0))));
        reply.data(target.as_os_str().as_encoded_bytes());
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut s = tri!(reply, self.live());
        let (full, rel) = tri!(reply, s.child(parent.0, name));
        tri!(reply, std::fs::create_dir(&full));
        tri!(
            reply,
            std::fs::set_permissions(
                &full,
                std::fs::Permissions::from_mode(mode & !umask & 0o7777)
            )
        );
        let attr = tri!(reply, s.entry(&full, &rel));
        reply.entry(&TTL, &attr, Generation(0));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = tri!(reply, self.live());
        let (full, _) = tri!(reply, s.child(parent.0, name));
        s.name_gone(&full);
        tri!(reply, std::fs::remove_file(&full));
        reply.ok();
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = tri!(reply, self.live());
        let (full, _) = tri!(reply, s.child(parent.0, name));
        tri!(reply, std::fs::remove_dir(&full));
        s.name_gone(&full);
        reply.ok();
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let mut s = tri!(reply, self.live());
        let (full, rel) = tri!(reply, s.child(parent.0, link_name));
        tri!(reply, std::os::unix::fs::symlink(target, &full));
        let attr = tri!(reply, s.entry(&full, &rel));
        reply.entry(&TTL, &attr, Generation(0));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            // RENAME_NOREPLACE / EXCHANGE / WHITEOUT: not modelled; refused, not faked.
            return reply.error(Errno::EINVAL);
        }
        let mut s = tri!(reply, self.live());
        let (from, from_rel) = tri!(reply, s.child(parent.0, name));
        let (to, to_rel) = tri!(reply, s.child(newparent.0, newname));
        if std::fs::symlink_metadata(&from).ok().map(|m| m.ino())
            != std::fs::symlink_metadata(&to).ok().map(|m| m.ino())
        {
            s.name_gone(&to);
        }
        tri!(reply, std::fs::rename(&from, &to));
        // Everything at or under the old path now lives under the new one.
        for p in s.paths.values_mut() {
            if let Ok(rest) = p.strip_prefix(&from_rel) {
                *p = to_rel.join(rest);
            }
        }
        reply.ok();
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut s = tri!(reply, self.live());
        let src = tri!(reply, s.path(ino.0));
        let (full, rel) = tri!(reply, s.child(newparent.0, newname));
        tri!(reply, std::fs::hard_link(&src, &full));
        let attr = tri!(reply, s.entry(&full, &rel));
        reply.entry(&TTL, &attr, Generation(0));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut s = tri!(reply, self.live());
        let path = tri!(reply, s.path(ino.0));
        // O_TRUNC arrives as a separate setattr; O_APPEND offsets come from the kernel.
        // Opened for writing whatever the mode: an fsync through a read-only handle
        // still makes the file's pending writes durable.
        let _ = flags;
        let file = tri!(reply, open_backing(&path, None));
        let fh = s.add_handle(Handle::File { ino: ino.0, file });
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = tri!(reply, self.live());
        let (full, rel) = tri!(reply, s.child(parent.0, name));
        let excl = flags & rustix::fs::OFlags::EXCL.bits() as i32 != 0;
        let file = tri!(
            reply,
            open_backing(&full, Some((mode & !umask & 0o7777, excl)))
        );
        let md = tri!(reply, file.metadata());
        let ino = s.ino_for(&rel, md.ino());
        if flags & rustix::fs::OFlags::TRUNC.bits() as i32 != 0 && md.len() > 0 {
            tri!(reply, s.truncate(ino, &file, 0));
        }
        let attr = s.attr(ino, &md);
        let fh = s.add_handle(Handle::File { ino, file });
        reply.created(
            &TTL,
            &attr,
            Generation(0),
            FileHandle(fh),
            FopenFlags::empty(),
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let s = tri!(reply, self.live());
        let (_, file) = tri!(reply, s.file(fh));
        let data = match s.pending.get(&ino.0) {
            Some(p) => tri!(reply, p.read(file, offset, size)),
            None => tri!(reply, read_plain(file, offset, size)),
        };
        reply.data(&data);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut s = tri!(reply, self.live());
        let file = match s.file(fh) {
            Ok((_, f)) => tri!(reply, f.try_clone()),
            Err(e) => return reply.error(e),
        };
        let p = match s.pending.entry(ino.0) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Pending::new(tri!(reply, file.metadata()).len()))
            }
        };
        tri!(reply, p.write(&file, offset, data));
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) is not a sync.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Handle::File { ino, .. }) = s.handles.remove(&fh.0) {
            let left = s.open.get_mut(&ino).map(|n| {
                *n -= 1;
                *n
            });
            if left == Some(0) {
                s.open.remove(&ino);
                if s.orphans.remove(&ino) {
                    s.pending.remove(&ino);
                }
            }
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = tri!(reply, self.live());
        // fsync and fdatasync both make the data and the size durable; times are not
        // modelled.
        let file = match s.file(fh) {
            Ok((_, f)) => tri!(reply, f.try_clone()),
            Err(e) => return reply.error(e),
        };
        if let Some(p) = s.pending.remove(&ino.0) {
            if s.orphans.contains(&ino.0) {
                // No name left: nothing to make durable.
                return reply.ok();
            }
            if let Err(e) = p.persist(&file) {
                // Half-persisted: the backing file is torn, as a failed fsync may
                // leave a real disk. Report it.
                return reply.error(Errno::from(e));
            }
            s.syncs += 1;
        }
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut s = tri!(reply, self.live());
        let path = tri!(reply, s.path(ino.0));
        let rel = s.paths.get(&ino.0).cloned().unwrap_or_default();
        let mut entries = vec![
            (ino.0, FileType::Directory, OsString::from(".")),
            (ino.0, FileType::Directory, OsString::from("..")),
        ];
        for e in tri!(reply, std::fs::read_dir(&path)) {
            let e = tri!(reply, e);
            let t = tri!(reply, e.file_type());
            let child = s.ino_for(&rel.join(e.file_name()), e.ino());
            entries.push((child, kind(t), e.file_name()));
        }
        let fh = s.add_handle(Handle::Dir { entries });
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let s = tri!(reply, self.live());
        let Some(Handle::Dir { entries }) = s.handles.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.handles.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Names are passed through (durable at once): nothing is pending on a directory.
        let _live = tri!(reply, self.live());
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = tri!(reply, self.live());
        let v = tri!(
            reply,
            rustix::fs::statvfs(&s.root).map_err(std::io::Error::from)
        );
        reply.statfs(
            v.f_blocks,
            v.f_bfree,
            v.f_bavail,
            v.f_files,
            v.f_ffree,
            v.f_bsize as u32,
            v.f_namemax as u32,
            v.f_frsize as u32,
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        let _live = tri!(reply, self.live());
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        // Not modelled: refused (posix_fallocate falls back to writing zeros).
        reply.error(Errno::EOPNOTSUPP);
    }
}
