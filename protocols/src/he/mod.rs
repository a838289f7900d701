//! Homomorphic-encryption preprocessing of linear layers (BFV, coefficient encoding).
//!
//! The offline phase of every linear layer `L` must give the client `L(r) - s` for the
//! client's random mask `r` and the server's random `s`, without the server learning `r`
//! or the client learning `L`. Here the client encrypts `r` under its own BFV key, the
//! server evaluates `L` on the ciphertexts with plaintext weight polynomials
//! ([`layout`]: Cheetah-style coefficient encoding, no rotations, no key switching),
//! subtracts `s`, re-randomizes the result (a fresh public-key encryption of zero and
//! noise flooding) and returns it; the client decrypts.
//!
//! Parameters ([`HeParams`]): ring degree `N = 8192`, ciphertext modulus `q` the
//! product of three 62-bit NTT primes (`log2 q = 186 <= 218`, the 128-bit bound of the
//! HomomorphicEncryption.org standard for `N = 8192`), error and secret from the `fhe`
//! crate's centered binomial distribution (variance 10), plaintext modulus `t = 2^l`, the
//! ring of the shares, so the decrypted values are exactly the shares the fixed-point
//! arithmetic uses. The `fhe` crate encodes `m` as `floor(q m / t)`; a product with a
//! kernel polynomial then carries no `q mod t` term, and the decryption noise of a
//! result is at most `21 * W + 2^23` for a kernel 1-norm `W <= 2^40` (checked), far
//! below the flooding noise `2^117`, itself far below `q / 2t ~ 2^124`; the flooding
//! hides the weight-dependent noise with statistical distance at most `2^-71` per
//! coefficient. The released result is then switched from `q` to `2^80` (`c1`) and
//! `2^64` (`c0`) (`switch.rs`): a public function of the flooded result, so it hides as
//! much, and its rounding errors (at most `2^15 + 2^16.3`, plus `2^11` of scaled noise)
//! stay below `2^17`, half what decoding at `2^80` tolerates: decryption is always
//! correct (`docs/he.md` has the derivation and the measurements).

//! This module computes and exchanges messages over a [`Channel`](crate::Channel); it
//! opens no sockets.
//!
//! # Messages
//!
//! Key setup, then one operator ("term") at a time. Messages of one term, all of sizes fixed by the public layout:
//! 1. client -> server: `input_cts` BFV ciphertexts of the client's mask (the `fhe`
//!    crate's serialization, `c1` replaced by its seed), each length-prefixed and bounded;
//! 2. server -> client: per output ciphertext, `c1` (N coefficients modulo `2^80`, 10
//!    bytes each, little-endian) and `c0` at the layout's output coefficients only
//!    (modulo `2^64`, one `u64` each), both in coefficient form (so the wire format does
//!    not depend on the NTT implementation's ordering), after subtracting `s`, adding a
//!    fresh public-key encryption of zero, flooding `c0` and switching the modulus. The
//!    other coefficients of `c0`, which hold partial sums of the convolution, never leave
//!    the server.
//!
//! Randomness: every draw (key, encryption noise, the seeds of the uniform polynomials,
//! re-randomization, flooding) comes from the generator the caller passes (`*_with_rng`;
//! the plain methods key one from the OS CSPRNG), one [`Prg`](crate::prg::Prg) per ciphertext drawn in
//! order before the parallel work, so a seeded party sends the same bytes every run. The
//! `fhe` crate's secret-key encryption expands its uniform `a` from a seed of the thread
//! RNG, whatever generator it is given; the client therefore encrypts its masks itself
//! (`b = floor(q m / t) + e - a s`, `a` from a seed of its own generator, `e` centred
//! binomial of variance 10: the crate's distribution), serialized exactly as the crate
//! serializes a seeded ciphertext, and re-keys its public key `(b, a)` to
//! `(b + (a - a') s, a')`, the same key under the same noise.

mod client;
mod codec;
pub mod layout;
mod ordered;
mod params;
mod rekey;
mod server;
mod switch;

pub use client::HeClient;
pub use layout::{ConvLayout, ConvShape};
pub use params::{
    FLOOD_BITS, HE_VERSION, HeParams, MAX_KERNEL_NORM_BITS, MODULI, POLY_DEGREE, RESULT_C0_BITS,
    RESULT_C1_BITS, SECRET_BOUND,
};
pub use server::{HeServer, KernelCache};

#[cfg(test)]
mod tests;
