//! The public schedule of a secure evaluation ([`Plan`]), derived from the model's public
//! part alone so that both parties agree on it, with its exact costs (online bytes and
//! rounds, prepared memory) and its ring ([`protocols::share::Ring`]).

use models::fixed::{Activation, FixedPointParams, FixedProgram, ValueId};
use protocols::channel::Channel;
use protocols::gc::relu::{ReluOnlineSecrets, ReluParams};
use protocols::share::Ring;
use protocols::square::{SquareClientSecrets, SquareParams, SquareServerSecrets};
use protocols::trunc::{TruncClientSecrets, TruncServerSecrets};

use crate::error::{Result, RuntimeError};

/// One layer of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanLayer {
    /// Distinct values the layer reads, ascending.
    pub inputs: Vec<ValueId>,
    /// Output positions.
    pub len: usize,
    /// The value produced; `None` for the logits.
    pub output: Option<ValueId>,
    /// ReLU site, if any.
    pub site: Option<String>,
    /// Per output position: the ReLU is kept (garbled circuit).
    pub kept: Vec<bool>,
    /// Number of kept positions.
    pub kept_count: usize,
    /// At a quadratic site's layer, per output position: squared (linearized in a
    /// channel that computes a square; [`FixedProgram::squared`]). Empty elsewhere.
    pub squared: Vec<bool>,
    /// Positions truncated by the exact truncation protocol: linearized or ReLU-free
    /// positions of a layer with an output (0 for the logits), except the squared ones of
    /// a quadratic site (its affine channels' linearized positions are truncated here).
    pub trunc_count: usize,
    /// Parameters of the layer's ReLU gadget: the ring's `l`, `f` and `k`, and the
    /// window `m` of its site (the model's default where the site has none), each shifted
    /// up by the layer's extra scale bits (a layer reading a quadratic site's polynomial
    /// accumulates at 2^(3f)).
    pub relu: ReluParams,
    /// Bits of the accumulator's scale (2f, or 3f for a layer reading a polynomial); the
    /// logits are decoded at it.
    pub scale_bits: u32,
    /// The truncation's shift: `scale_bits - f`.
    pub shift: u32,
    /// A quadratic site's layer: its linearized positions go through the exact
    /// truncation with a square ([`protocols::square`]) instead of the plain one.
    pub quadratic: Option<PlanQuad>,
    /// A layer kept as it is (`Activation::Keep`: a quadratic site's polynomial, or a
    /// layer without ReLUs whose truncation its readers do): no rescaling, no online
    /// round.
    pub keep: bool,
}

/// The linearized positions of a quadratic site's layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanQuad {
    /// The value of `x` at linearized positions (0 at kept ones).
    pub linear: ValueId,
    /// The value of `x̃²` at squared positions (0 at the others).
    pub square: ValueId,
    /// Squared positions (the linearized ones of the channels that compute a square).
    pub count: usize,
    /// The protocol's ring and shifts: `t` = the layer's shift, `t2 = t + f - h`.
    pub params: SquareParams,
}

/// The public schedule of a secure evaluation: what both parties must agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Fixed-point parameters of the model.
    pub fixed: FixedPointParams,
    /// The ring `Z_2^l` of the shares (`l` = the fixed-point ring width).
    pub ring: Ring,
    /// Number of positions of each stored value.
    pub value_lens: Vec<usize>,
    /// Layers in execution order; the last one produces the logits.
    pub layers: Vec<PlanLayer>,
}

impl Plan {
    /// The plan of a lowered program (the server's full one or the client's
    /// [`FixedProgram::structure`]; both give the same plan).
    pub fn new(prog: &FixedProgram) -> Result<Self> {
        let fixed = prog.params;
        fixed.validate()?;
        let value_lens = prog.values.iter().map(|s| s.iter().product()).collect();
        let mut layers = Vec::with_capacity(prog.layers.len());
        for (i, l) in prog.layers.iter().enumerate() {
            let mut inputs = prog.inputs_of(i);
            inputs.sort_unstable();
            inputs.dedup();
            let len: usize = l.out_shape.iter().product();
            let (output, site, quad, keep) = match &l.activation {
                Activation::Logits => (None, None, None, false),
                Activation::Rescale {
                    output,
                    site,
                    quadratic,
                } => (Some(*output), site.clone(), *quadratic, false),
                Activation::Keep { output, site } => (Some(*output), site.clone(), None, true),
            };
            let f = fixed.frac_bits;
            let extra = prog.layer_extra_bits(i);
            let shift = f + extra;
            let kept: Vec<bool> = match &site {
                Some(s) => {
                    let m = prog.masks.get(s).ok_or_else(|| {
                        RuntimeError::config(format!("no mask for ReLU site {s}"))
                    })?;
                    if m.len() != len {
                        return Err(RuntimeError::config(format!(
                            "mask of site {s} has {} positions, its layer {len}",
                            m.len()
                        )));
                    }
                    m.iter().map(|&k| k != 0).collect()
                }
                None => vec![false; len],
            };
            let kept_count = kept.iter().filter(|&&k| k).count();
            let squared = prog.squared(i).unwrap_or_default();
            // Never kept: `squared` reads the same mask.
            let squared_count = squared.iter().filter(|&&s| s).count();
            let trunc_count = if output.is_some() && !keep {
                len - kept_count - squared_count
            } else {
                0
            };
            let lp = prog.layer_params(i);
            lp.validate()?;
            let relu = ReluParams {
                l: lp.ring_bits,
                f: shift,
                m: lp.relu_bits + extra,
                k: if lp.relu_dropped_bits > 0 {
                    lp.relu_dropped_bits + extra
                } else {
                    0
                },
            };
            if kept_count > 0 {
                relu.validate().map_err(|e| {
                    RuntimeError::from(e).context(&format!(
                        "layer {i}: its ReLU window shifted by {extra} bits for the \
                         polynomial it reads"
                    ))
                })?;
            }
            let quadratic = match quad {
                Some(q) => Some(PlanQuad {
                    linear: q.linear,
                    square: q.square,
                    count: squared_count,
                    params: SquareParams::new(
                        fixed.ring_bits,
                        shift,
                        shift + f - fixed.square_frac_bits,
                    )?,
                }),
                None => None,
            };
            layers.push(PlanLayer {
                inputs,
                len,
                output,
                site,
                kept,
                kept_count,
                squared,
                trunc_count,
                relu,
                scale_bits: l.scale_bits,
                shift,
                quadratic,
                keep,
            });
        }
        if layers.last().is_none_or(|l| l.output.is_some()) {
            return Err(RuntimeError::config("the program does not end in logits"));
        }
        Ok(Plan {
            fixed,
            ring: Ring::new(fixed.ring_bits)?,
            value_lens,
            layers,
        })
    }

    /// Number of classes (positions of the logits layer).
    pub fn classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.len)
    }

    /// Kept ReLU positions in all layers.
    pub fn kept_total(&self) -> usize {
        self.layers.iter().map(|l| l.kept_count).sum()
    }

    /// ReLU positions (kept or linearized) in all layers with a site.
    pub fn relu_total(&self) -> usize {
        self.layers
            .iter()
            .filter(|l| l.site.is_some())
            .map(|l| l.len)
            .sum()
    }

    /// Online bytes client to server and server to client predicted by the protocol:
    /// up `8 n_in + Σ_layers (⌈kept × l / 8⌉ + truncated × ⌈t/8⌉ + squared × (⌈2 t2/8⌉ +
    /// ⌈l/8⌉))` (input, packed colour bits, truncation answers, square answers),
    /// down `Σ_layers (kept × 16 (m_i - k) + ⌈truncated / 8⌉ + ⌈squared / 8⌉ + squared ×
    /// ⌈l/8⌉) + 8 classes` (labels of the bits each gadget reads, truncation and square
    /// requests, logits); `t` is each layer's shift.
    pub fn online_bytes(&self) -> (u64, u64) {
        let (mut up, mut down) = (8 * self.value_lens[0] as u64, 8 * self.classes() as u64);
        for x in &self.layers {
            let (t_down, t_up) = protocols::trunc::online_bytes(x.trunc_count, x.shift);
            let (q_down, q_up) = x.quadratic.map_or((0, 0), |q| {
                protocols::square::online_bytes(q.count, q.params)
            });
            up += (x.kept_count as u64 * u64::from(x.relu.l)).div_ceil(8) + t_up + q_up;
            down += x.kept_count as u64 * 16 * u64::from(x.relu.width()) + t_down + q_down;
        }
        (up, down)
    }

    /// Positions that go through the exact truncation with a square, in all layers.
    pub fn square_total(&self) -> usize {
        self.layers
            .iter()
            .filter_map(|l| l.quadratic.map(|q| q.count))
            .sum()
    }

    /// Garbled-table bytes of all kept ReLUs (sent offline), `Σ_layers kept × 32 × AND
    /// gates of the layer's gadget`.
    pub fn table_bytes(&self) -> u64 {
        self.layers
            .iter()
            .map(|x| x.kept_count as u64 * x.relu.table_bytes() as u64)
            .sum()
    }

    /// Online rounds: one per layer with kept, truncated or squared positions (not the
    /// polynomial layers), plus the input and logits exchange.
    pub fn online_rounds(&self) -> u64 {
        1 + self
            .layers
            .iter()
            .filter(|x| x.kept_count + x.trunc_count + x.quadratic.map_or(0, |q| q.count) > 0)
            .count() as u64
    }

    /// Positions truncated by the exact truncation protocol in all layers.
    pub fn trunc_total(&self) -> usize {
        self.layers.iter().map(|l| l.trunc_count).sum()
    }

    /// Receives `n` elements of the plan's ring from the peer, rejecting any value outside
    /// it; `what` names the message in errors.
    pub(crate) fn recv_ring<C: Channel + ?Sized>(
        &self,
        ch: &mut C,
        n: usize,
        what: &str,
    ) -> Result<Vec<u64>> {
        self.ring
            .recv(ch, n)
            .map_err(|e| RuntimeError::from(e).context(what))
    }

    /// Bytes the server holds for one prepared inference
    /// ([`ServerPrepared`](crate::engine::ServerPrepared)): `s_i`, 8 bytes per output
    /// position of every layer, per layer with kept ReLUs the online part of its garbling
    /// ([`ReluOnlineSecrets::bytes_for`]), per truncated position its random-OT choice and
    /// key, plus a small per-layer allowance for the containers.
    pub fn server_prepared_bytes(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| {
                PER_LAYER_OVERHEAD
                    + 8 * l.len as u64
                    + ReluOnlineSecrets::bytes_for(l.relu, l.kept_count)
                    + TruncServerSecrets::BYTES_PER_VALUE * l.trunc_count as u64
                    + l.quadratic
                        .map_or(0, |q| SquareServerSecrets::BYTES_PER_VALUE * q.count as u64)
            })
            .sum()
    }

    /// Largest transient memory of the server's offline phase outside the linear
    /// preprocessing: while one layer is garbled it also holds the zero labels of the
    /// client's inputs (`16 (m - k + l)` bytes per kept ReLU), its own garbling secrets and
    /// the garbled tables before they are sent, and allows 16 bytes per output position
    /// for `s_i` and its copies and 32 per truncated position for its random OTs.
    pub fn server_offline_peak_bytes(&self) -> u64 {
        self.layers
            .iter()
            .map(|x| {
                let (w, l) = (u64::from(x.relu.width()), u64::from(x.relu.l));
                let per_relu = 16 * (w + l) + 16 * w + l + x.relu.table_bytes() as u64;
                let squares = x.quadratic.map_or(0, |q| q.count as u64);
                x.kept_count as u64 * per_relu
                    + 16 * x.len as u64
                    + 32 * x.trunc_count as u64
                    + 64 * squares
            })
            .max()
            .unwrap_or(0)
    }

    /// Bytes the client holds for one prepared inference
    /// ([`ClientPrepared`](crate::engine::ClientPrepared)): the mask of every stored value,
    /// its share of the logits, per kept ReLU the garbled tables, the labels of its
    /// `m - k + l` input bits and its `q` input, and per truncated position its truncation
    /// messages and keys.
    pub fn client_prepared_bytes(&self) -> u64 {
        let masks: u64 = self.value_lens.iter().map(|&n| 8 * n as u64).sum();
        let relus: u64 = self
            .layers
            .iter()
            .map(|x| {
                let labels = 16 * x.relu.evaluator_input_bits() as u64 + 8;
                x.kept_count as u64 * (x.relu.table_bytes() as u64 + labels)
            })
            .sum();
        masks
            + 8 * self.classes() as u64
            + relus
            + self.trunc_total() as u64 * TruncClientSecrets::BYTES_PER_VALUE
            + self.square_total() as u64 * SquareClientSecrets::BYTES_PER_VALUE
            + PER_LAYER_OVERHEAD * self.layers.len() as u64
    }
}

/// Allowance for vector headers and allocator slack per layer of prepared material.
const PER_LAYER_OVERHEAD: u64 = 128;
