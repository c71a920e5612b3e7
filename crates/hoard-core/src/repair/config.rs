//! `repair config`: a config that is damaged, missing or holds hostile values, replaced.
//!
//! Nothing in the config is needed to read what is stored: blobs carry their own lengths and
//! compression, and the key comes from a key file. What it fixes is how new data is written.
//! So a damaged config can be replaced: every field that can still be read and is valid is
//! kept (above all the chunker parameters, so that new backups keep deduplicating against old
//! data), and what is lost gets a fresh value. Changed chunker parameters cost only dedup of
//! changed files against older data: unchanged files are taken over from the parent snapshot
//! without being chunked again.

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::format::blob::{decode_doc_payload, seal_doc};
use crate::format::config::{
    ChunkerParams, Config, COMPRESSION_LEVELS, DEFAULT_COMPRESSION_LEVEL, DEFAULT_PACK_SIZE,
    FORMAT_VERSION, PACK_SIZES,
};
use crate::id::Id;
use crate::repository::lock;
use crate::repository::{Repository, CONFIG_PATH};

/// What `repair_config` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairConfigStats {
    /// The config was healthy; nothing was written.
    pub healthy: bool,
    /// Why it needed a repair.
    pub problem: Option<String>,
    /// Fields taken over from the old config.
    pub kept: Vec<String>,
    /// Fields that got a fresh value, and why.
    pub replaced: Vec<String>,
}

/// Replaces a damaged config, keeping whatever of it is readable and valid. Needs the
/// password (the config is sealed with the master key) and takes an exclusive lock, so no
/// writer runs with the old parameters meanwhile.
pub async fn repair_config(op: opendal::Operator, password: &[u8]) -> Result<RepairConfigStats> {
    let storage = Repository::open_keys_only(op.clone(), password).await?;
    let guard = lock::lock(
        &storage,
        true,
        std::time::Duration::ZERO,
        lock::LockTiming::default(),
    )
    .await?;
    let result = repair(&storage, &op).await;
    guard.release().await?;
    result
}

async fn repair(
    storage: &crate::repository::storage::Storage,
    op: &opendal::Operator,
) -> Result<RepairConfigStats> {
    let mut stats = RepairConfigStats::default();
    let old: Option<Value> = match crate::repository::read_config(op, storage.key()).await {
        Ok(_) => {
            stats.healthy = true;
            return Ok(stats);
        }
        Err(e @ Error::Storage { .. }) if !e.is_not_found() => return Err(e),
        Err(e) => {
            stats.problem = Some(e.to_string());
            readable_fields(storage, op).await
        }
    };
    if let Some(v) = old
        .as_ref()
        .and_then(|v| v.get("version"))
        .and_then(Value::as_u64)
    {
        if v > u64::from(FORMAT_VERSION) {
            return Err(Error::invalid(
                "config",
                format!("format version {v} is newer than this hoard's ({FORMAT_VERSION}): upgrade hoard instead"),
            ));
        }
    }
    let field = |name: &str| old.as_ref().and_then(|v| v.get(name)).cloned();
    let mut config = Config::new(DEFAULT_PACK_SIZE, DEFAULT_COMPRESSION_LEVEL);
    let mut note = |name: &str, kept: bool, why: &str| {
        if kept {
            stats.kept.push(name.to_string());
        } else {
            stats.replaced.push(format!("{name}: {why}"));
        }
    };
    let why_missing = if old.is_some() {
        "missing or invalid"
    } else {
        "unreadable"
    };

    match field("id").and_then(|v| serde_json::from_value::<Id>(v).ok()) {
        Some(id) => {
            config.id = id;
            note("id", true, "");
        }
        None => note("id", false, why_missing),
    }
    match field("chunker").and_then(|v| serde_json::from_value::<ChunkerParams>(v).ok()) {
        Some(c) if c.validate().is_ok() => {
            config.chunker = c;
            note("chunker", true, "");
        }
        _ => note(
            "chunker",
            false,
            &format!("{why_missing}; changed files no longer deduplicate against older data"),
        ),
    }
    match field("pack_size")
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok())
    {
        Some(p) if PACK_SIZES.contains(&p) => {
            config.pack_size = p;
            note("pack_size", true, "");
        }
        _ => note("pack_size", false, why_missing),
    }
    match field("compression_level")
        .and_then(|v| v.as_i64())
        .and_then(|v| i32::try_from(v).ok())
    {
        Some(l) if COMPRESSION_LEVELS.contains(&l) => {
            config.compression_level = l;
            note("compression_level", true, "");
        }
        _ => note("compression_level", false, why_missing),
    }
    config
        .validate()
        .map_err(|e| Error::invalid("repaired config", e))?;
    let sealed = seal_doc(storage.key(), &config)?;
    op.write(CONFIG_PATH, sealed)
        .await
        .map_err(|e| Error::storage("write", CONFIG_PATH, e))?;
    tracing::info!(
        kept = ?stats.kept,
        replaced = ?stats.replaced,
        "config of {} repaired",
        config.id.short()
    );
    Ok(stats)
}

/// The old config as JSON, when it still opens (even if its values are invalid).
async fn readable_fields(
    storage: &crate::repository::storage::Storage,
    op: &opendal::Operator,
) -> Option<Value> {
    let sealed = op.read(CONFIG_PATH).await.ok()?.to_vec();
    let plain = storage.key().open(&sealed, "config").ok()?;
    let json = decode_doc_payload(&plain, "config").ok()?;
    serde_json::from_slice::<Value>(&json)
        .ok()
        .filter(Value::is_object)
}
