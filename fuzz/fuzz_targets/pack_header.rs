//! Pack header entries after decryption: any bytes must parse or fail, never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let offset = u64::from_le_bytes(data[..8].try_into().unwrap());
    let _ = hoard_core::format::pack::parse_entries(&data[8..], offset, "fuzz");
    let _ = hoard_core::format::pack::header_range(offset, [data[0], data[1], data[2], data[3]]);
});
