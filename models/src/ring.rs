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
    /// m: low bits of each share the ReLU circuit reads (the window: pre-activations up to
    /// `2^(m-1-2f)` in magnitude); a model's per-site windows
    /// ([`crate::model::PublicModel::relu_windows`]) override it site by site.
    pub relu_bits: u32,
    /// k: low bits of each share the ReLU circuit drops before adding (truncation fused
    /// into the circuit, `k <= f`). 0 is the exact circuit; with `k > 0` a kept ReLU's
    /// truncated value may come out one unit (2^-f) below the exact one, depending on the
    /// shares (the carry out of the dropped bits), which no plaintext twin can know: see
    /// `docs/fixed-point.md`. Absent in model files of format version 1, which read as 0.
    #[serde(default)]
    pub relu_dropped_bits: u32,
    /// h: fractional bits of the squared operand at a quadratic site's linearized
    /// positions. The square reads `x` truncated to scale `2^h`, and the coefficient `a`
    /// sits at scale `2^(2f-2h)`, so `a·x̃²` lands at `2^(2f)` without a truncation (see
    /// `docs/fixed-point.md`, "Quadratic sites"). Absent before format version 3, read as
    /// [`DEFAULT_SQUARE_FRAC_BITS`]; unused by models without quadratic sites.
    #[serde(default = "default_square_frac_bits")]
    pub square_frac_bits: u32,
}

/// The default `h` of [`FixedPointParams::square_frac_bits`]: with `f = 14`, the squared
/// operand has a resolution of 2^-8 and the coefficient `a` one of 2^-12, which balances
/// their error terms for activations of a few units.
pub const DEFAULT_SQUARE_FRAC_BITS: u32 = 8;

fn default_square_frac_bits() -> u32 {
    DEFAULT_SQUARE_FRAC_BITS
}

impl Default for FixedPointParams {
    fn default() -> Self {
        FixedPointParams {
            ring_bits: 61,
            frac_bits: 14,
            relu_bits: 36,
            relu_dropped_bits: 14,
            square_frac_bits: DEFAULT_SQUARE_FRAC_BITS,
        }
    }
}

impl FixedPointParams {
    /// Checks 1 <= f, k <= f, 2f + 2 <= m <= l <= 62, 1 <= h <= f.
    pub fn validate(&self) -> Result<(), ModelError> {
        let FixedPointParams {
            ring_bits: l,
            frac_bits: f,
            relu_bits: m,
            relu_dropped_bits: k,
            square_frac_bits: h,
        } = *self;
        if f >= 1 && k <= f && 2 * f + 2 <= m && m <= l && l <= 62 && (1..=f).contains(&h) {
            Ok(())
        } else {
            Err(ModelError::InvalidArgument(format!(
                "fixed-point parameters l={l}, f={f}, m={m}, k={k}, h={h} must satisfy 1 <= f, \
                 k <= f, 2f+2 <= m <= l <= 62, 1 <= h <= f"
            )))
        }
    }

    /// These parameters with the ReLU window `m` of a site (see
    /// [`crate::model::PublicModel::relu_windows`]).
    pub fn with_relu_bits(self, m: u32) -> Self {
        FixedPointParams {
            relu_bits: m,
            ..self
        }
    }

    /// The smallest window `m` (at least `2f + 2`, at most `l`) whose range
    /// [`Self::relu_range`] exceeds `margin × max_abs`: the window calibration chooses for
    /// a site whose pre-activations reached `max_abs` (real units) on a calibration set.
    pub fn window_for(&self, max_abs: f64, margin: f64) -> u32 {
        let need = (max_abs * margin).max(0.0);
        let mut m = 2 * self.frac_bits + 2;
        while m < self.ring_bits && self.with_relu_bits(m).relu_range() <= need {
            m += 1;
        }
        m
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
    /// of `y + 2^(f-1)` as a signed value, shifted right by f, ReLU. With fused truncation
    /// (`relu_dropped_bits > 0`) the circuit may compute one unit less before the ReLU
    /// (the carry out of the dropped bits of the two shares); this is the carry-free value.
    #[inline]
    pub fn relu_rescale(&self, y: i64) -> i64 {
        self.relu_rescale_at(y, 0)
    }

    /// [`Self::relu_rescale`] for an accumulator at scale `2^(2f + extra)` (a layer that
    /// reads a quadratic site's output, `extra = f`): the circuit reads `m + extra` bits
    /// and shifts by `f + extra`.
    #[inline]
    pub fn relu_rescale_at(&self, y: i64, extra: u32) -> i64 {
        let t = self.frac_bits + extra;
        let s = 64 - (self.relu_bits + extra);
        let z = (y.wrapping_add(1 << (t - 1)) << s) >> s;
        (z >> t).max(0)
    }

    /// The rescaling of a linearized (or ReLU-free) position: round-half-up truncation of
    /// the full ring value.
    #[inline]
    pub fn rescale(&self, y: i64) -> i64 {
        self.rescale_at(y, 0)
    }

    /// [`Self::rescale`] for an accumulator at scale `2^(2f + extra)`: shifts by
    /// `f + extra`.
    #[inline]
    pub fn rescale_at(&self, y: i64, extra: u32) -> i64 {
        let t = self.frac_bits + extra;
        self.reduce(y).wrapping_add(1 << (t - 1)) >> t
    }

    /// The squared operand `x̃` of a quadratic site's linearized position: `y` plus the
    /// rescaling's rounding offset `2^(t-1)`, shifted right by `t + f - h` (t = f + extra),
    /// so at scale `2^h`. It shares the rounding offset of [`Self::rescale_at`] (the
    /// secure protocol truncates both from the same shares), so it rounds to nearest only
    /// when `h = f`; below, it is the floor of `y + 2^(t-1)`.
    #[inline]
    pub fn square_operand_at(&self, y: i64, extra: u32) -> i64 {
        let t = self.frac_bits + extra;
        let shift = t + self.frac_bits - self.square_frac_bits;
        self.reduce(y).wrapping_add(1 << (t - 1)) >> shift
    }

    /// True when `y` is outside the range the ReLU circuit reads correctly: `y + 2^(f-1)`
    /// must lie in `[-2^(m-1), 2^(m-1))`, and with fused truncation at least `2^k` above
    /// the bottom (the missed carry may take it one unit lower).
    #[inline]
    pub fn relu_overflows(&self, y: i64) -> bool {
        self.relu_overflows_at(y, 0)
    }

    /// [`Self::relu_overflows`] for an accumulator at scale `2^(2f + extra)` (window
    /// `m + extra`, dropped bits `k + extra` when `k > 0`).
    #[inline]
    pub fn relu_overflows_at(&self, y: i64, extra: u32) -> bool {
        let t = y.wrapping_add(1 << (self.frac_bits + extra - 1));
        let half = 1i64 << (self.relu_bits + extra - 1);
        let low = if self.relu_dropped_bits > 0 {
            -half + (1i64 << (self.relu_dropped_bits + extra))
        } else {
            -half
        };
        !(low..half).contains(&t)
    }

    /// True when a reduced ring value lies beyond a quarter of the ring, `|v| >= 2^(l-2)`:
    /// outside what the secure exact truncation handles (its precondition, protocols.md
    /// §5.1), and, that far out, most likely wrapped around the ring already.
    #[inline]
    pub fn beyond_range(&self, v: i64) -> bool {
        let r = 1i64 << (self.ring_bits - 2);
        !(-r..r).contains(&v)
    }

    /// True when the square of a quadratic site's operand `x̃` is beyond a quarter of the
    /// ring (`x̃² >= 2^(l-2)`), so that the stored square has wrapped or is about to.
    #[inline]
    pub fn square_beyond_range(&self, xt: i64) -> bool {
        i128::from(xt) * i128::from(xt) >= 1i128 << (self.ring_bits - 2)
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
    fn range_limits() {
        let p = FixedPointParams::default();
        let r = 1i64 << (p.ring_bits - 2);
        assert!(!p.beyond_range(r - 1) && !p.beyond_range(-r));
        assert!(p.beyond_range(r) && p.beyond_range(-r - 1));
        let s = 1i64 << ((p.ring_bits - 2) / 2);
        // l = 61: x~^2 >= 2^59 from |x~| >= 2^29.5.
        assert!(!p.square_beyond_range(s) && !p.square_beyond_range(-s));
        assert!(p.square_beyond_range(2 * s) && p.square_beyond_range(-2 * s));
        assert!(p.square_beyond_range(i64::MIN));
    }

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
        for (l, f, m, k) in [
            (61, 0, 32, 0),
            (61, 16, 32, 0),
            (61, 12, 62, 0),
            (63, 12, 32, 0),
            (61, 14, 36, 15),
        ] {
            let p = FixedPointParams {
                ring_bits: l,
                frac_bits: f,
                relu_bits: m,
                relu_dropped_bits: k,
                ..FixedPointParams::default()
            };
            assert!(p.validate().is_err(), "{p:?}");
        }
        assert!(FixedPointParams::default().validate().is_ok());
    }

    #[test]
    fn windows_cover_the_margin() {
        let p = FixedPointParams::default();
        // 20 with margin 2 needs a range above 40: 64, m = 2*14 + 1 + 6 = 35.
        assert_eq!(p.window_for(20.0, 2.0), 35);
        assert_eq!(p.with_relu_bits(35).relu_range(), 64.0);
        // Exactly at a power of two the range must be strictly larger.
        assert_eq!(p.window_for(16.0, 2.0), 35);
        assert_eq!(p.window_for(15.9, 2.0), 34);
        // Tiny or zero activations still get the smallest valid window, huge ones the ring.
        assert_eq!(p.window_for(0.0, 2.0), 30);
        assert_eq!(p.window_for(1e30, 2.0), 61);
        for m in [30, 35, 61] {
            assert!(p.with_relu_bits(m).validate().is_ok());
        }
    }

    #[test]
    fn fused_truncation_narrows_the_window_by_one_carry() {
        let p = FixedPointParams::default();
        let exact = FixedPointParams {
            relu_dropped_bits: 0,
            ..p
        };
        let half = 1i64 << (p.relu_bits - 1);
        let bottom = -half - (1 << (p.frac_bits - 1));
        assert!(!exact.relu_overflows(bottom));
        assert!(p.relu_overflows(bottom));
        assert!(!p.relu_overflows(bottom + (1 << p.relu_dropped_bits)));
    }
}
