//! Key files (`keys/<id>`, FORMAT.md "Keys and key files"): the master key sealed under a key
//! derived from a password with argon2id. The argon2id parameters are stored in the key file
//! so they can be raised later without touching the data.

use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::XChaCha20Poly1305;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::crypto::{open_with, seal_with, MasterKey};
use crate::error::{Error, Result};
use crate::random::fill_random;

/// argon2id cost parameters, stored per key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes): about a quarter of a
    /// second on one core here, which makes offline guessing expensive without slowing a
    /// backup noticeably.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 4,
        }
    }
}

impl KdfParams {
    /// Cheap parameters for tests and throw-away repositories. Never the default.
    pub fn insecure_fast() -> Self {
        KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    /// The costs a key file may ask for. Anyone who can write to the bucket can plant a key
    /// file, and argon2 would allocate and loop for whatever it says: 4 GiB and 64 passes are
    /// far above any real key (hoard writes 64 MiB and 3), far below a denial of service.
    pub fn check_bounds(&self) -> std::result::Result<(), String> {
        const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
        const MAX_ITERATIONS: u32 = 64;
        const MAX_PARALLELISM: u32 = 64;
        if self.memory_kib > MAX_MEMORY_KIB
            || self.iterations > MAX_ITERATIONS
            || self.parallelism == 0
            || self.parallelism > MAX_PARALLELISM
        {
            return Err(format!(
                "argon2id costs out of bounds: {} KiB, {} passes, {} lanes (at most {MAX_MEMORY_KIB} KiB, {MAX_ITERATIONS} passes, {MAX_PARALLELISM} lanes)",
                self.memory_kib, self.iterations, self.parallelism
            ));
        }
        Ok(())
    }

    fn derive(&self, password: &[u8], salt: &[u8]) -> Result<XChaCha20Poly1305> {
        let key = self.derive_key(password, salt)?;
        Ok(XChaCha20Poly1305::new(key.as_ref().into()))
    }

    /// argon2id of the password: the lanes are computed in parallel (the `parallel`
    /// feature), which halves what every command pays to open a repository on two cores.
    fn derive_key(&self, password: &[u8], salt: &[u8]) -> Result<zeroize::Zeroizing<[u8; 32]>> {
        self.check_bounds()
            .map_err(|e| Error::invalid("key derivation parameters", e))?;
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|e| Error::invalid("key derivation parameters", e))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(password, salt, key.as_mut())
            .map_err(|e| Error::invalid("key derivation input", e))?;
        Ok(key)
    }
}

/// `keys/<id>`: the only plaintext JSON in a repository, because the KDF parameters must be
/// readable before anything can be decrypted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// Key file format version (1).
    pub version: u32,
    /// When the key was made.
    pub created: chrono::DateTime<chrono::Utc>,
    /// Where it was made.
    pub hostname: String,
    /// By whom.
    pub username: String,
    /// The key derivation function: `argon2id`.
    pub kdf: String,
    /// Its cost parameters.
    #[serde(flatten)]
    pub params: KdfParams,
    /// Salt, base64.
    pub salt: String,
    /// The sealed master key, base64.
    pub data: String,
}

impl KeyFile {
    /// Seals `master` under a key derived from `password` with a fresh salt.
    pub fn create(master: &MasterKey, password: &[u8], params: KdfParams) -> Result<Self> {
        use base64::Engine;
        let mut salt = [0u8; 32];
        fill_random(&mut salt);
        let cipher = params.derive(password, &salt)?;
        let mut plain = master.to_bytes();
        let sealed = seal_with(&cipher, &plain);
        plain.zeroize();
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(KeyFile {
            version: 1,
            created: chrono::Utc::now(),
            hostname: crate::host::hostname(),
            username: crate::host::username(),
            kdf: "argon2id".into(),
            params,
            salt: b64.encode(salt),
            data: b64.encode(sealed),
        })
    }

    /// Opens the master key; `Ok(None)` when the password does not fit this key.
    pub fn open(&self, password: &[u8]) -> Result<Option<MasterKey>> {
        use base64::Engine;
        if self.kdf != "argon2id" {
            return Err(Error::corrupt(
                "key file",
                format!("unknown kdf {:?}", self.kdf),
            ));
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64
            .decode(&self.salt)
            .map_err(|e| Error::corrupt_by("key file salt", e))?;
        let data = b64
            .decode(&self.data)
            .map_err(|e| Error::corrupt_by("key file data", e))?;
        let cipher = self.params.derive(password, &salt)?;
        match open_with(&cipher, &data, "key") {
            Ok(mut plain) => {
                let key = MasterKey::from_bytes(&plain);
                plain.zeroize();
                key.map(Some)
                    .ok_or_else(|| Error::corrupt("key file", "master key has the wrong length"))
            }
            Err(Error::Authentication(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys derived by argon2 0.5 (one lane at a time), which wrote the key files of existing
    /// repositories: a parallel or upgraded argon2 must derive the same bytes.
    #[test]
    fn argon2id_derives_what_existing_key_files_were_made_with() {
        let known = [
            (
                (64, 1, 1),
                "80eb50738452928aaa1a245131edaec8c8116ee3e8f51d26ce6b2735eecbb801",
            ),
            (
                (256, 2, 4),
                "89682f86a551f880ae9af9d936e5b700c6bef67304b2db718b1dffbeb7420521",
            ),
            (
                (1024, 3, 4),
                "4ba88cf5749421bb1f2ef6eba158fdf809efe50edcae155dd1c611ca6da2ad23",
            ),
        ];
        for ((memory_kib, iterations, parallelism), hex) in known {
            let params = KdfParams {
                memory_kib,
                iterations,
                parallelism,
            };
            let key = params
                .derive_key(b"correct horse battery staple", b"hoard salt 16 by")
                .unwrap();
            let got: String = key.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(got, hex, "{params:?}");
        }
    }

    #[test]
    fn key_file_opens_with_right_password_only() {
        let m = MasterKey::random();
        let kf = KeyFile::create(&m, b"secret", KdfParams::insecure_fast()).unwrap();
        let json = serde_json::to_string(&kf).unwrap();
        assert!(!json.contains("secret"));
        let kf: KeyFile = serde_json::from_str(&json).unwrap();
        let opened = kf.open(b"secret").unwrap().unwrap();
        assert_eq!(opened.blob_id(b"x"), m.blob_id(b"x"));
        assert!(kf.open(b"wrong").unwrap().is_none());
        assert_eq!(format!("{m:?}"), "MasterKey(..)");
    }

    #[test]
    fn kdf_costs_are_bounded_before_argon2_runs() {
        assert!(KdfParams::default().check_bounds().is_ok());
        assert!(KdfParams::insecure_fast().check_bounds().is_ok());
        for p in [
            KdfParams {
                memory_kib: u32::MAX,
                ..KdfParams::default()
            },
            KdfParams {
                iterations: 1_000,
                ..KdfParams::default()
            },
            KdfParams {
                parallelism: 0,
                ..KdfParams::default()
            },
        ] {
            assert!(p.check_bounds().is_err(), "{p:?}");
        }
        let m = MasterKey::random();
        let mut kf = KeyFile::create(&m, b"pw", KdfParams::insecure_fast()).unwrap();
        kf.params.memory_kib = u32::MAX;
        assert!(kf.open(b"pw").is_err(), "refused before deriving");
    }
}
