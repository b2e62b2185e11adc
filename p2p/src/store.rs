//! The content store on disk: one directory per artifact under `<data_dir>/store/<root>/`
//! with `data` (the artifact, preallocated, written chunk by chunk at its offset),
//! `chunks` (the verified chunk list), `bitfield` (chunks present) and `meta.json`
//! (size, reference count, HQ's signed offer of it). Nothing holds an artifact in
//! memory: chunks go straight to their offset.
//!
//! Durability order: a chunk's bit reaches `bitfield` only after the data file was
//! synced, so after a crash the bitfield never claims a chunk that is not on disk (a
//! chunk written but not yet recorded is simply fetched again).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::SignedOffer;
use crate::chunks::{Bitfield, ChunkError, ChunkList, Root, chunk_count, chunk_len};

/// Persist the bitfield after this many new chunks (and always at completion).
const PERSIST_EVERY: u32 = 32;

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Disk I/O failed.
    #[error("store I/O failed on {path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The artifact is not in the store.
    #[error("artifact {0} is not in the store")]
    Unknown(Root),
    /// The chunk list is not known yet, so nothing can be verified.
    #[error("artifact {0} has no chunk list yet")]
    NoChunkList(Root),
    /// The chunk is not present.
    #[error("chunk {1} of {0} is not present")]
    Missing(Root, u32),
    /// Verification failed; nothing was written.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// The same root was offered with another size.
    #[error("artifact {root} is known with size {known}, offered with {offered}")]
    SizeConflict {
        /// Artifact.
        root: Root,
        /// Size in the store.
        known: u64,
        /// Size offered.
        offered: u64,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Serialize, Deserialize)]
struct Meta {
    size: u64,
    refs: u32,
    offer: Option<SignedOffer>,
}

struct Entry {
    size: u64,
    refs: u32,
    offer: Option<SignedOffer>,
    list: Option<Arc<ChunkList>>,
    have: Bitfield,
    unpersisted: u32,
    file: Arc<File>,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The chunk was new and is now stored.
    New,
    /// The chunk was already present; nothing written.
    Duplicate,
}

/// A short view of one stored artifact.
#[derive(Debug, Clone)]
pub struct EntryInfo {
    /// Artifact id.
    pub root: Root,
    /// Size in bytes.
    pub size: u64,
    /// References held.
    pub refs: u32,
    /// Chunks present.
    pub have: Bitfield,
    /// Whether the chunk list is known.
    pub has_list: bool,
    /// The latest offer of it from HQ, as signed, if any.
    pub offer: Option<SignedOffer>,
}

/// Artifacts removed by [`Store::gc`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Removed artifacts.
    pub removed: Vec<Root>,
    /// Bytes of artifact data freed (sizes of the removed artifacts).
    pub bytes_freed: u64,
}

/// The chunk store. Cheap to share (`Arc<Store>`); every method is blocking file I/O,
/// so async callers use `spawn_blocking`.
pub struct Store {
    dir: PathBuf,
    // A std mutex: held only for map and bitfield updates, never across I/O or `.await`.
    entries: Mutex<HashMap<Root, Entry>>,
    // Serialises bitfield persistence so an older snapshot never overwrites a newer one.
    persist: Mutex<()>,
}

impl Store {
    /// Opens (or creates) the store under `data_dir/store`, loading every artifact.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let dir = data_dir.join("store");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut entries = HashMap::new();
        for ent in fs::read_dir(&dir).map_err(io(&dir))? {
            let ent = ent.map_err(io(&dir))?;
            let name = ent.file_name().to_string_lossy().to_string();
            let Ok(root) = Root::from_hex(&name) else {
                tracing::warn!(name, "Skipping a foreign entry in the store directory");
                continue;
            };
            match load_entry(&ent.path(), root) {
                Ok(e) => {
                    entries.insert(root, e);
                }
                Err(err) => {
                    tracing::warn!(%root, %err, "Skipping an unreadable artifact; gc removes it");
                }
            }
        }
        Ok(Store {
            dir,
            entries: Mutex::new(entries),
            persist: Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Root, Entry>> {
        // A poisoned lock means a panic mid-update of in-memory state only; the disk is
        // the truth, so carrying on is safe.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn art_dir(&self, root: &Root) -> PathBuf {
        self.dir.join(root.to_hex())
    }

    /// Path of the artifact's data file (complete only when [`Store::is_complete`]).
    pub fn data_path(&self, root: &Root) -> PathBuf {
        self.art_dir(root).join("data")
    }

    /// Creates the entry if new (preallocating the data file) and adds one reference if
    /// `add_ref`. Returns whether it was new.
    pub fn ensure(
        &self,
        root: Root,
        size: u64,
        offer: Option<SignedOffer>,
        add_ref: bool,
    ) -> Result<bool, StoreError> {
        crate::chunks::check_size(size)?;
        let mut map = self.lock();
        if let Some(e) = map.get_mut(&root) {
            if e.size != size {
                return Err(StoreError::SizeConflict {
                    root,
                    known: e.size,
                    offered: size,
                });
            }
            let mut changed = false;
            if add_ref {
                e.refs += 1;
                changed = true;
            }
            if let Some(o) = offer
                && e.offer.as_ref() != Some(&o)
            {
                e.offer = Some(o);
                changed = true;
            }
            if changed {
                write_meta(&self.art_dir(&root), e)?;
            }
            return Ok(false);
        }
        let dir = self.art_dir(&root);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join("data");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        file.set_len(size).map_err(io(&path))?;
        let e = Entry {
            size,
            refs: u32::from(add_ref),
            offer,
            list: None,
            have: Bitfield::new(chunk_count(size)),
            unpersisted: 0,
            file: Arc::new(file),
        };
        write_meta(&dir, &e)?;
        write_atomic(&dir.join("bitfield"), e.have.as_bytes())?;
        map.insert(root, e);
        Ok(true)
    }

    /// Records a chunk list after checking it against the root.
    pub fn set_chunk_list(&self, root: Root, bytes: &[u8]) -> Result<Arc<ChunkList>, StoreError> {
        let size = {
            let map = self.lock();
            let e = map.get(&root).ok_or(StoreError::Unknown(root))?;
            if let Some(l) = &e.list {
                return Ok(l.clone());
            }
            e.size
        };
        let list = Arc::new(ChunkList::from_bytes(root, size, bytes)?);
        let dir = self.art_dir(&root);
        write_atomic(&dir.join("chunks"), bytes)?;
        let mut map = self.lock();
        let e = map.get_mut(&root).ok_or(StoreError::Unknown(root))?;
        e.list = Some(list.clone());
        Ok(list)
    }

    /// The verified chunk list, if known.
    pub fn chunk_list(&self, root: &Root) -> Option<Arc<ChunkList>> {
        self.lock().get(root).and_then(|e| e.list.clone())
    }

    /// Verifies `data` as chunk `index` and, if it is good and new, writes it at its
    /// offset. A bad chunk writes nothing.
    pub fn write_chunk(&self, root: Root, index: u32, data: &[u8]) -> Result<Written, StoreError> {
        let (list, file) = {
            let map = self.lock();
            let e = map.get(&root).ok_or(StoreError::Unknown(root))?;
            let list = e.list.clone().ok_or(StoreError::NoChunkList(root))?;
            if e.have.get(index) {
                return Ok(Written::Duplicate);
            }
            (list, e.file.clone())
        };
        list.verify(index, data)?;
        let path = self.data_path(&root);
        file.write_all_at(data, index as u64 * crate::chunks::CHUNK_SIZE)
            .map_err(io(&path))?;
        let persist = {
            let mut map = self.lock();
            let e = map.get_mut(&root).ok_or(StoreError::Unknown(root))?;
            if e.have.get(index) {
                return Ok(Written::Duplicate);
            }
            e.have.set(index);
            e.unpersisted += 1;
            e.unpersisted >= PERSIST_EVERY || e.have.is_full()
        };
        if persist {
            self.persist(&root)?;
        }
        Ok(Written::New)
    }

    /// Syncs the data file and writes the bitfield (data first, see module docs).
    pub fn persist(&self, root: &Root) -> Result<(), StoreError> {
        let _guard = self.persist.lock().unwrap_or_else(|p| p.into_inner());
        let (file, snapshot) = {
            let mut map = self.lock();
            let e = map.get_mut(root).ok_or(StoreError::Unknown(*root))?;
            e.unpersisted = 0;
            (e.file.clone(), e.have.clone())
        };
        let path = self.data_path(root);
        file.sync_data().map_err(io(&path))?;
        write_atomic(&self.art_dir(root).join("bitfield"), snapshot.as_bytes())
    }

    /// Persists every artifact with unrecorded chunks (on shutdown).
    pub fn persist_all(&self) -> Result<(), StoreError> {
        let dirty: Vec<Root> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.unpersisted > 0)
            .map(|(r, _)| *r)
            .collect();
        for r in dirty {
            self.persist(&r)?;
        }
        Ok(())
    }

    /// Reads a present chunk.
    pub fn read_chunk(&self, root: &Root, index: u32) -> Result<Vec<u8>, StoreError> {
        let (file, size) = {
            let map = self.lock();
            let e = map.get(root).ok_or(StoreError::Unknown(*root))?;
            if !e.have.get(index) {
                return Err(StoreError::Missing(*root, index));
            }
            (e.file.clone(), e.size)
        };
        let mut buf = vec![0u8; chunk_len(size, index) as usize];
        file.read_exact_at(&mut buf, index as u64 * crate::chunks::CHUNK_SIZE)
            .map_err(io(&self.data_path(root)))?;
        Ok(buf)
    }

    /// The chunks present.
    pub fn bitfield(&self, root: &Root) -> Option<Bitfield> {
        self.lock().get(root).map(|e| e.have.clone())
    }

    /// Whether every chunk is present.
    pub fn is_complete(&self, root: &Root) -> bool {
        self.lock().get(root).is_some_and(|e| e.have.is_full())
    }

    /// One artifact's view.
    pub fn info(&self, root: &Root) -> Option<EntryInfo> {
        self.lock().get(root).map(|e| info(root, e))
    }

    /// Every artifact's view.
    pub fn list(&self) -> Vec<EntryInfo> {
        self.lock().iter().map(|(r, e)| info(r, e)).collect()
    }

    /// Drops one reference; at zero the artifact is collectable by [`Store::gc`].
    pub fn release(&self, root: &Root) -> Result<u32, StoreError> {
        let mut map = self.lock();
        let e = map.get_mut(root).ok_or(StoreError::Unknown(*root))?;
        e.refs = e.refs.saturating_sub(1);
        write_meta(&self.art_dir(root), e)?;
        Ok(e.refs)
    }

    /// Removes every artifact with no reference, and any unreadable directory.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let mut report = GcReport::default();
        let mut map = self.lock();
        let dead: Vec<Root> = map
            .iter()
            .filter(|(_, e)| e.refs == 0)
            .map(|(r, _)| *r)
            .collect();
        for r in dead {
            if let Some(e) = map.remove(&r) {
                report.bytes_freed += e.size;
            }
            let dir = self.art_dir(&r);
            fs::remove_dir_all(&dir).map_err(io(&dir))?;
            report.removed.push(r);
        }
        // Directories that failed to load at open are not in the map: collect them too.
        for ent in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let ent = ent.map_err(io(&self.dir))?;
            let known = Root::from_hex(&ent.file_name().to_string_lossy())
                .is_ok_and(|r| map.contains_key(&r));
            if !known && ent.path().is_dir() {
                fs::remove_dir_all(ent.path()).map_err(io(&ent.path()))?;
            }
        }
        Ok(report)
    }
}

fn info(root: &Root, e: &Entry) -> EntryInfo {
    EntryInfo {
        root: *root,
        size: e.size,
        refs: e.refs,
        have: e.have.clone(),
        has_list: e.list.is_some(),
        offer: e.offer.clone(),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    // A unique temp name: two writers of the same file (a chunk list arriving from two
    // peers at once) must not rename each other's temp file away.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}.{n}", std::process::id()));
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn write_meta(dir: &Path, e: &Entry) -> Result<(), StoreError> {
    let meta = Meta {
        size: e.size,
        refs: e.refs,
        offer: e.offer.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&meta).map_err(|e| StoreError::Io {
        path: dir.join("meta.json"),
        source: std::io::Error::other(e),
    })?;
    write_atomic(&dir.join("meta.json"), &bytes)
}

fn load_entry(dir: &Path, root: Root) -> Result<Entry, StoreError> {
    let meta_path = dir.join("meta.json");
    let raw = fs::read(&meta_path).map_err(io(&meta_path))?;
    let meta: Meta = serde_json::from_slice(&raw).map_err(|e| StoreError::Io {
        path: meta_path.clone(),
        source: std::io::Error::other(e),
    })?;
    crate::chunks::check_size(meta.size)?;
    let n = chunk_count(meta.size);
    let bf_path = dir.join("bitfield");
    let have = match fs::read(&bf_path) {
        Ok(b) => Bitfield::from_bytes(n, b).unwrap_or_else(|| {
            tracing::warn!(%root, "Bitfield file is malformed; refetching every chunk");
            Bitfield::new(n)
        }),
        Err(_) => Bitfield::new(n),
    };
    let list_path = dir.join("chunks");
    let list = match fs::read(&list_path) {
        Ok(b) => Some(Arc::new(ChunkList::from_bytes(root, meta.size, &b)?)),
        Err(_) => None,
    };
    // Without a verified list no chunk can have been verified: trust no bit.
    let have = if list.is_some() {
        have
    } else {
        Bitfield::new(n)
    };
    let path = dir.join("data");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))?;
    file.set_len(meta.size).map_err(io(&path))?;
    Ok(Entry {
        size: meta.size,
        refs: meta.refs,
        offer: meta.offer,
        list,
        have,
        unpersisted: 0,
        file: Arc::new(file),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks::CHUNK_SIZE;

    fn artifact(len: usize) -> (Vec<u8>, ChunkList) {
        let d: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
        let l = ChunkList::compute(&d[..]).expect("list");
        (d, l)
    }

    fn chunk(d: &[u8], i: u32) -> &[u8] {
        let s = i as usize * CHUNK_SIZE as usize;
        &d[s..(s + CHUNK_SIZE as usize).min(d.len())]
    }

    #[test]
    fn chunks_survive_reopen_and_bad_chunks_write_nothing() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (d, l) = artifact(3 * CHUNK_SIZE as usize + 100);
        let root = l.root();
        {
            let s = Store::open(tmp.path()).expect("open");
            assert!(s.ensure(root, d.len() as u64, None, true).expect("ensure"));
            assert!(matches!(
                s.write_chunk(root, 0, chunk(&d, 0)),
                Err(StoreError::NoChunkList(_))
            ));
            s.set_chunk_list(root, &l.to_bytes()).expect("list");
            let mut bad = chunk(&d, 1).to_vec();
            bad[0] ^= 1;
            assert!(s.write_chunk(root, 1, &bad).is_err());
            assert!(s.write_chunk(root, 1, &bad[..10]).is_err());
            assert_eq!(
                s.write_chunk(root, 0, chunk(&d, 0)).expect("w"),
                Written::New
            );
            assert_eq!(
                s.write_chunk(root, 0, chunk(&d, 0)).expect("w"),
                Written::Duplicate
            );
            s.write_chunk(root, 3, chunk(&d, 3)).expect("w");
            s.persist_all().expect("persist");
        }
        let s = Store::open(tmp.path()).expect("reopen");
        let bf = s.bitfield(&root).expect("known");
        assert!(bf.get(0) && !bf.get(1) && !bf.get(2) && bf.get(3));
        assert_eq!(s.read_chunk(&root, 3).expect("read"), chunk(&d, 3));
        assert!(matches!(
            s.read_chunk(&root, 1),
            Err(StoreError::Missing(_, 1))
        ));
        s.write_chunk(root, 1, chunk(&d, 1)).expect("w");
        s.write_chunk(root, 2, chunk(&d, 2)).expect("w");
        assert!(s.is_complete(&root));
        assert_eq!(fs::read(s.data_path(&root)).expect("read"), d);
    }

    // Regression: two threads storing the same chunk list raced on one temp file and
    // one failed with "No such file or directory".
    #[test]
    fn concurrent_chunk_list_writes_both_succeed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = Arc::new(Store::open(tmp.path()).expect("open"));
        let (d, l) = artifact(5 * CHUNK_SIZE as usize);
        s.ensure(l.root(), d.len() as u64, None, true).expect("e");
        for _ in 0..20 {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let (s, b, root) = (s.clone(), l.to_bytes(), l.root());
                    std::thread::spawn(move || write_atomic(&s.art_dir(&root).join("chunks"), &b))
                })
                .collect();
            for h in hs {
                h.join().expect("join").expect("write succeeds");
            }
        }
    }

    #[test]
    fn gc_removes_only_unreferenced_artifacts() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = Store::open(tmp.path()).expect("open");
        let (d1, l1) = artifact(1000);
        let (d2, l2) = artifact(2000);
        s.ensure(l1.root(), d1.len() as u64, None, true).expect("e");
        s.ensure(l2.root(), d2.len() as u64, None, true).expect("e");
        s.ensure(l2.root(), d2.len() as u64, None, true).expect("e");
        assert!(matches!(
            s.ensure(l2.root(), 5, None, true),
            Err(StoreError::SizeConflict { .. })
        ));
        assert_eq!(s.release(&l1.root()).expect("r"), 0);
        assert_eq!(s.release(&l2.root()).expect("r"), 1);
        let rep = s.gc().expect("gc");
        assert_eq!(rep.removed, vec![l1.root()]);
        assert_eq!(rep.bytes_freed, 1000);
        assert!(!tmp.path().join("store").join(l1.root().to_hex()).exists());
        assert!(s.info(&l2.root()).is_some());
        drop(s);
        let s = Store::open(tmp.path()).expect("reopen");
        assert_eq!(s.info(&l2.root()).expect("kept").refs, 1);
        assert!(s.info(&l1.root()).is_none());
    }
}
