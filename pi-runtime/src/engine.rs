//! The two-party evaluation of a lowered network over a synchronous [`Channel`].
//!
//! Both parties walk the same [`Plan`], derived from the model's public part. Notation:
//! every stored value `x_v` of the network (the input is value 0) is held by the server
//! as `x_v - r_v` and by the client as its mask `r_v`; layer `i` computes
//! `y = L_i(x_inputs) + b_i`, shared as the server's `a = L_i(x - r) + b_i + s_i` and the
//! client's `c = L_i(r) - s_i`.
//!
//! **Offline** (per inference, before the input exists): for each layer in order, the
//! client obtains `c_i = L_i(r_inputs) - s_i` from the linear preprocessing (see
//! [`crate::preprocess`]), then fixes the mask of the layer's output: a fresh random `r'`
//! at kept ReLU positions, and at linearized positions and on ReLU-free values the
//! client's share of the exact truncation ([`protocols::trunc`]: one random OT per
//! position, the client as OT sender). For the kept positions the server garbles one ReLU
//! gadget each, and the client receives the labels of its inputs `c mod 2^m` and
//! `-r' mod 2^l` by correlated OT.
//!
//! **Online:** the client sends `x - r_0`; the server evaluates every linear layer
//! locally; in a layer with an output it sends one bit per truncated position and the
//! labels of its gadget inputs for the kept positions, and gets back the client's
//! truncation answers and the output colour bits, from which it alone computes
//! `x' - r'`. Finally the server sends its share of the logits and the client adds its
//! own.
//!
//! **Randomness:** each engine draws its generators from an [`RngSource`]: fresh OS
//! entropy per phase by default ([`ServerEngine::new`], [`ClientEngine::new`]); a seeded
//! source ([`ServerEngine::with_rng`], [`ClientEngine::with_rng`], together with
//! [`crate::preprocess::Method::instance_with_rng`]) makes a whole session reproducible
//! in tests.
//!
//! A layer kept as it is (`Activation::Keep`: a quadratic site's polynomial, or a layer
//! without ReLUs whose truncation its readers do) is local: the server stores its `a`, the
//! client its `c` as the mask. At a quadratic site the squared positions go through
//! [`protocols::square`] and the rest of the linearized ones (its affine channels)
//! through the plain truncation, in the same round; the server then evaluates the site's
//! polynomial layer in the same pass ([`FixedProgram::fused_polynomial`]), without
//! storing the site's three values unless the run is traced.
//!
//! Online bytes and rounds: [`Plan::online_bytes`], [`Plan::online_rounds`] (one round trip
//! per layer with kept, truncated or squared positions, plus the input and logits round);
//! `docs/runtime.md` has the formulas.

use std::time::Instant;

use models::fixed::{FixedProgram, FusedPolynomial};
use protocols::Block;
use protocols::channel::{Channel, ChannelExt, ChannelStats, CountingChannel};
use protocols::gc::relu::{
    GarbledRelus, ReluOnlineSecrets, client_gadget_inputs, server_gadget_input,
};
use protocols::ot::{OtReceiver, OtSender};
use protocols::prg::RngSource;
use protocols::share::round_offset;
use protocols::square::{
    SquareClientSecrets, SquareServerSecrets, square_offline_client, square_offline_server,
    square_online_client, square_online_server_finish, square_online_server_request,
};
use protocols::trunc::{
    TruncClientSecrets, TruncServerSecrets, trunc_offline_client, trunc_offline_server,
    trunc_online_client, trunc_online_server_finish, trunc_online_server_request,
};
use protocols::twopc::{
    relu_offline_client_ot, relu_offline_client_tables, relu_offline_server_ot,
    relu_online_client_with, relu_online_server_send,
};
use rand_core::RngCore;
use serde::Serialize;

use crate::error::{Result, RuntimeError};
pub use crate::plan::{Plan, PlanLayer};
use crate::preprocess::Preprocessing;

/// Traffic and time of one layer in one phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LayerMetrics {
    /// Layer index in execution order.
    pub layer: usize,
    /// ReLU site, if any.
    pub site: Option<String>,
    /// Output positions.
    pub positions: usize,
    /// Kept ReLUs (garbled circuits).
    pub kept: usize,
    /// Wall-clock seconds this party spent on the layer.
    pub seconds: f64,
    /// Bytes this party sent during the layer.
    pub bytes_sent: u64,
    /// Bytes this party received during the layer.
    pub bytes_received: u64,
}

/// Traffic and time of one phase, as seen by one party.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PhaseMetrics {
    /// Wall-clock seconds of the whole phase.
    pub seconds: f64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Messages sent (flushes carrying data).
    pub messages: u64,
    /// Rounds: turns from sending to waiting.
    pub rounds: u64,
    /// Per layer (input and logits exchanges are counted in the phase totals only).
    pub layers: Vec<LayerMetrics>,
}

struct Meter {
    start: Instant,
    at: ChannelStats,
    phase_start: Instant,
    phase_at: ChannelStats,
    layers: Vec<LayerMetrics>,
}

impl Meter {
    fn new<C: Channel>(ch: &CountingChannel<C>) -> Self {
        let now = Instant::now();
        Meter {
            start: now,
            at: ch.stats(),
            phase_start: now,
            phase_at: ch.stats(),
            layers: Vec::new(),
        }
    }

    fn begin<C: Channel>(&mut self, ch: &CountingChannel<C>) {
        self.start = Instant::now();
        self.at = ch.stats();
    }

    fn end<C: Channel>(&mut self, ch: &CountingChannel<C>, i: usize, l: &PlanLayer) {
        let s = ch.stats();
        self.layers.push(LayerMetrics {
            layer: i,
            site: l.site.clone(),
            positions: l.len,
            kept: l.kept_count,
            seconds: self.start.elapsed().as_secs_f64(),
            bytes_sent: s.bytes_sent - self.at.bytes_sent,
            bytes_received: s.bytes_received - self.at.bytes_received,
        });
    }

    fn finish<C: Channel>(self, ch: &CountingChannel<C>) -> PhaseMetrics {
        let s = ch.stats();
        PhaseMetrics {
            seconds: self.phase_start.elapsed().as_secs_f64(),
            bytes_sent: s.bytes_sent - self.phase_at.bytes_sent,
            bytes_received: s.bytes_received - self.phase_at.bytes_received,
            messages: s.messages - self.phase_at.messages,
            rounds: s.rounds - self.phase_at.rounds,
            layers: self.layers,
        }
    }
}

// ------------------------------------------------------------------------------ server

/// What the server keeps from the offline phase of one inference.
pub struct ServerPrepared {
    /// `s_i` per layer.
    s: Vec<Vec<u64>>,
    /// What the online phase needs of each layer's garbling (layers with kept ReLUs).
    relus: Vec<Option<ReluOnlineSecrets>>,
    /// Random OTs of each layer's exact truncations (layers with truncated positions).
    truncs: Vec<Option<TruncServerSecrets>>,
    /// Each quadratic site's truncations with a square (its linearized positions).
    squares: Vec<Option<SquareServerSecrets>>,
}

/// The server's side: the full lowered model, the session's OT sender (garbled circuits)
/// and OT receiver (exact truncation).
pub struct ServerEngine<'p> {
    prog: &'p FixedProgram,
    plan: Plan,
    /// Per layer: a quadratic site's polynomial, evaluated in the site's pass (its layer
    /// `i + 1` then does nothing online).
    fused: Vec<Option<FusedPolynomial>>,
    ot: Option<(OtSender, OtReceiver)>,
    batch: u64,
    rng: RngSource,
}

impl<'p> ServerEngine<'p> {
    /// An engine for the lowered model `prog`, drawing its randomness from the OS CSPRNG.
    pub fn new(prog: &'p FixedProgram) -> Result<Self> {
        Self::with_rng(prog, RngSource::Entropy)
    }

    /// An engine drawing its randomness from `rng` ([`RngSource::seeded`] makes every
    /// message it sends reproducible; tests only).
    pub fn with_rng(prog: &'p FixedProgram, rng: RngSource) -> Result<Self> {
        Ok(ServerEngine {
            plan: Plan::new(prog)?,
            fused: (0..prog.layers.len())
                .map(|i| prog.fused_polynomial(i))
                .collect(),
            prog,
            ot: None,
            batch: 0,
            rng,
        })
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Runs the base OTs of the session (once, before the first offline phase): one set
    /// with the server as IKNP sender (garbled circuits' labels), one the other way round
    /// (exact truncation).
    pub fn setup_ot<C: Channel>(&mut self, ch: &mut C) -> Result<()> {
        let mut rng = self.rng.prg();
        let delta = protocols::block::Delta::random(&mut rng);
        let base = |e| RuntimeError::from(e).context("base OT");
        let sender = OtSender::setup(ch, delta, &mut rng).map_err(base)?;
        let receiver = OtReceiver::setup(ch, &mut rng).map_err(base)?;
        self.ot = Some((sender, receiver));
        Ok(())
    }

    /// The offline phase of one inference.
    pub fn offline<C: Channel>(
        &mut self,
        ch: &mut CountingChannel<C>,
        pre: &mut dyn Preprocessing,
    ) -> Result<(ServerPrepared, PhaseMetrics)> {
        ch.begin_phase();
        let mut meter = Meter::new(ch);
        let mut rng = self.rng.prg();
        let mut prep = ServerPrepared {
            s: Vec::with_capacity(self.plan.layers.len()),
            relus: Vec::with_capacity(self.plan.layers.len()),
            truncs: Vec::with_capacity(self.plan.layers.len()),
            squares: Vec::with_capacity(self.plan.layers.len()),
        };
        let l = self.plan.fixed.ring_bits;
        pre.begin_inference();
        for (i, layer) in self.plan.layers.iter().enumerate() {
            meter.begin(ch);
            let what = format!("offline layer {i}");
            let s = self.plan.ring.random(&mut rng, layer.len);
            pre.server_layer(ch, self.prog, &self.plan, i, &s)
                .map_err(|e| e.context(&what))?;
            prep.s.push(s);
            let (ot, trunc_ot) = self
                .ot
                .as_mut()
                .ok_or_else(|| RuntimeError::config("offline phase before the OT setup"))?;
            // The ReLUs' OTs, then the truncations and squares, then the garbled tables:
            // once it has the truncations the client knows every mask layer `i + 1` reads
            // and sends that layer's HE inputs before it reads these tables, so the two
            // cross the link at the same time (session protocol 9).
            let relu = if layer.kept_count > 0 {
                self.batch += 1;
                Some(
                    relu_offline_server_ot(ch, ot, layer.relu, layer.kept_count, self.batch)
                        .map_err(|e| RuntimeError::from(e).context(&what))?,
                )
            } else {
                None
            };
            let trunc = if layer.trunc_count > 0 {
                Some(
                    trunc_offline_server(ch, trunc_ot, layer.trunc_count, layer.shift, l, &mut rng)
                        .map_err(|e| RuntimeError::from(e).context(&what))?,
                )
            } else {
                None
            };
            prep.truncs.push(trunc);
            let square = match layer.quadratic {
                Some(q) if q.count > 0 => Some(
                    square_offline_server(ch, trunc_ot, ot, q.count, q.params, &mut rng)
                        .map_err(|e| RuntimeError::from(e).context(&what))?,
                ),
                _ => None,
            };
            prep.squares.push(square);
            let secrets = match relu {
                Some(r) => Some(
                    r.garble_and_send(ch, self.rng.prg())
                        .map_err(|e| RuntimeError::from(e).context(&what))?,
                ),
                None => None,
            };
            // Keep only what the online phase needs (the client's zero labels go).
            prep.relus.push(secrets.map(ReluOnlineSecrets::from));
            meter.end(ch, i, layer);
        }
        // The client sends every layer's truncation corrections after its last layer, in
        // the flight before its first online message, so they cost no round of their own.
        for t in prep.truncs.iter_mut().flatten() {
            t.receive_corrections(ch)
                .map_err(|e| RuntimeError::from(e).context("offline truncation corrections"))?;
        }
        Ok((prep, meter.finish(ch)))
    }

    /// The online phase of one inference, on material prepared by [`Self::offline`]
    /// (consumed: garbled circuits must never be evaluated twice).
    pub fn online<C: Channel>(
        &self,
        ch: &mut CountingChannel<C>,
        prep: ServerPrepared,
    ) -> Result<PhaseMetrics> {
        self.online_run(ch, prep, false).map(|(m, _)| m)
    }

    /// [`Self::online`], also returning the server's view of every stored value
    /// (`x_v - r_v`, signed ring representation): with the client's masks
    /// ([`ClientPrepared::masks`]) a test reconstructs what the protocol computed.
    pub fn online_traced<C: Channel>(
        &self,
        ch: &mut CountingChannel<C>,
        prep: ServerPrepared,
    ) -> Result<(PhaseMetrics, Vec<Vec<i64>>)> {
        self.online_run(ch, prep, true)
    }

    /// The online phase; with `trace`, every stored value is kept (a quadratic site's
    /// ReLU part, `x` and `x̃²`, which its fused polynomial does not need, included).
    fn online_run<C: Channel>(
        &self,
        ch: &mut CountingChannel<C>,
        prep: ServerPrepared,
        trace: bool,
    ) -> Result<(PhaseMetrics, Vec<Vec<i64>>)> {
        let plan = &self.plan;
        let p = plan.fixed;
        let lmask = plan.ring.mask();
        ch.begin_phase();
        let mut meter = Meter::new(ch);
        let input = plan
            .recv_ring(ch, plan.value_lens[0], "masked input")
            .map_err(|e| e.context("online input"))?;
        let mut vals: Vec<Vec<i64>> = vec![Vec::new(); plan.value_lens.len()];
        vals[0] = input.iter().map(|&u| p.reduce(u as i64)).collect();
        let mut relus = prep.relus.into_iter();
        let mut truncs = prep.truncs.into_iter();
        let mut squares = prep.squares.into_iter();
        let mut ss = prep.s;
        // Layers whose output a fused polynomial has already produced.
        let mut done = vec![false; plan.layers.len()];
        for (i, layer) in plan.layers.iter().enumerate() {
            meter.begin(ch);
            let s = std::mem::take(&mut ss[i]);
            if done[i] {
                relus.next();
                truncs.next();
                squares.next();
                meter.end(ch, i, layer);
                continue;
            }
            let mut y = self.prog.layer_output(i, &vals);
            let secrets = relus.next().flatten();
            let trunc = truncs.next().flatten();
            let square = squares.next().flatten();
            match layer.output {
                // A polynomial: local, stored as it is (`y + s` in y's buffer).
                Some(v) if layer.keep => {
                    for (y, &s) in y.iter_mut().zip(&s) {
                        *y = p.reduce(y.wrapping_add(s as i64));
                    }
                    vals[v] = y;
                }
                None => {
                    ch.send_u64s(&add_into(s, &y, lmask))?;
                    ch.flush()?;
                }
                Some(v) => {
                    let a = add_into(s, &y, lmask);
                    drop(y);
                    let what = || format!("online layer {i}");
                    let off = round_offset(layer.shift);
                    // The values to truncate exactly (rounding offset added), in order: the
                    // plain truncation's and, at a quadratic site, the square protocol's.
                    let (lin, lin_sq) = split_linearized(&a, layer, off, lmask);
                    // One round: truncation requests and gadget labels go out together;
                    // the truncation answers come back first (the client sends them once
                    // it holds every label, and evaluates meanwhile), then colour bits.
                    if let Some(t) = &trunc {
                        trunc_online_server_request(ch, t, &lin)
                            .map_err(|e| RuntimeError::from(e).context(&what()))?;
                    }
                    if let Some(q) = &square {
                        square_online_server_request(ch, q, &lin_sq)
                            .map_err(|e| RuntimeError::from(e).context(&what()))?;
                    }
                    let relu_pending = match secrets {
                        Some(sec) => {
                            let gadget_in: Vec<u64> = a
                                .iter()
                                .zip(&layer.kept)
                                .filter(|(_, k)| **k)
                                .map(|(&x, _)| server_gadget_input(x, layer.relu))
                                .collect();
                            Some(
                                relu_online_server_send(ch, sec, &gadget_in)
                                    .map_err(|e| RuntimeError::from(e).context(&what()))?,
                            )
                        }
                        None => {
                            ch.flush()?;
                            None
                        }
                    };
                    let trunc_out = match trunc {
                        Some(t) => trunc_online_server_finish(ch, t, &lin)
                            .map_err(|e| RuntimeError::from(e).context(&what()))?,
                        None => Vec::new(),
                    };
                    let square_out = match square {
                        Some(q) => Some(
                            square_online_server_finish(ch, q, &lin_sq)
                                .map_err(|e| RuntimeError::from(e).context(&what()))?,
                        ),
                        None => None,
                    };
                    let relu_out = match relu_pending {
                        Some(pending) => pending
                            .finish(ch)
                            .map_err(|e| RuntimeError::from(e).context(&what()))?,
                        None => Vec::new(),
                    };
                    let squared = square_out.as_ref().map_or(0, |q| q.len());
                    if relu_out.len() != layer.kept_count
                        || trunc_out.len() != layer.trunc_count
                        || squared != layer.quadratic.map_or(0, |q| q.count)
                    {
                        return Err(RuntimeError::config(format!(
                            "{}: prepared material does not match the plan",
                            what()
                        )));
                    }
                    match layer.quadratic {
                        Some(q) => {
                            let (sq_x, sq_s) =
                                square_out.map_or((Vec::new(), Vec::new()), |s| (s.x, s.square));
                            let fused = self.fused[i]
                                .as_ref()
                                .filter(|f| ss.get(f.layer).is_some_and(|s| s.len() == layer.len));
                            if let Some(f) = fused {
                                // The polynomial layer from the three lists in one pass,
                                // its mask s added.
                                let s_next = std::mem::take(&mut ss[f.layer]);
                                vals[f.output] = fused_polynomial(
                                    layer, f, &relu_out, &trunc_out, &sq_x, &sq_s, &s_next, p,
                                );
                                done[f.layer] = true;
                            }
                            if trace || fused.is_none() {
                                let [relu, x, square] = spread_quadratic(
                                    layer,
                                    [&relu_out, &trunc_out, &sq_x, &sq_s],
                                    |u| p.reduce(u as i64),
                                );
                                vals[v] = relu;
                                vals[q.linear] = x;
                                vals[q.square] = square;
                            }
                        }
                        None => vals[v] = spread(&layer.kept, relu_out, trunc_out, p),
                    }
                }
            }
            meter.end(ch, i, layer);
        }
        Ok((meter.finish(ch), vals))
    }
}

/// `s + y` in the ring (bit patterns masked to `lmask`), in `s`'s buffer.
fn add_into(mut s: Vec<u64>, y: &[i64], lmask: u64) -> Vec<u64> {
    for (s, &y) in s.iter_mut().zip(y) {
        *s = (y as u64).wrapping_add(*s) & lmask;
    }
    s
}

/// Places `kept` values at the kept positions and `lin` values at the others, in order;
/// an empty list leaves its positions 0 (signed ring representation).
fn spread(
    kept: &[bool],
    kept_vals: Vec<u64>,
    lin_vals: Vec<u64>,
    p: models::fixed::FixedPointParams,
) -> Vec<i64> {
    let (mut kept_it, mut lin_it) = (kept_vals.into_iter(), lin_vals.into_iter());
    kept.iter()
        .map(|&k| {
            let u = if k { kept_it.next() } else { lin_it.next() };
            p.reduce(u.unwrap_or(0) as i64)
        })
        .collect()
}

/// The server's shares at the positions that are truncated, `a + off` in plan order: those
/// of the plain truncation (linearized positions, except a quadratic site's squared ones)
/// and those of the square protocol (the squared ones).
fn split_linearized(a: &[u64], layer: &PlanLayer, off: u64, lmask: u64) -> (Vec<u64>, Vec<u64>) {
    let squared = layer.quadratic.map_or(0, |q| q.count);
    let (mut lin, mut lin_sq) = (
        Vec::with_capacity(layer.trunc_count),
        Vec::with_capacity(squared),
    );
    for (j, (&x, &k)) in a.iter().zip(&layer.kept).enumerate() {
        let v = x.wrapping_add(off) & lmask;
        if layer.squared.get(j).copied().unwrap_or(false) {
            lin_sq.push(v);
        } else if !k {
            lin.push(v);
        }
    }
    (lin, lin_sq)
}

/// [`spread`] at a quadratic site, in one pass: the ReLUs at kept positions (0
/// elsewhere); `x` at linearized ones, from the square protocol at squared positions and
/// from the plain truncation at the others (0 at kept ones); `x̃²` at squared positions (0
/// elsewhere). Each element goes through `f` (the server's signed reduction, or nothing
/// for the client's masks); a missing entry (an empty list) stays 0, as in `spread`.
fn spread_quadratic<T: Copy + Default>(
    layer: &PlanLayer,
    [relu, trunc, x, square]: [&[u64]; 4],
    f: impl Fn(u64) -> T,
) -> [Vec<T>; 3] {
    let n = layer.kept.len();
    let (mut out_r, mut out_x, mut out_s) = (
        vec![T::default(); n],
        vec![T::default(); n],
        vec![T::default(); n],
    );
    let (mut ri, mut ti) = (relu.iter(), trunc.iter());
    let (mut xi, mut si) = (x.iter(), square.iter());
    let next = |it: &mut std::slice::Iter<'_, u64>| f(it.next().copied().unwrap_or(0));
    for (j, &k) in layer.kept.iter().enumerate() {
        if k {
            out_r[j] = next(&mut ri);
        } else if layer.squared.get(j).copied().unwrap_or(false) {
            out_x[j] = next(&mut xi);
            out_s[j] = next(&mut si);
        } else {
            out_x[j] = next(&mut ti);
        }
    }
    [out_r, out_x, out_s]
}

/// [`spread`] for the client's masks (ring elements as they are).
fn spread_masks(kept: &[bool], kept_vals: Vec<u64>, lin_vals: Vec<u64>) -> Vec<u64> {
    let (mut kept_it, mut lin_it) = (kept_vals.into_iter(), lin_vals.into_iter());
    kept.iter()
        .map(|&k| if k { kept_it.next() } else { lin_it.next() }.unwrap_or(0))
        .collect()
}

/// A quadratic site's polynomial layer ([`FusedPolynomial`]) on the server's shares in
/// one pass over the site's lists (ReLU outputs at kept positions, the plain truncation's
/// `x` at the affine channels' linearized ones, the square protocol's `x` and `x̃²` at the
/// squared ones), plus the layer's mask `s`: what [`FixedProgram::layer_output`] and the
/// `y + s` of a kept layer give from the spread values, without spreading them. Ring
/// elements are used as they are: the products and sums wrap mod 2^64, a multiple of the
/// ring's modulus, and are reduced once.
#[allow(clippy::too_many_arguments)]
fn fused_polynomial(
    layer: &PlanLayer,
    f: &FusedPolynomial,
    relu: &[u64],
    trunc: &[u64],
    x: &[u64],
    square: &[u64],
    s: &[u64],
    p: models::fixed::FixedPointParams,
) -> Vec<i64> {
    let n = layer.kept.len();
    let channels = f.coef[0].len().max(1);
    let plane = (n / channels).max(1);
    let (mut ri, mut ti) = (relu.iter(), trunc.iter());
    let (mut xi, mut si) = (x.iter(), square.iter());
    let mut out = Vec::with_capacity(n);
    // Channel by channel: the coefficients change once per plane (no division per
    // position).
    for c in 0..channels {
        let (kr, kx, ks) = (
            f.coef[0][c] as u64,
            f.coef[1][c] as u64,
            f.coef[2][c] as u64,
        );
        let range = (c * plane).min(n)..((c + 1) * plane).min(n);
        let squared = layer.squared.get(range.clone()).unwrap_or(&[]);
        let cells = layer.kept[range.clone()]
            .iter()
            .zip(&f.bias[range.clone()])
            .zip(&s[range]);
        for (j, ((&kept, &b), &sj)) in cells.enumerate() {
            let v = if kept {
                kr.wrapping_mul(ri.next().copied().unwrap_or(0))
            } else if squared.get(j).copied().unwrap_or(false) {
                kx.wrapping_mul(xi.next().copied().unwrap_or(0))
                    .wrapping_add(ks.wrapping_mul(si.next().copied().unwrap_or(0)))
            } else {
                kx.wrapping_mul(ti.next().copied().unwrap_or(0))
            };
            let z = v.wrapping_add(b as u64).wrapping_add(sj);
            out.push(p.reduce(z as i64));
        }
    }
    out
}

// ------------------------------------------------------------------------------ client

/// One layer's garbled ReLUs on the client's side: the tables, the labels of its inputs
/// and its `q` inputs (read in the clear by the evaluator-known gates).
struct ClientRelus {
    garbled: GarbledRelus,
    labels: Vec<Block>,
    qs: Vec<u64>,
}

/// What the client keeps from the offline phase of one inference.
pub struct ClientPrepared {
    /// Mask of every stored value (value 0: the input).
    masks: Vec<Vec<u64>>,
    /// The client's share of the logits (`c` of the last layer).
    logit_share: Vec<u64>,
    /// Garbled ReLUs, per layer with kept ReLUs.
    relus: Vec<Option<ClientRelus>>,
    /// Exact-truncation messages and keys, per layer with truncated positions.
    truncs: Vec<Option<TruncClientSecrets>>,
    /// Truncation-with-a-square material, per quadratic site with linearized positions.
    squares: Vec<Option<SquareClientSecrets>>,
}

impl ClientPrepared {
    /// The client's mask `r_v` of every stored value (the client's own secrets).
    pub fn masks(&self) -> &[Vec<u64>] {
        &self.masks
    }
}

/// The client's result of one inference.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientOutput {
    /// Logits as ring values (signed, scale 2^(2f)).
    pub raw: Vec<i64>,
    /// Logits decoded to reals.
    pub logits: Vec<f64>,
}

/// The client's side: the public structure of the model, the session's OT receiver
/// (garbled circuits) and OT sender (exact truncation).
pub struct ClientEngine {
    plan: Plan,
    ot: Option<(OtReceiver, OtSender)>,
    rng: RngSource,
}

impl ClientEngine {
    /// An engine for the public structure `structure` ([`FixedProgram::structure`]),
    /// drawing its randomness from the OS CSPRNG.
    pub fn new(structure: &FixedProgram) -> Result<Self> {
        Self::with_rng(structure, RngSource::Entropy)
    }

    /// An engine drawing its randomness from `rng` ([`RngSource::seeded`] makes every
    /// message it sends reproducible; tests only).
    pub fn with_rng(structure: &FixedProgram, rng: RngSource) -> Result<Self> {
        Ok(ClientEngine {
            plan: Plan::new(structure)?,
            ot: None,
            rng,
        })
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Runs the base OTs of the session (once, before the first offline phase), in the
    /// server's order: as IKNP receiver, then as IKNP sender.
    pub fn setup_ot<C: Channel>(&mut self, ch: &mut C) -> Result<()> {
        let mut rng = self.rng.prg();
        let base = |e| RuntimeError::from(e).context("base OT");
        let receiver = OtReceiver::setup(ch, &mut rng).map_err(base)?;
        let delta = protocols::block::Delta::random(&mut rng);
        let sender = OtSender::setup(ch, delta, &mut rng).map_err(base)?;
        self.ot = Some((receiver, sender));
        Ok(())
    }

    /// The offline phase of one inference.
    pub fn offline<C: Channel>(
        &mut self,
        ch: &mut CountingChannel<C>,
        pre: &mut dyn Preprocessing,
    ) -> Result<(ClientPrepared, PhaseMetrics)> {
        let plan = &self.plan;
        let l = plan.fixed.ring_bits;
        let lmask = plan.ring.mask();
        ch.begin_phase();
        let mut meter = Meter::new(ch);
        let mut rng = self.rng.prg();
        let mut masks: Vec<Option<Vec<u64>>> = vec![None; plan.value_lens.len()];
        masks[0] = Some(plan.ring.random(&mut rng, plan.value_lens[0]));
        let mut relus = Vec::with_capacity(plan.layers.len());
        let mut truncs = Vec::with_capacity(plan.layers.len());
        let mut corrections = Vec::new();
        let mut squares = Vec::with_capacity(plan.layers.len());
        let mut logit_share = Vec::new();
        pre.begin_inference();
        // Layer `i + 1`'s HE inputs go out as soon as every mask it reads is known: after
        // layer `i`'s truncations and before its garbled tables are read (the server
        // sends those last), so both cross the link at once (session protocol 9).
        let send_inputs = |pre: &mut dyn Preprocessing,
                           ch: &mut CountingChannel<C>,
                           i: usize,
                           masks: &[Option<Vec<u64>>]| {
            if i < plan.layers.len() {
                pre.client_send(ch, plan, i, masks)
                    .map_err(|e| e.context(&format!("offline layer {i}")))
            } else {
                Ok(())
            }
        };
        send_inputs(pre, ch, 0, &masks)?;
        for (i, layer) in plan.layers.iter().enumerate() {
            meter.begin(ch);
            let what = format!("offline layer {i}");
            let c = pre.client_recv(ch, plan, i).map_err(|e| e.context(&what))?;
            let Some(v) = layer.output else {
                logit_share = c;
                relus.push(None);
                truncs.push(None);
                squares.push(None);
                send_inputs(pre, ch, i + 1, &masks)?;
                meter.end(ch, i, layer);
                continue;
            };
            if layer.keep {
                // A polynomial: the client's share is its mask, nothing else to prepare.
                masks[v] = Some(c.iter().map(|&x| x & lmask).collect());
                relus.push(None);
                truncs.push(None);
                squares.push(None);
                send_inputs(pre, ch, i + 1, &masks)?;
                meter.end(ch, i, layer);
                continue;
            }
            let (ot, trunc_ot) = self
                .ot
                .as_mut()
                .ok_or_else(|| RuntimeError::config("offline phase before the OT setup"))?;
            let mut kept_r = Vec::with_capacity(layer.kept_count);
            let (mut bs, mut qs) = (Vec::new(), Vec::new());
            let mut lin = Vec::with_capacity(layer.trunc_count);
            let mut lin_sq = Vec::with_capacity(layer.quadratic.map_or(0, |q| q.count));
            for (j, (&cj, &kept)) in c.iter().zip(&layer.kept).enumerate() {
                if kept {
                    let rj = rng.next_u64() & lmask;
                    let (b, q) = client_gadget_inputs(cj, rj, layer.relu);
                    bs.push(b);
                    qs.push(q);
                    kept_r.push(rj);
                } else if layer.squared.get(j).copied().unwrap_or(false) {
                    lin_sq.push(cj);
                } else {
                    lin.push(cj);
                }
            }
            let labels = if layer.kept_count > 0 {
                Some(
                    relu_offline_client_ot(ch, ot, layer.relu, &bs, &qs)
                        .map_err(|e| RuntimeError::from(e).context(&what))?,
                )
            } else {
                None
            };
            let lin_r = if layer.trunc_count > 0 {
                let (t, sec, corr) =
                    trunc_offline_client(ch, trunc_ot, &lin, layer.shift, l, &mut rng)
                        .map_err(|e| RuntimeError::from(e).context(&what))?;
                truncs.push(Some(sec));
                corrections.push(corr);
                t
            } else {
                truncs.push(None);
                Vec::new()
            };
            match layer.quadratic {
                Some(q) => {
                    let (x, sq) = if q.count > 0 {
                        let (shares, sec) =
                            square_offline_client(ch, trunc_ot, ot, &lin_sq, q.params, &mut rng)
                                .map_err(|e| RuntimeError::from(e).context(&what))?;
                        squares.push(Some(sec));
                        (shares.x, shares.square)
                    } else {
                        squares.push(None);
                        (Vec::new(), Vec::new())
                    };
                    let [relu_m, x_m, sq_m] =
                        spread_quadratic(layer, [&kept_r, &lin_r, &x, &sq], |u| u);
                    masks[v] = Some(relu_m);
                    masks[q.linear] = Some(x_m);
                    masks[q.square] = Some(sq_m);
                }
                None => {
                    squares.push(None);
                    masks[v] = Some(spread_masks(&layer.kept, kept_r, lin_r));
                }
            }
            send_inputs(pre, ch, i + 1, &masks)?;
            match labels {
                Some(labels) => {
                    let garbled = relu_offline_client_tables(ch, layer.relu, bs.len())
                        .map_err(|e| RuntimeError::from(e).context(&what))?;
                    relus.push(Some(ClientRelus {
                        garbled,
                        labels,
                        qs,
                    }));
                }
                None => relus.push(None),
            }
            meter.end(ch, i, layer);
        }
        // Every layer's truncation corrections in one flight (the server reads them at the
        // end of its offline phase). Flushed: the next offline phase may start with a
        // message from the server.
        if !corrections.is_empty() {
            for c in corrections {
                c.send(ch)
                    .map_err(|e| RuntimeError::from(e).context("offline truncation corrections"))?;
            }
            ch.flush()?;
        }
        Ok((
            ClientPrepared {
                masks: masks.into_iter().map(Option::unwrap_or_default).collect(),
                logit_share,
                relus,
                truncs,
                squares,
            },
            meter.finish(ch),
        ))
    }

    /// The online phase of one inference on a normalized input, with material prepared by
    /// [`Self::offline`] (consumed).
    pub fn online<C: Channel>(
        &self,
        ch: &mut CountingChannel<C>,
        prep: ClientPrepared,
        encoded_input: &[i64],
    ) -> Result<(ClientOutput, PhaseMetrics)> {
        let plan = &self.plan;
        let p = plan.fixed;
        let lmask = plan.ring.mask();
        if encoded_input.len() != plan.value_lens[0] {
            return Err(RuntimeError::config(format!(
                "input has {} values, the model expects {}",
                encoded_input.len(),
                plan.value_lens[0]
            )));
        }
        ch.begin_phase();
        let mut meter = Meter::new(ch);
        let masked: Vec<u64> = encoded_input
            .iter()
            .zip(&prep.masks[0])
            .map(|(&x, &r)| (x as u64).wrapping_sub(r) & lmask)
            .collect();
        ch.send_u64s(&masked)?;
        ch.flush()?;
        let mut out = None;
        for ((((i, layer), relu), trunc), square) in plan
            .layers
            .iter()
            .enumerate()
            .zip(prep.relus)
            .zip(prep.truncs)
            .zip(prep.squares)
        {
            meter.begin(ch);
            let what = || format!("online layer {i}");
            // The server's order: truncation (or square) requests, then labels; the
            // client answers the truncations as soon as it holds every label (the server
            // has then sent all it will, so the two writes cannot block each other) and
            // evaluates the last labels while the answers travel and the server finishes
            // them; the colour bits follow.
            let answer = match trunc {
                Some(t) => Some(
                    trunc_online_client(ch, t)
                        .map_err(|e| RuntimeError::from(e).context(&what()))?,
                ),
                None => None,
            };
            let square_answer = match square {
                Some(q) => Some(
                    square_online_client(ch, q)
                        .map_err(|e| RuntimeError::from(e).context(&what()))?,
                ),
                None => None,
            };
            let send_answers = |ch: &mut CountingChannel<C>| -> protocols::error::Result<()> {
                if let Some(ans) = answer {
                    ans.send(ch)?;
                }
                if let Some(ans) = square_answer {
                    ans.send(ch)?;
                }
                ch.flush()?;
                Ok(())
            };
            match relu {
                Some(r) => relu_online_client_with(ch, &r.garbled, &r.labels, &r.qs, send_answers),
                None => send_answers(ch),
            }
            .map_err(|e| RuntimeError::from(e).context(&what()))?;
            ch.flush()?;
            if layer.output.is_none() {
                let a = plan
                    .recv_ring(ch, layer.len, "logit share")
                    .map_err(|e| e.context("online logits"))?;
                let raw: Vec<i64> = a
                    .iter()
                    .zip(&prep.logit_share)
                    .map(|(&x, &c)| p.reduce(x.wrapping_add(c) as i64))
                    .collect();
                let logits = raw.iter().map(|&v| p.decode(v, layer.scale_bits)).collect();
                out = Some(ClientOutput { raw, logits });
            }
            meter.end(ch, i, layer);
        }
        let out = out.ok_or_else(|| RuntimeError::config("the plan has no logits layer"))?;
        Ok((out, meter.finish(ch)))
    }
}
