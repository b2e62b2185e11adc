//! The encoder: a [`PrintJob`] to ESC/POS bytes.
//!
//! Every job starts with `ESC @` (initialise) and `ESC t 19` (PC858), so a job never
//! inherits a style or page from a job before it, whatever happened to that one.
//! Styles are sent only when they change. Every command this module emits is listed
//! in `docs/escpos.md` and parsed by [`decode`](super::decode).

use crate::printer::{Align, BarcodeKind, PrintJob, PrintOp, TextStyle};

use super::codepage;

/// ESC.
pub const ESC: u8 = 0x1B;
/// GS.
pub const GS: u8 = 0x1D;
/// DLE.
pub const DLE: u8 = 0x10;
/// EOT.
pub const EOT: u8 = 0x04;
/// LF: print the line buffer and feed one line.
pub const LF: u8 = 0x0A;

/// The largest job the encoder produces, in bytes. A receipt is a few kilobytes; a
/// job past this is a caller's mistake, refused before anything is sent.
pub const MAX_JOB_BYTES: usize = 256 * 1024;
/// The most data a QR code takes (version 40, numeric, level L).
pub const MAX_QR_BYTES: usize = 7089;

/// Why a job cannot be encoded. Nothing has been sent when this is returned.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A barcode's data does not fit its symbology.
    #[error("barcode {kind:?} cannot encode {data:?}: {reason}")]
    Barcode {
        /// The symbology.
        kind: BarcodeKind,
        /// The data given.
        data: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A QR code's data is empty or too long, or its module size is out of range.
    #[error("QR code refused: {0}")]
    Qr(String),
    /// The job is larger than [`MAX_JOB_BYTES`].
    #[error("print job is {0} bytes, more than the {MAX_JOB_BYTES} allowed")]
    TooLarge(usize),
}

/// Knobs of the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Lines fed before a cut, so the last printed line clears the cutter.
    pub cut_feed_lines: u8,
    /// Barcode height in dots (`GS h`).
    pub barcode_height: u8,
    /// Barcode module width, 2 to 6 (`GS w`).
    pub barcode_width: u8,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            cut_feed_lines: 3,
            barcode_height: 80,
            barcode_width: 2,
        }
    }
}

/// `ESC @`: clear the buffer and reset every mode.
pub const INIT: [u8; 2] = [ESC, b'@'];

/// `DLE EOT n`: ask for real-time status `n` (1 printer, 2 offline cause, 4 paper).
pub fn status_query(n: u8) -> [u8; 3] {
    [DLE, EOT, n]
}

/// `ESC p 0 t1 t2`: a pulse on drawer connector pin 2, on for 50 ms and off for 500 ms
/// (units of 2 ms), the timing most drawers want.
pub const DRAWER_KICK: [u8; 5] = [ESC, b'p', 0, 25, 250];

/// Encode `job` into ESC/POS. The whole job is built in memory (bounded by
/// [`MAX_JOB_BYTES`]) so it is either sent whole or refused before a byte goes out.
pub fn encode(job: &PrintJob, opts: &EncodeOptions) -> Result<Vec<u8>, EncodeError> {
    let mut e = Encoder {
        out: Vec::with_capacity(256),
        style: None,
        line_open: false,
        opts,
    };
    e.out.extend_from_slice(&INIT);
    e.out.extend_from_slice(&[ESC, b't', codepage::ESC_T_PC858]);
    for op in &job.ops {
        e.op(op)?;
        if e.out.len() > MAX_JOB_BYTES {
            return Err(EncodeError::TooLarge(e.out.len()));
        }
    }
    Ok(e.out)
}

struct Encoder<'a> {
    out: Vec<u8>,
    /// The style the printer is in; `None` right after `ESC @` forces the first text to
    /// send its style in full.
    style: Option<TextStyle>,
    /// Text was written since the last line end.
    line_open: bool,
    opts: &'a EncodeOptions,
}

impl Encoder<'_> {
    fn op(&mut self, op: &PrintOp) -> Result<(), EncodeError> {
        match op {
            PrintOp::Text { text, style } => self.text(text, style),
            PrintOp::Feed { lines } => {
                // ESC d prints what is in the line buffer first.
                self.out.extend_from_slice(&[ESC, b'd', *lines]);
                self.line_open = false;
            }
            PrintOp::Barcode { kind, data, hri } => self.barcode(*kind, data, *hri)?,
            PrintOp::Qr { data, module } => self.qr(data, *module)?,
            PrintOp::Cut { partial } => {
                self.own_line();
                if self.opts.cut_feed_lines > 0 {
                    self.out
                        .extend_from_slice(&[ESC, b'd', self.opts.cut_feed_lines]);
                }
                self.out.extend_from_slice(&[GS, b'V', u8::from(*partial)]);
                self.line_open = false;
            }
        }
        Ok(())
    }

    fn set_style(&mut self, s: &TextStyle) {
        let old = self.style;
        let changed = |f: fn(&TextStyle) -> bool| old.is_none_or(|o| f(&o) != f(s));
        if changed(|t| t.double_width) || changed(|t| t.double_height) {
            // ESC ! also sets emphasis and underline; those follow below, so send
            // them again whatever they were.
            let mode = (u8::from(s.double_height) << 4) | (u8::from(s.double_width) << 5);
            self.out.extend_from_slice(&[ESC, b'!', mode]);
            self.out.extend_from_slice(&[ESC, b'E', u8::from(s.bold)]);
            self.out
                .extend_from_slice(&[ESC, b'-', u8::from(s.underline)]);
        } else {
            if changed(|t| t.bold) {
                self.out.extend_from_slice(&[ESC, b'E', u8::from(s.bold)]);
            }
            if changed(|t| t.underline) {
                self.out
                    .extend_from_slice(&[ESC, b'-', u8::from(s.underline)]);
            }
        }
        if changed(|t| t.invert) {
            self.out.extend_from_slice(&[GS, b'B', u8::from(s.invert)]);
        }
        if old.is_none_or(|o| o.align != s.align) {
            self.align(s.align);
        }
        self.style = Some(*s);
    }

    fn align(&mut self, a: Align) {
        let n = match a {
            Align::Left => 0,
            Align::Center => 1,
            Align::Right => 2,
        };
        self.out.extend_from_slice(&[ESC, b'a', n]);
    }

    fn text(&mut self, text: &str, style: &TextStyle) {
        self.set_style(style);
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                self.out.push(LF);
                self.line_open = false;
            }
            // A tab becomes a space and every other control character a `?`: a
            // stray ESC in a product name must never become a command.
            let cleaned: String = line
                .chars()
                .filter(|c| *c != '\r')
                .map(|c| if c == '\t' { ' ' } else { c })
                .collect();
            codepage::encode_lossy(&cleaned, &mut self.out);
            self.line_open |= !cleaned.is_empty();
        }
    }

    /// Barcodes and QR codes stand on their own line: finish any open text line.
    fn own_line(&mut self) {
        if self.line_open {
            self.out.push(LF);
            self.line_open = false;
        }
    }

    fn barcode(&mut self, kind: BarcodeKind, data: &str, hri: bool) -> Result<(), EncodeError> {
        let (m, payload) = barcode_payload(kind, data)?;
        self.own_line();
        self.out
            .extend_from_slice(&[GS, b'h', self.opts.barcode_height.max(1)]);
        self.out
            .extend_from_slice(&[GS, b'w', self.opts.barcode_width.clamp(2, 6)]);
        self.out
            .extend_from_slice(&[GS, b'H', if hri { 2 } else { 0 }]);
        self.out
            .extend_from_slice(&[GS, b'k', m, payload.len() as u8]);
        self.out.extend_from_slice(&payload);
        self.out.push(LF);
        Ok(())
    }

    fn qr(&mut self, data: &str, module: u8) -> Result<(), EncodeError> {
        if data.is_empty() {
            return Err(EncodeError::Qr("no data".into()));
        }
        if data.len() > MAX_QR_BYTES {
            return Err(EncodeError::Qr(format!(
                "{} bytes of data, at most {MAX_QR_BYTES}",
                data.len()
            )));
        }
        if !(1..=16).contains(&module) {
            return Err(EncodeError::Qr(format!(
                "module size {module}, must be 1 to 16"
            )));
        }
        self.own_line();
        // fn 165: model 2; fn 167: module size; fn 169: error correction M;
        // fn 180: store the data; fn 181: print it.
        self.out
            .extend_from_slice(&[GS, b'(', b'k', 4, 0, 49, 65, 50, 0]);
        self.out
            .extend_from_slice(&[GS, b'(', b'k', 3, 0, 49, 67, module]);
        self.out
            .extend_from_slice(&[GS, b'(', b'k', 3, 0, 49, 69, 49]);
        let len = data.len() + 3;
        self.out
            .extend_from_slice(&[GS, b'(', b'k', (len & 0xFF) as u8, (len >> 8) as u8]);
        self.out.extend_from_slice(&[49, 80, 48]);
        self.out.extend_from_slice(data.as_bytes());
        self.out
            .extend_from_slice(&[GS, b'(', b'k', 3, 0, 49, 81, 48]);
        self.out.push(LF);
        Ok(())
    }
}

/// The `GS k` format-2 symbology number (`m`, 65 to 73) and the bytes to send, after
/// checking the data fits the symbology.
pub fn barcode_payload(kind: BarcodeKind, data: &str) -> Result<(u8, Vec<u8>), EncodeError> {
    let bad = |reason| EncodeError::Barcode {
        kind,
        data: data.to_owned(),
        reason,
    };
    let digits = !data.is_empty() && data.bytes().all(|b| b.is_ascii_digit());
    match kind {
        BarcodeKind::UpcA if digits && (11..=12).contains(&data.len()) => {
            Ok((65, data.as_bytes().to_vec()))
        }
        BarcodeKind::UpcA => Err(bad("UPC-A takes 11 or 12 digits")),
        BarcodeKind::Ean13 if digits && (12..=13).contains(&data.len()) => {
            Ok((67, data.as_bytes().to_vec()))
        }
        BarcodeKind::Ean13 => Err(bad("EAN-13 takes 12 or 13 digits")),
        BarcodeKind::Ean8 if digits && (7..=8).contains(&data.len()) => {
            Ok((68, data.as_bytes().to_vec()))
        }
        BarcodeKind::Ean8 => Err(bad("EAN-8 takes 7 or 8 digits")),
        BarcodeKind::Code39 => {
            let ok = data
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b" -.$/+%".contains(&b));
            if data.is_empty() || data.len() > 255 || !ok {
                Err(bad(
                    "Code 39 takes 1 to 255 of A-Z, 0-9, space and - . $ / + %",
                ))
            } else {
                Ok((69, data.as_bytes().to_vec()))
            }
        }
        BarcodeKind::Itf if digits && data.len().is_multiple_of(2) && data.len() <= 254 => {
            Ok((70, data.as_bytes().to_vec()))
        }
        BarcodeKind::Itf => Err(bad("ITF takes an even number of digits, at most 254")),
        BarcodeKind::Code128 => {
            // Code set B ("{B") holds every printable ASCII character; a literal `{`
            // is sent as "{{".
            let printable = data.bytes().all(|b| (0x20..0x7F).contains(&b));
            let mut payload = b"{B".to_vec();
            for b in data.bytes() {
                if b == b'{' {
                    payload.push(b'{');
                }
                payload.push(b);
            }
            if data.is_empty() || !printable || payload.len() > 255 {
                Err(bad("Code 128 takes 1 to 253 printable ASCII characters"))
            } else {
                Ok((73, payload))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(ops: Vec<PrintOp>) -> PrintJob {
        PrintJob {
            id: "t".into(),
            ops,
        }
    }

    fn text(t: &str, style: TextStyle) -> PrintOp {
        PrintOp::Text {
            text: t.into(),
            style,
        }
    }

    #[test]
    fn a_plain_line_and_a_cut_are_exact_bytes() {
        let out = encode(
            &job(vec![
                text("Hi €\n", TextStyle::default()),
                PrintOp::Cut { partial: true },
            ]),
            &EncodeOptions::default(),
        )
        .unwrap();
        let mut want = vec![ESC, b'@', ESC, b't', 19];
        want.extend_from_slice(&[ESC, b'!', 0, ESC, b'E', 0, ESC, b'-', 0, GS, b'B', 0]);
        want.extend_from_slice(&[ESC, b'a', 0]);
        want.extend_from_slice(b"Hi \xD5\n");
        want.extend_from_slice(&[ESC, b'd', 3, GS, b'V', 1]);
        assert_eq!(out, want);
    }

    #[test]
    fn styles_are_sent_only_when_they_change() {
        let bold = TextStyle {
            bold: true,
            align: Align::Center,
            ..TextStyle::default()
        };
        let out = encode(
            &job(vec![
                text("a", bold),
                text("b", bold),
                text("c\n", TextStyle::default()),
            ]),
            &EncodeOptions::default(),
        )
        .unwrap();
        let s = &out[5..];
        // Full style once, nothing between a and b, then bold off and left align.
        assert!(s.ends_with(&[b'a', b'b', ESC, b'E', 0, ESC, b'a', 0, b'c', LF]));
        assert_eq!(s.iter().filter(|b| **b == b'E').count(), 2);
    }

    #[test]
    fn a_stray_escape_in_text_cannot_become_a_command() {
        let out = encode(
            &job(vec![text("x\x1bp\x00\t\r", TextStyle::default())]),
            &EncodeOptions::default(),
        )
        .unwrap();
        assert!(out.ends_with(b"x?p? "));
    }

    #[test]
    fn barcodes_are_checked_and_framed() {
        let out = encode(
            &job(vec![PrintOp::Barcode {
                kind: BarcodeKind::Ean13,
                data: "4006381333931".into(),
                hri: true,
            }]),
            &EncodeOptions::default(),
        )
        .unwrap();
        let mut want = vec![GS, b'h', 80, GS, b'w', 2, GS, b'H', 2, GS, b'k', 67, 13];
        want.extend_from_slice(b"4006381333931\n");
        assert!(out.ends_with(&want));
        for (kind, data) in [
            (BarcodeKind::Ean13, "12345"),
            (BarcodeKind::Ean8, "abcdefg"),
            (BarcodeKind::UpcA, ""),
            (BarcodeKind::Itf, "123"),
            (BarcodeKind::Code39, "lower"),
            (BarcodeKind::Code128, "tab\there"),
        ] {
            assert!(
                matches!(
                    barcode_payload(kind, data),
                    Err(EncodeError::Barcode { .. })
                ),
                "{kind:?} {data:?}"
            );
        }
        assert_eq!(
            barcode_payload(BarcodeKind::Code128, "a{b").unwrap().1,
            b"{Ba{{b".to_vec()
        );
        let long = "A".repeat(300);
        assert!(barcode_payload(BarcodeKind::Code128, &long).is_err());
    }

    #[test]
    fn qr_is_framed_with_its_length_and_limits_are_enforced() {
        let out = encode(
            &job(vec![PrintOp::Qr {
                data: "https://x".into(),
                module: 4,
            }]),
            &EncodeOptions::default(),
        )
        .unwrap();
        let store = [GS, b'(', b'k', 12, 0, 49, 80, 48];
        let at = out.windows(8).position(|w| w == store).unwrap();
        assert_eq!(&out[at + 8..at + 17], b"https://x");
        for (data, module) in [("", 4), ("x", 0), ("x", 17)] {
            let r = encode(
                &job(vec![PrintOp::Qr {
                    data: data.into(),
                    module,
                }]),
                &EncodeOptions::default(),
            );
            assert!(matches!(r, Err(EncodeError::Qr(_))));
        }
        let big = "9".repeat(MAX_QR_BYTES + 1);
        assert!(
            encode(
                &job(vec![PrintOp::Qr {
                    data: big,
                    module: 3
                }]),
                &EncodeOptions::default()
            )
            .is_err()
        );
    }

    #[test]
    fn an_oversized_job_is_refused_whole() {
        let line = "x".repeat(1000);
        let ops = (0..300)
            .map(|_| text(&line, TextStyle::default()))
            .collect();
        assert!(matches!(
            encode(&job(ops), &EncodeOptions::default()),
            Err(EncodeError::TooLarge(_))
        ));
    }
}
