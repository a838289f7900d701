//! The fixed-point executor: runs a [`FixedProgram`] on one input in the ring, exactly as
//! the secure protocol computes (see the module documentation of [`crate::fixed`]), with
//! per-layer statistics and, on request, the error model's estimate.

use serde::Serialize;

use crate::error::ModelError;
use crate::graph::Shape;
use crate::kernels::{avg_pool, im2col, out_hw};

use super::error_model::{ErrorEstimate, ErrorState};
use super::gemm::gemm_i64;
use super::program::{Activation, FixedProgram, Term, TermOp};

/// Per-layer observations of one fixed-point run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LayerStats {
    /// Largest |y| (real units) of the layer's output at kept ReLU positions.
    pub max_abs_kept: f64,
    /// Largest |y| (real units) over all positions.
    pub max_abs: f64,
    /// Kept positions where the ReLU circuit's window (the site's `m`) overflowed: the
    /// circuit reads such a pre-activation modulo `2^m`, so its ReLU is wrong (this
    /// executor computes the same wrong value, and counts it here).
    pub relu_overflows: usize,
    /// Values of the layer beyond a quarter of the ring (`|v| >= 2^(l-2)`, at the layer's
    /// scale before any rescaling), and squares of quadratic sites as large: outside the
    /// secure exact truncation's range, so private inference may differ from this
    /// executor there, and likely wrapped around the ring (a silently wrong value). 0 in
    /// a model whose values stay in range, which is what a trained model should show.
    pub range_overflows: usize,
}

/// The result of one fixed-point run.
#[derive(Clone, Debug)]
pub struct FixedOutput {
    /// Logits as ring values at scale 2^(2f).
    pub raw: Vec<i64>,
    /// Logits decoded to real numbers.
    pub logits: Vec<f64>,
    /// Per layer, in execution order.
    pub stats: Vec<LayerStats>,
    /// The error model's account of each logit's error against exact real arithmetic
    /// (present when requested; see `docs/fixed-point.md`).
    pub error: Option<ErrorEstimate>,
}

impl Term {
    /// Adds this term's contribution (ring arithmetic) to `acc` of shape `out`.
    fn apply(&self, x: &[i64], src: Shape, out: Shape, acc: &mut [i64]) {
        match &self.op {
            TermOp::Conv {
                weight,
                out_channels,
                kernel,
                stride,
                padding,
            } => {
                let hw = out_hw(src, *kernel, *stride, *padding);
                let p = hw[0] * hw[1];
                let k = src[0] * kernel * kernel;
                if *kernel == 1 && *stride == 1 && *padding == 0 {
                    gemm_i64(weight, x, acc, *out_channels, k, p);
                } else {
                    let col = im2col(x, src, *kernel, *stride, *padding, hw);
                    gemm_i64(weight, &col, acc, *out_channels, k, p);
                }
            }
            TermOp::Dense {
                weight,
                out_features,
            } => {
                gemm_i64(weight, x, acc, *out_features, x.len(), 1);
            }
            TermOp::ChannelScale { coef } => {
                // Channel by channel (no division per position).
                let plane = (src[1] * src[2]).max(1);
                for ((accs, xs), &k) in acc.chunks_mut(plane).zip(x.chunks(plane)).zip(coef) {
                    for (a, &v) in accs.iter_mut().zip(xs) {
                        *a = a.wrapping_add(k.wrapping_mul(v));
                    }
                }
            }
            TermOp::AvgPool {
                kernel,
                stride,
                coef,
            } => {
                let pooled = avg_pool(x, src, *kernel, *stride, |c, it| {
                    it.fold(0i64, |s, v| s.wrapping_add(v))
                        .wrapping_mul(coef[c])
                });
                debug_assert_eq!(pooled.len(), out.iter().product::<usize>());
                for (a, v) in acc.iter_mut().zip(pooled) {
                    *a = a.wrapping_add(v);
                }
            }
        }
    }
}

impl FixedProgram {
    /// The linear part of layer `i` without its bias, `sum_t T_t(x_t)`, in the ring
    /// (signed representation). `values[v]` must hold every value the layer reads; they may
    /// be any ring elements (e.g. one party's masked values or shares, as i64 bit patterns),
    /// since the arithmetic is exact mod 2^l. This is the server's online computation of a
    /// secure linear layer and the function the offline correlations are computed for.
    pub fn apply_linear(&self, i: usize, values: &[Vec<i64>]) -> Vec<i64> {
        let mut acc = self.accumulate(i, values);
        acc.iter_mut().for_each(|v| *v = self.params.reduce(*v));
        acc
    }

    /// Layer `i`'s output before its activation, `sum_t T_t(x_t) + bias`, in the ring
    /// (signed representation): [`FixedProgram::apply_linear`] plus
    /// [`FixedProgram::bias`], in one buffer and one reduction.
    pub fn layer_output(&self, i: usize, values: &[Vec<i64>]) -> Vec<i64> {
        let mut acc = self.accumulate(i, values);
        self.add_bias(i, &mut acc);
        acc.iter_mut().for_each(|v| *v = self.params.reduce(*v));
        acc
    }

    /// `sum_t T_t(x_t)`, wrapping in 64 bits (not reduced).
    fn accumulate(&self, i: usize, values: &[Vec<i64>]) -> Vec<i64> {
        let layer = &self.layers[i];
        let n: usize = layer.out_shape.iter().product();
        let mut acc = vec![0i64; n];
        for t in &layer.terms {
            t.apply(
                &values[t.input],
                self.values[t.input],
                layer.out_shape,
                &mut acc,
            );
        }
        acc
    }

    /// Runs one normalized input; with `error_model`, also estimates the logits' error
    /// (not available for programs with quadratic sites: an error says so).
    pub fn forward(&self, input: &[f32], error_model: bool) -> Result<FixedOutput, ModelError> {
        Ok(self.run(input, error_model)?.0)
    }

    /// Runs one normalized input and also returns every stored value (ring, signed), in
    /// value order: what the secure run's shares must add up to.
    pub fn forward_values(
        &self,
        input: &[f32],
    ) -> Result<(FixedOutput, Vec<Vec<i64>>), ModelError> {
        self.run(input, false)
    }

    fn run(
        &self,
        input: &[f32],
        error_model: bool,
    ) -> Result<(FixedOutput, Vec<Vec<i64>>), ModelError> {
        if error_model && self.has_quadratic() {
            return Err(ModelError::InvalidArgument(
                "the fixed-point error model does not cover quadratic sites yet; run without it"
                    .into(),
            ));
        }
        let p = self.params;
        let mut vals: Vec<Vec<i64>> = vec![Vec::new(); self.values.len()];
        vals[0] = self.encode_input(input)?;
        let mut errors = error_model.then(|| ErrorState::new(self, &vals[0], input));
        let mut stats = Vec::with_capacity(self.layers.len());
        let mut out = None;
        for (li, layer) in self.layers.iter().enumerate() {
            let n: usize = layer.out_shape.iter().product();
            let acc = self.layer_output(li, &vals);
            let err = errors.as_ref().map(|e| e.layer(self, layer, &vals));
            let scale = (1u64 << layer.scale_bits) as f64;
            let extra = self.layer_extra_bits(li);
            let mut st = LayerStats {
                range_overflows: acc.iter().filter(|&&v| p.beyond_range(v)).count(),
                ..LayerStats::default()
            };
            match &layer.activation {
                Activation::Logits => {
                    st.max_abs = acc
                        .iter()
                        .map(|&v| (v as f64 / scale).abs())
                        .fold(0.0, f64::max);
                    out = Some(FixedOutput {
                        logits: acc.iter().map(|&v| v as f64 / scale).collect(),
                        raw: acc,
                        stats: Vec::new(),
                        error: err.map(ErrorEstimate::of_logits),
                    });
                }
                Activation::Keep { output, .. } => {
                    st.max_abs = acc
                        .iter()
                        .map(|&v| (v as f64 / scale).abs())
                        .fold(0.0, f64::max);
                    if let (Some(e), Some(err)) = (errors.as_mut(), err) {
                        e.kept(*output, err);
                    }
                    vals[*output] = acc;
                }
                Activation::Rescale {
                    output,
                    site,
                    quadratic,
                } => {
                    let mask = site.as_ref().and_then(|s| self.masks.get(s));
                    let p = self.layer_params(li);
                    let mut y = Vec::with_capacity(n);
                    let mut quad =
                        quadratic.map(|_| (Vec::with_capacity(n), Vec::with_capacity(n)));
                    let squared = self.squared(li).unwrap_or_default();
                    for (j, &v) in acc.iter().enumerate() {
                        let a = (v as f64 / scale).abs();
                        st.max_abs = st.max_abs.max(a);
                        let kept = mask.is_some_and(|m| m[j] != 0);
                        if kept {
                            st.max_abs_kept = st.max_abs_kept.max(a);
                            st.relu_overflows += usize::from(p.relu_overflows_at(v, extra));
                            y.push(p.relu_rescale_at(v, extra));
                        } else if quad.is_none() {
                            y.push(p.rescale_at(v, extra));
                        } else {
                            y.push(0);
                        }
                        if let Some((lin, sq)) = quad.as_mut() {
                            if kept {
                                lin.push(0);
                                sq.push(0);
                            } else {
                                lin.push(p.rescale_at(v, extra));
                                if squared[j] {
                                    let xt = p.square_operand_at(v, extra);
                                    st.range_overflows += usize::from(p.square_beyond_range(xt));
                                    sq.push(p.reduce(xt.wrapping_mul(xt)));
                                } else {
                                    // An affine channel: a = 0, no square (as in the
                                    // secure runtime).
                                    sq.push(0);
                                }
                            }
                        }
                    }
                    if let (Some(e), Some(err)) = (errors.as_mut(), err) {
                        e.rescaled(self, (*output, layer.scale_bits), err, &acc, mask);
                    }
                    vals[*output] = y;
                    if let (Some(q), Some((lin, sq))) = (quadratic, quad) {
                        vals[q.linear] = lin;
                        vals[q.square] = sq;
                    }
                }
            }
            stats.push(st);
        }
        let mut out =
            out.ok_or_else(|| ModelError::InvalidGraph("program has no output layer".into()))?;
        out.stats = stats;
        Ok((out, vals))
    }
}
