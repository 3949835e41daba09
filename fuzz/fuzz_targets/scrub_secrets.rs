#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pcap_surgery::fuzzing::scrub_secrets(data));
