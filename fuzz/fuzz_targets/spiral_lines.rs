//! OSB/1 spiral board lines, both ways.
#![no_main]
use outpost_peripherals::spiral::{MAX_KEY, Reply, parse_command, parse_reply};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for line in data.split(|b| *b == b'\n') {
        if let Ok(Reply::Done { key, .. } | Reply::Running { key } | Reply::Unknown { key }) =
            parse_reply(line)
        {
            assert!(!key.is_empty() && key.len() <= MAX_KEY);
        }
        let _ = parse_command(line);
    }
});
