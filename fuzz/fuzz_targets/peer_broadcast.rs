#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| segchat_fuzz_check::peer_broadcast(data));
