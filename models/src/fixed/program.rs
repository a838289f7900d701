//! The lowered program: a network as fixed-point linear layers ([`LinearLayer`]) over
//! stored activation values, each followed by its rescaling (ReLU site or plain
//! truncation) or decoded as the logits. [`FixedProgram`] is what the fixed-point
//! executor runs and what the two-party runtime evaluates on shares; this module holds its
//! types and the structural queries the runtime asks (kept ReLUs, biases, inputs of a
//! layer, the structure of a public part alone).

use std::collections::BTreeMap;

use crate::error::ModelError;
use crate::graph::{Shape, check_input_len};
use crate::model::{Model, PublicModel};
use crate::ring::FixedPointParams;
use crate::tensor::Tensor;

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
    pub(super) err: Vec<f32>,
}

/// The two extra values a quadratic site's rescaling produces (see [`Activation::Rescale`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuadValues {
    /// The truncated pre-activation `x` at linearized positions, 0 at kept ones (scale
    /// 2^f).
    pub linear: ValueId,
    /// `x̃²` at linearized positions, 0 at kept ones, where `x̃` is the pre-activation
    /// truncated to scale `2^h` (h = [`FixedPointParams::square_frac_bits`]); scale
    /// `2^(2h)`.
    pub square: ValueId,
}

/// A quadratic site's polynomial layer as one pass over the site's positions
/// ([`FixedProgram::fused_polynomial`]): at position `j` of channel `c`, the layer's output
/// is `coef[0][c]·relu_j + coef[1][c]·x_j + coef[2][c]·x̃²_j + bias[j]` in the ring, as
/// [`FixedProgram::layer_output`] computes it from the three stored values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FusedPolynomial {
    /// The polynomial layer (the site's layer + 1).
    pub layer: usize,
    /// The value it produces.
    pub output: ValueId,
    /// Per channel, the quantized coefficients of the ReLU part, of `x` and of `x̃²`.
    pub coef: [Vec<i64>; 3],
    /// The layer's bias per position, reduced ([`FixedProgram::bias`]).
    pub bias: Vec<i64>,
}

/// What happens to a linear layer's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Activation {
    /// The network output: not truncated, decoded at the layer's scale
    /// ([`LinearLayer::scale_bits`], 2^(2f) unless the layer reads a quadratic site).
    Logits,
    /// Rescaled to 2^f and stored as value `output`; `site` names the ReLU site whose
    /// mask applies, `None` for a value without ReLU (all positions truncated only).
    /// At a quadratic site (`quadratic` set), `output` holds the ReLUs at kept positions
    /// and 0 at linearized ones, which go to the two [`QuadValues`] instead; the
    /// polynomial is the next layer ([`Activation::Keep`]).
    Rescale {
        /// The value produced.
        output: ValueId,
        /// ReLU site, if any.
        site: Option<String>,
        /// The linearized positions' values of a quadratic site.
        quadratic: Option<QuadValues>,
    },
    /// Stored as value `output` without rescaling, at the layer's scale 2^(2f), and
    /// without an online round (the layer is local on shares); its readers accumulate at
    /// 2^(3f) and truncate by 2f. Two kinds: a quadratic site's polynomial `ReLU part +
    /// b·x + a·x̃² + c` (`site` is `None`), and a layer with no ReLU to evaluate (a site
    /// whose positions are all linearized to the identity, named in `site`, or a stored
    /// value without a site) whose inputs are all at scale 2^f: its truncation is
    /// deferred to its readers, which saves its round.
    Keep {
        /// The site whose mask (all linearized) applies, if any.
        site: Option<String>,
        /// The value produced.
        output: ValueId,
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
    /// Bits of the accumulator's scale: `f` plus the largest scale of a value the layer
    /// reads, so 2f for layers on ordinary values and 3f for layers that read a
    /// quadratic site's output; each term's weights sit at the accumulator's scale over
    /// its input's ([`FixedProgram::term_scale_bits`]), the bias at the accumulator's.
    pub scale_bits: u32,
    /// A bias per output position (accumulator scale) added to the per-channel one: a
    /// quadratic site's `c` at its linearized positions; `None` elsewhere.
    pub position_bias: Option<Vec<i64>>,
    /// What follows.
    pub activation: Activation,
    pub(super) bias_err: Vec<f32>,
}

/// A network lowered to fixed-point linear layers and rescalings.
#[derive(Clone, Debug)]
pub struct FixedProgram {
    /// The arithmetic's parameters.
    pub params: FixedPointParams,
    /// Shapes of the stored values; value 0 is the input.
    pub values: Vec<Shape>,
    /// Bits of each stored value's scale: f, except a quadratic site's squares (2h) and
    /// polynomials (2f).
    pub value_scales: Vec<u32>,
    /// The layers in execution order.
    pub layers: Vec<LinearLayer>,
    /// Masks by site name (1 = kept).
    pub masks: BTreeMap<String, Vec<u8>>,
    /// Per-site ReLU windows `m` (see [`crate::model::PublicModel::relu_windows`]).
    pub relu_windows: BTreeMap<String, u32>,
    /// Quadratic sites' channels without a square (see
    /// [`crate::model::PublicModel::affine_channels`]).
    pub affine_channels: BTreeMap<String, Vec<usize>>,
}

impl FixedProgram {
    /// The fixed-point parameters of layer `i`'s rescaling: the program's, with the
    /// window of the layer's ReLU site if it has one. Its rescaling rules apply at the
    /// layer's scale through [`FixedProgram::layer_extra_bits`].
    pub fn layer_params(&self, i: usize) -> FixedPointParams {
        match &self.layers[i].activation {
            Activation::Rescale { site: Some(s), .. } => match self.relu_windows.get(s) {
                Some(&m) => self.params.with_relu_bits(m),
                None => self.params,
            },
            _ => self.params,
        }
    }

    /// Bits by which layer `i`'s accumulator scale exceeds 2^(2f): 0, or f for a layer
    /// that reads a quadratic site's polynomial (its rescaling shifts by 2f, and its ReLU
    /// circuit reads bits [k + f, m + f)).
    pub fn layer_extra_bits(&self, i: usize) -> u32 {
        self.layers[i].scale_bits - 2 * self.params.frac_bits
    }

    /// The scale bits of term `t` of layer `i`'s weights: the accumulator's over its
    /// input's.
    pub fn term_scale_bits(&self, i: usize, t: usize) -> u32 {
        let layer = &self.layers[i];
        layer.scale_bits - self.value_scales[layer.terms[t].input]
    }

    /// Per output position of layer `i`, a quadratic site's layer: whether the position
    /// is squared (linearized, in a channel not listed in
    /// [`FixedProgram::affine_channels`]). `None` for other layers.
    pub fn squared(&self, i: usize) -> Option<Vec<bool>> {
        let layer = &self.layers[i];
        let Activation::Rescale {
            site,
            quadratic: Some(_),
            ..
        } = &layer.activation
        else {
            return None;
        };
        let n: usize = layer.out_shape.iter().product();
        let plane = (layer.out_shape[1] * layer.out_shape[2]).max(1);
        let mask = site.as_ref().and_then(|s| self.masks.get(s));
        let affine = site.as_ref().and_then(|s| self.affine_channels.get(s));
        Some(
            (0..n)
                .map(|j| {
                    let kept = mask.is_some_and(|m| m.get(j).is_some_and(|&k| k != 0));
                    !kept && affine.is_none_or(|a| a.binary_search(&(j / plane)).is_err())
                })
                .collect(),
        )
    }

    /// For a quadratic site's layer `i` followed by its polynomial layer (`i + 1`, kept
    /// without rescaling, one [`TermOp::ChannelScale`] on each of the site's three values,
    /// as lowering makes it): the polynomial in a form one pass over the site's positions
    /// evaluates ([`FusedPolynomial`]). `None` for any other layer or shape.
    pub fn fused_polynomial(&self, i: usize) -> Option<FusedPolynomial> {
        let Activation::Rescale {
            output,
            quadratic: Some(q),
            ..
        } = &self.layers[i].activation
        else {
            return None;
        };
        let next = self.layers.get(i + 1)?;
        let Activation::Keep {
            site: None,
            output: z,
        } = next.activation
        else {
            return None;
        };
        if next.terms.len() != 3 || next.out_shape != self.layers[i].out_shape {
            return None;
        }
        let mut coef: [Vec<i64>; 3] = Default::default();
        for t in &next.terms {
            let TermOp::ChannelScale { coef: c } = &t.op else {
                return None;
            };
            let k = [*output, q.linear, q.square]
                .iter()
                .position(|&v| v == t.input)?;
            if !coef[k].is_empty() || c.len() != next.out_shape[0] {
                return None;
            }
            coef[k] = c.clone();
        }
        Some(FusedPolynomial {
            layer: i + 1,
            output: z,
            coef,
            bias: self.bias(i + 1),
        })
    }

    /// True if some layer computes a quadratic site.
    pub fn has_quadratic(&self) -> bool {
        self.layers.iter().any(|l| {
            matches!(
                l.activation,
                Activation::Rescale {
                    quadratic: Some(_),
                    ..
                }
            )
        })
    }

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

    /// Layer `i`'s bias broadcast over its output positions, plus its position bias
    /// (ring, at the layer's scale).
    pub fn bias(&self, i: usize) -> Vec<i64> {
        let n: usize = self.layers[i].out_shape.iter().product();
        let mut out = vec![0; n];
        self.add_bias(i, &mut out);
        out.iter_mut().for_each(|o| *o = self.params.reduce(*o));
        out
    }

    /// Adds layer `i`'s [`FixedProgram::bias`] to `acc` in place, wrapping in 64 bits
    /// (the caller reduces into the ring).
    pub fn add_bias(&self, i: usize, acc: &mut [i64]) {
        let layer = &self.layers[i];
        let plane = (layer.out_shape[1] * layer.out_shape[2]).max(1);
        debug_assert_eq!(
            acc.len(),
            layer.bias.len() * plane,
            "one bias per output channel"
        );
        // Channel by channel (no division per position).
        for (a, &b) in acc.chunks_mut(plane).zip(&layer.bias) {
            a.iter_mut().for_each(|a| *a = a.wrapping_add(b));
        }
        if let Some(pb) = &layer.position_bias {
            for (a, &p) in acc.iter_mut().zip(pb) {
                *a = a.wrapping_add(p);
            }
        }
    }

    /// The values layer `i` reads, in term order (a value may appear more than once).
    pub fn inputs_of(&self, i: usize) -> Vec<ValueId> {
        self.layers[i].terms.iter().map(|t| t.input).collect()
    }

    /// Encodes a normalized input at scale 2^f.
    pub fn encode_input(&self, input: &[f32]) -> Result<Vec<i64>, ModelError> {
        check_input_len(self.values[0], input.len())?;
        Ok(input
            .iter()
            .map(|&x| self.params.encode(f64::from(x)))
            .collect())
    }

    /// Lowers a model's public part only: the layer structure (values, shapes, terms,
    /// sites, masks) with every weight, coefficient and bias zero. The structure equals
    /// that of [`FixedProgram::lower`] on the full model (lowering decisions read only the
    /// graph), so a client that holds just the public part knows which layers come, what
    /// each reads and how many ReLUs it keeps.
    pub fn structure(public: &PublicModel) -> Result<Self, ModelError> {
        let weights = public
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
                    Tensor {
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
                    Activation::Rescale { site, .. } | Activation::Keep { site, .. } => {
                        site.clone()
                    }
                    Activation::Logits => None,
                },
            )
        })
        .collect())
}
