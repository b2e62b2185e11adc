//! nexo length-prefixed frames and the JSON messages inside.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = outpost_peripherals::nexo::codec::parse_frames(data);
    let _ = outpost_peripherals::nexo::message::parse_message(data);
});
