//! Per-site ReLU windows from a calibration set.
//!
//! The ReLU circuit reads bits `[k, m)` of each share of a pre-activation `y` (scale
//! `2^(2f)`), so its online cost grows with the window `m`, and a pre-activation with
//! `|y| >= 2^(m-1-2f)` wraps around (the circuit then computes a wrong ReLU, which the
//! fixed-point executor reproduces and counts in [`LayerStats::relu_overflows`]). A
//! calibration run finds each site's largest `|y|` over all its positions on a set of
//! inputs, and the window is the smallest whose range exceeds that maximum times a safety
//! margin ([`FixedPointParams::window_for`]). The windows are public (they are part of the
//! model's public part) and reveal only a power-of-two bound of the calibration set's
//! activations.
//!
//! [`LayerStats::relu_overflows`]: super::LayerStats::relu_overflows

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::ModelError;

use super::program::{Activation, FixedProgram};

/// The margin the project uses by default: windows at least twice the largest
/// pre-activation seen in calibration (one bit).
pub const DEFAULT_WINDOW_MARGIN: f64 = 2.0;

/// One site's calibration result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SiteWindow {
    /// Site name.
    pub site: String,
    /// Largest |pre-activation| (real units) over the calibration set, all positions.
    pub max_abs: f64,
    /// The window chosen: bits `m` read per share.
    pub relu_bits: u32,
    /// The window's range, `2^(m-1-2f)` (real units).
    pub range: f64,
}

/// Runs the fixed-point executor on `inputs` (normalized) and chooses every ReLU site's
/// window: the smallest `m` whose range exceeds `margin × max |y|` (see
/// [`FixedPointParams::window_for`](crate::ring::FixedPointParams::window_for)). Sites come
/// out in execution order. `margin` must be finite and at least 1.
pub fn calibrate_windows(
    prog: &FixedProgram,
    inputs: &[Vec<f32>],
    margin: f64,
) -> Result<Vec<SiteWindow>, ModelError> {
    let mut c = WindowCalibration::new(prog);
    c.add(prog, inputs)?;
    c.windows(prog, margin)
}

/// The running maxima of a window calibration, for callers that feed the inputs in
/// chunks (e.g. to show progress): [`WindowCalibration::add`] as often as needed, then
/// [`WindowCalibration::windows`].
#[derive(Clone, Debug)]
pub struct WindowCalibration {
    /// Largest |y| per layer so far.
    max_abs: Vec<f64>,
    /// Inputs seen.
    seen: usize,
}

impl WindowCalibration {
    /// An empty calibration of `prog`.
    pub fn new(prog: &FixedProgram) -> Self {
        WindowCalibration {
            max_abs: vec![0.0; prog.layers.len()],
            seen: 0,
        }
    }

    /// Inputs seen so far.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Runs the executor on `inputs` (normalized, in parallel) and updates the maxima.
    pub fn add(&mut self, prog: &FixedProgram, inputs: &[Vec<f32>]) -> Result<(), ModelError> {
        if self.max_abs.len() != prog.layers.len() {
            return Err(ModelError::InvalidArgument(
                "window calibration of another program".into(),
            ));
        }
        let per_input = inputs
            .par_iter()
            .map(|x| {
                prog.forward(x, false)
                    .map(|o| o.stats.iter().map(|s| s.max_abs).collect::<Vec<f64>>())
            })
            .collect::<Result<Vec<_>, _>>()?;
        for v in per_input {
            for (m, x) in self.max_abs.iter_mut().zip(v) {
                *m = m.max(x);
            }
        }
        self.seen += inputs.len();
        Ok(())
    }

    /// The windows for the maxima seen (at least one input), with `margin` (finite,
    /// at least 1).
    pub fn windows(&self, prog: &FixedProgram, margin: f64) -> Result<Vec<SiteWindow>, ModelError> {
        if !(margin.is_finite() && margin >= 1.0) {
            return Err(ModelError::InvalidArgument(format!(
                "window margin {margin} must be a finite number >= 1"
            )));
        }
        if self.seen == 0 {
            return Err(ModelError::InvalidArgument(
                "window calibration needs at least one input".into(),
            ));
        }
        let mut out = Vec::new();
        for (i, (layer, &max_abs)) in prog.layers.iter().zip(&self.max_abs).enumerate() {
            if let Activation::Rescale {
                site: Some(site), ..
            } = &layer.activation
            {
                // A layer at 2^(3f) (it reads a value kept at 2^(2f)) reads m + f bits
                // of each share, so its window stops f bits below the ring: beyond, its
                // values leave the ring itself and are counted as overflows.
                let cap = prog.params.ring_bits - prog.layer_extra_bits(i);
                let relu_bits = prog.params.window_for(max_abs, margin).min(cap);
                out.push(SiteWindow {
                    site: site.clone(),
                    max_abs,
                    relu_bits,
                    range: prog.params.with_relu_bits(relu_bits).relu_range(),
                });
            }
        }
        Ok(out)
    }
}

/// The windows as the map a [`PublicModel`](crate::model::PublicModel) stores.
pub fn window_map(windows: &[SiteWindow]) -> BTreeMap<String, u32> {
    windows
        .iter()
        .map(|w| (w.site.clone(), w.relu_bits))
        .collect()
}
