//! Sealed streams: a large artifact (a catalog snapshot, a release) encrypted so that it
//! can be stored and passed between units as ciphertext and opened as a stream.
//!
//! HQ seals an artifact under a fresh random key, publishes the ciphertext (the store mesh
//! addresses and verifies it by its BLAKE3 hash), and hands the key only to the store's
//! units over the authenticated gRPC link. Units keep and share the ciphertext; the
//! plaintext exists only while it is being read (for example, imported).
//!
//! # Format
//!
//! ```text
//! header  = "OPSTRM01" prefix:16            (24 bytes, random prefix)
//! segment = ciphertext ‖ tag:16             (XChaCha20-Poly1305)
//! nonce   = prefix ‖ index:u32 BE ‖ last:u32 BE (1 on the final segment, else 0)
//! AD      = header
//! ```
//!
//! The plaintext is cut into [`SEGMENT`]-byte segments; the final segment holds the rest,
//! `0..SEGMENT` bytes, and is always present, so a full-length segment is never the last
//! one. This is the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár): a
//! segment moved, dropped, duplicated or cut off, a stream truncated at a segment
//! boundary, and bytes appended after the end all fail authentication.

use std::io::{self, Read, Write};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use zeroize::Zeroizing;

/// The format's magic and version.
pub const MAGIC: &[u8; 8] = b"OPSTRM01";
/// Plaintext bytes per segment.
pub const SEGMENT: usize = 64 * 1024;
/// Bytes of the header.
pub const HEADER: usize = 8 + 16;
const TAG: usize = 16;

/// The 32-byte key of one sealed stream.
pub struct StreamKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamKey(..)")
    }
}

impl StreamKey {
    /// A fresh random key.
    pub fn generate() -> StreamKey {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(k.as_mut());
        StreamKey(k)
    }

    /// A key received from HQ: exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<StreamKey, String> {
        let k: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("a stream key is 32 bytes, not {}", bytes.len()))?;
        Ok(StreamKey(Zeroizing::new(k)))
    }

    /// The key's bytes (to hand to a unit over an authenticated link).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_ref().into())
    }
}

fn nonce(prefix: &[u8; 16], index: u32, last: bool) -> XNonce {
    let mut n = [0u8; 24];
    n[..16].copy_from_slice(prefix);
    n[16..20].copy_from_slice(&index.to_be_bytes());
    n[20..].copy_from_slice(&u32::from(last).to_be_bytes());
    XNonce::from(n)
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Seals everything `input` yields into `output`; returns the bytes written.
pub fn seal(key: &StreamKey, mut input: impl Read, mut output: impl Write) -> io::Result<u64> {
    let cipher = key.cipher();
    let mut prefix = [0u8; 16];
    rand::rng().fill_bytes(&mut prefix);
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(MAGIC);
    header[8..].copy_from_slice(&prefix);
    output.write_all(&header)?;
    let mut written = HEADER as u64;
    let mut buf = vec![0u8; SEGMENT];
    let mut index: u32 = 0;
    loop {
        let n = read_full(&mut input, &mut buf)?;
        let last = n < SEGMENT;
        let ct = cipher
            .encrypt(
                &nonce(&prefix, index, last),
                Payload {
                    msg: &buf[..n],
                    aad: &header,
                },
            )
            .map_err(|_| io::Error::other("stream encryption failed"))?;
        output.write_all(&ct)?;
        written += ct.len() as u64;
        if last {
            output.flush()?;
            return Ok(written);
        }
        index = index
            .checked_add(1)
            .ok_or_else(|| invalid("stream too long (more than 2^32 segments)"))?;
    }
}

/// The size of the sealed form of `plain` bytes.
pub fn sealed_len(plain: u64) -> u64 {
    let seg = SEGMENT as u64;
    HEADER as u64 + (plain / seg + 1) * TAG as u64 + plain
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Opens a sealed stream as it is read. Every error (a wrong key, a tampered, truncated
/// or extended stream) is an [`io::ErrorKind::InvalidData`] error; no byte of a segment is
/// returned before that segment has authenticated.
pub struct OpeningReader<R> {
    inner: R,
    cipher: XChaCha20Poly1305,
    header: [u8; HEADER],
    index: u32,
    /// Decrypted bytes of the current segment not yet returned.
    plain: Vec<u8>,
    pos: usize,
    ended: bool,
    segment: Vec<u8>,
}

impl<R: Read> OpeningReader<R> {
    /// Reads and checks the header.
    pub fn new(key: &StreamKey, mut inner: R) -> io::Result<OpeningReader<R>> {
        let mut header = [0u8; HEADER];
        if read_full(&mut inner, &mut header)? < HEADER {
            return Err(invalid("sealed stream: shorter than its header"));
        }
        if &header[..8] != MAGIC {
            return Err(invalid(
                "sealed stream: not an Outpost sealed stream (bad magic or version)",
            ));
        }
        Ok(OpeningReader {
            inner,
            cipher: key.cipher(),
            header,
            index: 0,
            plain: Vec::new(),
            pos: 0,
            ended: false,
            segment: vec![0u8; SEGMENT + TAG],
        })
    }

    fn next_segment(&mut self) -> io::Result<()> {
        let n = read_full(&mut self.inner, &mut self.segment)?;
        let last = n < SEGMENT + TAG;
        let mut prefix = [0u8; 16];
        prefix.copy_from_slice(&self.header[8..]);
        let plain = self
            .cipher
            .decrypt(
                &nonce(&prefix, self.index, last),
                Payload {
                    msg: &self.segment[..n],
                    aad: &self.header,
                },
            )
            .map_err(|_| {
                invalid(format!(
                    "sealed stream: segment {} failed authentication (wrong key, tampered, truncated or extended)",
                    self.index
                ))
            })?;
        self.plain = plain;
        self.pos = 0;
        if last {
            self.ended = true;
        } else {
            self.index = self
                .index
                .checked_add(1)
                .ok_or_else(|| invalid("sealed stream: more than 2^32 segments"))?;
        }
        Ok(())
    }
}

impl<R: Read> Read for OpeningReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.plain.len() {
            if self.ended {
                return Ok(0);
            }
            self.next_segment()?;
        }
        let n = buf.len().min(self.plain.len() - self.pos);
        buf[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn sealed(key: &StreamKey, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let n = seal(key, plain, &mut out).unwrap();
        assert_eq!(n, out.len() as u64);
        assert_eq!(sealed_len(plain.len() as u64), n);
        out
    }

    fn open(key: &StreamKey, ct: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        OpeningReader::new(key, ct)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn round_trips_at_every_boundary() {
        let key = StreamKey::generate();
        for n in [
            0,
            1,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT,
            3 * SEGMENT + 17,
        ] {
            let plain = data(n);
            let ct = sealed(&key, &plain);
            assert_eq!(open(&key, &ct).unwrap(), plain, "size {n}");
            // The ciphertext does not contain the plaintext.
            if n >= 64 {
                assert!(!ct.windows(32).any(|w| w == &plain[16..48]));
            }
        }
    }

    #[test]
    fn two_seals_of_the_same_data_differ() {
        let key = StreamKey::generate();
        assert_ne!(sealed(&key, &data(100)), sealed(&key, &data(100)));
    }

    fn refused(key: &StreamKey, ct: &[u8]) -> String {
        let e = open(key, ct).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        e.to_string()
    }

    #[test]
    fn wrong_key_tampering_truncation_and_extension_are_refused() {
        let key = StreamKey::generate();
        let plain = data(3 * SEGMENT + 100);
        let ct = sealed(&key, &plain);
        let seg = SEGMENT + TAG;

        assert!(refused(&StreamKey::generate(), &ct).contains("segment 0"));
        for at in [0, 8, 30, HEADER + seg + 5, ct.len() - 1] {
            let mut bad = ct.clone();
            bad[at] ^= 0x40;
            refused(&key, &bad);
        }
        // Cut at a segment boundary: the shortened stream's last segment is a full one.
        refused(&key, &ct[..HEADER + 2 * seg]);
        // Cut inside a segment, and cut off the final (short) segment.
        refused(&key, &ct[..HEADER + seg + 100]);
        refused(&key, &ct[..ct.len() - 1]);
        // Appended bytes.
        let mut longer = ct.clone();
        longer.extend_from_slice(&[0u8; 40]);
        refused(&key, &longer);
        // Two segments swapped.
        let mut swapped = ct.clone();
        swapped[HEADER..HEADER + seg].copy_from_slice(&ct[HEADER + seg..HEADER + 2 * seg]);
        swapped[HEADER + seg..HEADER + 2 * seg].copy_from_slice(&ct[HEADER..HEADER + seg]);
        refused(&key, &swapped);
        // Header problems.
        assert!(refused(&key, &ct[..10]).contains("header"));
        let mut magic = ct.clone();
        magic[7] = b'9';
        assert!(refused(&key, &magic).contains("magic"));
        // An empty stream's only segment is required too.
        let empty = sealed(&key, &[]);
        assert_eq!(open(&key, &empty).unwrap(), Vec::<u8>::new());
        refused(&key, &empty[..HEADER]);
    }

    #[test]
    fn no_plaintext_is_returned_from_a_failing_segment() {
        let key = StreamKey::generate();
        let plain = data(2 * SEGMENT + 10);
        let mut ct = sealed(&key, &plain);
        ct[HEADER + SEGMENT + TAG + 3] ^= 1; // second segment
        let mut r = OpeningReader::new(&key, ct.as_slice()).unwrap();
        let mut first = vec![0u8; SEGMENT];
        r.read_exact(&mut first).unwrap();
        assert_eq!(first, plain[..SEGMENT]);
        let mut rest = Vec::new();
        assert!(r.read_to_end(&mut rest).is_err());
        assert!(rest.is_empty());
    }

    #[test]
    fn key_length_is_checked() {
        assert!(StreamKey::from_slice(&[1u8; 31]).is_err());
        assert!(StreamKey::from_slice(&[1u8; 32]).is_ok());
        assert_eq!(format!("{:?}", StreamKey::generate()), "StreamKey(..)");
    }
}
