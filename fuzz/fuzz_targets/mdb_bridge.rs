//! MDB bridge lines, reader responses and VMC command blocks.
#![no_main]
use outpost_peripherals::mdb::protocol;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = protocol::parse_bridge_stream(data);
    let _ = protocol::parse_responses(data);
    let _ = protocol::parse_host_line(data);
    if let Ok(cmd) = protocol::parse_command(data) {
        // What parses re-encodes to the same block.
        assert_eq!(cmd.bytes(), data);
    }
});
