//! Whole packs and sealed objects from storage, under a fixed key: reject, never panic.
#![no_main]
use std::sync::OnceLock;

static KEY: OnceLock<hoard_core::format::crypto::MasterKey> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key = KEY.get_or_init(hoard_core::format::crypto::MasterKey::random);
    let _ = hoard_core::format::pack::read_pack(key, data, "fuzz");
    let _ = key.open(data, "fuzz");
    let _ = hoard_core::format::blob::open_doc::<hoard_core::format::index::IndexFile>(key, data, "fuzz");
});
