//! The release version a binary carries, in a fixed-size slot a release tool can
//! rewrite after the build (as Go's `-ldflags -X` does at link time): the version
//! `outpost --version` prints and the updater trusts is the slot's, so the same build
//! can be stamped as two releases, and a binary inside a release must say the
//! manifest's version.

use semver::Version;

use crate::error::UpdateError;

/// The slot's size: the marker and the version, NUL-padded.
const SLOT_LEN: usize = 64;
/// The slot's first bytes. Split in two everywhere but in the slot itself, so the
/// marker occurs exactly once in a binary.
const MARKER_HEAD: &[u8] = b"<<OUTPOST-RELEASE";
const MARKER_TAIL: &[u8] = b"-VERSION>>";
const MARKER_LEN: usize = MARKER_HEAD.len() + MARKER_TAIL.len();

/// The slot bytes for `version`, as a release tool writes them into a binary.
pub fn slot_for(version: &Version) -> Vec<u8> {
    let mut slot = marker();
    let v = version.to_string();
    let n = v.len().min(SLOT_LEN - MARKER_LEN - 1);
    slot.extend_from_slice(&v.as_bytes()[..n]);
    slot.resize(SLOT_LEN, 0);
    slot
}

const fn make_slot(version: &str) -> [u8; SLOT_LEN] {
    let mut slot = [0u8; SLOT_LEN];
    let mut i = 0;
    while i < MARKER_HEAD.len() {
        slot[i] = MARKER_HEAD[i];
        i += 1;
    }
    let mut j = 0;
    while j < MARKER_TAIL.len() {
        slot[MARKER_HEAD.len() + j] = MARKER_TAIL[j];
        j += 1;
    }
    let v = version.as_bytes();
    assert!(
        v.len() < SLOT_LEN - MARKER_LEN,
        "version too long for the slot"
    );
    let mut k = 0;
    while k < v.len() {
        slot[MARKER_LEN + k] = v[k];
        k += 1;
    }
    slot
}

#[used]
static SLOT: [u8; SLOT_LEN] = make_slot(env!("CARGO_PKG_VERSION"));

/// The version of the running binary: its slot, as built or as stamped.
pub fn running_version() -> Version {
    // black_box: the slot is read from the binary's bytes at run time, never folded
    // into the code as the build's constant.
    let slot: &[u8; SLOT_LEN] = std::hint::black_box(&SLOT);
    parse_slot(slot).unwrap_or_else(|| {
        Version::parse(env!("CARGO_PKG_VERSION")).unwrap_or(Version::new(0, 0, 0))
    })
}

fn parse_slot(slot: &[u8]) -> Option<Version> {
    let body = &slot[MARKER_LEN..];
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    Version::parse(std::str::from_utf8(&body[..end]).ok()?).ok()
}

fn marker() -> Vec<u8> {
    [MARKER_HEAD, MARKER_TAIL].concat()
}

/// The one slot of `binary`: the marker followed by a version and NUL padding. Other
/// copies of the marker (the pieces the compiler placed side by side, an empty slot
/// built at compile time) hold no version and do not count.
fn find_slot(binary: &[u8]) -> Result<usize, UpdateError> {
    let m = marker();
    let hits: Vec<usize> = binary
        .windows(m.len())
        .enumerate()
        .filter(|(i, w)| {
            *w == m.as_slice()
                && i + SLOT_LEN <= binary.len()
                && valid_slot(&binary[*i..i + SLOT_LEN])
        })
        .map(|(i, _)| i)
        .collect();
    match hits.as_slice() {
        [one] => Ok(*one),
        _ => Err(UpdateError::Malformed {
            what: "binary",
            reason: format!(
                "{} release version slot(s) where an Outpost binary has one",
                hits.len()
            ),
        }),
    }
}

fn valid_slot(slot: &[u8]) -> bool {
    let body = &slot[MARKER_LEN..];
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    end > 0 && body[end..].iter().all(|&b| b == 0) && parse_slot(slot).is_some()
}

/// The version stamped in `binary` (the bytes of an Outpost executable).
pub fn read(binary: &[u8]) -> Result<Version, UpdateError> {
    let at = find_slot(binary)?;
    parse_slot(&binary[at..at + SLOT_LEN]).ok_or_else(|| UpdateError::Malformed {
        what: "binary",
        reason: "its release version slot holds no version".into(),
    })
}

/// Rewrites the version slot of `binary` to `version`.
pub fn write(binary: &mut [u8], version: &Version) -> Result<(), UpdateError> {
    let at = find_slot(binary)?;
    let v = version.to_string();
    if v.len() >= SLOT_LEN - MARKER_LEN {
        return Err(UpdateError::Malformed {
            what: "version",
            reason: format!("{v} is longer than the slot"),
        });
    }
    let body = &mut binary[at + MARKER_LEN..at + SLOT_LEN];
    body.fill(0);
    body[..v.len()].copy_from_slice(v.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_found_read_and_rewritten_in_place() {
        let mut bin = b"\x7fELF....".to_vec();
        bin.extend_from_slice(&make_slot("1.2.3"));
        bin.extend_from_slice(b"....tail");
        let len = bin.len();
        assert_eq!(read(&bin).unwrap(), Version::new(1, 2, 3));
        write(&mut bin, &Version::parse("1.2.4-rc.1").unwrap()).unwrap();
        assert_eq!(bin.len(), len);
        assert_eq!(read(&bin).unwrap().to_string(), "1.2.4-rc.1");
        assert!(bin.ends_with(b"....tail"));
    }

    #[test]
    fn no_slot_or_two_slots_are_refused() {
        assert!(read(b"not a binary").is_err());
        // A bare marker, or one followed by no version, is not a slot.
        let mut decoys = marker();
        decoys.extend_from_slice(&[0xff; 80]);
        decoys.extend_from_slice(&make_slot(""));
        decoys.extend_from_slice(&make_slot("3.0.0"));
        assert_eq!(read(&decoys).unwrap(), Version::new(3, 0, 0));
        let mut two = make_slot("1.0.0").to_vec();
        two.extend_from_slice(&make_slot("2.0.0"));
        let err = read(&two).unwrap_err();
        assert!(err.to_string().contains("2 release version slot"), "{err}");
    }

    #[test]
    fn the_running_version_is_the_packages_when_not_stamped() {
        assert_eq!(running_version().to_string(), env!("CARGO_PKG_VERSION"));
    }
}
