//! Every device byte parser fed malformed and truncated input: bounded,
//! deterministic property loops (no panics, bounded outputs).

use outpost_peripherals::escpos::parse_status_bytes;
use outpost_peripherals::mdb::protocol::{
    parse_bridge_line, parse_bridge_stream, parse_command, parse_host_line, parse_responses,
};
use outpost_peripherals::nexo::codec::parse_frames;
use outpost_peripherals::nexo::message::parse_message;
use outpost_peripherals::scanner_serial::parse_stream;
use outpost_peripherals::sics::parse_replies;

/// xorshift64: the same bytes every run, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Up to `max` bytes, drawn from `alphabet` three times in four, else any byte.
    fn bytes(&mut self, max: u64, alphabet: &[u8]) -> Vec<u8> {
        let n = self.next() % (max + 1);
        (0..n)
            .map(|_| {
                let x = self.next();
                if x.is_multiple_of(4) {
                    (x >> 8) as u8
                } else {
                    alphabet[((x >> 8) % alphabet.len() as u64) as usize]
                }
            })
            .collect()
    }
}

/// Every prefix of every sample, and the sample with one byte flipped at each place.
fn mutations(samples: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for s in samples {
        for cut in 0..=s.len() {
            out.push(s[..cut].to_vec());
        }
        for i in 0..s.len() {
            let mut m = s.to_vec();
            m[i] ^= 0x5A;
            out.push(m);
        }
    }
    out
}

const ROUNDS: usize = 2_000;

#[test]
fn scanner_stream_parser_survives_malformed_and_truncated_input() {
    let samples: [&[u8]; 3] = [
        b"]E04006381333931\r\n",
        b"]C101095011010209\x1d10AB\n",
        b"]Q1\xc3\xa9t\xc3\xa9\r\n",
    ];
    for m in mutations(&samples) {
        for r in parse_stream(&m, 64, false).into_iter().flatten() {
            assert!(!r.data.is_empty() && r.data.len() <= 64);
        }
    }
    let mut rng = Rng(1);
    for _ in 0..ROUNDS {
        let b = rng.bytes(96, b"]EACQd0149\r\n\x1d");
        let _ = parse_stream(&b, 32, rng.next().is_multiple_of(2));
    }
}

#[test]
fn sics_reply_parser_survives_malformed_and_truncated_input() {
    let samples: [&[u8]; 4] = [
        b"S S      100.00 g\r\n",
        b"S D   -1.2345 kg\r\n",
        b"I4 A \"B021002593\"\r\n",
        b"Z A\r\nES\r\n",
    ];
    for m in mutations(&samples) {
        let _ = parse_replies(&m);
    }
    let mut rng = Rng(2);
    for _ in 0..ROUNDS {
        let _ = parse_replies(&rng.bytes(80, b"SDIZAE+-. 0123456789gk\"\r\n"));
    }
}

#[test]
fn mdb_parsers_survive_malformed_and_truncated_input() {
    let samples: [&[u8]; 3] = [
        b"D 0300FA0500FA\r\n",
        b"D 0101197801020500\r\nA\r\n",
        b"T 130000FA0001\r\n",
    ];
    for m in mutations(&samples) {
        let _ = parse_bridge_stream(&m);
        let _ = parse_host_line(&m);
        let _ = parse_bridge_line(&m);
    }
    let mut rng = Rng(3);
    for _ in 0..ROUNDS {
        let b = rng.bytes(80, b"ADNXT 0123456789ABCDEF\r\n");
        let _ = parse_bridge_stream(&b);
        let raw = rng.bytes(
            40,
            &[
                0, 1, 2, 3, 5, 6, 7, 8, 0x0A, 0x0B, 0x10, 0x11, 0x12, 0x13, 0x14,
            ],
        );
        let _ = parse_responses(&raw);
        let _ = parse_command(&raw);
    }
}

#[test]
fn escpos_status_and_nexo_parsers_survive_malformed_and_truncated_input() {
    let status: [&[u8]; 2] = [&[0x16, 0x12, 0x12], &[0xFF, 0x16, 0x12, 0x7E]];
    for m in mutations(&status) {
        let _ = parse_status_bytes(&m);
    }
    let json: &[u8] = br#"{"SaleToPOIResponse":{"MessageHeader":{"MessageCategory":"Payment"}}}"#;
    let mut framed = (json.len() as u32).to_be_bytes().to_vec();
    framed.extend(json);
    for m in mutations(&[json]) {
        let _ = parse_message(&m);
    }
    for m in mutations(&[&framed]) {
        let _ = parse_frames(&m);
    }
    let mut rng = Rng(4);
    for _ in 0..ROUNDS {
        let _ = parse_status_bytes(&rng.bytes(16, &[0x12, 0x16, 0x1A, 0x32, 0x7E, 0x00]));
        let _ = parse_message(&rng.bytes(96, br#"{}[]":,0123 SaleToPOIResponse"#));
        let _ = parse_frames(&rng.bytes(64, &[0, 0, 0, 4, b'{', b'}', b'"']));
    }
}
