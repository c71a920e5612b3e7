//! Randomness for keys, nonces, salts and ids: the operating system's generator only.

pub(crate) fn fill_random(buf: &mut [u8]) {
    // The OS RNG failing means the process cannot produce keys or nonces at all; continuing
    // would risk nonce reuse, so this is the one place where a panic is the safe answer.
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the operating system's random number generator failed");
}
