//! Linear-layer preprocessing: how the client obtains `c_i = L_i(r_inputs) - s_i`.
//!
//! The default is [`HePreprocessing`]: the client encrypts its masks under its own BFV
//! key, the server evaluates `L_i` on the ciphertexts, subtracts `s_i`, re-randomizes and
//! returns the result (`protocols::he`, `docs/he.md`). [`InsecureDealer`] remains for
//! tests and comparisons: **the client sends its masks in the clear**, so the server can
//! unmask the client's input; the binaries accept it only with `--insecure-dealer`, warn
//! on every run and mark every metric record as insecure.

use std::borrow::Cow;

use models::fixed::{FixedProgram, TermOp};
use models::graph::Shape;
use protocols::channel::{Channel, ChannelExt};
use protocols::he::{
    ConvLayout, ConvShape, HeClient, HeParams, HeServer, KernelCache, MODULI, POLY_DEGREE,
};
use protocols::prg::RngSource;

use crate::error::{Result, RuntimeError};
use crate::plan::Plan;

/// The preprocessing methods a session can negotiate (wire code in parentheses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The client reveals its masks (1). Not private.
    InsecureDealer,
    /// BFV homomorphic encryption with coefficient-encoded convolutions (2).
    HeBfv,
}

impl Method {
    /// Wire code.
    pub fn code(self) -> u8 {
        match self {
            Method::InsecureDealer => 1,
            Method::HeBfv => 2,
        }
    }

    /// From a wire code.
    pub fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(Method::InsecureDealer),
            2 => Some(Method::HeBfv),
            _ => None,
        }
    }

    /// True when the method protects the client's input.
    pub fn is_secure(self) -> bool {
        match self {
            Method::InsecureDealer => false,
            Method::HeBfv => true,
        }
    }

    /// A fresh instance for one session of the program `prog` (the server's full program
    /// or the client's [`FixedProgram::structure`]).
    pub fn instance(self, prog: &FixedProgram) -> Result<Box<dyn Preprocessing + Send>> {
        self.instance_with_rng(prog, RngSource::Entropy)
    }

    /// [`Self::instance`] drawing its randomness (HE keys, encryptions, re-randomization,
    /// the split of `s`) from `rng` ([`RngSource::seeded`] in tests; the dealer draws
    /// none).
    pub fn instance_with_rng(
        self,
        prog: &FixedProgram,
        rng: RngSource,
    ) -> Result<Box<dyn Preprocessing + Send>> {
        Ok(match self {
            Method::InsecureDealer => Box::new(InsecureDealer::default()),
            Method::HeBfv => Box::new(HePreprocessing::with_rng(prog, rng)?),
        })
    }
}

/// One party's side of the linear preprocessing, called layer by layer in plan order.
pub trait Preprocessing {
    /// Called before the first layer of each inference's offline phase.
    fn begin_inference(&mut self);

    /// Server: lets the client learn `L_i(r) - s` for layer `i`.
    fn server_layer(
        &mut self,
        ch: &mut dyn Channel,
        prog: &FixedProgram,
        plan: &Plan,
        i: usize,
        s: &[u64],
    ) -> Result<()>;

    /// Server: an estimate of the most memory one offline phase of this preprocessing
    /// holds at once (reserved against the server's memory budget while the phase runs).
    fn server_peak_bytes(&self, plan: &Plan) -> u64;

    /// Values per inference that the client receives and whose hiding of the weights
    /// rests on noise flooding (HE: the released output coefficients); 0 for none.
    fn flooded_per_inference(&self) -> u64 {
        0
    }

    /// Both sides: one key serves at most `n >= 1` inferences; the client then draws a
    /// fresh key and sends it before the next inference's first layer (no effect where
    /// there are no keys).
    fn set_key_inferences(&mut self, _n: u32) {}

    /// Client: returns `L_i(r) - s` for layer `i`; `masks[v]` holds the mask of every
    /// value produced so far. [`Self::client_send`] then [`Self::client_recv`].
    fn client_layer(
        &mut self,
        ch: &mut dyn Channel,
        plan: &Plan,
        i: usize,
        masks: &[Option<Vec<u64>>],
    ) -> Result<Vec<u64>> {
        self.client_send(ch, plan, i, masks)?;
        self.client_recv(ch, plan, i)
    }

    /// Client, first half of layer `i`: sends what the server's
    /// [`Self::server_layer`] reads (flushed); `masks[v]` holds the mask of every value
    /// produced so far. The client may receive other messages before
    /// [`Self::client_recv`] (the runtime sends layer `i + 1`'s inputs before it
    /// receives layer `i`'s garbled tables).
    fn client_send(
        &mut self,
        ch: &mut dyn Channel,
        plan: &Plan,
        i: usize,
        masks: &[Option<Vec<u64>>],
    ) -> Result<()>;

    /// Client, second half of layer `i`: receives the server's answer and returns
    /// `L_i(r) - s`.
    fn client_recv(&mut self, ch: &mut dyn Channel, plan: &Plan, i: usize) -> Result<Vec<u64>>;
}

/// The insecure stand-in: the client sends each value's mask once, when a layer first
/// reads it; the server replies with `L_i(r) - s_i`.
#[derive(Default)]
pub struct InsecureDealer {
    /// Server: the client's masks received so far (signed ring representation).
    seen: Vec<Option<Vec<i64>>>,
    /// Client: which masks were sent.
    sent: Vec<bool>,
}

/// Prints counts only: the masks are the client's secrets.
impl std::fmt::Debug for InsecureDealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsecureDealer")
            .field("masks_seen", &self.seen.iter().flatten().count())
            .field("masks_sent", &self.sent.iter().filter(|&&s| s).count())
            .finish_non_exhaustive()
    }
}

impl Preprocessing for InsecureDealer {
    fn begin_inference(&mut self) {
        self.seen.clear();
        self.sent.clear();
    }

    /// The client's masks of every value, and a copy of them per layer.
    fn server_peak_bytes(&self, plan: &Plan) -> u64 {
        2 * 8 * plan.value_lens.iter().map(|&n| n as u64).sum::<u64>()
    }

    fn server_layer(
        &mut self,
        ch: &mut dyn Channel,
        prog: &FixedProgram,
        plan: &Plan,
        i: usize,
        s: &[u64],
    ) -> Result<()> {
        let lmask = plan.ring.mask();
        self.seen.resize(plan.value_lens.len(), None);
        for &v in &plan.layers[i].inputs {
            if self.seen[v].is_none() {
                let r = plan.recv_ring(ch, plan.value_lens[v], "dealer mask")?;
                self.seen[v] = Some(r.iter().map(|&u| plan.fixed.reduce(u as i64)).collect());
            }
        }
        let vals: Vec<Vec<i64>> = self
            .seen
            .iter()
            .map(|v| v.clone().unwrap_or_default())
            .collect();
        let lin = prog.apply_linear(i, &vals);
        let c: Vec<u64> = lin
            .iter()
            .zip(s)
            .map(|(&x, &s)| (x as u64).wrapping_sub(s) & lmask)
            .collect();
        ch.send_u64s(&c)?;
        ch.flush()?;
        Ok(())
    }

    fn client_send(
        &mut self,
        ch: &mut dyn Channel,
        plan: &Plan,
        i: usize,
        masks: &[Option<Vec<u64>>],
    ) -> Result<()> {
        self.sent.resize(plan.value_lens.len(), false);
        for &v in &plan.layers[i].inputs {
            if !self.sent[v] {
                let r = masks[v].as_ref().ok_or_else(|| {
                    RuntimeError::config(format!("layer {i} reads value {v} before it exists"))
                })?;
                ch.send_u64s(r)?;
                self.sent[v] = true;
            }
        }
        ch.flush()?;
        Ok(())
    }

    fn client_recv(&mut self, ch: &mut dyn Channel, plan: &Plan, i: usize) -> Result<Vec<u64>> {
        plan.recv_ring(ch, plan.layers[i].len, "dealer correlation")
    }
}

/// One term of a layer under HE: the value it reads and the operator's layout.
#[derive(Debug)]
struct HeTerm {
    input: usize,
    layout: ConvLayout,
}

/// The secure preprocessing: BFV with coefficient-encoded convolutions
/// (`protocols::he`). Each term of a layer (convolution, dense layer, channel scale,
/// average pool) runs as one encrypted operator; the server splits its `s_i` into random
/// per-term parts, the client adds the per-term results. The client's key is drawn at
/// the first offline layer of the session and again after every
/// [`Preprocessing::set_key_inferences`] inferences (both sides count them).
#[derive(Debug)]
pub struct HePreprocessing {
    params: HeParams,
    layers: Vec<Vec<HeTerm>>,
    client: Option<HeClient>,
    server: Option<HeServer>,
    /// Inferences one key serves.
    key_inferences: u32,
    /// Inferences begun under the current key.
    key_uses: u32,
    /// Keys set up so far.
    keys: u32,
    /// Where this side's generators come from.
    rng: RngSource,
    /// Server: kernel polynomials in NTT form kept across the session's inferences.
    kernels: KernelCache,
}

/// Default budget of the server's kernel cache per session (`docs/he.md`): about 2,700
/// of ResNet18's 15,600 kernel polynomials, a third of a millisecond of NTTs each per
/// inference; smaller models get at most what all their kernels take. Counted in
/// [`Preprocessing::server_peak_bytes`].
pub const DEFAULT_KERNEL_CACHE_BYTES: u64 = 512 << 20;

/// The operator of a term as a convolution on its input shape `src`.
fn term_shape(src: Shape, op: &TermOp, out: Shape) -> Result<ConvShape> {
    let [c, h, w] = src;
    let base = ConvShape {
        channels: c,
        height: h,
        width: w,
        out_channels: c,
        kh: 1,
        kw: 1,
        stride: 1,
        padding: 0,
        depthwise: true,
    };
    let shape = match op {
        TermOp::Conv {
            out_channels,
            kernel,
            stride,
            padding,
            ..
        } => ConvShape {
            out_channels: *out_channels,
            kh: *kernel,
            kw: *kernel,
            stride: *stride,
            padding: *padding,
            depthwise: false,
            ..base
        },
        TermOp::Dense { out_features, .. } => ConvShape {
            out_channels: *out_features,
            kh: h,
            kw: w,
            depthwise: false,
            ..base
        },
        TermOp::ChannelScale { .. } => base,
        TermOp::AvgPool { kernel, stride, .. } => ConvShape {
            kh: *kernel,
            kw: *kernel,
            stride: *stride,
            ..base
        },
    };
    let (ho, wo) = shape.out_hw();
    if [shape.out_channels, ho, wo] != out {
        return Err(RuntimeError::config(format!(
            "a term {src:?} -> {out:?} does not map to a convolution ({shape:?})"
        )));
    }
    Ok(shape)
}

/// The weights of a term in the order of its [`ConvShape`].
fn term_weights<'a>(op: &'a TermOp, shape: &ConvShape) -> Cow<'a, [i64]> {
    match op {
        TermOp::Conv { weight, .. } | TermOp::Dense { weight, .. } => Cow::Borrowed(weight),
        TermOp::ChannelScale { coef } => Cow::Borrowed(coef),
        TermOp::AvgPool { coef, .. } => Cow::Owned(
            coef.iter()
                .flat_map(|&c| std::iter::repeat_n(c, shape.kh * shape.kw))
                .collect(),
        ),
    }
}

impl HePreprocessing {
    /// Layouts for every term of `prog` (public information only); randomness from the
    /// OS CSPRNG.
    pub fn new(prog: &FixedProgram) -> Result<Self> {
        Self::with_rng(prog, RngSource::Entropy)
    }

    /// [`Self::new`] drawing its randomness from `rng` (seeded: tests only).
    pub fn with_rng(prog: &FixedProgram, rng: RngSource) -> Result<Self> {
        let params = HeParams::new(prog.params.ring_bits)?;
        let layers = prog
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                l.terms
                    .iter()
                    .map(|t| {
                        let shape = term_shape(prog.values[t.input], &t.op, l.out_shape)
                            .map_err(|e| e.context(&format!("layer {i}")))?;
                        let layout = ConvLayout::new(shape, POLY_DEGREE)
                            .map_err(|e| RuntimeError::from(e).context(&format!("layer {i}")))?;
                        Ok(HeTerm {
                            input: t.input,
                            layout,
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(HePreprocessing {
            params,
            layers,
            client: None,
            server: None,
            key_inferences: u32::MAX,
            key_uses: 0,
            keys: 0,
            rng,
            kernels: KernelCache::new(0),
        }
        .with_kernel_cache(DEFAULT_KERNEL_CACHE_BYTES))
    }

    /// Sets the server's kernel cache budget in bytes (0: no cache), dropping what it
    /// holds; a budget above what all the model's kernel polynomials take is cut to that.
    pub fn set_kernel_cache_bytes(&mut self, budget: u64) {
        let poly = (MODULI.len() * POLY_DEGREE * 8) as u64;
        let all: u64 = self
            .layers
            .iter()
            .flatten()
            .map(|t| {
                let l = &t.layout;
                (0..l.groups)
                    .map(|g| l.blocks_of_group(g).len() as u64)
                    .sum::<u64>()
            })
            .sum::<u64>()
            * poly;
        self.kernels = KernelCache::new(budget.min(all));
    }

    fn with_kernel_cache(mut self, budget: u64) -> Self {
        self.set_kernel_cache_bytes(budget);
        self
    }

    /// Keys set up so far in the session (the client's key was drawn this many times).
    pub fn keys(&self) -> u32 {
        self.keys
    }
}

impl Preprocessing for HePreprocessing {
    fn begin_inference(&mut self) {
        if self.key_uses >= self.key_inferences {
            // The key has served its inferences: both sides drop it, and the first layer
            // of this inference sets up a fresh one.
            self.client = None;
            self.server = None;
            self.key_uses = 0;
        }
        self.key_uses += 1;
    }

    /// Every term releases one flooded coefficient per output position.
    fn flooded_per_inference(&self) -> u64 {
        self.layers
            .iter()
            .flatten()
            .map(|t| t.layout.shape.out_len() as u64)
            .sum()
    }

    fn set_key_inferences(&mut self, n: u32) {
        self.key_inferences = n.max(1);
    }

    /// The largest term: its input ciphertexts as received and parsed (about three
    /// polynomials each), its results (two each) and the kernels of the groups computed in
    /// parallel, plus the client's public key; a polynomial is `3 x 8192` residues. Plus
    /// the kernel cache's budget, which the session holds from its first inference on.
    fn server_peak_bytes(&self, _plan: &Plan) -> u64 {
        let poly = (MODULI.len() * POLY_DEGREE * 8) as u64;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let term = |t: &HeTerm| {
            let l = &t.layout;
            (3 * l.input_cts() + 2 * l.output_cts() + l.channel_blocks * l.groups.min(threads))
                as u64
                * poly
        };
        let largest = self.layers.iter().flatten().map(term).max().unwrap_or(0);
        largest + 2 * poly + self.kernels.budget()
    }

    fn server_layer(
        &mut self,
        ch: &mut dyn Channel,
        prog: &FixedProgram,
        plan: &Plan,
        i: usize,
        s: &[u64],
    ) -> Result<()> {
        let lmask = plan.ring.mask();
        if self.server.is_none() {
            let he = HeServer::setup(ch, self.params.clone())
                .map_err(|e| RuntimeError::from(e).context("HE key setup"))?;
            self.server = Some(he);
            self.keys += 1;
        }
        let (Some(he), Some(terms)) = (&self.server, self.layers.get(i)) else {
            return Err(RuntimeError::config(format!("no layer {i} in the HE plan")));
        };
        let mut rng = self.rng.prg();
        let mut rest = s.to_vec();
        for (k, (term, t)) in terms.iter().zip(&prog.layers[i].terms).enumerate() {
            let part = if k + 1 == terms.len() {
                std::mem::take(&mut rest)
            } else {
                let p = plan.ring.random(&mut rng, s.len());
                rest.iter_mut()
                    .zip(&p)
                    .for_each(|(r, &p)| *r = r.wrapping_sub(p) & lmask);
                p
            };
            let w = term_weights(&t.op, &term.layout.shape);
            let key = ((i as u64) << 16) | k as u64;
            he.term_cached_with_rng(
                ch,
                &term.layout,
                &w,
                &part,
                &mut rng,
                Some((&mut self.kernels, key)),
            )?;
        }
        Ok(())
    }

    fn client_send(
        &mut self,
        ch: &mut dyn Channel,
        _plan: &Plan,
        i: usize,
        masks: &[Option<Vec<u64>>],
    ) -> Result<()> {
        if self.client.is_none() {
            let mut rng = self.rng.prg();
            self.client = Some(HeClient::setup_with_rng(ch, self.params.clone(), &mut rng)?);
            self.keys += 1;
        }
        let (Some(he), Some(terms)) = (&self.client, self.layers.get(i)) else {
            return Err(RuntimeError::config(format!("no layer {i} in the HE plan")));
        };
        let mut rng = self.rng.prg();
        for term in terms {
            let r = masks
                .get(term.input)
                .and_then(Option::as_ref)
                .ok_or_else(|| {
                    RuntimeError::config(format!(
                        "layer {i} reads value {} before it exists",
                        term.input
                    ))
                })?;
            he.term_send(ch, &term.layout, r, &mut rng)?;
        }
        Ok(())
    }

    fn client_recv(&mut self, ch: &mut dyn Channel, plan: &Plan, i: usize) -> Result<Vec<u64>> {
        let lmask = plan.ring.mask();
        let (Some(he), Some(terms), Some(layer)) =
            (&self.client, self.layers.get(i), plan.layers.get(i))
        else {
            return Err(RuntimeError::config(format!(
                "layer {i}'s HE results asked for before its inputs were sent"
            )));
        };
        let mut c = vec![0u64; layer.len];
        for term in terms {
            let part = he.term_recv(ch, &term.layout)?;
            c.iter_mut()
                .zip(part)
                .for_each(|(c, p)| *c = c.wrapping_add(p) & lmask);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dealer_does_not_print_the_client_masks() {
        let d = InsecureDealer {
            seen: vec![Some(vec![123_456_789, -987_654_321]), None],
            sent: vec![true, false],
        };
        let s = format!("{d:?}");
        assert!(!s.contains("123456789") && !s.contains("987654321"), "{s}");
        assert!(s.contains("masks_seen: 1"), "{s}");
    }
}

/// Prints every ResNet18 term's layout and ciphertext counts (a diagnostic for the HE
/// cost work in `docs/he.md`): `cargo test --release -p pi-runtime --lib term_layouts --
/// --ignored --nocapture`.
#[cfg(test)]
mod term_layouts {
    use super::*;

    #[test]
    #[ignore]
    fn resnet18_term_layouts() {
        use models::data::Normalization;
        use models::{Model, PublicModel, arch};
        let g = arch::build("resnet18", 10, [3, 32, 32]).unwrap();
        let p = PublicModel::all_kept("resnet18", g, Normalization::cifar10(), Default::default())
            .unwrap();
        let m = Model::random(p, 1).unwrap();
        let prog = FixedProgram::lower(&m).unwrap();
        let he = HePreprocessing::new(&prog).unwrap();
        let (mut inputs, mut outputs, mut positions) = (0, 0, 0);
        for (i, terms) in he.layers.iter().enumerate() {
            for t in terms {
                let l = &t.layout;
                let pos: usize = (0..l.tiles)
                    .flat_map(|tile| (0..l.groups).map(move |g| (tile, g)))
                    .map(|(tile, g)| l.output_positions(tile, g).len())
                    .sum();
                inputs += l.input_cts();
                outputs += l.output_cts();
                positions += pos;
                eprintln!(
                    "layer {i} value {} {:?}: {} in, {} out, {} products, {} tiles of {} rows, \
                     C' {} M' {}, {pos} positions",
                    t.input,
                    l.shape,
                    l.input_cts(),
                    l.output_cts(),
                    l.products(),
                    l.tiles,
                    l.tile_rows,
                    l.channels_per_block,
                    l.outputs_per_poly
                );
            }
        }
        eprintln!("total: {inputs} input, {outputs} output ciphertexts, {positions} positions");
    }
}
