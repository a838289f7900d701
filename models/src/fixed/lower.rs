//! Lowering: a model's graph into the fixed-point linear layers of a [`FixedProgram`].
//!
//! Nodes are collected into affine expressions of stored values until a value must exist
//! (a ReLU site, a value several operations read, the output); then the expression is
//! quantized and emitted as one [`LinearLayer`]. Batch norm folds into the weights of the
//! terms before it, a per-channel scale into a following convolution's input channels,
//! a global average pooling into the following dense layer, and a residual addition
//! becomes a sum of terms. Every decision reads the public graph only, never a weight, so
//! [`FixedProgram::structure`] lowers a public part alone to the same layers.

use crate::error::ModelError;
use crate::graph::{Op, Shape};
use crate::model::{Model, Replacement, poly_param};
use crate::ring::FixedPointParams;

use super::program::{Activation, FixedProgram, LinearLayer, QuadValues, Term, TermOp, ValueId};

/// A linear operation on a stored value, in real numbers, before quantization.
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

/// An operation on a stored value: a term of an [`Affine`] expression.
#[derive(Clone, Debug)]
struct ATerm {
    input: ValueId,
    op: AOp,
}

/// `sum(terms) + bias`: a run of linear operations not yet emitted as a layer.
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

/// What a graph node evaluates to during lowering: a stored value, or an affine
/// expression of stored values.
#[derive(Clone, Debug)]
enum Expr {
    Val(ValueId),
    Aff(Affine),
}

/// What an emitted layer does with its output (see [`Activation`]).
enum Act {
    /// The logits.
    Logits,
    /// Rescaled, with the ReLU site if any (an identity site, or none).
    Rescale(Option<String>),
    /// Rescaled at a quadratic site: also stores the linearized positions' `x` and `x̃²`.
    Quadratic(String),
    /// Stored as it is (a quadratic site's polynomial, with a bias per position; or a
    /// layer without ReLUs to evaluate, whose truncation its readers do, with its site).
    Keep(Option<Vec<f64>>, Option<String>),
}

/// The lowering in progress: the values stored and the layers emitted so far.
struct Lowering<'a> {
    model: &'a Model,
    params: FixedPointParams,
    values: Vec<Shape>,
    value_scales: Vec<u32>,
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

    /// Quantizes real weights at scale `2^bits`; also returns each weight's error (real
    /// units).
    fn quantize(&self, w: &[f64], bits: u32) -> (Vec<i64>, Vec<f32>) {
        let s = (1u64 << bits) as f64;
        w.iter()
            .map(|&x| {
                let q = self.params.reduce((x * s).round() as i64);
                (q, (q as f64 / s - x) as f32)
            })
            .unzip()
    }

    /// Stores a new value of shape `shape` at scale `2^scale`.
    fn push_value(&mut self, shape: Shape, scale: u32) -> ValueId {
        self.values.push(shape);
        self.value_scales.push(scale);
        self.values.len() - 1
    }

    /// Emits a layer for `a`; returns the stored value (or nothing for the logits). The
    /// accumulator's scale is f above the largest scale of a value the layer reads (2f for
    /// a polynomial), and each term's weights are quantized at the accumulator's scale
    /// over its input's.
    fn emit(&mut self, a: Affine, activation: Act) -> Option<ValueId> {
        let f = self.params.frac_bits;
        // A polynomial layer accumulates at 2^(2f): its square term's coefficient takes
        // the scale 2^(2f-2h) the square's operand leaves (h <= f).
        let scale_bits = if matches!(activation, Act::Keep(..)) {
            2 * f
        } else {
            f + a
                .terms
                .iter()
                .map(|t| self.value_scales[t.input])
                .max()
                .unwrap_or(f)
        };
        let terms = a
            .terms
            .into_iter()
            .map(|t| {
                let bits = scale_bits - self.value_scales[t.input];
                let (op, err) = match t.op {
                    AOp::Conv {
                        w, out, k, s, p, ..
                    } => {
                        let (weight, e) = self.quantize(&w, bits);
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
                        let (weight, e) = self.quantize(&w, bits);
                        (
                            TermOp::Dense {
                                weight,
                                out_features: out,
                            },
                            e,
                        )
                    }
                    AOp::Scale { c } => {
                        let (coef, e) = self.quantize(&c, bits);
                        (TermOp::ChannelScale { coef }, e)
                    }
                    AOp::Pool { k, s, c } => {
                        let inv = 1.0 / (k * k) as f64;
                        let c: Vec<f64> = c.iter().map(|x| x * inv).collect();
                        let (coef, e) = self.quantize(&c, bits);
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
        let (bias, bias_err) = self.quantize(&a.bias, scale_bits);
        let mut position_bias = None;
        let (act, out) = match activation {
            Act::Logits => (Activation::Logits, None),
            Act::Rescale(site) => {
                let v = self.push_value(a.shape, f);
                (
                    Activation::Rescale {
                        output: v,
                        site,
                        quadratic: None,
                    },
                    Some(v),
                )
            }
            Act::Quadratic(site) => {
                let v = self.push_value(a.shape, f);
                let linear = self.push_value(a.shape, f);
                let square = self.push_value(a.shape, 2 * self.params.square_frac_bits);
                (
                    Activation::Rescale {
                        output: v,
                        site: Some(site),
                        quadratic: Some(QuadValues { linear, square }),
                    },
                    Some(v),
                )
            }
            Act::Keep(pb, site) => {
                let v = self.push_value(a.shape, scale_bits);
                position_bias = pb.map(|pb| self.quantize(&pb, scale_bits).0);
                (Activation::Keep { site, output: v }, Some(v))
            }
        };
        self.layers.push(LinearLayer {
            terms,
            bias,
            out_shape: a.shape,
            scale_bits,
            position_bias,
            activation: act,
            bias_err,
        });
        out
    }

    /// A value that must exist (at an identity site `site`, or without a site): rescaled
    /// to 2^f, unless nothing in it needs the online round (no kept ReLU) and its inputs
    /// are all at 2^f; then it is kept at 2^(2f) and its readers truncate it
    /// ([`Activation::Keep`]), which saves the round.
    fn emit_rescaled(&mut self, a: Affine, site: Option<String>) -> ValueId {
        let f = self.params.frac_bits;
        let no_relu = site
            .as_ref()
            .is_none_or(|s| self.model.public.masks[s].kept_count() == 0);
        let narrow_inputs = a.terms.iter().all(|t| self.value_scales[t.input] == f);
        let act = if no_relu && narrow_inputs && !a.terms.is_empty() {
            Act::Keep(None, site)
        } else {
            Act::Rescale(site)
        };
        self.emit(a, act).unwrap_or(0)
    }

    /// A quadratic site on the expression `a`: the site's layer (ReLUs at kept
    /// positions, `x` and `x̃²` at linearized ones), then the polynomial layer
    /// `relu part + b·x + a·x̃² + c`, stored at scale 2^(2f). Returns the polynomial.
    fn quadratic_site(&mut self, a: Affine, site: &str) -> ValueId {
        let shape = a.shape;
        let out = self.emit(a, Act::Quadratic(site.to_string()));
        let Some(Activation::Rescale {
            quadratic: Some(q), ..
        }) = self.layers.last().map(|l| l.activation.clone())
        else {
            unreachable!("emit(Act::Quadratic) emits a quadratic rescaling")
        };
        let relus = out.unwrap_or(0);
        let poly = self.w(&poly_param(site));
        let ch = shape[0];
        let plane = shape[1] * shape[2];
        let kept = &self.model.public.masks[site].kept;
        let pos_bias = (0..ch * plane)
            .map(|j| {
                if kept[j] != 0 {
                    0.0
                } else {
                    poly[2 * ch + j / plane]
                }
            })
            .collect();
        let terms = vec![
            ATerm {
                input: relus,
                op: AOp::Scale { c: vec![1.0; ch] },
            },
            ATerm {
                input: q.linear,
                op: AOp::Scale {
                    c: poly[ch..2 * ch].to_vec(),
                },
            },
            ATerm {
                input: q.square,
                op: AOp::Scale {
                    c: poly[..ch].to_vec(),
                },
            },
        ];
        let poly_layer = Affine {
            terms,
            bias: vec![0.0; ch],
            has_bias: false,
            shape,
        };
        self.emit(poly_layer, Act::Keep(Some(pos_bias), None))
            .unwrap_or(0)
    }

    fn materialize(&mut self, e: Expr) -> ValueId {
        match e {
            Expr::Val(v) => v,
            Expr::Aff(a) => self.emit_rescaled(a, None),
        }
    }

    /// A bias: the parameter `<name>.bias` when the operation has one, else zeros.
    fn bias_or_zero(&self, name: &str, bias: bool, n: usize) -> Vec<f64> {
        if bias {
            self.w(&format!("{name}.bias"))
        } else {
            vec![0.0; n]
        }
    }

    /// The expression of node `op` (not the input) with output shape `shape`; `exprs`
    /// holds the expressions of the nodes before it, `shapes` every node's output shape.
    fn node(&mut self, op: &Op, exprs: &[Option<Expr>], shapes: &[Shape], shape: Shape) -> Expr {
        let take = |j: usize| exprs[j].clone().unwrap_or(Expr::Val(0));
        match op {
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
                let mut w = self.w(&format!("{name}.weight"));
                let v = self.conv_input(take(*input), &mut w, *kernel, *in_channels);
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
                    bias: self.bias_or_zero(name, *bias, *out_channels),
                    has_bias: *bias,
                    shape,
                })
            }
            Op::BatchNorm2d {
                name, input, eps, ..
            } => Expr::Aff(self.batch_norm(take(*input), name, *eps)),
            Op::Relu { site, input } => {
                let a = self.affine(&take(*input));
                if self.model.public.replacement(site) == Replacement::Quadratic {
                    Expr::Val(self.quadratic_site(a, site))
                } else {
                    Expr::Val(self.emit_rescaled(a, Some(site.clone())))
                }
            }
            Op::Add { inputs } => {
                let mut a = self.affine(&take(inputs[0]));
                let b = self.affine(&take(inputs[1]));
                a.terms.extend(b.terms);
                a.bias.iter_mut().zip(&b.bias).for_each(|(x, y)| *x += y);
                a.has_bias |= b.has_bias;
                Expr::Aff(a)
            }
            Op::AvgPool2d {
                input,
                kernel,
                stride,
            } => Expr::Aff(self.avg_pool(take(*input), *kernel, *stride, shape)),
            Op::Linear {
                name,
                input,
                in_features,
                out_features,
                bias,
            } => {
                let w = self.w(&format!("{name}.weight"));
                let b = self.bias_or_zero(name, *bias, *out_features);
                let src = self.dense_input(take(*input), shapes[*input]);
                Expr::Aff(self.dense(
                    src,
                    &w,
                    (b, *bias),
                    [shapes[*input], shape],
                    [*in_features, *out_features],
                ))
            }
        }
    }

    /// The value a convolution reads. A per-channel scale without bias (a batch norm
    /// folded into a stored value) folds into the weights' input channels, so the
    /// convolution reads the value under it; anything else is stored first.
    fn conv_input(
        &mut self,
        src: Expr,
        w: &mut [f64],
        kernel: usize,
        in_channels: usize,
    ) -> ValueId {
        match src {
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
            other => self.materialize(other),
        }
    }

    /// Batch norm with parameters `<name>.*`: scales every term's output channels and
    /// the bias, and adds its shift.
    fn batch_norm(&self, src: Expr, name: &str, eps: f32) -> Affine {
        let gamma = self.w(&format!("{name}.weight"));
        let beta = self.w(&format!("{name}.bias"));
        let mean = self.w(&format!("{name}.running_mean"));
        let var = self.w(&format!("{name}.running_var"));
        let scale: Vec<f64> = gamma
            .iter()
            .zip(&var)
            .map(|(g, v)| g / (v + f64::from(eps)).sqrt())
            .collect();
        let mut a = self.affine(&src);
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
        a
    }

    /// Average pooling: per-channel scales become pooling terms; any other expression
    /// is stored first.
    fn avg_pool(&mut self, src: Expr, kernel: usize, stride: usize, shape: Shape) -> Affine {
        let a = match src {
            Expr::Aff(a) if a.terms.iter().all(|t| matches!(t.op, AOp::Scale { .. })) => a,
            other => {
                let v = self.materialize(other);
                self.affine(&Expr::Val(v))
            }
        };
        Affine {
            terms: a
                .terms
                .into_iter()
                .map(|t| ATerm {
                    input: t.input,
                    op: match t.op {
                        AOp::Scale { c } => AOp::Pool {
                            k: kernel,
                            s: stride,
                            c,
                        },
                        other => other,
                    },
                })
                .collect(),
            bias: a.bias,
            has_bias: a.has_bias,
            shape,
        }
    }

    /// The expression a dense layer reads (its input has shape `in_shape`): kept when
    /// every term is a per-channel scale or a global average pooling (both compose with
    /// the dense weights), else stored first.
    fn dense_input(&mut self, src: Expr, in_shape: Shape) -> Affine {
        let composable = |t: &ATerm| match &t.op {
            AOp::Scale { .. } => true,
            AOp::Pool { k, s, .. } => {
                let src = self.values[t.input];
                in_shape[1] == 1 && in_shape[2] == 1 && *k == src[1] && *k == src[2] && *s == *k
            }
            _ => false,
        };
        match src {
            Expr::Aff(a) if a.terms.iter().all(composable) => a,
            other => {
                let v = self.materialize(other);
                self.affine(&Expr::Val(v))
            }
        }
    }

    /// A dense layer with weights `w` [out, in] and bias `(b, has_bias)` applied to `a`
    /// (from [`Lowering::dense_input`]): each term becomes a dense term on the value it
    /// reads, and `a`'s bias is pushed through the weights.
    fn dense(
        &self,
        a: Affine,
        w: &[f64],
        (b0, has_bias): (Vec<f64>, bool),
        [in_shape, shape]: [Shape; 2],
        [in_features, out_features]: [usize; 2],
    ) -> Affine {
        // Bias of the input expression pushed through the dense weights.
        let plane = in_features / in_shape[0];
        let mut b = b0;
        for (o, bo) in b.iter_mut().enumerate() {
            for j in 0..in_features {
                *bo += w[o * in_features + j] * a.bias[j / plane];
            }
        }
        let terms = a
            .terms
            .into_iter()
            .map(|t| {
                let src = self.values[t.input];
                let n_src: usize = src.iter().product();
                let splane = src[1] * src[2];
                let mut wc = vec![0.0; out_features * n_src];
                match &t.op {
                    AOp::Scale { c } => {
                        for o in 0..out_features {
                            for j in 0..n_src {
                                wc[o * n_src + j] = w[o * in_features + j] * c[j / splane];
                            }
                        }
                    }
                    AOp::Pool { c, .. } => {
                        let inv = 1.0 / splane as f64;
                        for o in 0..out_features {
                            for j in 0..n_src {
                                let ch = j / splane;
                                wc[o * n_src + j] = w[o * in_features + ch] * c[ch] * inv;
                            }
                        }
                    }
                    _ => unreachable!("filtered by composable"),
                }
                ATerm {
                    input: t.input,
                    op: AOp::Dense {
                        w: wc,
                        out: out_features,
                    },
                }
            })
            .collect();
        Affine {
            terms,
            bias: b,
            has_bias: has_bias || a.has_bias,
            shape,
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
            value_scales: vec![model.public.fixed_point.frac_bits],
            layers: Vec::new(),
        };
        let mut exprs: Vec<Option<Expr>> = vec![None; g.nodes.len()];
        exprs[0] = Some(Expr::Val(0));
        for (i, op) in g.nodes.iter().enumerate().skip(1) {
            let e = lw.node(op, &exprs, &shapes, shapes[i]);
            // A value several operations read is stored once (the output is emitted below).
            let e = if consumers[i] >= 2 && i != g.output() {
                match e {
                    Expr::Aff(a) => Expr::Val(lw.emit_rescaled(a, None)),
                    v => v,
                }
            } else {
                e
            };
            exprs[i] = Some(e);
        }
        let out = exprs[g.output()].clone().unwrap_or(Expr::Val(0));
        let a = lw.affine(&out);
        lw.emit(a, Act::Logits);
        Ok(FixedProgram {
            params: lw.params,
            values: lw.values,
            value_scales: lw.value_scales,
            layers: lw.layers,
            masks: model
                .public
                .masks
                .iter()
                .map(|(k, m)| (k.clone(), m.kept.clone()))
                .collect(),
            relu_windows: model.public.relu_windows.clone(),
            affine_channels: model.public.affine_channels.clone(),
        })
    }
}
