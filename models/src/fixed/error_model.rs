//! The error model: an estimate, alongside a fixed-point run, of how far each value lies
//! from exact real arithmetic on the same weights (see `docs/fixed-point.md`). Each stored
//! value carries a first-order systematic error (what quantizing the input, weights and
//! biases determines, signed) and the variance of the random rounding error; a layer
//! pushes both through its terms, a rescaling adds rounding, and a kept ReLU well below
//! zero stops them.

use crate::graph::Shape;
use crate::kernels::{avg_pool, conv2d};

use super::program::{FixedProgram, LinearLayer, Term, TermOp};

/// How many estimated standard deviations the error bound allows (see
/// `docs/fixed-point.md`): the fixed-point logits lie within `K_SIGMA * sigma` of exact
/// arithmetic.
pub const K_SIGMA: f64 = 6.0;

/// The error of the fixed-point logits against exact arithmetic on the same weights,
/// split into the part the quantization of weights, biases and the input determines
/// (propagated to first order, signed) and the random part rounding adds.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorEstimate {
    /// First-order systematic error of each logit (fixed minus exact).
    pub systematic: Vec<f64>,
    /// Standard deviation of the random rounding error of each logit.
    pub sigma: Vec<f64>,
}

impl ErrorEstimate {
    /// The documented bound on |fixed - exact| of each logit: |systematic| + K_SIGMA sigma.
    pub fn bound(&self) -> Vec<f64> {
        self.systematic
            .iter()
            .zip(&self.sigma)
            .map(|(d, s)| d.abs() + K_SIGMA * s)
            .collect()
    }
}

/// The error model's state during one run: per stored value, the systematic error and the
/// variance of the random rounding error of each position (real units).
pub(super) struct ErrorState {
    dets: Vec<Vec<f32>>,
    vars: Vec<Vec<f32>>,
}

impl ErrorState {
    /// The state before the first layer: the input's encoding error, no rounding variance.
    pub(super) fn new(prog: &FixedProgram, encoded: &[i64], input: &[f32]) -> Self {
        let ulp = 1.0 / (1u64 << prog.params.frac_bits) as f64;
        let mut dets: Vec<Vec<f32>> = vec![Vec::new(); prog.values.len()];
        let mut vars: Vec<Vec<f32>> = vec![Vec::new(); prog.values.len()];
        dets[0] = encoded
            .iter()
            .zip(input)
            .map(|(&q, &x)| (q as f64 * ulp - f64::from(x)) as f32)
            .collect();
        vars[0] = vec![0.0; encoded.len()];
        ErrorState { dets, vars }
    }

    /// A layer's output error: the systematic part pushes the inputs' systematic errors
    /// through the quantized weights and adds the weights' own quantization error on the
    /// actual inputs (both signed, exact to first order); the random part pushes the
    /// inputs' rounding variances through the squared weights (rounding errors of distinct
    /// positions are independent), and terms are combined by adding standard deviations
    /// (the terms of a residual sum share upstream errors).
    pub(super) fn layer(
        &self,
        prog: &FixedProgram,
        layer: &LinearLayer,
        vals: &[Vec<i64>],
    ) -> (Vec<f32>, Vec<f32>) {
        let (dets, vars) = (&self.dets, &self.vars);
        let n: usize = layer.out_shape.iter().product();
        let plane = layer.out_shape[1] * layer.out_shape[2];
        let mut det: Vec<f32> = (0..n).map(|j| layer.bias_err[j / plane]).collect();
        let mut sd = vec![0f32; n];
        for t in &layer.terms {
            let src = prog.values[t.input];
            // Weights at the accumulator's scale over the input's, inputs at theirs.
            let ws = (1u64 << (layer.scale_bits - prog.value_scales[t.input])) as f32;
            let xs = (1u64 << prog.value_scales[t.input]) as f32;
            let w: Vec<f32> = t.weights_i64().iter().map(|&w| w as f32 / ws).collect();
            let w2: Vec<f32> = w.iter().map(|w| w * w).collect();
            let x: Vec<f32> = vals[t.input].iter().map(|&v| v as f32 / xs).collect();
            let prop = t.apply_f32(&w, &dets[t.input], src);
            // The weights' error acts on the exact input: x - its systematic error.
            let exact: Vec<f32> = x.iter().zip(&dets[t.input]).map(|(a, d)| a - d).collect();
            let quant = t.apply_f32(&t.err, &exact, src);
            let var = t.apply_f32(&w2, &vars[t.input], src);
            for j in 0..n {
                det[j] += prop[j] + quant[j];
                sd[j] += var[j].sqrt();
            }
        }
        (det, sd.iter().map(|x| x * x).collect())
    }

    /// Stores the error of value `output`, a layer's output kept as it is (no rounding).
    pub(super) fn kept(&mut self, output: usize, (d, v): (Vec<f32>, Vec<f32>)) {
        self.dets[output] = d;
        self.vars[output] = v;
    }

    /// Stores the error of value `output`, the rescaled output of a layer whose error
    /// before rescaling is `(d, v)`, whose accumulator (scale `2^scale_bits`) is `acc` and
    /// whose ReLU mask (1 = kept) is `mask`.
    pub(super) fn rescaled(
        &mut self,
        prog: &FixedProgram,
        (output, scale_bits): (usize, u32),
        (mut d, mut v): (Vec<f32>, Vec<f32>),
        acc: &[i64],
        mask: Option<&Vec<u8>>,
    ) {
        let f = prog.params.frac_bits;
        let ulp = 1.0 / (1u64 << f) as f64;
        let scale2 = (1u64 << scale_bits) as f64;
        // Rounding adds a uniform error of variance ulp^2/12. A kept ReLU whose input is
        // below zero by more than its error bound outputs exactly 0 in both arithmetics:
        // no error passes. Nearer to zero the exact input may lie on the other side, so
        // the systematic error is kept, as variance.
        let r = (ulp * ulp / 12.0) as f32;
        for (j, &a) in acc.iter().enumerate() {
            if mask.is_some_and(|m| m[j] != 0) && a <= 0 {
                let margin = d[j].abs() + K_SIGMA as f32 * v[j].sqrt();
                if (a as f64 / scale2) < -f64::from(margin) {
                    (d[j], v[j]) = (0.0, 0.0);
                    continue;
                }
                v[j] += d[j] * d[j];
                d[j] = 0.0;
            }
            v[j] += r;
        }
        self.dets[output] = d;
        self.vars[output] = v;
    }
}

impl ErrorEstimate {
    /// The logits' estimate from the last layer's error `(d, v)`.
    pub(super) fn of_logits((d, v): (Vec<f32>, Vec<f32>)) -> Self {
        ErrorEstimate {
            systematic: d.iter().map(|&x| f64::from(x)).collect(),
            sigma: v.iter().map(|&x| f64::from(x).sqrt()).collect(),
        }
    }
}

impl Term {
    /// The same operation in f32 with other weights (squared weights or squared
    /// quantization errors, for the error model), on `x` (variances or squared values).
    fn apply_f32(&self, weights: &[f32], x: &[f32], src: Shape) -> Vec<f32> {
        match &self.op {
            TermOp::Conv {
                out_channels,
                kernel,
                stride,
                padding,
                ..
            } => conv2d(
                x,
                src,
                weights,
                None,
                *out_channels,
                *kernel,
                *stride,
                *padding,
            ),
            TermOp::Dense { out_features, .. } => (0..*out_features)
                .map(|o| {
                    weights[o * x.len()..(o + 1) * x.len()]
                        .iter()
                        .zip(x)
                        .map(|(w, v)| w * v)
                        .sum()
                })
                .collect(),
            TermOp::ChannelScale { .. } => {
                let plane = src[1] * src[2];
                x.iter()
                    .enumerate()
                    .map(|(j, v)| weights[j / plane] * v)
                    .collect()
            }
            TermOp::AvgPool { kernel, stride, .. } => {
                avg_pool(x, src, *kernel, *stride, |c, it| {
                    it.sum::<f32>() * weights[c]
                })
            }
        }
    }

    fn weights_i64(&self) -> &[i64] {
        match &self.op {
            TermOp::Conv { weight, .. } | TermOp::Dense { weight, .. } => weight,
            TermOp::ChannelScale { coef } | TermOp::AvgPool { coef, .. } => coef,
        }
    }
}
