//! The ring Z_2^l and the fixed-point encoding in it: [`FixedPointParams`], part of every
//! model's public description, with the encoding, decoding and the two rescaling rules of
//! the secure protocol (see `docs/fixed-point.md`).
//!
//! It sits below [`crate::model`] (which stores the parameters) and [`crate::fixed`] (which
//! computes with them) and depends on neither.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Parameters of the fixed-point arithmetic, part of a model's public description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedPointParams {
    /// l: the ring is Z_2^l.
    pub ring_bits: u32,
    /// f: fractional bits of activations and weights.
    pub frac_bits: u32,
    /// m: low bits of each share the ReLU circuit reads.
    pub relu_bits: u32,
}

impl Default for FixedPointParams {
    fn default() -> Self {
        FixedPointParams {
            ring_bits: 61,
            frac_bits: 14,
            relu_bits: 36,
        }
    }
}

impl FixedPointParams {
    /// Checks 1 <= f, 2f + 2 <= m <= l <= 62.
    pub fn validate(&self) -> Result<(), ModelError> {
        let FixedPointParams {
            ring_bits: l,
            frac_bits: f,
            relu_bits: m,
        } = *self;
        if f >= 1 && 2 * f + 2 <= m && m <= l && l <= 62 {
            Ok(())
        } else {
            Err(ModelError::InvalidArgument(format!(
                "fixed-point parameters l={l}, f={f}, m={m} must satisfy 1 <= f, 2f+2 <= m <= l <= 62"
            )))
        }
    }

    /// Reduces an integer into the ring, in the signed representation [-2^(l-1), 2^(l-1)).
    #[inline]
    pub fn reduce(&self, v: i64) -> i64 {
        let s = 64 - self.ring_bits;
        (v << s) >> s
    }

    /// Encodes a real number at scale 2^f (round to nearest), reduced into the ring.
    pub fn encode(&self, x: f64) -> i64 {
        self.reduce((x * (1u64 << self.frac_bits) as f64).round() as i64)
    }

    /// Decodes a ring value at scale 2^(scale_bits).
    pub fn decode(&self, v: i64, scale_bits: u32) -> f64 {
        self.reduce(v) as f64 / (1u64 << scale_bits) as f64
    }

    /// The rescaling a kept ReLU position performs in the garbled circuit: the low m bits
    /// of `y + 2^(f-1)` as a signed value, shifted right by f, ReLU.
    #[inline]
    pub fn relu_rescale(&self, y: i64) -> i64 {
        let s = 64 - self.relu_bits;
        let z = (y.wrapping_add(1 << (self.frac_bits - 1)) << s) >> s;
        (z >> self.frac_bits).max(0)
    }

    /// The rescaling of a linearized (or ReLU-free) position: round-half-up truncation of
    /// the full ring value.
    #[inline]
    pub fn rescale(&self, y: i64) -> i64 {
        self.reduce(y).wrapping_add(1 << (self.frac_bits - 1)) >> self.frac_bits
    }

    /// True when `y` is outside the range the ReLU circuit reads correctly.
    #[inline]
    pub fn relu_overflows(&self, y: i64) -> bool {
        let t = y.wrapping_add(1 << (self.frac_bits - 1));
        let half = 1i64 << (self.relu_bits - 1);
        !(-half..half).contains(&t)
    }

    /// Largest |pre-activation| (in real units) the ReLU circuit reads correctly.
    pub fn relu_range(&self) -> f64 {
        (1u64 << (self.relu_bits - 1)) as f64 / (1u64 << (2 * self.frac_bits)) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_rules() {
        let p = FixedPointParams::default();
        let f = p.frac_bits;
        let ulp = 1i64 << f;
        let half = ulp / 2;
        let one = 1i64 << (2 * f); // 1.0 at scale 2^(2f)
        assert_eq!(p.rescale(one), ulp);
        assert_eq!(p.rescale(-one), -ulp);
        assert_eq!(p.rescale(half - 1), 0); // just below half an ulp
        assert_eq!(p.rescale(half), 1); // half rounds up
        assert_eq!(p.rescale(-half), 0);
        assert_eq!(p.rescale(-half - 1), -1);
        assert_eq!(p.relu_rescale(-one), 0);
        assert_eq!(p.relu_rescale(3 * one), 3 * ulp);
        // Beyond the m-bit window the circuit wraps: 2^(m-1) reads as negative.
        let big = 1i64 << (p.relu_bits - 1);
        assert!(p.relu_overflows(big));
        assert_eq!(p.relu_rescale(big), 0);
        assert!(!p.relu_overflows(big - half - 1));
        assert!(p.relu_overflows(big - half));
        assert_eq!(p.reduce(1i64 << 60), -(1i64 << 60));
        assert_eq!(p.encode(-1.5), -3 * half);
        assert!((p.relu_range() - 128.0).abs() < 1e-12);
    }

    #[test]
    fn bad_params_are_rejected() {
        for (l, f, m) in [(61, 0, 32), (61, 16, 32), (61, 12, 62), (63, 12, 32)] {
            let p = FixedPointParams {
                ring_bits: l,
                frac_bits: f,
                relu_bits: m,
            };
            assert!(p.validate().is_err(), "{p:?}");
        }
        assert!(FixedPointParams::default().validate().is_ok());
    }
}
