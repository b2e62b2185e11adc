//! The decoder: ESC/POS bytes back to commands, one at a time, from a stream.
//!
//! The printer simulator runs on it, and the encoder's tests check their output
//! against it. It knows every command the encoder emits, plus the common commands of
//! fixed or declared length that other software sends (line spacing, `GS ( X`
//! functions, raster images), so it can step over them exactly. A command it does not
//! know is skipped as its first two bytes, which is what a real printer does with an
//! undefined code too: the bytes after it print as text.
//!
//! [`decode_one`] never reads past what a command declares and never asks for more
//! than [`MAX_COMMAND_BYTES`], so a stream of noise costs bounded memory.

use super::encode::{DLE, ESC, GS, LF};

/// The longest command the decoder waits for. A command that declares more is
/// skipped as its header.
pub const MAX_COMMAND_BYTES: usize = 128 * 1024;

/// One decoded command. Slices borrow from the buffer given to [`decode_one`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// Printable bytes in the current code page (0x20 and above).
    Text(&'a [u8]),
    /// LF: print the line and feed one line.
    LineFeed,
    /// CR: ignored by printers in line-feed mode.
    CarriageReturn,
    /// `ESC @`.
    Init,
    /// `ESC ! n`: font, emphasis, double height (bit 4), double width (bit 5), underline.
    PrintMode(u8),
    /// `ESC E n`.
    Emphasis(bool),
    /// `ESC - n`: 0 off, 1 thin, 2 thick (or '0', '1', '2').
    Underline(u8),
    /// `GS B n`: white on black.
    Reverse(bool),
    /// `ESC a n`: 0 left, 1 centre, 2 right (or '0', '1', '2').
    Align(u8),
    /// `ESC t n`: select a character code table.
    CodePage(u8),
    /// `ESC d n`: print and feed `n` lines.
    FeedLines(u8),
    /// `ESC J n`: print and feed `n` dots.
    FeedDots(u8),
    /// `ESC p m t1 t2`: drawer kick pulse on pin 2 (m = 0) or 5 (m = 1).
    DrawerKick {
        /// Connector pin selector.
        pin: u8,
        /// On time in 2 ms units.
        on: u8,
        /// Off time in 2 ms units.
        off: u8,
    },
    /// `GS V m [n]`: cut.
    Cut {
        /// Leaves a tab uncut.
        partial: bool,
        /// Dots fed before cutting (function B), else 0.
        feed: u8,
    },
    /// `GS h n`: barcode height.
    BarcodeHeight(u8),
    /// `GS w n`: barcode module width.
    BarcodeWidth(u8),
    /// `GS H n`: where the human-readable text goes.
    HriPosition(u8),
    /// `GS k`: print a barcode. `m` is the symbology in the format-2 numbering (65 to
    /// 79); format 1 (0 to 6) is mapped to it.
    Barcode {
        /// Symbology.
        m: u8,
        /// Its data.
        data: &'a [u8],
    },
    /// `GS ( k pL pH cn fn ...`: a 2D symbol function (cn 49 is QR).
    Symbol {
        /// Symbol type.
        cn: u8,
        /// Function number.
        fn_: u8,
        /// The bytes after `fn`.
        params: &'a [u8],
    },
    /// `DLE EOT n`: a real-time status request.
    StatusRequest(u8),
    /// `DLE ENQ n` or `DLE DC4 ...`: other real-time requests.
    RealTime(&'a [u8]),
    /// A command of known length the simulator has no use for, or an unknown code
    /// skipped as its first bytes.
    Skipped(&'a [u8]),
}

/// The result of decoding at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A command and the bytes it took.
    Command(Command<'a>, usize),
    /// The buffer ends inside a command: call again with at least `need` bytes.
    Incomplete {
        /// Bytes needed in all (not more), at least one more than given.
        need: usize,
    },
}

fn fixed<'a>(buf: &'a [u8], len: usize, cmd: impl FnOnce(&'a [u8]) -> Command<'a>) -> Decoded<'a> {
    if buf.len() < len {
        Decoded::Incomplete { need: len }
    } else {
        Decoded::Command(cmd(&buf[..len]), len)
    }
}

fn skip(buf: &[u8], len: usize) -> Decoded<'_> {
    fixed(buf, len, Command::Skipped)
}

/// Decode the command at the start of `buf`. An empty buffer is incomplete.
pub fn decode_one(buf: &[u8]) -> Decoded<'_> {
    let Some(&first) = buf.first() else {
        return Decoded::Incomplete { need: 1 };
    };
    match first {
        LF => Decoded::Command(Command::LineFeed, 1),
        b'\r' => Decoded::Command(Command::CarriageReturn, 1),
        ESC => esc(buf),
        GS => gs(buf),
        DLE => dle(buf),
        // FS: the Kanji commands; the two-byte ones are all that a receipt sends.
        0x1C => skip(buf, 2),
        b if b < 0x20 => Decoded::Command(Command::Skipped(&buf[..1]), 1),
        _ => {
            let len = buf.iter().position(|b| *b < 0x20).unwrap_or(buf.len());
            Decoded::Command(Command::Text(&buf[..len]), len)
        }
    }
}

fn esc(buf: &[u8]) -> Decoded<'_> {
    let Some(&code) = buf.get(1) else {
        return Decoded::Incomplete { need: 2 };
    };
    let arg = |f: fn(u8) -> Command<'static>| fixed(buf, 3, move |b| f(b[2]));
    match code {
        b'@' => Decoded::Command(Command::Init, 2),
        b'!' => arg(Command::PrintMode),
        b'E' => arg(|n| Command::Emphasis(n & 1 == 1)),
        b'-' => arg(Command::Underline),
        b'a' => arg(Command::Align),
        b't' => arg(Command::CodePage),
        b'd' => arg(Command::FeedLines),
        b'J' => arg(Command::FeedDots),
        b'p' => fixed(buf, 5, |b| Command::DrawerKick {
            pin: b[2],
            on: b[3],
            off: b[4],
        }),
        // ESC 2 (default spacing), ESC < (return home).
        b'2' | b'<' => skip(buf, 2),
        // One parameter: spacing, font, double strike, rotate, upside down, peripheral
        // select, character set, right spacing, panel buttons, ...
        b'3' | b'M' | b'G' | b'V' | b'{' | b'R' | b' ' | b'=' | b'U' | b'K' | b'c' => {
            // ESC c 3/4/5 n take one more byte after their sub-code.
            if code == b'c' {
                skip(buf, 4)
            } else {
                skip(buf, 3)
            }
        }
        // Two parameters: absolute and relative position.
        b'$' | b'\\' => skip(buf, 4),
        _ => skip(buf, 2),
    }
}

fn gs(buf: &[u8]) -> Decoded<'_> {
    let Some(&code) = buf.get(1) else {
        return Decoded::Incomplete { need: 2 };
    };
    let arg = |f: fn(u8) -> Command<'static>| fixed(buf, 3, move |b| f(b[2]));
    match code {
        b'B' => arg(|n| Command::Reverse(n & 1 == 1)),
        b'h' => arg(Command::BarcodeHeight),
        b'w' => arg(Command::BarcodeWidth),
        b'H' => arg(Command::HriPosition),
        b'V' => {
            let Some(&m) = buf.get(2) else {
                return Decoded::Incomplete { need: 3 };
            };
            match m {
                0 | 48 => Decoded::Command(
                    Command::Cut {
                        partial: false,
                        feed: 0,
                    },
                    3,
                ),
                1 | 49 => Decoded::Command(
                    Command::Cut {
                        partial: true,
                        feed: 0,
                    },
                    3,
                ),
                65 | 97 | 103 => fixed(buf, 4, |b| Command::Cut {
                    partial: false,
                    feed: b[3],
                }),
                66 | 98 | 104 => fixed(buf, 4, |b| Command::Cut {
                    partial: true,
                    feed: b[3],
                }),
                _ => skip(buf, 3),
            }
        }
        b'k' => barcode(buf),
        b'(' => {
            // GS ( X pL pH then pL + 256 pH bytes, for every X.
            if buf.len() < 5 {
                return Decoded::Incomplete { need: 5 };
            }
            let body = usize::from(buf[3]) | (usize::from(buf[4]) << 8);
            let len = 5 + body;
            if buf.len() < len {
                return Decoded::Incomplete { need: len };
            }
            if buf[2] == b'k' && body >= 2 {
                Decoded::Command(
                    Command::Symbol {
                        cn: buf[5],
                        fn_: buf[6],
                        params: &buf[7..len],
                    },
                    len,
                )
            } else {
                Decoded::Command(Command::Skipped(&buf[..len]), len)
            }
        }
        b'v' => {
            // GS v 0 m xL xH yL yH d1...dk, k = (xL + 256 xH) * (yL + 256 yH).
            if buf.len() < 8 {
                return Decoded::Incomplete { need: 8 };
            }
            let x = usize::from(buf[4]) | (usize::from(buf[5]) << 8);
            let y = usize::from(buf[6]) | (usize::from(buf[7]) << 8);
            let len = 8 + x * y;
            if len > MAX_COMMAND_BYTES {
                return Decoded::Command(Command::Skipped(&buf[..8]), 8);
            }
            skip(buf, len)
        }
        // One parameter: character size, HRI font, left margin (2), print area (2),
        // ASB enable, ...
        b'!' | b'f' | b'a' | b'b' | b'r' | b'I' => skip(buf, 3),
        b'L' | b'W' => skip(buf, 4),
        _ => skip(buf, 2),
    }
}

fn barcode(buf: &[u8]) -> Decoded<'_> {
    let Some(&m) = buf.get(2) else {
        return Decoded::Incomplete { need: 3 };
    };
    match m {
        // Format 1: NUL-terminated, at most 255 data bytes.
        0..=6 => {
            let data = &buf[3..];
            match data.iter().take(256).position(|b| *b == 0) {
                Some(n) => Decoded::Command(
                    Command::Barcode {
                        m: m + 65,
                        data: &data[..n],
                    },
                    3 + n + 1,
                ),
                None if data.len() >= 256 => Decoded::Command(Command::Skipped(&buf[..3]), 3),
                None => Decoded::Incomplete {
                    need: buf.len() + 1,
                },
            }
        }
        // Format 2: a length byte.
        65..=79 => {
            let Some(&n) = buf.get(3) else {
                return Decoded::Incomplete { need: 4 };
            };
            let len = 4 + usize::from(n);
            if buf.len() < len {
                return Decoded::Incomplete { need: len };
            }
            Decoded::Command(
                Command::Barcode {
                    m,
                    data: &buf[4..len],
                },
                len,
            )
        }
        _ => skip(buf, 3),
    }
}

fn dle(buf: &[u8]) -> Decoded<'_> {
    let Some(&code) = buf.get(1) else {
        return Decoded::Incomplete { need: 2 };
    };
    match code {
        0x04 => fixed(buf, 3, |b| Command::StatusRequest(b[2])),
        0x05 => fixed(buf, 3, Command::RealTime),
        // DLE DC4 fn: fn 1 (pulse) and 2 (power off) take two more bytes.
        0x14 => {
            let Some(&f) = buf.get(2) else {
                return Decoded::Incomplete { need: 3 };
            };
            if matches!(f, 1 | 2) {
                fixed(buf, 5, Command::RealTime)
            } else {
                fixed(buf, 3, Command::RealTime)
            }
        }
        _ => skip(buf, 2),
    }
}

/// Decode a whole buffer into commands, for tests and tools. Fails with the offset
/// where the buffer ends inside a command.
pub fn decode_all(mut buf: &[u8]) -> Result<Vec<Command<'_>>, usize> {
    let total = buf.len();
    let mut out = Vec::new();
    while !buf.is_empty() {
        match decode_one(buf) {
            Decoded::Command(c, n) => {
                out.push(c);
                buf = &buf[n..];
            }
            Decoded::Incomplete { .. } => return Err(total - buf.len()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::encode::{EncodeOptions, encode};
    use super::*;
    use crate::printer::{Align, BarcodeKind, PrintJob, PrintOp, TextStyle};

    fn sample() -> PrintJob {
        PrintJob {
            id: "r1".into(),
            ops: vec![
                PrintOp::Text {
                    text: "SHOP\n".into(),
                    style: TextStyle {
                        bold: true,
                        double_width: true,
                        align: Align::Center,
                        ..TextStyle::default()
                    },
                },
                PrintOp::Text {
                    text: "Milk 1,20 €\n".into(),
                    style: TextStyle::default(),
                },
                PrintOp::Barcode {
                    kind: BarcodeKind::Code128,
                    data: "R-1".into(),
                    hri: false,
                },
                PrintOp::Qr {
                    data: "https://r/1".into(),
                    module: 5,
                },
                PrintOp::Feed { lines: 2 },
                PrintOp::Cut { partial: false },
            ],
        }
    }

    #[test]
    fn everything_the_encoder_emits_decodes_exactly() {
        let bytes = encode(&sample(), &EncodeOptions::default()).unwrap();
        let cmds = decode_all(&bytes).unwrap();
        assert_eq!(cmds[0], Command::Init);
        assert_eq!(cmds[1], Command::CodePage(19));
        assert!(cmds.contains(&Command::Align(1)));
        assert!(cmds.contains(&Command::PrintMode(0x20)));
        assert!(cmds.contains(&Command::Text(b"Milk 1,20 \xD5")));
        assert!(cmds.contains(&Command::Barcode {
            m: 73,
            data: b"{BR-1"
        }));
        assert!(cmds.contains(&Command::Symbol {
            cn: 49,
            fn_: 80,
            params: b"0https://r/1"
        }));
        assert!(cmds.contains(&Command::FeedLines(2)));
        assert_eq!(
            cmds.last(),
            Some(&Command::Cut {
                partial: false,
                feed: 0
            })
        );
        assert!(!cmds.iter().any(|c| matches!(c, Command::Skipped(_))));
    }

    #[test]
    fn every_truncation_is_incomplete_never_a_panic() {
        let bytes = encode(&sample(), &EncodeOptions::default()).unwrap();
        for cut in 0..bytes.len() {
            let part = &bytes[..cut];
            let mut at = 0;
            loop {
                match decode_one(&part[at..]) {
                    Decoded::Command(_, n) => {
                        assert!(n > 0);
                        at += n;
                    }
                    Decoded::Incomplete { need } => {
                        assert!(need > part.len() - at, "cut {cut}: need {need}");
                        break;
                    }
                }
            }
        }
    }

    #[test]
    fn unknown_codes_are_skipped_and_the_stream_goes_on() {
        let cmds = decode_all(b"\x1bZ\x1d\xffA\x10\x99\x07B\n").unwrap();
        assert_eq!(
            cmds,
            vec![
                Command::Skipped(b"\x1bZ"),
                Command::Skipped(b"\x1d\xff"),
                Command::Text(b"A"),
                Command::Skipped(b"\x10\x99"),
                Command::Skipped(b"\x07"),
                Command::Text(b"B"),
                Command::LineFeed,
            ]
        );
    }

    #[test]
    fn declared_lengths_are_bounded() {
        // A raster image declaring 65535 x 65535 bytes is skipped as its header.
        let cmds = decode_all(b"\x1dv0\x00\xff\xff\xff\xffX").unwrap();
        assert_eq!(cmds[0], Command::Skipped(b"\x1dv0\x00\xff\xff\xff\xff"));
        // A format-1 barcode without its NUL within 256 bytes is skipped as its header.
        let mut b = b"\x1dk\x02".to_vec();
        b.extend(std::iter::repeat_n(b'1', 300));
        assert_eq!(
            decode_one(&b),
            Decoded::Command(Command::Skipped(b"\x1dk\x02"), 3)
        );
        // A GS ( k declaring more than it has waits for exactly that much.
        assert_eq!(
            decode_one(b"\x1d(k\x10\x00\x31"),
            Decoded::Incomplete { need: 21 }
        );
    }

    #[test]
    fn random_bytes_always_make_progress() {
        // Deterministic pseudo-random noise: decoding either consumes or asks for more.
        let mut x: u32 = 0x1234_5678;
        let noise: Vec<u8> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        let mut at = 0;
        let mut steps = 0;
        while at < noise.len() && steps < noise.len() {
            match decode_one(&noise[at..]) {
                Decoded::Command(_, n) => at += n,
                Decoded::Incomplete { need } => {
                    assert!(need <= MAX_COMMAND_BYTES);
                    break;
                }
            }
            steps += 1;
        }
        assert!(at > 0);
    }
}
