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
//! below the flooding noise `2^117`, itself far below `q / 2t ~ 2^124`: decryption is
//! always correct, and the flooding hides the weight-dependent noise with statistical
//! distance at most `2^-71` per coefficient (`docs/he.md` has the derivation and the
//! measurements).
//!
//! This module computes and exchanges messages over a [`Channel`](crate::Channel); it
//! opens no sockets.

pub mod layout;
mod proto;

pub use layout::{ConvLayout, ConvShape};
pub use proto::{HeClient, HeServer};

use std::sync::Arc;

use fhe::bfv::{BfvParameters, BfvParametersBuilder};

use crate::error::{ProtocolError, Result};

/// Version of the HE preprocessing messages (sent in the key message).
pub const HE_VERSION: u8 = 1;

/// Ring degree.
pub const POLY_DEGREE: usize = 8192;

/// The ciphertext moduli: three 62-bit primes `= 1 mod 2N` (NTT-friendly), fixed so that
/// both parties use the same ones whatever the library's prime search does.
pub const MODULI: [u64; 3] = [
    0x3fff_ffff_ffff_0001,
    0x3fff_ffff_fffe_8001,
    0x3fff_ffff_fff1_c001,
];

/// Flooding noise: uniform in `[-2^FLOOD_BITS, 2^FLOOD_BITS]` on every coefficient the
/// client decrypts.
pub const FLOOD_BITS: u32 = 117;

/// Largest kernel 1-norm (sum of absolute weights over one output ciphertext's products)
/// the noise analysis admits: `2^MAX_KERNEL_NORM_BITS`.
pub const MAX_KERNEL_NORM_BITS: u32 = 40;

/// BFV parameters for shares in `Z_{2^ring_bits}`.
#[derive(Clone, Debug)]
pub struct HeParams {
    par: Arc<BfvParameters>,
    ring_bits: u32,
}

impl HeParams {
    /// Parameters for the ring `Z_{2^ring_bits}`, `2 <= ring_bits <= 61`.
    pub fn new(ring_bits: u32) -> Result<Self> {
        if !(2..=61).contains(&ring_bits) {
            return Err(ProtocolError::arg(format!(
                "HE preprocessing supports rings Z_2^l with 2 <= l <= 61, not l = {ring_bits}"
            )));
        }
        let par = BfvParametersBuilder::new()
            .set_degree(POLY_DEGREE)
            .set_plaintext_modulus(1u64 << ring_bits)
            .set_moduli(&MODULI)
            .build_arc()
            .map_err(|e| ProtocolError::arg(format!("BFV parameters: {e}")))?;
        Ok(HeParams { par, ring_bits })
    }

    /// The ring's bit width `l` (`t = 2^l`).
    pub fn ring_bits(&self) -> u32 {
        self.ring_bits
    }

    pub(crate) fn bfv(&self) -> &Arc<BfvParameters> {
        &self.par
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moduli_are_ntt_friendly_and_within_the_standard() {
        let bits: u32 = MODULI.iter().map(|q| 64 - q.leading_zeros()).sum();
        assert!(
            bits <= 218,
            "log2 q = {bits} exceeds the 128-bit bound for N = 8192"
        );
        for q in MODULI {
            assert_eq!(q % (2 * POLY_DEGREE as u64), 1, "{q:#x} is not 1 mod 2N");
        }
        // Flooding plus the worst admitted noise stays below q / 2t with margin.
        let log_q = MODULI.iter().map(|&q| (q as f64).log2()).sum::<f64>();
        let half_delta = log_q - 61.0 - 1.0;
        let noise = ((21.0f64).log2() + f64::from(MAX_KERNEL_NORM_BITS)).max(23.0) + 1.0;
        assert!(f64::from(FLOOD_BITS) + 1.0 < half_delta - 4.0);
        assert!(f64::from(FLOOD_BITS) - noise >= 71.0);
        assert!(HeParams::new(61).is_ok());
        assert!(HeParams::new(62).is_err());
        assert!(HeParams::new(1).is_err());
    }
}
