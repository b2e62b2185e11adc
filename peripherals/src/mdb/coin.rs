//! MDB coin changer (address `0x08`), levels 2 and 3: VMC commands and the
//! changer's answers, framed on the bridge as the reader's are
//! ([`super::protocol::host_line`], [`super::protocol::parse_bridge_line`]).
//!
//! Every answer's layout depends on the command it answers, so each command has its
//! own parser. Subset: RESET, SETUP, TUBE STATUS, POLL, COIN TYPE, DISPENSE and the
//! level 3 EXPANSION IDENTIFICATION. Not used: ALTERNATIVE PAYOUT (the changer
//! would choose the coins; Outpost pays the fewest coins its tubes allow, one
//! DISPENSE per coin type, and checks them against the tube counts), FEATURE ENABLE
//! and DIAGNOSTICS.

use super::protocol::MdbError;

/// The coin changer's address.
pub const CHANGER: u8 = 0x08;
/// Most coin types (and tubes) a changer has.
pub const COIN_TYPES: usize = 16;
/// Most coins one DISPENSE pays (4 bits).
pub const MAX_DISPENSE: u8 = 15;

/// A VMC command to the changer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangerCommand {
    /// `08`: RESET.
    Reset,
    /// `09`: SETUP: the changer answers with its [`ChangerSetup`].
    Setup,
    /// `0A`: TUBE STATUS: the changer answers with its [`TubeStatus`].
    TubeStatus,
    /// `0B`: POLL: the changer answers with its [`Activity`]s, or ACK.
    Poll,
    /// `0C`: COIN TYPE: which coin types it accepts, and which its buttons may pay
    /// out by hand (bit n: coin type n).
    CoinType {
        /// Coin types accepted.
        enable: u16,
        /// Coin types a technician may dispense by hand.
        manual: u16,
    },
    /// `0D`: DISPENSE `count` coins of `coin_type`.
    Dispense {
        /// Coin type, 0 to 15.
        coin_type: u8,
        /// Coins, 1 to [`MAX_DISPENSE`].
        count: u8,
    },
    /// `0F 00`: EXPANSION IDENTIFICATION (level 3): the changer answers with its
    /// [`Identification`].
    Identification,
}

impl ChangerCommand {
    /// The block: address and command, then data, no checksum.
    pub fn bytes(&self) -> Vec<u8> {
        match *self {
            ChangerCommand::Reset => vec![0x08],
            ChangerCommand::Setup => vec![0x09],
            ChangerCommand::TubeStatus => vec![0x0A],
            ChangerCommand::Poll => vec![0x0B],
            ChangerCommand::CoinType { enable, manual } => {
                let [a, b] = enable.to_be_bytes();
                let [c, d] = manual.to_be_bytes();
                vec![0x0C, a, b, c, d]
            }
            ChangerCommand::Dispense { coin_type, count } => {
                vec![0x0D, (count << 4) | (coin_type & 0x0F)]
            }
            ChangerCommand::Identification => vec![0x0F, 0x00],
        }
    }
}

/// Parse a changer command block (what the bridge receives). Never panics.
pub fn parse_changer_command(b: &[u8]) -> Result<ChangerCommand, MdbError> {
    Ok(match b {
        [0x08] => ChangerCommand::Reset,
        [0x09] => ChangerCommand::Setup,
        [0x0A] => ChangerCommand::TubeStatus,
        [0x0B] => ChangerCommand::Poll,
        [0x0C, a, b, c, d] => ChangerCommand::CoinType {
            enable: u16::from_be_bytes([*a, *b]),
            manual: u16::from_be_bytes([*c, *d]),
        },
        [0x0D, y] if *y >> 4 > 0 => ChangerCommand::Dispense {
            coin_type: y & 0x0F,
            count: y >> 4,
        },
        [0x0F, 0x00] => ChangerCommand::Identification,
        _ => {
            return Err(MdbError::UnknownCommand(
                b.iter().take(8).copied().collect(),
            ));
        }
    })
}

/// The changer's answer to SETUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangerSetup {
    /// Feature level (2 or 3).
    pub level: u8,
    /// Country or currency code, as sent.
    pub country: u16,
    /// Every coin credit is a multiple of this, in minor units.
    pub scaling: u8,
    /// Decimal places of the currency.
    pub decimal_places: u8,
    /// Bit n: coin type n can be routed to a tube.
    pub routing: u16,
    /// Credit of each coin type, in scaled units (0: no such coin); at most 16.
    pub credits: Vec<u8>,
}

impl ChangerSetup {
    /// The answer's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let [a, b] = self.country.to_be_bytes();
        let [c, d] = self.routing.to_be_bytes();
        let mut v = vec![self.level, a, b, self.scaling, self.decimal_places, c, d];
        v.extend(self.credits.iter().take(COIN_TYPES));
        v
    }
}

/// Parse the answer to SETUP. Never panics.
pub fn parse_setup(d: &[u8]) -> Result<ChangerSetup, MdbError> {
    if d.len() < 7 {
        return Err(MdbError::Truncated {
            code: 0x09,
            have: d.len(),
            need: 7,
        });
    }
    if d.len() > 7 + COIN_TYPES {
        return Err(MdbError::TooLong(d.len()));
    }
    Ok(ChangerSetup {
        level: d[0],
        country: u16::from_be_bytes([d[1], d[2]]),
        scaling: d[3],
        decimal_places: d[4],
        routing: u16::from_be_bytes([d[5], d[6]]),
        credits: d[7..].to_vec(),
    })
}

/// The changer's answer to TUBE STATUS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TubeStatus {
    /// Bit n: the tube of coin type n is full.
    pub full: u16,
    /// Coins in the tube of each coin type; at most 16.
    pub counts: Vec<u8>,
}

impl TubeStatus {
    /// The answer's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let [a, b] = self.full.to_be_bytes();
        let mut v = vec![a, b];
        v.extend(self.counts.iter().take(COIN_TYPES));
        v
    }
}

/// Parse the answer to TUBE STATUS. Never panics.
pub fn parse_tube_status(d: &[u8]) -> Result<TubeStatus, MdbError> {
    if d.len() < 2 {
        return Err(MdbError::Truncated {
            code: 0x0A,
            have: d.len(),
            need: 2,
        });
    }
    if d.len() > 2 + COIN_TYPES {
        return Err(MdbError::TooLong(d.len()));
    }
    Ok(TubeStatus {
        full: u16::from_be_bytes([d[0], d[1]]),
        counts: d[2..].to_vec(),
    })
}

/// The changer's answer to EXPANSION IDENTIFICATION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identification {
    /// Manufacturer code, 3 ASCII characters.
    pub manufacturer: String,
    /// Serial number, up to 12 ASCII characters.
    pub serial: String,
    /// Model, up to 12 ASCII characters.
    pub model: String,
    /// Software version, BCD.
    pub version: u16,
    /// Optional feature bits.
    pub features: u32,
}

fn field(s: &str, n: usize) -> Vec<u8> {
    let mut v: Vec<u8> = s
        .bytes()
        .filter(|b| b.is_ascii_graphic() || *b == b' ')
        .take(n)
        .collect();
    v.resize(n, b' ');
    v
}

fn text(b: &[u8]) -> String {
    b.iter()
        .map(|&c| if c.is_ascii_graphic() { c as char } else { ' ' })
        .collect::<String>()
        .trim()
        .to_owned()
}

impl Identification {
    /// The answer's 33 bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = field(&self.manufacturer, 3);
        v.extend(field(&self.serial, 12));
        v.extend(field(&self.model, 12));
        v.extend(self.version.to_be_bytes());
        v.extend(self.features.to_be_bytes());
        v
    }
}

/// Parse the answer to EXPANSION IDENTIFICATION (33 bytes; a peripheral's own
/// answer of the same layout, e.g. the bill validator's, parses the same). Never
/// panics.
pub fn parse_identification(d: &[u8]) -> Result<Identification, MdbError> {
    if d.len() < 29 {
        return Err(MdbError::Truncated {
            code: 0x0F,
            have: d.len(),
            need: 29,
        });
    }
    let features = if d.len() >= 33 {
        u32::from_be_bytes([d[29], d[30], d[31], d[32]])
    } else {
        0
    };
    Ok(Identification {
        manufacturer: text(&d[0..3]),
        serial: text(&d[3..15]),
        model: text(&d[15..27]),
        version: u16::from_be_bytes([d[27], d[28]]),
        features,
    })
}

/// One thing the changer reports to POLL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// `1yyyxxxx zzzzzzzz`: coins paid out by hand.
    ManualDispense {
        /// Coin type.
        coin_type: u8,
        /// Coins, 0 to 7.
        count: u8,
        /// Coins left in its tube.
        tube: u8,
    },
    /// `01yyxxxx zzzzzzzz`: a coin came in.
    Deposited {
        /// Coin type.
        coin_type: u8,
        /// Routing: 0 cash box, 1 tube, 2 not used, 3 reject.
        routing: u8,
        /// Coins in its tube now.
        tube: u8,
    },
    /// `001xxxxx`: slugs since the last report.
    Slugs(u8),
    /// `000xxxxx`: a status code (1 escrow request, 2 payout busy, 3 no credit, 4
    /// defective tube sensor, 5 double arrival, 6 acceptor unplugged, 7 tube jam, 8
    /// ROM checksum error, 9 coin routing error, 10 busy, 11 just reset, 12 coin jam,
    /// 13 possible credited coin removal).
    Status(u8),
}

impl Activity {
    /// The activity's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        match *self {
            Activity::ManualDispense {
                coin_type,
                count,
                tube,
            } => vec![0x80 | ((count & 7) << 4) | (coin_type & 0x0F), tube],
            Activity::Deposited {
                coin_type,
                routing,
                tube,
            } => vec![0x40 | ((routing & 3) << 4) | (coin_type & 0x0F), tube],
            Activity::Slugs(n) => vec![0x20 | (n & 0x1F)],
            Activity::Status(c) => vec![c & 0x1F],
        }
    }
}

/// Split the answer to POLL into activities (MDB lets one answer carry up to 16
/// bytes of them). Never panics.
pub fn parse_activities(d: &[u8]) -> Result<Vec<Activity>, MdbError> {
    if d.len() > 16 {
        return Err(MdbError::TooLong(d.len()));
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < d.len() {
        let b = d[at];
        let two = b & 0xC0 != 0;
        if two && at + 1 >= d.len() {
            return Err(MdbError::Truncated {
                code: b,
                have: 1,
                need: 2,
            });
        }
        out.push(if b & 0x80 != 0 {
            Activity::ManualDispense {
                coin_type: b & 0x0F,
                count: (b >> 4) & 7,
                tube: d[at + 1],
            }
        } else if b & 0x40 != 0 {
            Activity::Deposited {
                coin_type: b & 0x0F,
                routing: (b >> 4) & 3,
                tube: d[at + 1],
            }
        } else if b & 0x20 != 0 {
            Activity::Slugs(b & 0x1F)
        } else if b == 0 {
            return Err(MdbError::UnknownResponse(0));
        } else {
            Activity::Status(b)
        });
        at += if two { 2 } else { 1 };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        let all = [
            ChangerCommand::Reset,
            ChangerCommand::Setup,
            ChangerCommand::TubeStatus,
            ChangerCommand::Poll,
            ChangerCommand::CoinType {
                enable: 0x003F,
                manual: 0x0001,
            },
            ChangerCommand::Dispense {
                coin_type: 3,
                count: 15,
            },
            ChangerCommand::Identification,
        ];
        for c in all {
            assert_eq!(parse_changer_command(&c.bytes()), Ok(c));
        }
        assert_eq!(
            ChangerCommand::Dispense {
                coin_type: 2,
                count: 3
            }
            .bytes(),
            [0x0D, 0x32]
        );
        // DISPENSE of no coins, a foreign address, a cut block: refused.
        for bad in [&[0x0D, 0x02][..], &[0x10], &[0x0C, 1, 2], &[]] {
            assert!(parse_changer_command(bad).is_err(), "{bad:02X?}");
        }
    }

    #[test]
    fn answers_round_trip() {
        let s = ChangerSetup {
            level: 3,
            country: 0x1978,
            scaling: 5,
            decimal_places: 2,
            routing: 0x003F,
            credits: vec![1, 2, 4, 10, 20, 40],
        };
        assert_eq!(parse_setup(&s.bytes()), Ok(s));
        let t = TubeStatus {
            full: 0x0002,
            counts: vec![10, 50, 0, 3],
        };
        assert_eq!(parse_tube_status(&t.bytes()), Ok(t));
        let id = Identification {
            manufacturer: "OUT".into(),
            serial: "CH-0001".into(),
            model: "SIM CHANGER".into(),
            version: 0x0102,
            features: 0,
        };
        assert_eq!(id.bytes().len(), 33);
        assert_eq!(parse_identification(&id.bytes()), Ok(id));
        let acts = vec![
            Activity::Deposited {
                coin_type: 2,
                routing: 1,
                tube: 11,
            },
            Activity::Status(1),
            Activity::Slugs(3),
            Activity::ManualDispense {
                coin_type: 0,
                count: 2,
                tube: 8,
            },
        ];
        let bytes: Vec<u8> = acts.iter().flat_map(Activity::bytes).collect();
        assert_eq!(parse_activities(&bytes), Ok(acts));
    }

    #[test]
    fn malformed_answers_are_refused_and_nothing_panics() {
        assert!(matches!(
            parse_setup(&[3, 0x19]),
            Err(MdbError::Truncated { .. })
        ));
        assert!(matches!(
            parse_tube_status(&[0; 19]),
            Err(MdbError::TooLong(19))
        ));
        assert!(matches!(
            parse_activities(&[0x52]),
            Err(MdbError::Truncated { .. })
        ));
        assert!(matches!(
            parse_activities(&[0x00]),
            Err(MdbError::UnknownResponse(0))
        ));
        assert!(parse_identification(&[b'A'; 10]).is_err());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..3_000 {
            let mut bytes = Vec::new();
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(x as u8);
            }
            x = x.wrapping_add(3);
            let _ = parse_setup(&bytes);
            let _ = parse_tube_status(&bytes);
            let _ = parse_activities(&bytes);
            let _ = parse_identification(&bytes);
            let _ = parse_changer_command(&bytes);
        }
    }
}
