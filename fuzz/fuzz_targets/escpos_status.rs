//! ESC/POS `DLE EOT` status answers.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = outpost_peripherals::escpos::parse_status_bytes(data);
});
