//! Code page 858 (PC858: Latin-1 with the euro sign), the page the driver selects with
//! `ESC t 19`, and the mapping from Unicode to it.
//!
//! PC858 is PC850 with `€` at 0xD5. Everything from 0x20 to 0x7E is ASCII.

/// The `ESC t` number of PC858 on Epson-compatible printers.
pub const ESC_T_PC858: u8 = 19;

/// What the driver prints for a character the page cannot show.
pub const REPLACEMENT: u8 = b'?';

/// The characters of bytes 0x80 to 0xFF in PC858.
pub const HIGH_HALF: [char; 128] = [
    '\u{00C7}', '\u{00FC}', '\u{00E9}', '\u{00E2}', '\u{00E4}', '\u{00E0}', '\u{00E5}', '\u{00E7}',
    '\u{00EA}', '\u{00EB}', '\u{00E8}', '\u{00EF}', '\u{00EE}', '\u{00EC}', '\u{00C4}', '\u{00C5}',
    '\u{00C9}', '\u{00E6}', '\u{00C6}', '\u{00F4}', '\u{00F6}', '\u{00F2}', '\u{00FB}', '\u{00F9}',
    '\u{00FF}', '\u{00D6}', '\u{00DC}', '\u{00F8}', '\u{00A3}', '\u{00D8}', '\u{00D7}', '\u{0192}',
    '\u{00E1}', '\u{00ED}', '\u{00F3}', '\u{00FA}', '\u{00F1}', '\u{00D1}', '\u{00AA}', '\u{00BA}',
    '\u{00BF}', '\u{00AE}', '\u{00AC}', '\u{00BD}', '\u{00BC}', '\u{00A1}', '\u{00AB}', '\u{00BB}',
    '\u{2591}', '\u{2592}', '\u{2593}', '\u{2502}', '\u{2524}', '\u{00C1}', '\u{00C2}', '\u{00C0}',
    '\u{00A9}', '\u{2563}', '\u{2551}', '\u{2557}', '\u{255D}', '\u{00A2}', '\u{00A5}', '\u{2510}',
    '\u{2514}', '\u{2534}', '\u{252C}', '\u{251C}', '\u{2500}', '\u{253C}', '\u{00E3}', '\u{00C3}',
    '\u{255A}', '\u{2554}', '\u{2569}', '\u{2566}', '\u{2560}', '\u{2550}', '\u{256C}', '\u{00A4}',
    '\u{00F0}', '\u{00D0}', '\u{00CA}', '\u{00CB}', '\u{00C8}', '\u{20AC}', '\u{00CD}', '\u{00CE}',
    '\u{00CF}', '\u{2518}', '\u{250C}', '\u{2588}', '\u{2584}', '\u{00A6}', '\u{00CC}', '\u{2580}',
    '\u{00D3}', '\u{00DF}', '\u{00D4}', '\u{00D2}', '\u{00F5}', '\u{00D5}', '\u{00B5}', '\u{00FE}',
    '\u{00DE}', '\u{00DA}', '\u{00DB}', '\u{00D9}', '\u{00FD}', '\u{00DD}', '\u{00AF}', '\u{00B4}',
    '\u{00AD}', '\u{00B1}', '\u{2017}', '\u{00BE}', '\u{00B6}', '\u{00A7}', '\u{00F7}', '\u{00B8}',
    '\u{00B0}', '\u{00A8}', '\u{00B7}', '\u{00B9}', '\u{00B3}', '\u{00B2}', '\u{25A0}', '\u{00A0}',
];

/// The PC858 byte of `c`, or `None` when the page cannot show it. Control characters
/// have no byte: the encoder decides what a line end or a tab becomes.
pub fn to_pc858(c: char) -> Option<u8> {
    let u = c as u32;
    if (0x20..0x7F).contains(&u) {
        return Some(u as u8);
    }
    // 128 entries: a linear scan is cheaper than building a map on every call, and
    // receipts are short.
    HIGH_HALF
        .iter()
        .position(|&h| h == c)
        .map(|i| 0x80 + i as u8)
}

/// The character of PC858 byte `b`; control bytes below 0x20 and 0x7F give `None`.
pub fn from_pc858(b: u8) -> Option<char> {
    match b {
        0x20..=0x7E => Some(b as char),
        0x80..=0xFF => Some(HIGH_HALF[usize::from(b - 0x80)]),
        _ => None,
    }
}

/// Encode text to PC858, replacing what the page cannot show with `?`. Line ends and
/// other control characters are the caller's business and must not be passed here;
/// they are replaced too.
pub fn encode_lossy(text: &str, out: &mut Vec<u8>) {
    out.extend(text.chars().map(|c| to_pc858(c).unwrap_or(REPLACEMENT)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euro_and_latin_letters_map_and_the_rest_is_replaced() {
        let mut out = Vec::new();
        encode_lossy("Café 1,50 € ü ß 日本 😀", &mut out);
        assert_eq!(out, b"Caf\x82 1,50 \xD5 \x81 \xE1 ?? ?".to_vec());
    }

    #[test]
    fn every_high_byte_round_trips() {
        for b in 0x80..=0xFFu8 {
            let c = from_pc858(b).unwrap();
            assert_eq!(to_pc858(c), Some(b), "byte {b:#04x} ({c})");
        }
        assert_eq!(from_pc858(0x1B), None);
        assert_eq!(to_pc858('\n'), None);
    }
}
