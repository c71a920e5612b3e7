//! Opened documents: the format byte, zstd, and JSON of every document type.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(json) = hoard_core::format::blob::decode_doc_payload(data, "fuzz") {
        let _ = serde_json::from_slice::<hoard_core::format::index::IndexFile>(&json);
        let _ = serde_json::from_slice::<hoard_core::Snapshot>(&json);
        let _ = serde_json::from_slice::<hoard_core::Config>(&json);
    }
    let _ = serde_json::from_slice::<hoard_core::format::keyfile::KeyFile>(data);
});
