//! Keys and sealing.
//!
//! A repository has one random [`MasterKey`]: a 32-byte XChaCha20-Poly1305 encryption key and
//! a 32-byte BLAKE3 key for blob ids. Each key file seals the master key under a key derived
//! from a password with argon2id; the argon2id parameters are stored in the key file so they
//! can be raised later without touching the data.
//!
//! A sealed object is `nonce(24) ‖ ciphertext ‖ tag(16)` with a random nonce: 192-bit nonces
//! make random generation safe for any number of objects.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};
use crate::id::Id;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object has beyond its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

pub(crate) fn fill_random(buf: &mut [u8]) {
    // The OS RNG failing means the process cannot produce keys or nonces at all; continuing
    // would risk nonce reuse, so this is the one place where a panic is the safe answer.
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the operating system's random number generator failed");
}

/// The repository's secret: never printed, wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    encrypt: [u8; 32],
    id: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn random() -> Self {
        let mut k = MasterKey {
            encrypt: [0; 32],
            id: [0; 32],
        };
        fill_random(&mut k.encrypt);
        fill_random(&mut k.id);
        k
    }

    /// Id of a blob: keyed BLAKE3 of its plaintext.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id, plaintext).as_bytes())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.encrypt).into())
    }

    /// Encrypts and authenticates `plaintext` under a fresh random nonce.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.cipher(), plaintext)
    }

    /// Checks and decrypts a sealed object; `what` names it in the error.
    pub fn open(&self, sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        open_with(&self.cipher(), sealed, what)
    }

    fn to_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(&self.encrypt);
        b[32..].copy_from_slice(&self.id);
        b
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 64 {
            return None;
        }
        let mut k = MasterKey {
            encrypt: [0; 32],
            id: [0; 32],
        };
        k.encrypt.copy_from_slice(&b[..32]);
        k.id.copy_from_slice(&b[32..]);
        Some(k)
    }
}

fn seal_with(cipher: &XChaCha20Poly1305, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    // Encryption only fails for messages beyond 256 GiB, which no caller produces.
    #[allow(clippy::expect_used)]
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), b"", &mut out[NONCE_LEN..])
        .expect("plaintext within XChaCha20-Poly1305 limits");
    out.extend_from_slice(&tag);
    out
}

fn open_with(cipher: &XChaCha20Poly1305, sealed: &[u8], what: &str) -> Result<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(Error::corrupt(what, "shorter than nonce and tag"));
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut buf = ct.to_vec();
    cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            b"",
            &mut buf,
            Tag::from_slice(tag),
        )
        .map_err(|_| Error::Authentication(what.to_string()))?;
    Ok(buf)
}

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

    fn derive(&self, password: &[u8], salt: &[u8]) -> Result<XChaCha20Poly1305> {
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|e| Error::invalid("key derivation parameters", e))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(password, salt, key.as_mut())
            .map_err(|e| Error::invalid("key derivation input", e))?;
        Ok(XChaCha20Poly1305::new(key.as_ref().into()))
    }
}

/// `keys/<id>`: the only plaintext JSON in a repository, because the KDF parameters must be
/// readable before anything can be decrypted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    pub created: chrono::DateTime<chrono::Utc>,
    pub hostname: String,
    pub username: String,
    pub kdf: String,
    #[serde(flatten)]
    pub params: KdfParams,
    /// Salt, base64.
    pub salt: String,
    /// The sealed master key, base64.
    pub data: String,
}

impl KeyFile {
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
            hostname: crate::hostname(),
            username: crate::username(),
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
            .map_err(|e| Error::corrupt("key file salt", e))?;
        let data = b64
            .decode(&self.data)
            .map_err(|e| Error::corrupt("key file data", e))?;
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
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn seal_open_round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let k = MasterKey::random();
            let sealed = k.seal(&data);
            prop_assert_eq!(sealed.len(), data.len() + SEAL_OVERHEAD);
            prop_assert_eq!(k.open(&sealed, "t").unwrap(), data);
        }

        #[test]
        fn any_flipped_bit_is_rejected(data in proptest::collection::vec(any::<u8>(), 0..512), pos in any::<usize>(), bit in 0u8..8) {
            let k = MasterKey::random();
            let mut sealed = k.seal(&data);
            let i = pos % sealed.len();
            sealed[i] ^= 1 << bit;
            prop_assert!(matches!(k.open(&sealed, "t"), Err(Error::Authentication(_))));
        }
    }

    #[test]
    fn other_key_and_truncation_are_rejected() {
        let a = MasterKey::random();
        let b = MasterKey::random();
        let sealed = a.seal(b"hello");
        assert!(b.open(&sealed, "t").is_err());
        assert!(a.open(&sealed[..10], "t").is_err());
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
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
}
