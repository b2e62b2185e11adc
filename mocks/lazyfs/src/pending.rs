//! The writes to one file that no fsync has made durable yet.
//!
//! The backing file holds what is durable; [`Pending`] holds, page by page, what the
//! processes wrote since, and the size they see. A read is served from the pending
//! pages over the backing file; an fsync ([`Pending::persist`]) writes the pages and
//! the size into the backing file; a crash drops the `Pending` and with it every
//! unsynced byte, exactly.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Granularity of the overlay. Any size works; a page is what a write costs at least.
pub const PAGE: u64 = 4096;
const PAGE_USIZE: usize = PAGE as usize;

/// The unsynced state of one file.
#[derive(Debug)]
pub struct Pending {
    /// The size the processes see.
    size: u64,
    /// Bytes of the backing file from here on are dead (the file was truncated below
    /// them since the last sync): they read as zeros, and the sync cuts them.
    live: u64,
    /// Whole pages written since the last sync (bytes past `size` are zero).
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl Pending {
    /// Nothing pending yet over a backing file of `backing_len` bytes.
    pub fn new(backing_len: u64) -> Self {
        Pending {
            size: backing_len,
            live: backing_len,
            pages: BTreeMap::new(),
        }
    }

    /// The size the processes see.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes held in memory (whole pages).
    pub fn bytes(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }

    /// Page `idx` as the processes see it.
    fn page(&self, backing: &File, idx: u64) -> io::Result<Box<[u8]>> {
        if let Some(p) = self.pages.get(&idx) {
            return Ok(p.clone());
        }
        let mut buf = vec![0u8; PAGE_USIZE].into_boxed_slice();
        let start = idx * PAGE;
        if start < self.live {
            let want = (self.live - start).min(PAGE) as usize;
            read_full(backing, &mut buf[..want], start)?;
        }
        Ok(buf)
    }

    /// Up to `len` bytes from `offset` (fewer at the end of the file).
    pub fn read(&self, backing: &File, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        let end = offset.saturating_add(u64::from(len)).min(self.size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let idx = at / PAGE;
            let in_page = (at % PAGE) as usize;
            let n = ((idx + 1) * PAGE).min(end) - at;
            match self.pages.get(&idx) {
                Some(p) => out.extend_from_slice(&p[in_page..in_page + n as usize]),
                None => {
                    out.extend_from_slice(&self.page(backing, idx)?[in_page..in_page + n as usize])
                }
            }
            at += n;
        }
        Ok(out)
    }

    /// Write `data` at `offset`, growing the file as needed.
    pub fn write(&mut self, backing: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::from(rustix::io::Errno::FBIG))?;
        let mut at = offset;
        while at < end {
            let idx = at / PAGE;
            let in_page = (at % PAGE) as usize;
            let n = (((idx + 1) * PAGE).min(end) - at) as usize;
            let src = &data[(at - offset) as usize..][..n];
            if !self.pages.contains_key(&idx) {
                let p = self.page(backing, idx)?;
                self.pages.insert(idx, p);
            }
            if let Some(p) = self.pages.get_mut(&idx) {
                p[in_page..in_page + n].copy_from_slice(src);
            }
            at += n as u64;
        }
        self.size = self.size.max(end);
        Ok(())
    }

    /// Set the size (truncate or extend with zeros).
    pub fn truncate(&mut self, backing: &File, size: u64) -> io::Result<()> {
        if size < self.size {
            let first_dead = size.div_ceil(PAGE);
            self.pages.split_off(&first_dead);
            let tail = (size % PAGE) as usize;
            if tail != 0 {
                let idx = size / PAGE;
                let mut p = self.page(backing, idx)?;
                p[tail..].fill(0);
                self.pages.insert(idx, p);
            }
            self.live = self.live.min(size);
        }
        self.size = size;
        Ok(())
    }

    /// Make it durable: cut the dead bytes, write the pages, set the size. The backing
    /// file is not fsync'd itself: it is on a filesystem that does not crash here.
    pub fn persist(self, backing: &File) -> io::Result<()> {
        if backing.metadata()?.len() > self.live {
            backing.set_len(self.live)?;
        }
        for (idx, page) in &self.pages {
            let start = idx * PAGE;
            if start >= self.size {
                break;
            }
            let n = (self.size - start).min(PAGE) as usize;
            backing.write_all_at(&page[..n], start)?;
        }
        backing.set_len(self.size)
    }
}

/// Fill `buf` from `offset`, zeros past the end of the file.
fn read_full(f: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => {
                buf[done..].fill(0);
                return Ok(());
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read a whole range of a file with no pending writes (zeros never invented: a
/// short read at the end of the file is returned short).
pub fn read_plain(f: &File, offset: u64, len: u32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(done);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backing(content: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, content).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        (dir, f)
    }

    fn on_disk(f: &File) -> Vec<u8> {
        read_plain(f, 0, 1 << 20).unwrap()
    }

    #[test]
    fn unsynced_writes_are_seen_but_not_on_disk_until_persisted() {
        let (_d, f) = backing(b"hello world");
        let mut p = Pending::new(11);
        p.write(&f, 6, b"there, and more").unwrap();
        assert_eq!(p.size(), 21);
        assert_eq!(p.read(&f, 0, 100).unwrap(), b"hello there, and more");
        assert_eq!(on_disk(&f), b"hello world");
        p.persist(&f).unwrap();
        assert_eq!(on_disk(&f), b"hello there, and more");
    }

    #[test]
    fn writes_across_pages_and_holes_read_back_exactly() {
        let (_d, f) = backing(&[7u8; 5000]);
        let mut p = Pending::new(5000);
        let data: Vec<u8> = (0..9000u32).map(|i| (i % 251) as u8).collect();
        p.write(&f, 3000, &data).unwrap();
        p.write(&f, 20_000, b"far").unwrap();
        let mut expect = vec![7u8; 3000];
        expect.extend_from_slice(&data);
        expect.resize(20_000, 0);
        expect.extend_from_slice(b"far");
        assert_eq!(p.read(&f, 0, 30_000).unwrap(), expect);
        assert_eq!(p.read(&f, 4090, 10).unwrap(), expect[4090..4100]);
        assert_eq!(on_disk(&f), vec![7u8; 5000]);
        p.persist(&f).unwrap();
        assert_eq!(on_disk(&f), expect);
    }

    #[test]
    fn a_truncate_then_extend_reads_zeros_not_the_old_bytes() {
        let (_d, f) = backing(&[9u8; 10_000]);
        let mut p = Pending::new(10_000);
        p.truncate(&f, 100).unwrap();
        assert_eq!(p.read(&f, 0, 200).unwrap(), vec![9u8; 100]);
        p.truncate(&f, 9000).unwrap();
        let mut expect = vec![9u8; 100];
        expect.resize(9000, 0);
        assert_eq!(p.read(&f, 0, 10_000).unwrap(), expect);
        // Extending by a write past the end leaves zeros too.
        p.truncate(&f, 50).unwrap();
        p.write(&f, 8000, b"x").unwrap();
        let mut expect = vec![9u8; 50];
        expect.resize(8000, 0);
        expect.push(b'x');
        assert_eq!(p.read(&f, 0, 10_000).unwrap(), expect);
        assert_eq!(on_disk(&f), vec![9u8; 10_000]);
        p.persist(&f).unwrap();
        assert_eq!(on_disk(&f), expect);
    }

    #[test]
    fn a_dropped_pending_leaves_the_backing_file_as_it_was() {
        let (_d, f) = backing(b"durable");
        let mut p = Pending::new(7);
        p.truncate(&f, 0).unwrap();
        p.write(&f, 0, b"lost").unwrap();
        assert_eq!(p.read(&f, 0, 10).unwrap(), b"lost");
        drop(p);
        assert_eq!(on_disk(&f), b"durable");
    }

    #[test]
    fn reads_past_the_end_are_empty() {
        let (_d, f) = backing(b"abc");
        let p = Pending::new(3);
        assert_eq!(p.read(&f, 3, 10).unwrap(), b"");
        assert_eq!(p.read(&f, 100, 10).unwrap(), b"");
        assert_eq!(p.read(&f, 1, 10).unwrap(), b"bc");
    }
}
