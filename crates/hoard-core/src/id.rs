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
        parse_hex(s.as_bytes())
            .map(Id)
            .ok_or_else(|| ParseIdError(s.to_string()))
    }
}

/// Each byte's value as a hex digit (either case), or 0xff.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        t[b"0123456789abcdef"[i] as usize] = i as u8;
        t[b"0123456789ABCDEF"[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// 64 hex digits as 32 bytes, without a branch per digit: an index load parses ids by the
/// million, and this was the hex crate's per-digit match before.
pub(crate) fn parse_hex(s: &[u8]) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (hi, lo) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    (bad & 0xf0 == 0).then_some(out)
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex_digits())
    }
}

impl<'de> Deserialize<'de> for Id {
    /// Parses the digits where the deserializer holds them: serde's `Cow<str>` would
    /// allocate a `String` for every id of every index file and tree read. Asked for as bytes,
    /// so that JSON hands over the string without checking that it is UTF-8 first (5% of
    /// loading an index): anything but hex digits is refused all the same.
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
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Id, E> {
                parse_hex(b)
                    .map(Id)
                    .ok_or_else(|| E::custom(ParseIdError(String::from_utf8_lossy(b).into_owned())))
            }
        }
        d.deserialize_bytes(Digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_ids_parse_as_before() {
        let id = Id::of_file(b"x");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
        // An escaped digit is still a digit; through a `Value`, the string arrives as a str.
        let escaped = format!("\"\\u00{:x}{}", json.as_bytes()[1], &json[2..]);
        assert_eq!(serde_json::from_str::<Id>(&escaped).unwrap(), id);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::from_value::<Id>(value).unwrap(), id);
        // Not 64 hex digits, a number array, bytes that are not UTF-8: refused.
        for bad in [r#""abc""#, "[1,2,3]", "\"\\udc00\"", "12"] {
            assert!(serde_json::from_str::<Id>(bad).is_err(), "{bad}");
        }
        let mut raw = json.clone().into_bytes();
        raw[5] = 0xff;
        assert!(serde_json::from_slice::<Id>(&raw).is_err());
    }

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

    #[test]
    fn parsing_agrees_with_the_hex_crate_for_every_byte_in_every_place() {
        let digits = Id::of_file(b"y").to_hex().into_bytes();
        let mut upper = digits.clone();
        upper.make_ascii_uppercase();
        for base in [digits, upper] {
            for place in [0, 1, 31, 62, 63] {
                for byte in 0..=255u8 {
                    let mut s = base.clone();
                    s[place] = byte;
                    let mut want = [0u8; 32];
                    let want = hex::decode_to_slice(&s, &mut want).ok().map(|()| want);
                    assert_eq!(parse_hex(&s), want, "byte {byte} at {place}");
                }
            }
        }
        assert_eq!(parse_hex(&[b'0'; 63]), None);
        assert_eq!(parse_hex(&[b'0'; 66]), None);
    }
}
