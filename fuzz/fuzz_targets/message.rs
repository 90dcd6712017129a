#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| segchat_fuzz_check::message(data));
