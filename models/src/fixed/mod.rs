//! Fixed-point arithmetic of the secure protocol, and an executor that reproduces it.
//!
//! # The arithmetic (see `docs/fixed-point.md` for the error analysis)
//!
//! - Values live in the ring Z_2^l with l = [`FixedPointParams::ring_bits`] (61 by default,
//!   so the ring matches a BFV plaintext modulus t = 2^61 of the HE preprocessing). Signed
//!   values use the upper half of the ring as negatives.
//! - Activations and weights are encoded at scale 2^f (f = [`FixedPointParams::frac_bits`],
//!   14 by default) by rounding to nearest; biases at scale 2^(2f).
//! - The network is *lowered* into [`LinearLayer`]s: every maximal run of linear operations
//!   between two points where a value must exist (a ReLU site, a value read by several
//!   operations, the output) becomes one layer `y = sum_i T_i(x_i) + b`, with batch norm
//!   folded into the preceding convolution (or into a per-channel scale), global average
//!   pooling folded into the following dense layer, and residual additions as sums of terms.
//!   These layers are exactly the linear layers the two-party protocol evaluates on shares.
//! - A layer's output y (scale 2^(2f)) is rescaled to 2^f by *round-half-up truncation*:
//!   `(y + 2^(f-1)) >> f` (arithmetic shift). At a kept ReLU position the garbled circuit
//!   reads only bits `[k, m)` of each share (m = the site's window, by default
//!   [`FixedPointParams::relu_bits`]; k = [`FixedPointParams::relu_dropped_bits`]), so it
//!   sees `y + 2^(f-1)` reduced to a signed m-bit value, truncates it and applies the ReLU;
//!   this executor computes exactly that (including the wrap-around when the bound
//!   |y + 2^(f-1)| < 2^(m-1) is violated, which it counts), except that with `k > 0` the
//!   circuit may come out one unit lower before the ReLU (the carry out of the dropped
//!   bits, which depends on the shares). At a linearized position the protocol's exact
//!   truncation yields the same value up to +1; this executor computes the exact
//!   rounding.
//! - The last layer is not truncated: the logits are decoded at scale 2^(2f).
//!
//! # The modules
//!
//! - `program`: the lowered program's types ([`FixedProgram`], [`LinearLayer`], [`Term`])
//!   and its structural queries, including [`FixedProgram::structure`] for a public part.
//! - `lower`: [`FixedProgram::lower`], the graph into linear layers, one helper per
//!   operation.
//! - `gemm`: the ring matrix product (register-tiled; AVX-512 or AVX2 where the CPU has
//!   it, [`gemm_kernel`]) behind convolutions
//!   and dense terms.
//! - `executor`: [`FixedProgram::apply_linear`] and [`FixedProgram::forward`], the run in
//!   the ring with per-layer statistics ([`LayerStats`]).
//! - `windows`: per-site ReLU windows from a calibration set ([`calibrate_windows`]).
//! - `error_model`: the estimate of the logits' error against exact arithmetic
//!   ([`ErrorEstimate`], [`K_SIGMA`]).
//!
//! The ring parameters ([`FixedPointParams`]) live in [`crate::ring`] and are re-exported
//! here.

mod error_model;
mod executor;
mod gemm;
mod lower;
mod program;
mod windows;

pub use self::error_model::{ErrorEstimate, K_SIGMA};
pub use self::executor::{FixedOutput, LayerStats};
pub use self::gemm::{GemmKernel, gemm_kernel};
pub use self::program::{
    Activation, FixedProgram, FusedPolynomial, LinearLayer, Term, TermOp, ValueId, layer_shapes,
};
pub use self::windows::{
    DEFAULT_WINDOW_MARGIN, SiteWindow, WindowCalibration, calibrate_windows, window_map,
};
pub use crate::ring::FixedPointParams;
