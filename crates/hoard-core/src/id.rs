//! 32-byte identifiers. Blob ids are keyed BLAKE3 of the plaintext (so only key holders can
//! confirm that a known file is stored); every file in the repository is named by the plain
//! BLAKE3 of its stored bytes (so `check --read-data` can verify names without the key).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 256-bit identifier, printed and serialised as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// Name of a stored file: plain BLAKE3 of its bytes.
    pub fn of_file(bytes: &[u8]) -> Self {
        Id(*blake3::hash(bytes).as_bytes())
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.hex_digits().to_string()
    }

    /// The hex digits without an allocation: every tree a backup writes spells out its
    /// content ids.
    fn hex_digits(&self) -> HexDigits {
        let mut digits = [0u8; 64];
        // Cannot fail: the output is exactly twice the input.
        let _ = hex::encode_to_slice(self.0, &mut digits);
        HexDigits(digits)
    }

    /// The first 8 hex digits, as restic prints snapshot ids.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// A random id (repository ids).
    pub fn random() -> Self {
        let mut b = [0u8; 32];
        crate::random::fill_random(&mut b);
        Id(b)
    }
}

struct HexDigits([u8; 64]);

impl std::ops::Deref for HexDigits {
    type Target = str;
    fn deref(&self) -> &str {
        // Hex digits are ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex_digits())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

/// Error for a string that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("not a 64-digit hex id: {0:?}")]
pub struct ParseIdError(pub String);

impl FromStr for Id {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).map_err(|_| ParseIdError(s.to_string()))?;
        Ok(Id(b))
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex_digits())
    }
}

impl<'de> Deserialize<'de> for Id {
    /// Parses the digits where the deserializer holds them: serde's `Cow<str>` would
    /// allocate a `String` for every id of every index file and tree read.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Digits;
        impl serde::de::Visitor<'_> for Digits {
            type Value = Id;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an id of 64 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Id, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_bad_input() {
        let id = Id::of_file(b"x");
        assert_eq!(id.to_hex().parse::<Id>().unwrap(), id);
        assert!("abc".parse::<Id>().is_err());
        assert!("zz".repeat(32).parse::<Id>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
        // Escaped digits (legal JSON) and ids inside a reader's buffer parse the same.
        let escaped = json.replacen('0', "\\u0030", 1).replacen('a', "\\u0061", 1);
        assert_ne!(escaped, json);
        assert_eq!(serde_json::from_str::<Id>(&escaped).unwrap(), id);
        assert_eq!(
            serde_json::from_reader::<_, Id>(json.as_bytes()).unwrap(),
            id
        );
        assert!(serde_json::from_str::<Id>("17").is_err());
        assert!(serde_json::from_str::<Id>(&format!("\"{}\"", "g".repeat(64))).is_err());
    }
}
