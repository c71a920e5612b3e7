//! Whole packs and sealed objects from storage, under a fixed key: reject, never panic.
#![no_main]
use std::sync::OnceLock;

static KEY: OnceLock<hoard_core::crypto::MasterKey> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key = KEY.get_or_init(hoard_core::crypto::MasterKey::random);
    let _ = hoard_core::pack::read_pack(key, data, "fuzz");
    let _ = key.open(data, "fuzz");
    let _ = hoard_core::blob::open_doc::<hoard_core::index::IndexFile>(key, data, "fuzz");
});
