//! The BFV parameters both parties use, and the bounds of the noise analysis.

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
