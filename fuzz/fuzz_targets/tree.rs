//! Tree blobs after decryption; what parses must serialise back to an equal tree.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(t) = hoard_core::format::tree::Tree::from_bytes(data, "fuzz") {
        let again = hoard_core::format::tree::Tree::from_bytes(&t.to_bytes(), "fuzz").unwrap();
        assert_eq!(again, t);
    }
});
