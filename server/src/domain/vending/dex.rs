//! The DEX/UCS audit file (EVA-DTS) of a vending machine: what a route driver's
//! handheld or the operator's back office reads to settle the machine.
//!
//! # The file
//! Segments, one per line (CR LF), each a tag and its elements separated by `*`;
//! amounts in minor units without a decimal point. This writer emits:
//!
//! | segment | elements |
//! |---|---|
//! | `DXS` | sender's communication id, `VA` (vending audit), `V1/1`, transmission `1` |
//! | `ST` | `001`, control number `0001` |
//! | `ID1` | machine serial, model, software version, (empty), location |
//! | `CB1` | control board serial, model, software version |
//! | `VA1` | value and number of paid vends since initialisation, then since reset |
//! | `CA2` | value and number of cash vends since initialisation, then since reset |
//! | `DA2` | value and number of cashless vends since initialisation, then since reset |
//! | `BA1` | bill validator serial, model, software (only when one is fitted) |
//! | `CA1` | coin changer serial, model, software (only when one is fitted) |
//! | `CA3` | cash in since reset: total, to the cash box, to the tubes, notes; then the same since initialisation (with a changer or validator) |
//! | `CA4` | cash paid out since reset: by Outpost (change, coin return), by hand; then the same since initialisation (with a changer or validator) |
//! | `PA1` | per slot: selection (`B7`), price, product (SKU) |
//! | `PA2` | per slot: number and value of paid vends since initialisation, then since reset |
//! | `EA2` | per event kind: id, count since initialisation, since reset, active now (`1`/`0`) |
//! | `G85` | CRC-16 of every byte from the start of `DXS` to the end of the segment before `G85`, 4 hex digits |
//! | `SE` | segments from `ST` to `SE` inclusive, `0001` |
//! | `DXE` | transmission `1`, `1` transaction set |
//!
//! The CRC is CRC-16/ARC (polynomial 0x8005 reflected, initial value 0), as EVA-DTS
//! specifies for G85. Text elements lose `*`, control characters and anything past 20
//! characters (40 for a location).

/// A count and a value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Value in minor units.
    pub value: i64,
    /// How many.
    pub count: u64,
}

impl Tally {
    /// One more of `value`.
    pub fn add(&mut self, value: i64) {
        self.value = self.value.saturating_add(value);
        self.count += 1;
    }
}

/// Since initialisation (the data dir's start) and since the last reset (the last
/// audit read with reset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pair {
    /// Since initialisation.
    pub init: Tally,
    /// Since the last reset.
    pub reset: Tally,
}

/// A device's identity, as ID1, CB1 and BA1 carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Serial number.
    pub serial: String,
    /// Model.
    pub model: String,
    /// Software version.
    pub software: String,
}

/// Cash that came in (CA3), minor units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CashIn {
    /// Every coin and note credited.
    pub total: i64,
    /// Coins into the cash box.
    pub to_box: i64,
    /// Coins into the tubes.
    pub to_tubes: i64,
    /// Notes stacked.
    pub bills: i64,
}

/// Coins paid out (CA4), minor units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CashOut {
    /// By Outpost: change, the coin return lever.
    pub dispensed: i64,
    /// By a technician, with the changer's buttons.
    pub manual: i64,
}

/// The cash devices' part of the audit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CashAudit {
    /// The coin changer (CA1), when one is fitted.
    pub changer: Option<Identity>,
    /// Cash in since the last reset, then since initialisation (CA3).
    pub cash_in: [CashIn; 2],
    /// Cash out since the last reset, then since initialisation (CA4).
    pub cash_out: [CashOut; 2],
}

/// One slot's PA1 and PA2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotAudit {
    /// Selection as on the keypad, `B7`.
    pub selection: String,
    /// Price now, minor units.
    pub price: i64,
    /// Product (SKU).
    pub product: String,
    /// Paid vends from it.
    pub paid: Pair,
}

/// One event kind's EA2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventAudit {
    /// Event id.
    pub id: String,
    /// Occurrences since initialisation.
    pub init: u64,
    /// Since the last reset.
    pub reset: u64,
    /// Whether it is active now.
    pub active: bool,
}

/// Everything one DEX file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    /// The sender's communication id (DXS01): the unit's id.
    pub communication_id: String,
    /// The machine (ID1).
    pub machine: Identity,
    /// Where it stands (ID105).
    pub location: String,
    /// The control board (CB1): Outpost.
    pub control_board: Identity,
    /// The bill validator (BA1), when one is fitted.
    pub bill_validator: Option<Identity>,
    /// Every paid vend (VA1).
    pub paid: Pair,
    /// Cash vends (CA2).
    pub cash: Pair,
    /// Cashless vends (DA2).
    pub cashless: Pair,
    /// Cash in and out (CA1, CA3, CA4), when a changer or validator is fitted.
    pub cash_devices: Option<CashAudit>,
    /// Per slot, in slot order.
    pub slots: Vec<SlotAudit>,
    /// Per event kind.
    pub events: Vec<EventAudit>,
}

/// CRC-16/ARC of `bytes` (G85).
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

fn text(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control() && *c != '*')
        .take(max)
        .collect()
}

/// The DEX file of `audit`.
pub fn write(audit: &Audit) -> String {
    let mut segs: Vec<String> = Vec::new();
    let id = |i: &Identity| {
        [
            text(&i.serial, 20),
            text(&i.model, 20),
            text(&i.software, 20),
        ]
    };
    let pair = |tag: &str, p: &Pair| {
        format!(
            "{tag}*{}*{}*{}*{}",
            p.init.value, p.init.count, p.reset.value, p.reset.count
        )
    };
    segs.push(format!(
        "DXS*{}*VA*V1/1*1",
        text(&audit.communication_id, 10)
    ));
    segs.push("ST*001*0001".into());
    let [s, m, v] = id(&audit.machine);
    segs.push(format!("ID1*{s}*{m}*{v}**{}", text(&audit.location, 40)));
    let [s, m, v] = id(&audit.control_board);
    segs.push(format!("CB1*{s}*{m}*{v}"));
    segs.push(pair("VA1", &audit.paid));
    segs.push(pair("CA2", &audit.cash));
    segs.push(pair("DA2", &audit.cashless));
    if let Some(b) = &audit.bill_validator {
        let [s, m, v] = id(b);
        segs.push(format!("BA1*{s}*{m}*{v}"));
    }
    if let Some(c) = &audit.cash_devices {
        if let Some(ch) = &c.changer {
            let [s, m, v] = id(ch);
            segs.push(format!("CA1*{s}*{m}*{v}"));
        }
        let [r, i] = c.cash_in;
        segs.push(format!(
            "CA3*{}*{}*{}*{}*{}*{}*{}*{}",
            r.total, r.to_box, r.to_tubes, r.bills, i.total, i.to_box, i.to_tubes, i.bills
        ));
        let [r, i] = c.cash_out;
        segs.push(format!(
            "CA4*{}*{}*{}*{}",
            r.dispensed, r.manual, i.dispensed, i.manual
        ));
    }
    for slot in &audit.slots {
        segs.push(format!(
            "PA1*{}*{}*{}",
            text(&slot.selection, 20),
            slot.price,
            text(&slot.product, 20)
        ));
        let p = &slot.paid;
        // PA2 puts the number before the value.
        segs.push(format!(
            "PA2*{}*{}*{}*{}",
            p.init.count, p.init.value, p.reset.count, p.reset.value
        ));
    }
    for e in &audit.events {
        segs.push(format!(
            "EA2*{}*{}*{}*{}",
            text(&e.id, 20),
            e.init,
            e.reset,
            u8::from(e.active)
        ));
    }
    let mut out = String::new();
    for s in &segs {
        out.push_str(s);
        out.push_str("\r\n");
    }
    let crc = crc16(out.as_bytes());
    out.push_str(&format!("G85*{crc:04X}\r\n"));
    // ST to SE inclusive: every segment but DXS, plus G85 and SE.
    out.push_str(&format!("SE*{}*0001\r\n", segs.len() - 1 + 2));
    out.push_str("DXE*1*1\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_the_arc_variant() {
        // The check value of CRC-16/ARC.
        assert_eq!(crc16(b"123456789"), 0xBB3D);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn stars_and_line_breaks_never_split_an_element() {
        let audit = Audit {
            communication_id: "UNIT*1\r\n".into(),
            location: "Hall * 2\nnorth".into(),
            ..Audit::default()
        };
        let dex = write(&audit);
        assert!(dex.starts_with("DXS*UNIT1*VA*"), "{dex}");
        assert!(dex.contains("ID1*****Hall  2north\r\n"), "{dex}");
        assert!(dex.ends_with("SE*8*0001\r\nDXE*1*1\r\n"), "{dex}");
    }
}
