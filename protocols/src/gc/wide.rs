//! Lane-parallel garbling and evaluation: up to [`LANES`] copies of the same circuit run
//! in lockstep, so that each AND layer hashes `4 × LANES` (garbler) or `2 × LANES`
//! (evaluator) blocks in one batch and AES pipelines stay full even along carry chains.
//!
//! Wires are `[Block; LANES]` (lane `j` is copy `j`; lanes `>= lanes` are ignored).
//! Inputs and outputs are handled by the caller (the batched ReLU API), so `input`,
//! `constant` and `output` return an error. Table layout: for each AND gate in circuit
//! order, for each active lane, `(T_G, T_E)`; lane `j` of the `k`-th AND uses gate id
//! `first_gate + k × lanes + j`, i.e. tweaks `(batch_id, 2·id)` and `(batch_id, 2·id + 1)`.

use super::Backend;
use super::Party;
use crate::aes_hash::TccrHash;
use crate::block::Block;
use crate::error::{ProtocolError, Result};

/// Number of circuit copies processed together.
pub const LANES: usize = 8;

#[inline]
fn tweak(batch: u64, k: u64) -> Block {
    Block::from_halves(batch, k)
}

fn unsupported<T>() -> Result<T> {
    Err(ProtocolError::arg(
        "lane-parallel backends take inputs and outputs explicitly",
    ))
}

/// Lane-parallel garbler core.
pub(crate) struct WideGarbler<'a> {
    pub(crate) delta: Block,
    pub(crate) hash: &'a TccrHash,
    pub(crate) batch_id: u64,
    pub(crate) gate: u64,
    pub(crate) lanes: usize,
    pub(crate) tables: &'a mut Vec<Block>,
}

impl Backend for WideGarbler<'_> {
    type Wire = [Block; LANES];

    fn input(&mut self, _owner: Party) -> Result<Self::Wire> {
        unsupported()
    }

    fn constant(&mut self, _value: bool) -> Result<Self::Wire> {
        unsupported()
    }

    #[inline]
    fn xor(&mut self, a: &Self::Wire, b: &Self::Wire) -> Self::Wire {
        core::array::from_fn(|j| a[j] ^ b[j])
    }

    #[inline]
    fn not(&mut self, a: &Self::Wire) -> Self::Wire {
        core::array::from_fn(|j| a[j] ^ self.delta)
    }

    #[inline]
    fn and(&mut self, a: &Self::Wire, b: &Self::Wire) -> Result<Self::Wire> {
        let d = self.delta;
        let n = self.lanes;
        let mut x = [Block::ZERO; 4 * LANES];
        let mut t = [Block::ZERO; 4 * LANES];
        for j in 0..n {
            let id = self.gate + j as u64;
            let j0 = tweak(self.batch_id, 2 * id);
            let j1 = tweak(self.batch_id, 2 * id + 1);
            x[4 * j..4 * j + 4].copy_from_slice(&[a[j], a[j] ^ d, b[j], b[j] ^ d]);
            t[4 * j..4 * j + 4].copy_from_slice(&[j0, j0, j1, j1]);
        }
        self.gate += n as u64;
        self.hash.hash_many(&mut x[..4 * n], &t[..4 * n]);
        let mut out = [Block::ZERO; LANES];
        for j in 0..n {
            let (ha0, ha1, hb0, hb1) = (x[4 * j], x[4 * j + 1], x[4 * j + 2], x[4 * j + 3]);
            let (pa, pb) = (a[j].lsb(), b[j].lsb());
            let tg = ha0 ^ ha1 ^ d.select(pb);
            let wg = ha0 ^ tg.select(pa);
            let te = hb0 ^ hb1 ^ a[j];
            let we = hb0 ^ (te ^ a[j]).select(pb);
            self.tables.push(tg);
            self.tables.push(te);
            out[j] = wg ^ we;
        }
        Ok(out)
    }

    fn output(&mut self, _a: &Self::Wire) -> Result<()> {
        unsupported()
    }
}

/// Lane-parallel evaluator core.
pub(crate) struct WideEvaluator<'a> {
    pub(crate) hash: &'a TccrHash,
    pub(crate) batch_id: u64,
    pub(crate) gate: u64,
    pub(crate) lanes: usize,
    pub(crate) tables: &'a [Block],
    pub(crate) pos: usize,
}

impl Backend for WideEvaluator<'_> {
    type Wire = [Block; LANES];

    fn input(&mut self, _owner: Party) -> Result<Self::Wire> {
        unsupported()
    }

    fn constant(&mut self, _value: bool) -> Result<Self::Wire> {
        unsupported()
    }

    #[inline]
    fn xor(&mut self, a: &Self::Wire, b: &Self::Wire) -> Self::Wire {
        core::array::from_fn(|j| a[j] ^ b[j])
    }

    #[inline]
    fn not(&mut self, a: &Self::Wire) -> Self::Wire {
        *a
    }

    #[inline]
    fn and(&mut self, a: &Self::Wire, b: &Self::Wire) -> Result<Self::Wire> {
        let n = self.lanes;
        let tabs = self
            .tables
            .get(self.pos..self.pos + 2 * n)
            .ok_or_else(|| ProtocolError::peer("garbled tables too short"))?;
        self.pos += 2 * n;
        let mut x = [Block::ZERO; 2 * LANES];
        let mut t = [Block::ZERO; 2 * LANES];
        for j in 0..n {
            let id = self.gate + j as u64;
            x[2 * j] = a[j];
            x[2 * j + 1] = b[j];
            t[2 * j] = tweak(self.batch_id, 2 * id);
            t[2 * j + 1] = tweak(self.batch_id, 2 * id + 1);
        }
        self.gate += n as u64;
        self.hash.hash_many(&mut x[..2 * n], &t[..2 * n]);
        let mut out = [Block::ZERO; LANES];
        for j in 0..n {
            let (tg, te) = (tabs[2 * j], tabs[2 * j + 1]);
            let wg = x[2 * j] ^ tg.select(a[j].lsb());
            let we = x[2 * j + 1] ^ (te ^ a[j]).select(b[j].lsb());
            out[j] = wg ^ we;
        }
        Ok(out)
    }

    fn output(&mut self, _a: &Self::Wire) -> Result<()> {
        unsupported()
    }
}
