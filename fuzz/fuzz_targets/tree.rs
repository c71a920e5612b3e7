#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hoard_fuzz::tree(data));
