//! Chunking and verification: an artifact's id is its plain BLAKE3 hash (what `b3sum`
//! prints), and the artifact is cut into [`CHUNK_SIZE`] chunks that are exactly the
//! 256 KiB subtrees of the BLAKE3 tree. The *chunk list* is the list of those
//! subtrees' chaining values; merging them up the BLAKE3 tree must give the root, so
//! the root commits to every chunk, and each chunk is verified on its own against its
//! chaining value before it is written. See `docs/p2p.md`.

use std::io::Read;

use blake3::hazmat::{ChainingValue, HasherExt, Mode};

/// Bytes per chunk: 256 KiB, a power-of-two number of BLAKE3 1 KiB chunks, so every
/// chunk but the last is a complete subtree of the BLAKE3 tree.
pub const CHUNK_SIZE: u64 = 256 * 1024;

/// Largest artifact accepted: 64 GiB (a 8 MiB chunk list).
pub const MAX_ARTIFACT_SIZE: u64 = 64 * 1024 * 1024 * 1024;

/// A BLAKE3 root hash: the artifact id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Root(pub [u8; 32]);

impl Root {
    /// Lower-case hex, as `b3sum` prints it.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Root, ChunkError> {
        blake3::Hash::from_hex(s)
            .map(|h| Root(*h.as_bytes()))
            .map_err(|_| ChunkError::BadHex)
    }
}

impl serde::Serialize for Root {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Root {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Root, D::Error> {
        let s = String::deserialize(d)?;
        Root::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Root({})", &self.to_hex()[..16])
    }
}

impl std::fmt::Display for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a chunk, a chunk list or an id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkError {
    /// The id is not 64 hex digits.
    #[error("an artifact id must be 64 hex digits")]
    BadHex,
    /// Size zero or above [`MAX_ARTIFACT_SIZE`].
    #[error("artifact size {0} is outside 1..={MAX_ARTIFACT_SIZE}")]
    BadSize(u64),
    /// The chunk list's length does not fit the artifact size.
    #[error("chunk list has {got} bytes, expected {expected} for this size")]
    ListLength {
        /// Bytes received.
        got: usize,
        /// Bytes the size implies.
        expected: usize,
    },
    /// The chunk list does not merge to the root.
    #[error("chunk list does not hash to the artifact root")]
    ListMismatch,
    /// The chunk index is past the end.
    #[error("chunk {index} is out of range ({count} chunks)")]
    IndexOutOfRange {
        /// Index asked.
        index: u32,
        /// Chunks in the artifact.
        count: u32,
    },
    /// The chunk has the wrong length for its index.
    #[error("chunk {index} has {got} bytes, expected {expected}")]
    WrongLength {
        /// Chunk index.
        index: u32,
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        expected: u64,
    },
    /// The chunk's hash does not match the chunk list.
    #[error("chunk {0} does not match its hash")]
    HashMismatch(u32),
}

/// Number of chunks of an artifact of `size` bytes (at least one).
pub fn chunk_count(size: u64) -> u32 {
    size.div_ceil(CHUNK_SIZE).max(1) as u32
}

/// Byte length of chunk `index` of an artifact of `size` bytes.
pub fn chunk_len(size: u64, index: u32) -> u64 {
    let start = index as u64 * CHUNK_SIZE;
    (size - start.min(size)).min(CHUNK_SIZE)
}

/// Checks an artifact size.
pub fn check_size(size: u64) -> Result<(), ChunkError> {
    if size == 0 || size > MAX_ARTIFACT_SIZE {
        return Err(ChunkError::BadSize(size));
    }
    Ok(())
}

/// The per-chunk chaining values of one artifact, verified against its root.
#[derive(Clone, Debug)]
pub struct ChunkList {
    root: Root,
    size: u64,
    cvs: Vec<ChainingValue>,
}

fn chunk_cv(index: u32, data: &[u8], single: bool) -> ChainingValue {
    if single {
        return *blake3::hash(data).as_bytes();
    }
    let mut h = blake3::Hasher::new();
    h.set_input_offset(index as u64 * CHUNK_SIZE);
    h.update(data);
    h.finalize_non_root()
}

/// Merges the chaining values of leaves `[first, first+n)` covering `len` bytes.
fn merge(cvs: &[ChainingValue], len: u64, is_root: bool) -> ChainingValue {
    if cvs.len() == 1 {
        return cvs[0];
    }
    let left_len = blake3::hazmat::left_subtree_len(len);
    let left_n = (left_len / CHUNK_SIZE) as usize;
    let l = merge(&cvs[..left_n], left_len, false);
    let r = merge(&cvs[left_n..], len - left_len, false);
    if is_root {
        *blake3::hazmat::merge_subtrees_root(&l, &r, Mode::Hash).as_bytes()
    } else {
        blake3::hazmat::merge_subtrees_non_root(&l, &r, Mode::Hash)
    }
}

impl ChunkList {
    /// Checks `bytes` (concatenated 32-byte chaining values) against `root` and `size`.
    pub fn from_bytes(root: Root, size: u64, bytes: &[u8]) -> Result<ChunkList, ChunkError> {
        check_size(size)?;
        let n = chunk_count(size) as usize;
        if bytes.len() != n * 32 {
            return Err(ChunkError::ListLength {
                got: bytes.len(),
                expected: n * 32,
            });
        }
        let cvs: Vec<ChainingValue> = bytes
            .chunks_exact(32)
            .map(|c| {
                let mut cv = [0u8; 32];
                cv.copy_from_slice(c);
                cv
            })
            .collect();
        if merge(&cvs, size, true) != root.0 {
            return Err(ChunkError::ListMismatch);
        }
        Ok(ChunkList { root, size, cvs })
    }

    /// Hashes a whole artifact from a reader, streaming (two chunks in memory).
    pub fn compute(mut reader: impl Read) -> std::io::Result<ChunkList> {
        let mut cvs = Vec::new();
        let mut whole = blake3::Hasher::new();
        let mut size = 0u64;
        // The last chunk's CV depends on whether it is the only one, so one chunk waits.
        let mut pending: Option<Vec<u8>> = None;
        loop {
            let mut buf = vec![0u8; CHUNK_SIZE as usize];
            let mut filled = 0;
            while filled < buf.len() {
                let n = reader.read(&mut buf[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            whole.update(&buf);
            size += filled as u64;
            if let Some(p) = pending.replace(buf) {
                cvs.push(chunk_cv(cvs.len() as u32, &p, false));
            }
            if filled < CHUNK_SIZE as usize {
                break;
            }
        }
        let Some(last) = pending else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "an artifact cannot be empty",
            ));
        };
        let single = cvs.is_empty();
        cvs.push(chunk_cv(cvs.len() as u32, &last, single));
        let root = Root(*whole.finalize().as_bytes());
        debug_assert_eq!(merge(&cvs, size, true), root.0);
        Ok(ChunkList { root, size, cvs })
    }

    /// The artifact id.
    pub fn root(&self) -> Root {
        self.root
    }

    /// The artifact size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of chunks.
    pub fn count(&self) -> u32 {
        self.cvs.len() as u32
    }

    /// The wire form: concatenated chaining values.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.cvs.iter().flat_map(|c| c.iter().copied()).collect()
    }

    /// Verifies chunk `index` (length and hash) before it may be written.
    pub fn verify(&self, index: u32, data: &[u8]) -> Result<(), ChunkError> {
        let count = self.count();
        if index >= count {
            return Err(ChunkError::IndexOutOfRange { index, count });
        }
        let expected = chunk_len(self.size, index);
        if data.len() as u64 != expected {
            return Err(ChunkError::WrongLength {
                index,
                got: data.len(),
                expected,
            });
        }
        if chunk_cv(index, data, count == 1) != self.cvs[index as usize] {
            return Err(ChunkError::HashMismatch(index));
        }
        Ok(())
    }
}

/// Which chunks a unit has: one bit per chunk, bit `i` in byte `i / 8`, LSB first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitfield {
    bits: Vec<u8>,
    len: u32,
}

impl Bitfield {
    /// All clear.
    pub fn new(len: u32) -> Bitfield {
        Bitfield {
            bits: vec![0; (len as usize).div_ceil(8)],
            len,
        }
    }

    /// From the wire or disk; `None` if the byte length does not fit `len` or bits past
    /// the end are set.
    pub fn from_bytes(len: u32, bits: Vec<u8>) -> Option<Bitfield> {
        if bits.len() != (len as usize).div_ceil(8) {
            return None;
        }
        let b = Bitfield { bits, len };
        let tail_ok = (len..(b.bits.len() as u32 * 8)).all(|i| !b.get_raw(i));
        tail_ok.then_some(b)
    }

    fn get_raw(&self, i: u32) -> bool {
        self.bits[(i / 8) as usize] & (1 << (i % 8)) != 0
    }

    /// Whether chunk `i` is present (false past the end).
    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.get_raw(i)
    }

    /// Marks chunk `i` present.
    pub fn set(&mut self, i: u32) {
        if i < self.len {
            self.bits[(i / 8) as usize] |= 1 << (i % 8);
        }
    }

    /// Number of chunks.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether there are no chunks at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of chunks present.
    pub fn count(&self) -> u32 {
        self.bits.iter().map(|b| b.count_ones()).sum()
    }

    /// Whether every chunk is present.
    pub fn is_full(&self) -> bool {
        self.count() == self.len
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn chunk_list_root_is_plain_blake3_for_many_sizes() {
        for len in [
            1,
            1000,
            CHUNK_SIZE as usize,
            CHUNK_SIZE as usize + 1,
            3 * CHUNK_SIZE as usize + 17,
            8 * CHUNK_SIZE as usize,
        ] {
            let d = data(len);
            let list = ChunkList::compute(&d[..]).expect("compute");
            assert_eq!(list.root().0, *blake3::hash(&d).as_bytes(), "len {len}");
            let again = ChunkList::from_bytes(list.root(), len as u64, &list.to_bytes())
                .expect("list verifies");
            for i in 0..again.count() {
                let s = i as usize * CHUNK_SIZE as usize;
                let e = (s + CHUNK_SIZE as usize).min(len);
                again.verify(i, &d[s..e]).expect("chunk verifies");
            }
        }
    }

    #[test]
    fn tampered_chunk_list_is_refused() {
        let d = data(3 * CHUNK_SIZE as usize);
        let list = ChunkList::compute(&d[..]).expect("compute");
        let mut bytes = list.to_bytes();
        bytes[40] ^= 1;
        assert_eq!(
            ChunkList::from_bytes(list.root(), d.len() as u64, &bytes).unwrap_err(),
            ChunkError::ListMismatch
        );
        assert!(matches!(
            ChunkList::from_bytes(list.root(), d.len() as u64, &bytes[..64]),
            Err(ChunkError::ListLength { .. })
        ));
    }

    #[test]
    fn corrupt_and_wrong_size_chunks_are_refused() {
        let d = data(2 * CHUNK_SIZE as usize + 5);
        let list = ChunkList::compute(&d[..]).expect("compute");
        let mut c = d[..CHUNK_SIZE as usize].to_vec();
        c[7] ^= 0x80;
        assert_eq!(list.verify(0, &c), Err(ChunkError::HashMismatch(0)));
        assert!(matches!(
            list.verify(2, &d[..6]),
            Err(ChunkError::WrongLength { .. })
        ));
        assert!(matches!(
            list.verify(3, &d[..5]),
            Err(ChunkError::IndexOutOfRange { .. })
        ));
        // A correct chunk at the wrong index fails too (the offset is in the hash).
        assert_eq!(
            list.verify(1, &d[..CHUNK_SIZE as usize]),
            Err(ChunkError::HashMismatch(1))
        );
    }

    #[test]
    fn bitfield_rejects_bad_lengths_and_tail_bits() {
        assert!(Bitfield::from_bytes(10, vec![0]).is_none());
        assert!(Bitfield::from_bytes(10, vec![0, 0b100]).is_none());
        let mut b = Bitfield::from_bytes(10, vec![0, 0b11]).expect("valid");
        assert_eq!(b.count(), 2);
        b.set(0);
        assert!(b.get(0) && b.get(9) && !b.get(10));
    }
}
