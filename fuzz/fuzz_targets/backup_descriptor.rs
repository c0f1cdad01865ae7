#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| quarry_fuzz::backup_descriptor(data));
