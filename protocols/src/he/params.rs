//! The BFV parameters both parties use, and the bounds of the noise analysis.

use std::sync::Arc;

use fhe::bfv::{BfvParameters, BfvParametersBuilder};

use crate::error::{ProtocolError, Result};

/// Version of the HE preprocessing messages (sent in the key message). 2: results are
/// modulus-switched to powers of two (`RESULT_C0_BITS`, `RESULT_C1_BITS`). 3: layouts
/// chosen by a cost model that counts bytes (the number and order of ciphertexts of a
/// term follow the layout, which both sides derive from the public shapes). 4: a byte
/// weighs 32 ns in that model instead of 16. 5: a term's results are sent group-major
/// (all tiles of group 0, then of group 1, ...), each group as soon as it is computed.
pub const HE_VERSION: u8 = 5;

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

/// Results are released modulus-switched: `c0` (at the output coefficients) modulo
/// `2^RESULT_C0_BITS`, `c1` modulo `2^RESULT_C1_BITS` (`docs/he.md`: the rounding
/// errors, `2^(80-64-1)` from `c0` and `|s|_1 / 2 <= 20 N / 2 = 2^16.3` from `c1`, and the
/// scaled flooding `2^(80+117-186)` stay below `2^(80-61-1)`, half the switched scale).
pub const RESULT_C0_BITS: u32 = 64;

/// See [`RESULT_C0_BITS`].
pub const RESULT_C1_BITS: u32 = 80;

/// Largest magnitude of a secret-key coefficient (the `fhe` crate's centred binomial
/// distribution of variance 10 is a difference of two 20-bit popcounts).
pub const SECRET_BOUND: u64 = 20;

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
        // After switching to 2^b (c1) and 2^a (c0): the rounding errors plus the scaled
        // noise stay below half the switched scale 2^(b-l-1), l = 61, with margin 2.
        let (a, b) = (f64::from(RESULT_C0_BITS), f64::from(RESULT_C1_BITS));
        let pre = 2f64.powf(f64::from(FLOOD_BITS)) * 1.001;
        let switched = 2f64.powf(b - a - 1.0)
            + (SECRET_BOUND * POLY_DEGREE as u64) as f64 / 2.0
            + pre * 2f64.powf(b - log_q)
            + 1.0;
        assert!(2.0 * switched < 2f64.powf(b - 61.0 - 1.0), "{switched}");
        assert!(HeParams::new(61).is_ok());
        assert!(HeParams::new(62).is_err());
        assert!(HeParams::new(1).is_err());
    }
}
