//! MT-SICS scale reply lines.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for r in outpost_peripherals::sics::parse_replies(data).into_iter().flatten() {
        if let outpost_peripherals::sics::SicsReply::Weight(w) = r {
            assert!(w.grams.abs() <= outpost_peripherals::sics::MAX_MILLIGRAMS / 1000 + 1);
        }
    }
});
