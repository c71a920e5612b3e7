//! The master key and sealing (FORMAT.md, "Keys and key files" and "Sealed objects").
//!
//! A repository has one random [`MasterKey`]: a 32-byte XChaCha20-Poly1305 encryption key and
//! a 32-byte BLAKE3 key for blob ids. Key files (see [`super::keyfile`]) seal it under
//! password-derived keys.
//!
//! A sealed object is `nonce(24) ‖ ciphertext ‖ tag(16)` with a random nonce: 192-bit nonces
//! make random generation safe for any number of objects.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::random::fill_random;

/// Bytes of the random nonce that starts every sealed object.
pub const NONCE_LEN: usize = 24;
/// Bytes of the Poly1305 tag that ends it.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object has beyond its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

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
    /// A fresh random key (for `init`).
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

    /// [`MasterKey::seal`] into `out`, replacing what it held: a caller that seals blob after
    /// blob keeps one buffer instead of a fresh allocation (and its page faults) per blob.
    pub fn seal_into(&self, plaintext: &[u8], out: &mut Vec<u8>) {
        seal_into_with(&self.cipher(), plaintext, out)
    }

    /// Checks and decrypts a sealed object; `what` names it in the error.
    pub fn open(&self, sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        open_with(&self.cipher(), sealed, what)
    }

    /// [`MasterKey::open`] without a copy: decrypts the sealed object where it lies and
    /// returns its plaintext, a slice of `sealed`.
    pub fn open_in_place<'a>(&self, sealed: &'a mut [u8], what: &str) -> Result<&'a [u8]> {
        let (nonce, tag) = nonce_and_tag(sealed, what)?;
        let end = sealed.len() - TAG_LEN;
        let ct = &mut sealed[NONCE_LEN..end];
        decrypt(&self.cipher(), &nonce, ct, &tag, what)?;
        Ok(ct)
    }

    pub(super) fn to_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(&self.encrypt);
        b[32..].copy_from_slice(&self.id);
        b
    }

    pub(super) fn from_bytes(b: &[u8]) -> Option<Self> {
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

pub(super) fn seal_with(cipher: &XChaCha20Poly1305, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    seal_into_with(cipher, plaintext, &mut out);
    out
}

fn seal_into_with(cipher: &XChaCha20Poly1305, plaintext: &[u8], out: &mut Vec<u8>) {
    out.clear();
    // Exactly: growth by doubling would leave the tag's few bytes a second megabyte.
    out.reserve_exact(plaintext.len() + SEAL_OVERHEAD);
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
}

pub(super) fn open_with(cipher: &XChaCha20Poly1305, sealed: &[u8], what: &str) -> Result<Vec<u8>> {
    let (nonce, tag) = nonce_and_tag(sealed, what)?;
    let mut buf = sealed[NONCE_LEN..sealed.len() - TAG_LEN].to_vec();
    decrypt(cipher, &nonce, &mut buf, &tag, what)?;
    Ok(buf)
}

/// The nonce and tag around a sealed object's ciphertext, or why it cannot be one.
fn nonce_and_tag(sealed: &[u8], what: &str) -> Result<([u8; NONCE_LEN], [u8; TAG_LEN])> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(Error::corrupt(what, "shorter than nonce and tag"));
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[..NONCE_LEN]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&sealed[sealed.len() - TAG_LEN..]);
    Ok((nonce, tag))
}

fn decrypt(
    cipher: &XChaCha20Poly1305,
    nonce: &[u8; NONCE_LEN],
    ct: &mut [u8],
    tag: &[u8; TAG_LEN],
    what: &str,
) -> Result<()> {
    cipher
        .decrypt_in_place_detached(XNonce::from_slice(nonce), b"", ct, Tag::from_slice(tag))
        .map_err(|_| Error::Authentication(what.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn opening_in_place_opens_what_open_opens_and_refuses_what_it_refuses() {
        let k = MasterKey::random();
        let sealed = k.seal(b"a document");
        let mut copy = sealed.clone();
        assert_eq!(k.open_in_place(&mut copy, "d").unwrap(), b"a document");
        let mut tampered = sealed.clone();
        tampered[NONCE_LEN] ^= 1;
        assert!(matches!(
            k.open_in_place(&mut tampered, "d"),
            Err(Error::Authentication(_))
        ));
        assert!(k.open(&tampered, "d").is_err());
        let mut short = sealed[..SEAL_OVERHEAD - 1].to_vec();
        assert!(matches!(
            k.open_in_place(&mut short, "d"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            MasterKey::random().open_in_place(&mut sealed.clone(), "d"),
            Err(Error::Authentication(_))
        ));
    }

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
}
