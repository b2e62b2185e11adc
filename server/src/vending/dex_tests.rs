//! The DEX export read back by a parser written from the EVA-DTS DEX/UCS layout (not
//! from [`crate::domain::vending::dex`]): its totals equal the sales journal's.

use std::collections::HashMap;

use outpost_mocks::sim::mdb::Decision;
use outpost_mocks::sim::spiral::SlotTrouble;

use super::dex::{DexIdentity, export, export_and_reset};
use super::tests::slot;
use crate::domain::vending::{PayMethod, VendState};

/// A DEX file as its reader sees it: segments by tag, in order.
#[derive(Debug)]
struct Parsed {
    segments: Vec<Vec<String>>,
}

/// CRC-16 with polynomial x^16 + x^15 + x^2 + 1, reflected, initial value 0, no final
/// XOR (the CRC EVA-DTS names for G85), table-driven.
fn crc_table() -> [u16; 256] {
    let mut t = [0u16; 256];
    for (i, e) in t.iter_mut().enumerate() {
        let mut c = i as u16;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xA001
            } else {
                c >> 1
            };
        }
        *e = c;
    }
    t
}

fn crc(bytes: &[u8]) -> u16 {
    let t = crc_table();
    bytes.iter().fold(0u16, |c, &b| {
        (c >> 8) ^ t[((c ^ u16::from(b)) & 0xFF) as usize]
    })
}

/// Parse and check the envelope: DXS first, DXE last, ST..SE framing with the right
/// segment count, G85 over everything before it.
fn parse(file: &str) -> Result<Parsed, String> {
    if !file.ends_with("\r\n") {
        return Err("the file does not end with CR LF".into());
    }
    let lines: Vec<&str> = file[..file.len() - 2].split("\r\n").collect();
    let segments: Vec<Vec<String>> = lines
        .iter()
        .map(|l| l.split('*').map(str::to_owned).collect())
        .collect();
    let tag = |i: usize| segments.get(i).map(|s| s[0].as_str());
    if tag(0) != Some("DXS") || tag(1) != Some("ST") {
        return Err("no DXS then ST".into());
    }
    if tag(segments.len() - 1) != Some("DXE") || tag(segments.len() - 2) != Some("SE") {
        return Err("no SE then DXE at the end".into());
    }
    let g85 = segments.len() - 3;
    if tag(g85) != Some("G85") {
        return Err("no G85 before SE".into());
    }
    let covered: usize = lines[..g85].iter().map(|l| l.len() + 2).sum();
    let want = format!("{:04X}", crc(&file.as_bytes()[..covered]));
    if segments[g85][1] != want {
        return Err(format!(
            "G85 {} but the data's CRC is {want}",
            segments[g85][1]
        ));
    }
    let se: usize = segments[segments.len() - 2][1]
        .parse()
        .map_err(|_| "SE01 is not a number")?;
    if se != segments.len() - 2 {
        return Err(format!(
            "SE01 says {se} segments, ST..SE has {}",
            segments.len() - 2
        ));
    }
    Ok(Parsed { segments })
}

impl Parsed {
    fn one(&self, tag: &str) -> &[String] {
        self.segments
            .iter()
            .find(|s| s[0] == tag)
            .unwrap_or_else(|| panic!("no {tag}"))
    }

    fn num(&self, tag: &str, element: usize) -> i64 {
        self.one(tag)[element].parse().unwrap()
    }

    /// PA2 (count, value since init, count, value since reset) by PA1 selection.
    fn products(&self) -> HashMap<String, [i64; 4]> {
        let mut out = HashMap::new();
        let mut selection = None;
        for s in &self.segments {
            match s[0].as_str() {
                "PA1" => selection = Some(s[1].clone()),
                "PA2" => {
                    let v: Vec<i64> = s[1..5].iter().map(|x| x.parse().unwrap()).collect();
                    out.insert(selection.take().unwrap(), [v[0], v[1], v[2], v[3]]);
                }
                _ => {}
            }
        }
        out
    }

    fn event(&self, id: &str) -> (i64, i64) {
        let e = self
            .segments
            .iter()
            .find(|s| s[0] == "EA2" && s[1] == id)
            .unwrap_or_else(|| panic!("no EA2 {id}"));
        (e[2].parse().unwrap(), e[3].parse().unwrap())
    }
}

#[tokio::test]
async fn the_dex_file_read_back_from_the_standard_totals_the_journal() {
    let s = super::tests::site().await;
    let who = DexIdentity {
        unit: "UNIT-7".into(),
        location: "Hall 2".into(),
    };
    let v = &s.vending;
    for _ in 0..3 {
        assert_eq!(
            v.vend(slot("A1"), PayMethod::Cashless)
                .await
                .unwrap()
                .state(),
            VendState::Completed
        );
    }
    s.sim.decide_next([Decision::Deny]);
    v.vend(slot("A1"), PayMethod::Cashless).await.unwrap();
    s.disp.trouble("A1", [SlotTrouble::Hang]);
    v.vend(slot("A1"), PayMethod::Cashless).await.unwrap();
    let closing = parse(&export_and_reset(&s.store, &who).await.unwrap()).unwrap();
    assert_eq!(closing.num("VA1", 2), 3);
    assert_eq!(closing.num("VA1", 4), 3, "the closing file's interval");
    for _ in 0..2 {
        v.vend(slot("A1"), PayMethod::Cashless).await.unwrap();
    }
    let file = export(&s.store, &who).unwrap();
    let dex = parse(&file).unwrap();

    // The journal's totals.
    let sales = s.store.sales_after(None, 1000).unwrap();
    let value: i64 = sales.iter().map(|x| x.cart.total.minor()).sum();
    assert_eq!(sales.len(), 5);
    assert_eq!((dex.num("VA1", 1), dex.num("VA1", 2)), (value, 5));
    assert_eq!(
        (dex.num("VA1", 3), dex.num("VA1", 4)),
        (500, 2),
        "since the reset"
    );
    assert_eq!(
        (dex.num("DA2", 1), dex.num("DA2", 2)),
        (value, 5),
        "all cashless"
    );
    assert_eq!((dex.num("CA2", 1), dex.num("CA2", 2)), (0, 0));
    let products = dex.products();
    assert_eq!(products["A1"], [5, value, 2, 500]);
    assert_eq!(products["A2"], [0, 0, 0, 0]);
    let pa1 = dex
        .segments
        .iter()
        .find(|x| x[0] == "PA1" && x[1] == "A1")
        .unwrap();
    assert_eq!((pa1[2].as_str(), pa1[3].as_str()), ("250", "COLA"));
    assert_eq!(dex.event("OVF"), (2, 0));
    assert_eq!(dex.event("OND"), (1, 0));
    assert_eq!(dex.one("ID1")[1], "UNIT-7");
    assert_eq!(dex.one("ID1")[5], "Hall 2");

    // A changed byte is caught by the CRC.
    let tampered = file.replacen("VA1*1250", "VA1*1350", 1);
    assert_ne!(tampered, file);
    assert!(parse(&tampered).unwrap_err().contains("G85"));
}
