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
//!   reads only the low m = [`FixedPointParams::relu_bits`] bits of each share, so it sees
//!   `y + 2^(f-1)` reduced to a signed m-bit value, truncates it and applies the ReLU; this
//!   executor computes exactly that (including the wrap-around when the bound
//!   |y + 2^(f-1)| < 2^(m-1) is violated, which it counts). At a linearized position the
//!   protocol truncates the shares locally, which yields the same value up to +-1 (and, with
//!   probability about |y| / 2^l, a large error); this executor computes the exact value.
//! - The last layer is not truncated: the logits are decoded at scale 2^(2f).

use serde::Serialize;

use crate::error::ModelError;
use crate::graph::{Op, Shape};
use crate::kernels::{avg_pool, conv2d, im2col, out_hw};
use crate::model::{Model, PublicModel};

pub use crate::ring::FixedPointParams;

/// How many estimated standard deviations the error bound allows (see
/// `docs/fixed-point.md`): the fixed-point logits lie within `K_SIGMA * sigma` of exact
/// arithmetic.
pub const K_SIGMA: f64 = 6.0;

/// Index of an activation value of a [`FixedProgram`] (0 is the input).
pub type ValueId = usize;

/// One linear operation applied to an activation value, quantized.
#[derive(Clone, Debug, PartialEq)]
pub enum TermOp {
    /// Convolution with weights [O, C, k, k] at scale 2^f (batch norm folded in).
    Conv {
        /// Quantized weights.
        weight: Vec<i64>,
        /// Output channels.
        out_channels: usize,
        /// Kernel side.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Zero padding.
        padding: usize,
    },
    /// Dense layer [out, in] on the flattened value, at scale 2^f.
    Dense {
        /// Quantized weights.
        weight: Vec<i64>,
        /// Output features.
        out_features: usize,
    },
    /// Per-channel multiplication at scale 2^f (an identity is 2^f; a folded batch norm
    /// on a stored value is its scale).
    ChannelScale {
        /// Quantized coefficient per channel.
        coef: Vec<i64>,
    },
    /// Average pooling times a per-channel coefficient; `coef` already holds 1 / k^2.
    AvgPool {
        /// Window side.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Quantized coefficient per channel.
        coef: Vec<i64>,
    },
}

/// A term of a linear layer: an operation on a stored value.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    /// The value read.
    pub input: ValueId,
    /// The operation.
    pub op: TermOp,
    /// Quantization error of each weight (quantized minus exact, real units), for the
    /// error model.
    err: Vec<f32>,
}

/// What happens to a linear layer's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Activation {
    /// The network output: not truncated, decoded at scale 2^(2f).
    Logits,
    /// Rescaled to 2^f and stored as value `output`; `site` names the ReLU site whose
    /// mask applies, `None` for a value without ReLU (all positions truncated only).
    Rescale {
        /// The value produced.
        output: ValueId,
        /// ReLU site, if any.
        site: Option<String>,
    },
}

/// One linear layer of the lowered network: `y = sum(terms) + bias`, then its activation.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearLayer {
    /// The summands.
    pub terms: Vec<Term>,
    /// Per output channel, at scale 2^(2f).
    pub bias: Vec<i64>,
    /// Output shape.
    pub out_shape: Shape,
    /// What follows.
    pub activation: Activation,
    bias_err: Vec<f32>,
}

/// A network lowered to fixed-point linear layers and rescalings.
#[derive(Clone, Debug)]
pub struct FixedProgram {
    /// The arithmetic's parameters.
    pub params: FixedPointParams,
    /// Shapes of the stored values; value 0 is the input.
    pub values: Vec<Shape>,
    /// The layers in execution order.
    pub layers: Vec<LinearLayer>,
    /// Masks by site name (1 = kept).
    pub masks: std::collections::BTreeMap<String, Vec<u8>>,
}

// ------------------------------------------------------------------ lowering

#[derive(Clone, Debug)]
enum AOp {
    Conv {
        w: Vec<f64>,
        out: usize,
        k: usize,
        s: usize,
        p: usize,
    },
    Dense {
        w: Vec<f64>,
        out: usize,
    },
    Scale {
        c: Vec<f64>,
    },
    Pool {
        k: usize,
        s: usize,
        c: Vec<f64>,
    },
}

#[derive(Clone, Debug)]
struct ATerm {
    input: ValueId,
    op: AOp,
}

#[derive(Clone, Debug)]
struct Affine {
    terms: Vec<ATerm>,
    bias: Vec<f64>,
    /// True when some operation of the graph contributes a bias (batch norm, a conv or
    /// dense layer with bias), whatever its value. Lowering decisions read this flag, never
    /// the bias values, so the layer structure depends on the public graph only and the
    /// client can lower the public part alone ([`FixedProgram::structure`]).
    has_bias: bool,
    shape: Shape,
}

#[derive(Clone, Debug)]
enum Expr {
    Val(ValueId),
    Aff(Affine),
}

struct Lowering<'a> {
    model: &'a Model,
    params: FixedPointParams,
    values: Vec<Shape>,
    layers: Vec<LinearLayer>,
}

impl Lowering<'_> {
    fn w(&self, name: &str) -> Vec<f64> {
        self.model
            .weights
            .get(name)
            .map(|t| t.data.iter().map(|&x| f64::from(x)).collect())
            .unwrap_or_default()
    }

    fn affine(&self, e: &Expr) -> Affine {
        match e {
            Expr::Aff(a) => a.clone(),
            Expr::Val(v) => {
                let shape = self.values[*v];
                Affine {
                    terms: vec![ATerm {
                        input: *v,
                        op: AOp::Scale {
                            c: vec![1.0; shape[0]],
                        },
                    }],
                    bias: vec![0.0; shape[0]],
                    has_bias: false,
                    shape,
                }
            }
        }
    }

    fn quantize(&self, w: &[f64]) -> (Vec<i64>, Vec<f32>) {
        let s = (1u64 << self.params.frac_bits) as f64;
        w.iter()
            .map(|&x| {
                let q = self.params.encode(x);
                (q, (q as f64 / s - x) as f32)
            })
            .unzip()
    }

    /// Emits a layer for `a`; returns the stored value (or nothing for the logits).
    fn emit(&mut self, a: Affine, activation: Option<Option<String>>) -> Option<ValueId> {
        let terms = a
            .terms
            .into_iter()
            .map(|t| {
                let (op, err) = match t.op {
                    AOp::Conv {
                        w, out, k, s, p, ..
                    } => {
                        let (weight, e) = self.quantize(&w);
                        (
                            TermOp::Conv {
                                weight,
                                out_channels: out,
                                kernel: k,
                                stride: s,
                                padding: p,
                            },
                            e,
                        )
                    }
                    AOp::Dense { w, out } => {
                        let (weight, e) = self.quantize(&w);
                        (
                            TermOp::Dense {
                                weight,
                                out_features: out,
                            },
                            e,
                        )
                    }
                    AOp::Scale { c } => {
                        let (coef, e) = self.quantize(&c);
                        (TermOp::ChannelScale { coef }, e)
                    }
                    AOp::Pool { k, s, c } => {
                        let inv = 1.0 / (k * k) as f64;
                        let c: Vec<f64> = c.iter().map(|x| x * inv).collect();
                        let (coef, e) = self.quantize(&c);
                        (
                            TermOp::AvgPool {
                                kernel: k,
                                stride: s,
                                coef,
                            },
                            e,
                        )
                    }
                };
                Term {
                    input: t.input,
                    op,
                    err,
                }
            })
            .collect();
        let s2 = (1u64 << (2 * self.params.frac_bits)) as f64;
        let (bias, bias_err) = a
            .bias
            .iter()
            .map(|&b| {
                let q = self.params.reduce((b * s2).round() as i64);
                (q, (q as f64 / s2 - b) as f32)
            })
            .unzip();
        let (act, out) = match activation {
            None => (Activation::Logits, None),
            Some(site) => {
                self.values.push(a.shape);
                let v = self.values.len() - 1;
                (Activation::Rescale { output: v, site }, Some(v))
            }
        };
        self.layers.push(LinearLayer {
            terms,
            bias,
            out_shape: a.shape,
            activation: act,
            bias_err,
        });
        out
    }

    fn materialize(&mut self, e: Expr) -> ValueId {
        match e {
            Expr::Val(v) => v,
            Expr::Aff(a) => self.emit(a, Some(None)).unwrap_or(0),
        }
    }
}

impl FixedProgram {
    /// Lowers a model (validated first) into fixed-point linear layers.
    pub fn lower(model: &Model) -> Result<Self, ModelError> {
        model.validate()?;
        let g = &model.public.graph;
        let shapes = g.shapes()?;
        let consumers = g.consumers();
        let mut lw = Lowering {
            model,
            params: model.public.fixed_point,
            values: vec![g.input],
            layers: Vec::new(),
        };
        let mut exprs: Vec<Option<Expr>> = vec![None; g.nodes.len()];
        exprs[0] = Some(Expr::Val(0));
        for (i, op) in g.nodes.iter().enumerate().skip(1) {
            let take =
                |exprs: &Vec<Option<Expr>>, j: usize| exprs[j].clone().unwrap_or(Expr::Val(0));
            let e = match op {
                Op::Input => unreachable!("validated: only node 0 is the input"),
                Op::Conv2d {
                    name,
                    input,
                    in_channels,
                    out_channels,
                    kernel,
                    stride,
                    padding,
                    bias,
                } => {
                    let mut w = lw.w(&format!("{name}.weight"));
                    let src = take(&exprs, *input);
                    // A per-channel scale without bias folds into the input channels.
                    let v = match src {
                        Expr::Aff(ref a)
                            if a.terms.len() == 1
                                && !a.has_bias
                                && matches!(a.terms[0].op, AOp::Scale { .. }) =>
                        {
                            if let AOp::Scale { c } = &a.terms[0].op {
                                let per_in = kernel * kernel;
                                for (j, x) in w.iter_mut().enumerate() {
                                    *x *= c[(j / per_in) % in_channels];
                                }
                            }
                            a.terms[0].input
                        }
                        other => lw.materialize(other),
                    };
                    let b = if *bias {
                        lw.w(&format!("{name}.bias"))
                    } else {
                        vec![0.0; *out_channels]
                    };
                    Expr::Aff(Affine {
                        terms: vec![ATerm {
                            input: v,
                            op: AOp::Conv {
                                w,
                                out: *out_channels,
                                k: *kernel,
                                s: *stride,
                                p: *padding,
                            },
                        }],
                        bias: b,
                        has_bias: *bias,
                        shape: shapes[i],
                    })
                }
                Op::BatchNorm2d {
                    name, input, eps, ..
                } => {
                    let gamma = lw.w(&format!("{name}.weight"));
                    let beta = lw.w(&format!("{name}.bias"));
                    let mean = lw.w(&format!("{name}.running_mean"));
                    let var = lw.w(&format!("{name}.running_var"));
                    let scale: Vec<f64> = gamma
                        .iter()
                        .zip(&var)
                        .map(|(g, v)| g / (v + f64::from(*eps)).sqrt())
                        .collect();
                    let mut a = lw.affine(&take(&exprs, *input));
                    for t in &mut a.terms {
                        match &mut t.op {
                            AOp::Conv { w, out, .. } | AOp::Dense { w, out } => {
                                let per = w.len() / *out;
                                w.iter_mut()
                                    .enumerate()
                                    .for_each(|(j, x)| *x *= scale[j / per]);
                            }
                            AOp::Scale { c } | AOp::Pool { c, .. } => {
                                c.iter_mut().zip(&scale).for_each(|(x, s)| *x *= s)
                            }
                        }
                    }
                    for (c, b) in a.bias.iter_mut().enumerate() {
                        *b = *b * scale[c] + beta[c] - mean[c] * scale[c];
                    }
                    a.has_bias = true;
                    Expr::Aff(a)
                }
                Op::Relu { site, input } => {
                    let a = lw.affine(&take(&exprs, *input));
                    Expr::Val(lw.emit(a, Some(Some(site.clone()))).unwrap_or(0))
                }
                Op::Add { inputs } => {
                    let mut a = lw.affine(&take(&exprs, inputs[0]));
                    let b = lw.affine(&take(&exprs, inputs[1]));
                    a.terms.extend(b.terms);
                    a.bias.iter_mut().zip(&b.bias).for_each(|(x, y)| *x += y);
                    a.has_bias |= b.has_bias;
                    Expr::Aff(a)
                }
                Op::AvgPool2d {
                    input,
                    kernel,
                    stride,
                } => {
                    let src = take(&exprs, *input);
                    let a = match src {
                        Expr::Aff(a)
                            if a.terms.iter().all(|t| matches!(t.op, AOp::Scale { .. })) =>
                        {
                            a
                        }
                        other => {
                            let v = lw.materialize(other);
                            lw.affine(&Expr::Val(v))
                        }
                    };
                    Expr::Aff(Affine {
                        terms: a
                            .terms
                            .into_iter()
                            .map(|t| ATerm {
                                input: t.input,
                                op: match t.op {
                                    AOp::Scale { c } => AOp::Pool {
                                        k: *kernel,
                                        s: *stride,
                                        c,
                                    },
                                    other => other,
                                },
                            })
                            .collect(),
                        bias: a.bias,
                        has_bias: a.has_bias,
                        shape: shapes[i],
                    })
                }
                Op::Linear {
                    name,
                    input,
                    in_features,
                    out_features,
                    bias,
                } => {
                    let w = lw.w(&format!("{name}.weight"));
                    let b0 = if *bias {
                        lw.w(&format!("{name}.bias"))
                    } else {
                        vec![0.0; *out_features]
                    };
                    let in_shape = shapes[*input];
                    let src = take(&exprs, *input);
                    let composable = |t: &ATerm| match &t.op {
                        AOp::Scale { .. } => true,
                        AOp::Pool { k, s, .. } => {
                            let src = lw.values[t.input];
                            in_shape[1] == 1
                                && in_shape[2] == 1
                                && *k == src[1]
                                && *k == src[2]
                                && *s == *k
                        }
                        _ => false,
                    };
                    let a = match src {
                        Expr::Aff(a) if a.terms.iter().all(composable) => a,
                        other => {
                            let v = lw.materialize(other);
                            lw.affine(&Expr::Val(v))
                        }
                    };
                    // Bias of the input expression pushed through the dense weights.
                    let plane = in_features / in_shape[0];
                    let mut b = b0;
                    for (o, bo) in b.iter_mut().enumerate() {
                        for j in 0..*in_features {
                            *bo += w[o * in_features + j] * a.bias[j / plane];
                        }
                    }
                    let terms = a
                        .terms
                        .into_iter()
                        .map(|t| {
                            let src = lw.values[t.input];
                            let n_src: usize = src.iter().product();
                            let splane = src[1] * src[2];
                            let mut wc = vec![0.0; out_features * n_src];
                            match &t.op {
                                AOp::Scale { c } => {
                                    for o in 0..*out_features {
                                        for j in 0..n_src {
                                            wc[o * n_src + j] =
                                                w[o * in_features + j] * c[j / splane];
                                        }
                                    }
                                }
                                AOp::Pool { c, .. } => {
                                    let inv = 1.0 / splane as f64;
                                    for o in 0..*out_features {
                                        for j in 0..n_src {
                                            let ch = j / splane;
                                            wc[o * n_src + j] =
                                                w[o * in_features + ch] * c[ch] * inv;
                                        }
                                    }
                                }
                                _ => unreachable!("filtered by composable"),
                            }
                            ATerm {
                                input: t.input,
                                op: AOp::Dense {
                                    w: wc,
                                    out: *out_features,
                                },
                            }
                        })
                        .collect();
                    Expr::Aff(Affine {
                        terms,
                        bias: b,
                        has_bias: *bias || a.has_bias,
                        shape: shapes[i],
                    })
                }
            };
            let e = if consumers[i] >= 2 && i != g.output() {
                match e {
                    Expr::Aff(a) => Expr::Val(lw.emit(a, Some(None)).unwrap_or(0)),
                    v => v,
                }
            } else {
                e
            };
            exprs[i] = Some(e);
        }
        let out = exprs[g.output()].clone().unwrap_or(Expr::Val(0));
        let a = lw.affine(&out);
        lw.emit(a, None);
        Ok(FixedProgram {
            params: lw.params,
            values: lw.values,
            layers: lw.layers,
            masks: model
                .public
                .masks
                .iter()
                .map(|(k, m)| (k.clone(), m.kept.clone()))
                .collect(),
        })
    }
}

// ------------------------------------------------------------------ execution

/// Per-layer observations of one fixed-point run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LayerStats {
    /// Largest |y| (real units) of the layer's output at kept ReLU positions.
    pub max_abs_kept: f64,
    /// Largest |y| (real units) over all positions.
    pub max_abs: f64,
    /// Kept positions where the ReLU circuit's m-bit window overflowed.
    pub relu_overflows: usize,
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

/// `out[o x p] += w[o x k] * col[k x p]` in wrapping 64-bit arithmetic (= the ring's).
///
/// Output rows are computed in parallel (rayon) when the product is large; each row runs
/// the [`gemm_row`] kernel, compiled a second time with AVX-512 (64-bit vector multiply)
/// and chosen at run time where the CPU has it.
fn gemm_i64(w: &[i64], col: &[i64], out: &mut [i64], o: usize, k: usize, p: usize) {
    use rayon::prelude::*;
    let row =
        |(oi, orow): (usize, &mut [i64])| gemm_row_dispatch(&w[oi * k..(oi + 1) * k], col, orow, p);
    if o * k * p >= 1 << 20 && o > 1 {
        out.par_chunks_mut(p).enumerate().for_each(row);
    } else {
        out.chunks_mut(p).enumerate().for_each(row);
    }
}

/// One output row: `orow[0..p] += sum_k w[k] * col[k][0..p]`, in blocks of `p` that stay
/// in L1.
#[inline(always)]
fn gemm_row(w: &[i64], col: &[i64], orow: &mut [i64], p: usize) {
    const BLOCK: usize = 512;
    for p0 in (0..p).step_by(BLOCK) {
        let p1 = (p0 + BLOCK).min(p);
        let acc = &mut orow[p0..p1];
        for (ki, &wv) in w.iter().enumerate() {
            if wv == 0 {
                continue;
            }
            let crow = &col[ki * p + p0..ki * p + p1];
            for (a, &c) in acc.iter_mut().zip(crow) {
                *a = a.wrapping_add(wv.wrapping_mul(c));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
fn gemm_row_avx512(w: &[i64], col: &[i64], orow: &mut [i64], p: usize) {
    gemm_row(w, col, orow, p);
}

/// [`gemm_row`], with the AVX-512 build where the CPU supports it.
// The only unsafe code of the crate: calling a function compiled for CPU features that
// were checked at run time just before.
#[allow(unsafe_code)]
fn gemm_row_dispatch(w: &[i64], col: &[i64], orow: &mut [i64], p: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
    {
        // SAFETY: the CPU supports AVX-512F and AVX-512DQ (detected above), the only
        // requirement of `gemm_row_avx512`.
        unsafe { gemm_row_avx512(w, col, orow, p) };
        return;
    }
    gemm_row(w, col, orow, p);
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
                let plane = src[1] * src[2];
                for (j, (a, &v)) in acc.iter_mut().zip(x).enumerate() {
                    *a = a.wrapping_add(coef[j / plane].wrapping_mul(v));
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

impl FixedProgram {
    /// Lowers the model and encodes nothing else; convenience for [`FixedProgram::lower`].
    pub fn new(model: &Model) -> Result<Self, ModelError> {
        Self::lower(model)
    }

    /// Kept ReLUs per layer (0 for layers without a site), in execution order.
    pub fn kept_per_layer(&self) -> Vec<usize> {
        self.layers
            .iter()
            .map(|l| match &l.activation {
                Activation::Rescale { site: Some(s), .. } => self
                    .masks
                    .get(s)
                    .map_or(0, |m| m.iter().filter(|&&k| k != 0).count()),
                _ => 0,
            })
            .collect()
    }

    /// The linear part of layer `i` without its bias, `sum_t T_t(x_t)`, in the ring
    /// (signed representation). `values[v]` must hold every value the layer reads; they may
    /// be any ring elements (e.g. one party's masked values or shares, as i64 bit patterns),
    /// since the arithmetic is exact mod 2^l. This is the server's online computation of a
    /// secure linear layer and the function the offline correlations are computed for.
    pub fn apply_linear(&self, i: usize, values: &[Vec<i64>]) -> Vec<i64> {
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
        acc.iter_mut().for_each(|v| *v = self.params.reduce(*v));
        acc
    }

    /// Layer `i`'s bias broadcast over its output positions (ring, scale 2^(2f)).
    pub fn bias(&self, i: usize) -> Vec<i64> {
        let layer = &self.layers[i];
        let n: usize = layer.out_shape.iter().product();
        let plane = layer.out_shape[1] * layer.out_shape[2];
        (0..n).map(|j| layer.bias[j / plane]).collect()
    }

    /// The values layer `i` reads, in term order (a value may appear more than once).
    pub fn inputs_of(&self, i: usize) -> Vec<ValueId> {
        self.layers[i].terms.iter().map(|t| t.input).collect()
    }

    /// Encodes a normalized input at scale 2^f.
    pub fn encode_input(&self, input: &[f32]) -> Result<Vec<i64>, ModelError> {
        let n: usize = self.values[0].iter().product();
        if input.len() != n {
            return Err(ModelError::InvalidArgument(format!(
                "input has {} values, the model expects {:?} = {n}",
                input.len(),
                self.values[0]
            )));
        }
        Ok(input
            .iter()
            .map(|&x| self.params.encode(f64::from(x)))
            .collect())
    }

    /// Runs one normalized input; with `error_model`, also estimates the logits' error.
    pub fn forward(&self, input: &[f32], error_model: bool) -> Result<FixedOutput, ModelError> {
        let p = self.params;
        let f = p.frac_bits;
        let ulp = 1.0 / (1u64 << f) as f64;
        let mut vals: Vec<Vec<i64>> = vec![Vec::new(); self.values.len()];
        vals[0] = self.encode_input(input)?;
        // Error model state of every stored value: first-order systematic error and the
        // variance of the random rounding error (real units).
        let mut dets: Vec<Vec<f32>> = vec![Vec::new(); self.values.len()];
        let mut vars: Vec<Vec<f32>> = vec![Vec::new(); self.values.len()];
        if error_model {
            dets[0] = vals[0]
                .iter()
                .zip(input)
                .map(|(&q, &x)| (q as f64 * ulp - f64::from(x)) as f32)
                .collect();
            vars[0] = vec![0.0; vals[0].len()];
        }
        let mut stats = Vec::with_capacity(self.layers.len());
        let mut out = None;
        for (li, layer) in self.layers.iter().enumerate() {
            let n: usize = layer.out_shape.iter().product();
            let mut acc = self.apply_linear(li, &vals);
            for (a, b) in acc.iter_mut().zip(self.bias(li)) {
                *a = p.reduce(a.wrapping_add(b));
            }
            let err = error_model.then(|| self.layer_error(layer, &vals, &dets, &vars));
            let scale2 = (1u64 << (2 * f)) as f64;
            let mut st = LayerStats::default();
            match &layer.activation {
                Activation::Logits => {
                    st.max_abs = acc
                        .iter()
                        .map(|&v| (v as f64 / scale2).abs())
                        .fold(0.0, f64::max);
                    let error = err.map(|(d, v)| ErrorEstimate {
                        systematic: d.iter().map(|&x| f64::from(x)).collect(),
                        sigma: v.iter().map(|&x| f64::from(x).sqrt()).collect(),
                    });
                    out = Some(FixedOutput {
                        logits: acc.iter().map(|&v| v as f64 / scale2).collect(),
                        raw: acc,
                        stats: Vec::new(),
                        error,
                    });
                }
                Activation::Rescale { output, site } => {
                    let mask = site.as_ref().and_then(|s| self.masks.get(s));
                    let mut y = Vec::with_capacity(n);
                    for (j, &v) in acc.iter().enumerate() {
                        let a = (v as f64 / scale2).abs();
                        st.max_abs = st.max_abs.max(a);
                        if mask.is_some_and(|m| m[j] != 0) {
                            st.max_abs_kept = st.max_abs_kept.max(a);
                            st.relu_overflows += usize::from(p.relu_overflows(v));
                            y.push(p.relu_rescale(v));
                        } else {
                            y.push(p.rescale(v));
                        }
                    }
                    if let Some((mut d, mut v)) = err {
                        // Rounding adds a uniform error of variance ulp^2/12. A kept ReLU
                        // whose input is below zero by more than its error bound outputs
                        // exactly 0 in both arithmetics: no error passes. Nearer to zero
                        // the exact input may lie on the other side, so the systematic
                        // error is kept, as variance.
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
                        dets[*output] = d;
                        vars[*output] = v;
                    }
                    vals[*output] = y;
                }
            }
            stats.push(st);
        }
        let mut out =
            out.ok_or_else(|| ModelError::InvalidGraph("program has no output layer".into()))?;
        out.stats = stats;
        Ok(out)
    }

    /// A layer's output error: the systematic part pushes the inputs' systematic errors
    /// through the quantized weights and adds the weights' own quantization error on the
    /// actual inputs (both signed, exact to first order); the random part pushes the
    /// inputs' rounding variances through the squared weights (rounding errors of distinct
    /// positions are independent), and terms are combined by adding standard deviations
    /// (the terms of a residual sum share upstream errors).
    fn layer_error(
        &self,
        layer: &LinearLayer,
        vals: &[Vec<i64>],
        dets: &[Vec<f32>],
        vars: &[Vec<f32>],
    ) -> (Vec<f32>, Vec<f32>) {
        let p = self.params;
        let n: usize = layer.out_shape.iter().product();
        let plane = layer.out_shape[1] * layer.out_shape[2];
        let mut det: Vec<f32> = (0..n).map(|j| layer.bias_err[j / plane]).collect();
        let mut sd = vec![0f32; n];
        let s = (1u64 << p.frac_bits) as f32;
        for t in &layer.terms {
            let src = self.values[t.input];
            let w: Vec<f32> = t.weights_i64().iter().map(|&w| w as f32 / s).collect();
            let w2: Vec<f32> = w.iter().map(|w| w * w).collect();
            let x: Vec<f32> = vals[t.input].iter().map(|&v| v as f32 / s).collect();
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
}

impl FixedProgram {
    /// Lowers a model's public part only: the layer structure (values, shapes, terms,
    /// sites, masks) with every weight, coefficient and bias zero. The structure equals
    /// that of [`FixedProgram::lower`] on the full model (lowering decisions read only the
    /// graph), so a client that holds just the public part knows which layers come, what
    /// each reads and how many ReLUs it keeps.
    pub fn structure(public: &PublicModel) -> Result<Self, ModelError> {
        let weights = public
            .graph
            .params()
            .into_iter()
            .map(|p| {
                let n = p.shape.iter().product();
                // A unit variance keeps batch-norm folding finite.
                let fill = if p.name.ends_with(".running_var") {
                    1.0
                } else {
                    0.0
                };
                (
                    p.name,
                    crate::tensor::Tensor {
                        shape: p.shape,
                        data: vec![fill; n],
                    },
                )
            })
            .collect();
        let model = Model {
            public: public.clone(),
            weights,
            provenance: serde_json::Value::Null,
        };
        Self::lower(&model)
    }
}

/// The layer structure of a model's public part: each layer's output shape and ReLU site.
pub fn layer_shapes(public: &PublicModel) -> Result<Vec<(Shape, Option<String>)>, ModelError> {
    let prog = FixedProgram::structure(public)?;
    Ok(prog
        .layers
        .iter()
        .map(|l| {
            (
                l.out_shape,
                match &l.activation {
                    Activation::Rescale { site, .. } => site.clone(),
                    Activation::Logits => None,
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_kernels_equal_the_naive_product() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        // Small (serial) and large (parallel, several L1 blocks) shapes; full-width ring
        // values and weights of both signs, zeros included.
        for (o, k, p) in [(3, 5, 7), (16, 72, 1100), (8, 150, 1000)] {
            let w: Vec<i64> = (0..o * k)
                .map(|i| {
                    if i % 7 == 0 {
                        0
                    } else {
                        rng.gen_range(-(1 << 20)..1 << 20)
                    }
                })
                .collect();
            let col: Vec<i64> = (0..k * p).map(|_| rng.r#gen::<i64>() >> 3).collect();
            let mut out = vec![5i64; o * p];
            gemm_i64(&w, &col, &mut out, o, k, p);
            for oi in 0..o {
                for pi in 0..p {
                    let mut want = 5i64;
                    for ki in 0..k {
                        want = want.wrapping_add(w[oi * k + ki].wrapping_mul(col[ki * p + pi]));
                    }
                    assert_eq!(out[oi * p + pi], want, "({o},{k},{p}) at ({oi},{pi})");
                }
            }
        }
    }

    #[test]
    fn gemm_wraps_like_the_ring() {
        let w = [i64::MAX, 2];
        let col = [2, 3];
        let mut out = [0i64];
        gemm_i64(&w, &col, &mut out, 1, 2, 1);
        assert_eq!(out[0], i64::MAX.wrapping_mul(2).wrapping_add(6));
    }
}
