//! MDB bill validator (address `0x30`), level 1: VMC commands and the validator's
//! answers, framed on the bridge as the reader's are.
//!
//! Subset: RESET, SETUP, SECURITY, POLL, BILL TYPE, ESCROW, STACKER and EXPANSION
//! IDENTIFICATION (level 1). Not used: the level 2 recycler commands.

use super::protocol::MdbError;

/// The bill validator's address.
pub const VALIDATOR: u8 = 0x30;
/// Most bill types a validator has.
pub const BILL_TYPES: usize = 16;

/// A VMC command to the validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidatorCommand {
    /// `30`: RESET.
    Reset,
    /// `31`: SETUP: the validator answers with its [`ValidatorSetup`].
    Setup,
    /// `32`: SECURITY: bit n set, bill type n is checked at high security.
    Security(u16),
    /// `33`: POLL: the validator answers with its [`BillActivity`]s, or ACK.
    Poll,
    /// `34`: BILL TYPE: which bill types it accepts, and which it holds in escrow.
    BillType {
        /// Bill types accepted.
        enable: u16,
        /// Bill types held in escrow (the others are stacked at once).
        escrow: u16,
    },
    /// `35`: ESCROW: stack (`true`) or return the note in escrow.
    Escrow(bool),
    /// `36`: STACKER: the validator answers with its [`StackerStatus`].
    Stacker,
    /// `37 00`: EXPANSION IDENTIFICATION (level 1, 29 bytes).
    Identification,
}

impl ValidatorCommand {
    /// The block: address and command, then data, no checksum.
    pub fn bytes(&self) -> Vec<u8> {
        match *self {
            ValidatorCommand::Reset => vec![0x30],
            ValidatorCommand::Setup => vec![0x31],
            ValidatorCommand::Security(s) => {
                let [a, b] = s.to_be_bytes();
                vec![0x32, a, b]
            }
            ValidatorCommand::Poll => vec![0x33],
            ValidatorCommand::BillType { enable, escrow } => {
                let [a, b] = enable.to_be_bytes();
                let [c, d] = escrow.to_be_bytes();
                vec![0x34, a, b, c, d]
            }
            ValidatorCommand::Escrow(stack) => vec![0x35, u8::from(stack)],
            ValidatorCommand::Stacker => vec![0x36],
            ValidatorCommand::Identification => vec![0x37, 0x00],
        }
    }
}

/// Parse a validator command block (what the bridge receives). Never panics.
pub fn parse_validator_command(b: &[u8]) -> Result<ValidatorCommand, MdbError> {
    Ok(match b {
        [0x30] => ValidatorCommand::Reset,
        [0x31] => ValidatorCommand::Setup,
        [0x32, a, b] => ValidatorCommand::Security(u16::from_be_bytes([*a, *b])),
        [0x33] => ValidatorCommand::Poll,
        [0x34, a, b, c, d] => ValidatorCommand::BillType {
            enable: u16::from_be_bytes([*a, *b]),
            escrow: u16::from_be_bytes([*c, *d]),
        },
        [0x35, y @ (0 | 1)] => ValidatorCommand::Escrow(*y == 1),
        [0x36] => ValidatorCommand::Stacker,
        [0x37, 0x00] => ValidatorCommand::Identification,
        _ => {
            return Err(MdbError::UnknownCommand(
                b.iter().take(8).copied().collect(),
            ));
        }
    })
}

/// The validator's answer to SETUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorSetup {
    /// Feature level (1 or 2).
    pub level: u8,
    /// Country or currency code, as sent.
    pub country: u16,
    /// Every bill credit is a multiple of this, in minor units.
    pub scaling: u16,
    /// Decimal places of the currency.
    pub decimal_places: u8,
    /// Notes the stacker holds.
    pub stacker_capacity: u16,
    /// Bit n: bill type n can be checked at high security.
    pub security: u16,
    /// Whether it can hold a note in escrow.
    pub escrow: bool,
    /// Credit of each bill type, in scaled units (0: no such note); at most 16.
    pub credits: Vec<u8>,
}

impl ValidatorSetup {
    /// The answer's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = vec![self.level];
        v.extend(self.country.to_be_bytes());
        v.extend(self.scaling.to_be_bytes());
        v.push(self.decimal_places);
        v.extend(self.stacker_capacity.to_be_bytes());
        v.extend(self.security.to_be_bytes());
        v.push(if self.escrow { 0xFF } else { 0x00 });
        v.extend(self.credits.iter().take(BILL_TYPES));
        v
    }
}

/// Parse the answer to SETUP. Never panics.
pub fn parse_validator_setup(d: &[u8]) -> Result<ValidatorSetup, MdbError> {
    if d.len() < 11 {
        return Err(MdbError::Truncated {
            code: 0x31,
            have: d.len(),
            need: 11,
        });
    }
    if d.len() > 11 + BILL_TYPES {
        return Err(MdbError::TooLong(d.len()));
    }
    let u = |i: usize| u16::from_be_bytes([d[i], d[i + 1]]);
    Ok(ValidatorSetup {
        level: d[0],
        country: u(1),
        scaling: u(3),
        decimal_places: d[5],
        stacker_capacity: u(6),
        security: u(8),
        escrow: d[10] == 0xFF,
        credits: d[11..].to_vec(),
    })
}

/// The validator's answer to STACKER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackerStatus {
    /// The stacker is full.
    pub full: bool,
    /// Notes in it (15 bits).
    pub bills: u16,
}

impl StackerStatus {
    /// The answer's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let v = (u16::from(self.full) << 15) | (self.bills & 0x7FFF);
        v.to_be_bytes().to_vec()
    }
}

/// Parse the answer to STACKER. Never panics.
pub fn parse_stacker(d: &[u8]) -> Result<StackerStatus, MdbError> {
    match d {
        [a, b] => {
            let v = u16::from_be_bytes([*a, *b]);
            Ok(StackerStatus {
                full: v & 0x8000 != 0,
                bills: v & 0x7FFF,
            })
        }
        _ if d.len() < 2 => Err(MdbError::Truncated {
            code: 0x36,
            have: d.len(),
            need: 2,
        }),
        _ => Err(MdbError::TooLong(d.len())),
    }
}

/// One thing the validator reports to POLL (one byte each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillActivity {
    /// `1yyyxxxx`: a note moved. Routing: 0 stacked, 1 escrow position, 2 returned,
    /// 3 to recycler, 4 disabled bill rejected, 5 to recycler (manual fill), 6 manual
    /// dispense, 7 recycler to cash box.
    Bill {
        /// Bill type.
        bill_type: u8,
        /// Routing.
        routing: u8,
    },
    /// `010xxxxx`: notes put in while disabled.
    DisabledAttempts(u8),
    /// `0000xxxx`: a status code (1 defective motor, 2 sensor problem, 3 busy, 4 ROM
    /// checksum error, 5 jammed, 6 just reset, 7 bill removed, 8 cash box out of
    /// position, 9 disabled, 10 invalid escrow request, 11 bill rejected, 12 possible
    /// credited bill removal).
    Status(u8),
}

impl BillActivity {
    /// The activity's byte.
    pub fn byte(&self) -> u8 {
        match *self {
            BillActivity::Bill { bill_type, routing } => {
                0x80 | ((routing & 7) << 4) | (bill_type & 0x0F)
            }
            BillActivity::DisabledAttempts(n) => 0x40 | (n & 0x1F),
            BillActivity::Status(c) => c & 0x0F,
        }
    }
}

/// Split the answer to POLL into activities. Never panics.
pub fn parse_bill_activities(d: &[u8]) -> Result<Vec<BillActivity>, MdbError> {
    if d.len() > 16 {
        return Err(MdbError::TooLong(d.len()));
    }
    d.iter()
        .map(|&b| {
            if b & 0x80 != 0 {
                Ok(BillActivity::Bill {
                    bill_type: b & 0x0F,
                    routing: (b >> 4) & 7,
                })
            } else if b & 0xE0 == 0x40 {
                Ok(BillActivity::DisabledAttempts(b & 0x1F))
            } else if b != 0 && b & 0xF0 == 0 {
                Ok(BillActivity::Status(b))
            } else {
                Err(MdbError::UnknownResponse(b))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_answers_round_trip() {
        let all = [
            ValidatorCommand::Reset,
            ValidatorCommand::Setup,
            ValidatorCommand::Security(0x000F),
            ValidatorCommand::Poll,
            ValidatorCommand::BillType {
                enable: 0x000F,
                escrow: 0x000F,
            },
            ValidatorCommand::Escrow(true),
            ValidatorCommand::Escrow(false),
            ValidatorCommand::Stacker,
            ValidatorCommand::Identification,
        ];
        for c in all {
            assert_eq!(parse_validator_command(&c.bytes()), Ok(c));
        }
        for bad in [&[0x35, 2][..], &[0x34, 1], &[0x08], &[]] {
            assert!(parse_validator_command(bad).is_err(), "{bad:02X?}");
        }
        let s = ValidatorSetup {
            level: 1,
            country: 0x1978,
            scaling: 100,
            decimal_places: 2,
            stacker_capacity: 500,
            security: 0,
            escrow: true,
            credits: vec![5, 10, 20, 50],
        };
        assert_eq!(parse_validator_setup(&s.bytes()), Ok(s));
        let st = StackerStatus {
            full: true,
            bills: 500,
        };
        assert_eq!(st.bytes(), [0x81, 0xF4]);
        assert_eq!(parse_stacker(&st.bytes()), Ok(st));
        let acts = vec![
            BillActivity::Bill {
                bill_type: 2,
                routing: 1,
            },
            BillActivity::Status(6),
            BillActivity::DisabledAttempts(3),
            BillActivity::Bill {
                bill_type: 0,
                routing: 0,
            },
        ];
        let bytes: Vec<u8> = acts.iter().map(BillActivity::byte).collect();
        assert_eq!(bytes[0], 0x92);
        assert_eq!(parse_bill_activities(&bytes), Ok(acts));
    }

    #[test]
    fn malformed_answers_are_refused_and_nothing_panics() {
        assert!(parse_validator_setup(&[1, 2, 3]).is_err());
        assert!(parse_stacker(&[1]).is_err());
        assert!(parse_stacker(&[1, 2, 3]).is_err());
        assert_eq!(
            parse_bill_activities(&[0x00]),
            Err(MdbError::UnknownResponse(0))
        );
        assert_eq!(
            parse_bill_activities(&[0x20]),
            Err(MdbError::UnknownResponse(0x20))
        );
        let mut x: u64 = 0xA076_1D64_78BD_642F;
        for _ in 0..3_000 {
            let mut bytes = Vec::new();
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(x as u8);
            }
            x = x.wrapping_add(7);
            let _ = parse_validator_setup(&bytes);
            let _ = parse_stacker(&bytes);
            let _ = parse_bill_activities(&bytes);
            let _ = parse_validator_command(&bytes);
        }
    }
}
