//! MDB cashless level 1: VMC commands, reader responses and the bridge's line
//! framing.
//!
//! # The bridge
//!
//! A serial MDB bridge (a 9-bit MDB master on one side, a UART or USB CDC port on the
//! other) carries one MDB block per ASCII line, so the host never deals with the 9th
//! (mode) bit or MDB timing:
//!
//! - host to bridge: `T <hex>` — address byte and data, without checksum. The bridge
//!   sets the mode bit on the first byte, appends the checksum, sends the block and
//!   waits for the peripheral (retransmitting per MDB on a bad checksum).
//! - bridge to host, exactly one line per `T`: `A` (the peripheral ACKed, no data),
//!   `D <hex>` (the peripheral's data, its checksum checked and removed; the bridge
//!   has ACKed it), `N` (the peripheral NAKed), `X` (no answer within the MDB
//!   response time).
//!
//! Lines end with CR LF (LF alone is accepted) and are at most [`MAX_LINE`] bytes.

use crate::transport::LineFramer;

/// The address of cashless device #1.
pub const CASHLESS1: u8 = 0x10;
/// Longest MDB block, data and checksum (MDB limits a block to 36 bytes).
pub const MAX_BLOCK: usize = 36;
/// Longest bridge line: a tag, a space and a block in hex.
pub const MAX_LINE: usize = 2 + 2 * MAX_BLOCK;
/// The item number meaning "not given" in VEND REQUEST and VEND SUCCESS.
pub const NO_ITEM: u16 = 0xFFFF;

/// Why bytes are not what the subset allows.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MdbError {
    /// Not a bridge line (`A`, `N`, `X`, `D <hex>`, `T <hex>`).
    #[error("bad bridge line {0:?}")]
    BadLine(String),
    /// Odd length or a non-hex digit.
    #[error("bad hex in bridge line")]
    BadHex,
    /// Longer than an MDB block.
    #[error("block of {0} bytes is longer than MDB allows")]
    TooLong(usize),
    /// A reader response this subset does not know.
    #[error("unknown reader response 0x{0:02X}")]
    UnknownResponse(u8),
    /// A response shorter than its fixed length.
    #[error("reader response 0x{code:02X} cut short: {have} of {need} bytes")]
    Truncated {
        /// The response code.
        code: u8,
        /// Bytes present.
        have: usize,
        /// Bytes it needs.
        need: usize,
    },
    /// A VMC command outside the subset, or to another address.
    #[error("unknown command {0:02X?}")]
    UnknownCommand(Vec<u8>),
}

/// A VMC command to the cashless reader (level 1 subset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `10`: RESET.
    Reset,
    /// `11 00`: SETUP config data: VMC feature level, display columns, rows, type.
    SetupConfig {
        /// VMC feature level (1).
        vmc_level: u8,
        /// Display columns (0: none).
        columns: u8,
        /// Display rows.
        rows: u8,
        /// Display type.
        display: u8,
    },
    /// `11 01`: SETUP max/min prices, in scaled units.
    SetupPrices {
        /// Highest price the VMC will ask for.
        max: u16,
        /// Lowest.
        min: u16,
    },
    /// `12`: POLL.
    Poll,
    /// `13 00`: VEND REQUEST.
    VendRequest {
        /// Price in scaled units.
        price: u16,
        /// Item number.
        item: u16,
    },
    /// `13 01`: VEND CANCEL, withdraws a VEND REQUEST not yet answered.
    VendCancel,
    /// `13 02`: VEND SUCCESS, the product was dispensed: the charge stands.
    VendSuccess {
        /// Item number.
        item: u16,
    },
    /// `13 03`: VEND FAILURE, nothing was dispensed: the reader returns the money.
    VendFailure,
    /// `13 04`: SESSION COMPLETE.
    SessionComplete,
    /// `14 00`: READER DISABLE.
    ReaderDisable,
    /// `14 01`: READER ENABLE.
    ReaderEnable,
    /// `14 02`: READER CANCEL.
    ReaderCancel,
}

impl Command {
    /// The block: address and command byte, then data, no checksum.
    pub fn bytes(&self) -> Vec<u8> {
        match *self {
            Command::Reset => vec![0x10],
            Command::SetupConfig {
                vmc_level,
                columns,
                rows,
                display,
            } => vec![0x11, 0x00, vmc_level, columns, rows, display],
            Command::SetupPrices { max, min } => {
                let [a, b] = max.to_be_bytes();
                let [c, d] = min.to_be_bytes();
                vec![0x11, 0x01, a, b, c, d]
            }
            Command::Poll => vec![0x12],
            Command::VendRequest { price, item } => {
                let [a, b] = price.to_be_bytes();
                let [c, d] = item.to_be_bytes();
                vec![0x13, 0x00, a, b, c, d]
            }
            Command::VendCancel => vec![0x13, 0x01],
            Command::VendSuccess { item } => {
                let [a, b] = item.to_be_bytes();
                vec![0x13, 0x02, a, b]
            }
            Command::VendFailure => vec![0x13, 0x03],
            Command::SessionComplete => vec![0x13, 0x04],
            Command::ReaderDisable => vec![0x14, 0x00],
            Command::ReaderEnable => vec![0x14, 0x01],
            Command::ReaderCancel => vec![0x14, 0x02],
        }
    }

    /// The host's bridge line for this command, with CR LF.
    pub fn line(&self) -> String {
        host_line(&self.bytes())
    }
}

/// Parse a command block (what the bridge receives in a `T` line). Never panics.
pub fn parse_command(b: &[u8]) -> Result<Command, MdbError> {
    let u = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let cmd = match b {
        [0x10] => Command::Reset,
        [0x11, 0x00, l, c, r, d] => Command::SetupConfig {
            vmc_level: *l,
            columns: *c,
            rows: *r,
            display: *d,
        },
        [0x11, 0x01, _, _, _, _] => Command::SetupPrices {
            max: u(2),
            min: u(4),
        },
        [0x12] => Command::Poll,
        [0x13, 0x00, _, _, _, _] => Command::VendRequest {
            price: u(2),
            item: u(4),
        },
        [0x13, 0x01] => Command::VendCancel,
        [0x13, 0x02, _, _] => Command::VendSuccess { item: u(2) },
        [0x13, 0x03] => Command::VendFailure,
        [0x13, 0x04] => Command::SessionComplete,
        [0x14, 0x00] => Command::ReaderDisable,
        [0x14, 0x01] => Command::ReaderEnable,
        [0x14, 0x02] => Command::ReaderCancel,
        _ => {
            return Err(MdbError::UnknownCommand(
                b.iter().take(8).copied().collect(),
            ));
        }
    };
    Ok(cmd)
}

/// What the reader said about itself in answer to SETUP config data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderConfig {
    /// Reader feature level (1, 2 or 3; this driver uses level 1 commands only).
    pub feature_level: u8,
    /// Country or currency code (ISO 4217 numeric in BCD with a leading 1, or the
    /// telephone code), as sent.
    pub country: u16,
    /// Every price is a multiple of this, in minor units.
    pub scale_factor: u8,
    /// Decimal places of the currency.
    pub decimal_places: u8,
    /// Longest the reader takes to answer, in seconds.
    pub max_response_secs: u8,
    /// Miscellaneous option bits.
    pub options: u8,
}

/// A reader response (to POLL or directly to a command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `00`: JUST RESET.
    JustReset,
    /// `01 ...`: READER CONFIG DATA.
    Config(ReaderConfig),
    /// `02 t text[32]`: DISPLAY REQUEST (shown nowhere; counted).
    DisplayRequest,
    /// `03 ff ff`: BEGIN SESSION with the funds available (`FFFF`: unknown).
    BeginSession {
        /// Funds in scaled units.
        funds: u16,
    },
    /// `04`: SESSION CANCEL REQUEST.
    SessionCancelRequest,
    /// `05 aa aa`: VEND APPROVED for this amount.
    VendApproved {
        /// Amount in scaled units.
        amount: u16,
    },
    /// `06`: VEND DENIED.
    VendDenied,
    /// `07`: END SESSION.
    EndSession,
    /// `08`: CANCELLED (after READER CANCEL).
    Cancelled,
    /// `0A ee ee`: MALFUNCTION / ERROR.
    Malfunction {
        /// The error code.
        code: u16,
    },
    /// `0B`: COMMAND OUT OF SEQUENCE.
    OutOfSequence,
}

impl Response {
    /// The response's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Response::JustReset => vec![0x00],
            Response::Config(c) => {
                let [a, b] = c.country.to_be_bytes();
                vec![
                    0x01,
                    c.feature_level,
                    a,
                    b,
                    c.scale_factor,
                    c.decimal_places,
                    c.max_response_secs,
                    c.options,
                ]
            }
            Response::DisplayRequest => {
                let mut v = vec![0x02, 0x0A];
                v.extend([b' '; 32]);
                v
            }
            Response::BeginSession { funds } => {
                let [a, b] = funds.to_be_bytes();
                vec![0x03, a, b]
            }
            Response::SessionCancelRequest => vec![0x04],
            Response::VendApproved { amount } => {
                let [a, b] = amount.to_be_bytes();
                vec![0x05, a, b]
            }
            Response::VendDenied => vec![0x06],
            Response::EndSession => vec![0x07],
            Response::Cancelled => vec![0x08],
            Response::Malfunction { code } => {
                let [a, b] = code.to_be_bytes();
                vec![0x0A, a, b]
            }
            Response::OutOfSequence => vec![0x0B],
        }
    }
}

/// Split a reader's data block into responses (MDB lets one POLL answer carry
/// several). Never panics.
pub fn parse_responses(data: &[u8]) -> Result<Vec<Response>, MdbError> {
    if data.len() > MAX_BLOCK {
        return Err(MdbError::TooLong(data.len()));
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let code = data[at];
        let need = match code {
            0x00 | 0x04 | 0x06 | 0x07 | 0x08 | 0x0B => 1,
            0x01 => 8,
            0x02 => 34,
            0x03 | 0x05 | 0x0A => 3,
            _ => return Err(MdbError::UnknownResponse(code)),
        };
        let rest = &data[at..];
        if rest.len() < need {
            return Err(MdbError::Truncated {
                code,
                have: rest.len(),
                need,
            });
        }
        let u = |i: usize| u16::from_be_bytes([rest[i], rest[i + 1]]);
        out.push(match code {
            0x00 => Response::JustReset,
            0x01 => Response::Config(ReaderConfig {
                feature_level: rest[1],
                country: u(2),
                scale_factor: rest[4],
                decimal_places: rest[5],
                max_response_secs: rest[6],
                options: rest[7],
            }),
            0x02 => Response::DisplayRequest,
            0x03 => Response::BeginSession { funds: u(1) },
            0x04 => Response::SessionCancelRequest,
            0x05 => Response::VendApproved { amount: u(1) },
            0x06 => Response::VendDenied,
            0x07 => Response::EndSession,
            0x08 => Response::Cancelled,
            0x0A => Response::Malfunction { code: u(1) },
            _ => Response::OutOfSequence,
        });
        at += need;
    }
    Ok(out)
}

/// One line from the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeReply {
    /// `A`: ACK, no data.
    Ack,
    /// `D <hex>`: the peripheral's data.
    Data(Vec<u8>),
    /// `N`: the peripheral NAKed the command.
    Nak,
    /// `X`: the peripheral did not answer.
    NoResponse,
}

impl BridgeReply {
    /// The bridge's line, with CR LF.
    pub fn line(&self) -> String {
        match self {
            BridgeReply::Ack => "A\r\n".into(),
            BridgeReply::Data(d) => format!("D {}\r\n", hex(d)),
            BridgeReply::Nak => "N\r\n".into(),
            BridgeReply::NoResponse => "X\r\n".into(),
        }
    }
}

/// The host's bridge line (`T <hex>`, CR LF) for any MDB block: address and command
/// byte, then data, no checksum. The coin changer and bill validator drivers frame
/// their blocks with it, as [`Command::line`] does the reader's.
pub fn host_line(block: &[u8]) -> String {
    format!("T {}\r\n", hex(block))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, MdbError> {
    let s = s.trim();
    if s.is_empty() || !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(MdbError::BadHex);
    }
    if s.len() / 2 > MAX_BLOCK {
        return Err(MdbError::TooLong(s.len() / 2));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| MdbError::BadHex))
        .collect()
}

fn shown(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(24)]).into_owned()
}

/// Parse one line from the bridge (terminator removed). Never panics.
pub fn parse_bridge_line(line: &[u8]) -> Result<BridgeReply, MdbError> {
    match line {
        b"A" => Ok(BridgeReply::Ack),
        b"N" => Ok(BridgeReply::Nak),
        b"X" => Ok(BridgeReply::NoResponse),
        [b'D', b' ', rest @ ..] => {
            let text = std::str::from_utf8(rest).map_err(|_| MdbError::BadHex)?;
            Ok(BridgeReply::Data(unhex(text)?))
        }
        _ => Err(MdbError::BadLine(shown(line))),
    }
}

/// Parse one line from the host (`T <hex>`, terminator removed) into its block.
/// Never panics.
pub fn parse_host_line(line: &[u8]) -> Result<Vec<u8>, MdbError> {
    match line {
        [b'T', b' ', rest @ ..] => {
            let text = std::str::from_utf8(rest).map_err(|_| MdbError::BadHex)?;
            unhex(text)
        }
        _ => Err(MdbError::BadLine(shown(line))),
    }
}

/// Frame bridge output into lines and parse each, with the responses inside data
/// lines. The fuzz entry point for the driver's side.
pub fn parse_bridge_stream(bytes: &[u8]) -> Vec<Result<Vec<Response>, MdbError>> {
    LineFramer::new(MAX_LINE)
        .feed(bytes)
        .into_iter()
        .map(|r| {
            let line = r.map_err(|o| MdbError::TooLong(o.max))?;
            match parse_bridge_line(&line)? {
                BridgeReply::Data(d) => parse_responses(&d),
                _ => Ok(Vec::new()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_their_lines() {
        let all = [
            Command::Reset,
            Command::SetupConfig {
                vmc_level: 1,
                columns: 0,
                rows: 0,
                display: 0,
            },
            Command::SetupPrices {
                max: 0xFFFF,
                min: 0,
            },
            Command::Poll,
            Command::VendRequest {
                price: 250,
                item: 7,
            },
            Command::VendCancel,
            Command::VendSuccess { item: 7 },
            Command::VendFailure,
            Command::SessionComplete,
            Command::ReaderDisable,
            Command::ReaderEnable,
            Command::ReaderCancel,
        ];
        for c in all {
            let line = c.line();
            let block = parse_host_line(line.trim_end().as_bytes()).unwrap();
            assert_eq!(parse_command(&block).unwrap(), c);
        }
        assert_eq!(
            Command::VendRequest {
                price: 0x0102,
                item: 0x0304
            }
            .line(),
            "T 130001020304\r\n"
        );
    }

    #[test]
    fn responses_round_trip_and_several_share_a_block() {
        let rs = vec![
            Response::JustReset,
            Response::BeginSession { funds: 1000 },
            Response::VendApproved { amount: 250 },
            Response::EndSession,
        ];
        let block: Vec<u8> = rs.iter().flat_map(|r| r.bytes()).collect();
        assert_eq!(parse_responses(&block).unwrap(), rs);
        let cfg = Response::Config(ReaderConfig {
            feature_level: 1,
            country: 0x1978,
            scale_factor: 1,
            decimal_places: 2,
            max_response_secs: 5,
            options: 0,
        });
        assert_eq!(parse_responses(&cfg.bytes()).unwrap(), vec![cfg]);
    }

    #[test]
    fn malformed_lines_and_blocks_are_rejected() {
        assert_eq!(parse_bridge_line(b"A"), Ok(BridgeReply::Ack));
        assert_eq!(
            parse_bridge_line(b"D 0500FA"),
            Ok(BridgeReply::Data(vec![5, 0, 0xFA]))
        );
        assert!(matches!(parse_bridge_line(b"D 050"), Err(MdbError::BadHex)));
        assert!(matches!(parse_bridge_line(b"D 0G"), Err(MdbError::BadHex)));
        assert!(matches!(parse_bridge_line(b"D "), Err(MdbError::BadHex)));
        assert!(matches!(
            parse_bridge_line(b"ACK"),
            Err(MdbError::BadLine(_))
        ));
        assert!(matches!(
            parse_bridge_line(b"D \xff\xfe"),
            Err(MdbError::BadHex)
        ));
        let long = format!("D {}", "00".repeat(MAX_BLOCK + 1));
        assert!(matches!(
            parse_bridge_line(long.as_bytes()),
            Err(MdbError::TooLong(_))
        ));
        assert!(matches!(
            parse_responses(&[0x05, 0x00]),
            Err(MdbError::Truncated { code: 5, .. })
        ));
        assert!(matches!(
            parse_responses(&[0x09]),
            Err(MdbError::UnknownResponse(9))
        ));
        assert!(matches!(
            parse_command(&[0x13, 0x00, 1]),
            Err(MdbError::UnknownCommand(_))
        ));
        assert!(matches!(
            parse_command(&[0x30]),
            Err(MdbError::UnknownCommand(_))
        ));
    }

    #[test]
    fn truncated_and_random_input_never_panics() {
        let good = b"D 0300FA0500FA\r\nA\r\nD 0101197801020500\r\n";
        for cut in 0..good.len() {
            let _ = parse_bridge_stream(&good[..cut]);
        }
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let alphabet = b"ADNXT 0123456789ABCDEFG\r\n\xff";
        for _ in 0..3_000 {
            let mut bytes = Vec::new();
            for _ in 0..(x % 64) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            x = x.wrapping_add(5);
            let _ = parse_bridge_stream(&bytes);
            let _ = parse_responses(&bytes);
            let _ = parse_command(&bytes);
            let _ = parse_host_line(&bytes);
        }
    }
}
