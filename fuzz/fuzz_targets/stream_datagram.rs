#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| segchat_fuzz_check::stream_datagram(data));
