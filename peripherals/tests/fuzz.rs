//! The device byte parsers under arbitrary input, on the stable toolchain: the same
//! properties as the cargo-fuzz targets in `fuzz/` (no panic; what parses re-encodes
//! as it came; scans and weights within their bounds), fed random bytes and mutations
//! of well-formed frames. Bounded by `PROPTEST_CASES` (default 256 per property); a
//! failure is kept in `proptest-regressions/` and replayed first from then on.

use outpost_peripherals::mdb::protocol;
use proptest::prelude::*;

/// Random bytes, and well-formed frames with a few bytes changed, cut or appended.
fn bytes_like(seeds: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    let random = proptest::collection::vec(any::<u8>(), 0..512);
    let mutated = (
        proptest::sample::select(seeds),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
        proptest::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(seed, flips, cut, tail)| {
            let mut b = seed.to_vec();
            for (at, byte) in flips {
                if !b.is_empty() {
                    let i = at.index(b.len());
                    b[i] = byte;
                }
            }
            b.truncate(cut.index(b.len() + 1));
            b.extend_from_slice(&tail);
            b
        });
    prop_oneof![random, mutated]
}

const ESCPOS: &[&[u8]] = &[&[0x16], &[0x12], &[0x12, 0x16, 0x1e], &[0x72, 0x0c]];
const NEXO: &[&[u8]] = &[
    b"\x02{\"SaleToPOIRequest\":{\"MessageHeader\":{\"MessageCategory\":\"Payment\"}}}\x03",
    b"\x02{}\x03\x02",
];
const SCANNER: &[&[u8]] = &[
    b"]E04006381017204\r\n",
    b"]C1ABC123\r",
    b"4006381017204\r\n\r\n",
];
const SICS: &[&[u8]] = &[
    b"S S     100.00 g\r\n",
    b"S D    -12.5 kg\r\n",
    b"ES\r\nS I\r\n",
];
const MDB: &[&[u8]] = &[b"10 01 02 03 04\r\n", b"13 00 00 64 00 01\r\n", b"ACK\r\n"];

proptest! {
    #[test]
    fn escpos_status_bytes(data in bytes_like(ESCPOS)) {
        let _ = outpost_peripherals::escpos::parse_status_bytes(&data);
    }

    #[test]
    fn nexo_frames_and_messages(data in bytes_like(NEXO)) {
        let _ = outpost_peripherals::nexo::codec::parse_frames(&data);
        let _ = outpost_peripherals::nexo::message::parse_message(&data);
    }

    #[test]
    fn scanner_stream(data in bytes_like(SCANNER)) {
        for scan in outpost_peripherals::scanner_serial::parse_stream(&data, 64, false)
            .into_iter()
            .flatten()
        {
            prop_assert!(!scan.data.is_empty() && scan.data.len() <= 64);
        }
    }

    #[test]
    fn sics_replies(data in bytes_like(SICS)) {
        for r in outpost_peripherals::sics::parse_replies(&data).into_iter().flatten() {
            if let outpost_peripherals::sics::SicsReply::Weight(w) = r {
                prop_assert!(
                    w.grams.abs() <= outpost_peripherals::sics::MAX_MILLIGRAMS / 1000 + 1
                );
            }
        }
    }

    #[test]
    fn mdb_bridge_and_commands(data in bytes_like(MDB)) {
        let _ = protocol::parse_bridge_stream(&data);
        let _ = protocol::parse_responses(&data);
        let _ = protocol::parse_host_line(&data);
        if let Ok(cmd) = protocol::parse_command(&data) {
            prop_assert_eq!(cmd.bytes(), data);
        }
    }
}
