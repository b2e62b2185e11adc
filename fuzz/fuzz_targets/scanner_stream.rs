//! Scanner frames with AIM symbology identifiers.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for scan in outpost_peripherals::scanner_serial::parse_stream(data, 64, false)
        .into_iter()
        .flatten()
    {
        assert!(!scan.data.is_empty() && scan.data.len() <= 64);
    }
});
