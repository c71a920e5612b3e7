//! The repository's `config` file (FORMAT.md "Config"): parameters fixed at `init` that every
//! writer must share.

use serde::{Deserialize, Serialize};

use crate::id::Id;

/// Current repository format version.
pub const FORMAT_VERSION: u32 = 1;

/// Content-defined chunking parameters. Restic's 512 KiB / 1 MiB / 8 MiB sizes keep the
/// index small for large repositories while still deduplicating edits within large files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// No chunk is shorter (but a file's last).
    pub min_size: u32,
    /// The size chunks tend to.
    pub avg_size: u32,
    /// No chunk is longer.
    pub max_size: u32,
    /// XOR'd into FastCDC's gear table so chunk boundaries (and thus chunk lengths) do not
    /// reveal file contents to someone who knows the plaintext of other files.
    pub gear_seed: u64,
}

impl ChunkerParams {
    /// The default sizes with a fresh random gear seed.
    pub fn random() -> Self {
        let mut seed = [0u8; 8];
        crate::random::fill_random(&mut seed);
        ChunkerParams {
            min_size: 512 * 1024,
            avg_size: 1024 * 1024,
            max_size: 8 * 1024 * 1024,
            gear_seed: u64::from_le_bytes(seed),
        }
    }

    /// FastCDC's accepted ranges; a config outside them was not written by hoard.
    pub fn validate(&self) -> Result<(), String> {
        let ok = (64..=1_048_576).contains(&self.min_size)
            && (256..=4_194_304).contains(&self.avg_size)
            && (1024..=16_777_216).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size;
        if ok {
            Ok(())
        } else {
            Err(format!("chunker sizes out of range: {self:?}"))
        }
    }
}

/// The `config` document (FORMAT.md "Config").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// The format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// Random; distinguishes repositories (e.g. in caches and locks).
    pub id: Id,
    /// How files are cut into chunks; fixed for the life of the repository, so chunks dedup.
    pub chunker: ChunkerParams,
    /// Target size: a pack is closed once its blobs reach this many bytes (the file is a
    /// little larger, by its header).
    pub pack_size: u32,
    /// zstd level for blobs.
    pub compression_level: i32,
}

impl Config {
    /// A config for a new repository, with a random id and gear seed.
    pub fn new(pack_size: u32, compression_level: i32) -> Self {
        Config {
            version: FORMAT_VERSION,
            id: Id::random(),
            chunker: ChunkerParams::random(),
            pack_size,
            compression_level,
        }
    }
}

impl Config {
    /// What a reader and writer can rely on: a version it knows, chunker sizes FastCDC
    /// accepts, a pack size whose buffers fit in memory, and a zstd level zstd has. Anyone who
    /// can write to the bucket can replace the config, so nothing in it is trusted unchecked.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != FORMAT_VERSION {
            return Err(format!("unsupported format version {}", self.version));
        }
        self.chunker.validate()?;
        if !PACK_SIZES.contains(&self.pack_size) {
            return Err(format!(
                "pack size {} is outside {}..={} bytes",
                self.pack_size,
                PACK_SIZES.start(),
                PACK_SIZES.end()
            ));
        }
        if !COMPRESSION_LEVELS.contains(&self.compression_level) {
            return Err(format!(
                "compression level {} is outside zstd's {}..={}",
                self.compression_level,
                COMPRESSION_LEVELS.start(),
                COMPRESSION_LEVELS.end()
            ));
        }
        Ok(())
    }
}

/// Pack sizes a repository may use: from 1 MiB (fewer would mean an object per few chunks)
/// to 128 MiB (restic's limit; every writer buffers two packs of this size).
pub const PACK_SIZES: std::ops::RangeInclusive<u32> = (1 << 20)..=(128 << 20);
/// zstd's levels, negative ones being its fast modes.
pub const COMPRESSION_LEVELS: std::ops::RangeInclusive<i32> = -7..=22;

/// 16 MiB: few enough objects for S3 listing and request costs, small enough to buffer.
pub const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;
/// zstd level 2: on the toolchain copy it stores what restic 0.14's default stores (328 MB
/// against 326; level 3, rustic's default, 317) and compresses the large binaries that make
/// up most of it 40% faster (430 MB/s a core against 305), a sixth of a first backup's CPU
/// time. `init --compression 3` trades that back for 3.5% less.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_values_a_writer_can_live_with_validate() {
        let good = Config::new(DEFAULT_PACK_SIZE, DEFAULT_COMPRESSION_LEVEL);
        assert!(good.validate().is_ok());
        let with = |f: fn(&mut Config)| {
            let mut c = good.clone();
            f(&mut c);
            c.validate()
        };
        assert!(with(|c| c.version = 2).unwrap_err().contains("version"));
        assert!(with(|c| c.pack_size = u32::MAX)
            .unwrap_err()
            .contains("pack size"));
        assert!(with(|c| c.pack_size = 0).is_err());
        assert!(with(|c| c.compression_level = 100)
            .unwrap_err()
            .contains("zstd"));
        assert!(with(|c| c.chunker.max_size = 0)
            .unwrap_err()
            .contains("chunker"));
        assert!(with(|c| c.pack_size = 128 << 20).is_ok());
    }
}
