//! Linear-layer preprocessing: how the client obtains `c_i = L_i(r_inputs) - s_i`.
//!
//! The secure way is homomorphic encryption (the client encrypts its masks, the server
//! evaluates `L_i` on the ciphertexts and subtracts `s_i`); it is tracked by the project's
//! HE-preprocessing issue and not implemented yet. Until then the only implementation is
//! [`InsecureDealer`]: **the client sends its masks in the clear**, so the server can
//! unmask the client's input. It exists to develop and test everything else; the binaries
//! accept it only with `--insecure-dealer`, warn on every run and mark every metric
//! record as insecure.

use models::fixed::FixedProgram;
use protocols::channel::{Channel, ChannelExt};

use crate::engine::{Plan, recv_ring, ring_mask};
use crate::error::{Result, RuntimeError};

/// The preprocessing methods a session can negotiate (wire code in parentheses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The client reveals its masks (1). Not private.
    InsecureDealer,
}

impl Method {
    /// Wire code.
    pub fn code(self) -> u8 {
        match self {
            Method::InsecureDealer => 1,
        }
    }

    /// From a wire code.
    pub fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(Method::InsecureDealer),
            _ => None,
        }
    }

    /// True when the method protects the client's input.
    pub fn is_secure(self) -> bool {
        match self {
            Method::InsecureDealer => false,
        }
    }

    /// A fresh instance for one session.
    pub fn instance(self) -> Box<dyn Preprocessing + Send> {
        match self {
            Method::InsecureDealer => Box::new(InsecureDealer::default()),
        }
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

    /// Client: returns `L_i(r) - s` for layer `i`; `masks[v]` holds the mask of every
    /// value produced so far.
    fn client_layer(
        &mut self,
        ch: &mut dyn Channel,
        plan: &Plan,
        i: usize,
        masks: &[Option<Vec<u64>>],
    ) -> Result<Vec<u64>>;
}

/// The insecure stand-in: the client sends each value's mask once, when a layer first
/// reads it; the server replies with `L_i(r) - s_i`.
#[derive(Debug, Default)]
pub struct InsecureDealer {
    /// Server: the client's masks received so far (signed ring representation).
    seen: Vec<Option<Vec<i64>>>,
    /// Client: which masks were sent.
    sent: Vec<bool>,
}

impl Preprocessing for InsecureDealer {
    fn begin_inference(&mut self) {
        self.seen.clear();
        self.sent.clear();
    }

    fn server_layer(
        &mut self,
        ch: &mut dyn Channel,
        prog: &FixedProgram,
        plan: &Plan,
        i: usize,
        s: &[u64],
    ) -> Result<()> {
        let lmask = ring_mask(plan.fixed.ring_bits);
        self.seen.resize(plan.value_lens.len(), None);
        for &v in &plan.layers[i].inputs {
            if self.seen[v].is_none() {
                let r = recv_ring(ch, plan.value_lens[v], lmask, "dealer mask")?;
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

    fn client_layer(
        &mut self,
        ch: &mut dyn Channel,
        plan: &Plan,
        i: usize,
        masks: &[Option<Vec<u64>>],
    ) -> Result<Vec<u64>> {
        let lmask = ring_mask(plan.fixed.ring_bits);
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
        recv_ring(ch, plan.layers[i].len, lmask, "dealer correlation")
    }
}
