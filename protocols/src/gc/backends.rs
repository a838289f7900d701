//! The four circuit backends.

use std::collections::VecDeque;

use rand_core::{CryptoRng, RngCore};

use super::circuit::{Backend, Party};
use crate::aes_hash::TccrHash;
use crate::block::{Block, Delta};
use crate::error::{ProtocolError, Result};

// ---------------------------------------------------------------------------------------
// Plaintext
// ---------------------------------------------------------------------------------------

/// Evaluates circuits on plain booleans.
#[derive(Clone, Default)]
pub struct PlainBackend {
    garbler_inputs: VecDeque<bool>,
    evaluator_inputs: VecDeque<bool>,
    outputs: Vec<bool>,
}

/// Prints sizes only: the inputs and outputs are the parties' plain values.
impl core::fmt::Debug for PlainBackend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PlainBackend")
            .field("garbler_inputs", &self.garbler_inputs.len())
            .field("evaluator_inputs", &self.evaluator_inputs.len())
            .field("outputs", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

impl PlainBackend {
    /// A backend whose inputs are taken, in order, from the two queues.
    pub fn new(garbler_inputs: Vec<bool>, evaluator_inputs: Vec<bool>) -> Self {
        PlainBackend {
            garbler_inputs: garbler_inputs.into(),
            evaluator_inputs: evaluator_inputs.into(),
            outputs: Vec::new(),
        }
    }

    /// The output values so far.
    pub fn outputs(&self) -> &[bool] {
        &self.outputs
    }

    /// Consumes the backend, returning the output values.
    pub fn into_outputs(self) -> Vec<bool> {
        self.outputs
    }
}

impl Backend for PlainBackend {
    type Wire = bool;

    fn input(&mut self, owner: Party) -> Result<bool> {
        let q = match owner {
            Party::Garbler => &mut self.garbler_inputs,
            Party::Evaluator => &mut self.evaluator_inputs,
        };
        q.pop_front()
            .ok_or_else(|| ProtocolError::arg(format!("no more {owner:?} input values")))
    }

    fn constant(&mut self, value: bool) -> Result<bool> {
        Ok(value)
    }

    fn xor(&mut self, a: &bool, b: &bool) -> bool {
        a ^ b
    }

    fn not(&mut self, a: &bool) -> bool {
        !a
    }

    fn and(&mut self, a: &bool, b: &bool) -> Result<bool> {
        Ok(a & b)
    }

    fn output(&mut self, a: &bool) -> Result<()> {
        self.outputs.push(*a);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Gate counter
// ---------------------------------------------------------------------------------------

/// Gate and wire counts of a circuit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GateCounts {
    /// AND gates (each costs two 16-byte ciphertexts when garbled), evaluator-known ones
    /// included.
    pub and: usize,
    /// Of those, AND gates with an evaluator-known input
    /// ([`Backend::and_evaluator_known`]; one ciphertext each).
    pub and_known: usize,
    /// XOR gates (free).
    pub xor: usize,
    /// NOT gates (free).
    pub not: usize,
    /// Constant wires (each costs one 16-byte label in the tables when garbled).
    pub constants: usize,
    /// Input wires owned by the garbler.
    pub garbler_inputs: usize,
    /// Input wires owned by the evaluator.
    pub evaluator_inputs: usize,
    /// Output wires.
    pub outputs: usize,
}

impl GateCounts {
    /// Size of the garbled tables in bytes: 32 per AND gate, 16 per evaluator-known AND
    /// gate and 16 per constant.
    pub fn table_bytes(&self) -> usize {
        32 * (self.and - self.and_known) + 16 * self.and_known + 16 * self.constants
    }
}

/// Counts gates without computing anything.
#[derive(Clone, Debug, Default)]
pub struct GateCounter {
    counts: GateCounts,
}

impl GateCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counts so far.
    pub fn counts(&self) -> GateCounts {
        self.counts
    }
}

impl Backend for GateCounter {
    type Wire = ();

    fn input(&mut self, owner: Party) -> Result<()> {
        match owner {
            Party::Garbler => self.counts.garbler_inputs += 1,
            Party::Evaluator => self.counts.evaluator_inputs += 1,
        }
        Ok(())
    }

    fn constant(&mut self, _value: bool) -> Result<()> {
        self.counts.constants += 1;
        Ok(())
    }

    fn xor(&mut self, _a: &(), _b: &()) {
        self.counts.xor += 1;
    }

    fn not(&mut self, _a: &()) {
        self.counts.not += 1;
    }

    fn and(&mut self, _a: &(), _b: &()) -> Result<()> {
        self.counts.and += 1;
        Ok(())
    }

    fn and_evaluator_known(&mut self, _a: &(), _k: &(), _known: usize) -> Result<()> {
        self.counts.and += 1;
        self.counts.and_known += 1;
        Ok(())
    }

    fn output(&mut self, _a: &()) -> Result<()> {
        self.counts.outputs += 1;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Garbling
// ---------------------------------------------------------------------------------------

/// Tweak for hash call `k` of a garbling with batch id `batch`.
#[inline]
fn tweak(batch: u64, k: u64) -> Block {
    Block::from_halves(batch, k)
}

/// The garbled tables of one circuit (or one batch of circuits), in gate order.
///
/// Each AND gate contributes two blocks `(T_G, T_E)`; each constant wire contributes
/// the evaluator's label of that constant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GarbledTables {
    /// The batch id used in the hash tweaks.
    pub batch_id: u64,
    /// The table blocks, in the order the evaluator consumes them.
    pub blocks: Vec<Block>,
}

impl GarbledTables {
    /// Size in bytes of the table blocks.
    pub fn byte_len(&self) -> usize {
        16 * self.blocks.len()
    }

    /// Serialises as `batch_id (u64 LE) ‖ block count (u64 LE) ‖ blocks`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.byte_len());
        out.extend_from_slice(&self.batch_id.to_le_bytes());
        out.extend_from_slice(&(self.blocks.len() as u64).to_le_bytes());
        for b in &self.blocks {
            out.extend_from_slice(&b.to_bytes());
        }
        out
    }

    /// Parses the output of [`GarbledTables::to_bytes`]. The length must match exactly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (batch_id, rest) =
            read_u64(bytes).ok_or_else(|| ProtocolError::peer("tables: short header"))?;
        let (count, rest) =
            read_u64(rest).ok_or_else(|| ProtocolError::peer("tables: short header"))?;
        if (rest.len() % 16 != 0) || (rest.len() / 16) as u64 != count {
            return Err(ProtocolError::peer(format!(
                "tables: header says {count} blocks, body holds {} bytes",
                rest.len()
            )));
        }
        Ok(GarbledTables {
            batch_id,
            blocks: blocks_from_bytes(rest),
        })
    }
}

pub(crate) fn read_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*head), rest))
}

pub(crate) fn blocks_from_bytes(bytes: &[u8]) -> Vec<Block> {
    bytes
        .chunks_exact(16)
        .map(|c| {
            let mut a = [0u8; 16];
            a.copy_from_slice(c);
            Block::from_bytes(a)
        })
        .collect()
}

/// Garbles circuits. Wires are zero labels.
pub struct Garbler<R> {
    delta: Delta,
    hash: TccrHash,
    rng: R,
    batch_id: u64,
    gate: u64,
    tables: Vec<Block>,
    preset_evaluator_labels: Option<VecDeque<Block>>,
    garbler_zero_labels: Vec<Block>,
    evaluator_zero_labels: Vec<Block>,
    decode: Vec<bool>,
}

impl<R> core::fmt::Debug for Garbler<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Garbler")
            .field("batch_id", &self.batch_id)
            .field("and_gates", &self.gate)
            .finish_non_exhaustive()
    }
}

/// Everything the garbler keeps after garbling (never sent as a whole).
#[derive(Clone)]
pub struct GarblerSecrets {
    /// The global offset.
    pub delta: Delta,
    /// Zero labels of the garbler-owned inputs, in declaration order.
    pub garbler_zero_labels: Vec<Block>,
    /// Zero labels of the evaluator-owned inputs, in declaration order.
    pub evaluator_zero_labels: Vec<Block>,
    /// Output decoding bits (colour bit of each output's zero label), in output order.
    pub decode: Vec<bool>,
}

/// Prints sizes only: `Δ`, the zero labels and the decoding bits are secret.
impl core::fmt::Debug for GarblerSecrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GarblerSecrets")
            .field("garbler_labels", &self.garbler_zero_labels.len())
            .field("evaluator_labels", &self.evaluator_zero_labels.len())
            .field("outputs", &self.decode.len())
            .finish_non_exhaustive()
    }
}

impl<R: RngCore + CryptoRng> Garbler<R> {
    /// A garbler with offset `delta`, drawing fresh zero labels from `rng`.
    pub fn new(delta: Delta, batch_id: u64, rng: R) -> Self {
        Garbler {
            delta,
            hash: TccrHash::new(),
            rng,
            batch_id,
            gate: 0,
            tables: Vec::new(),
            preset_evaluator_labels: None,
            garbler_zero_labels: Vec::new(),
            evaluator_zero_labels: Vec::new(),
            decode: Vec::new(),
        }
    }

    /// A garbler whose evaluator-owned inputs take their zero labels, in order, from
    /// `labels` (e.g. the sender's output of a correlated OT with the same `Δ`).
    /// Declaring more evaluator inputs than there are labels is an error.
    pub fn with_evaluator_labels(delta: Delta, batch_id: u64, labels: Vec<Block>, rng: R) -> Self {
        let mut g = Self::new(delta, batch_id, rng);
        g.preset_evaluator_labels = Some(labels.into());
        g
    }

    /// Reserves room for `blocks` table blocks.
    pub fn reserve_tables(&mut self, blocks: usize) {
        self.tables.reserve(blocks);
    }

    /// The offset `Δ`.
    pub fn delta(&self) -> Delta {
        self.delta
    }

    /// Finishes garbling: the tables (to send or store) and the garbler's secrets.
    /// Fails if preset evaluator labels were left unused.
    pub fn finish(self) -> Result<(GarbledTables, GarblerSecrets)> {
        if let Some(left) = self
            .preset_evaluator_labels
            .as_ref()
            .filter(|q| !q.is_empty())
        {
            return Err(ProtocolError::arg(format!(
                "{} preset evaluator labels were not used",
                left.len()
            )));
        }
        Ok((
            GarbledTables {
                batch_id: self.batch_id,
                blocks: self.tables,
            },
            GarblerSecrets {
                delta: self.delta,
                garbler_zero_labels: self.garbler_zero_labels,
                evaluator_zero_labels: self.evaluator_zero_labels,
                decode: self.decode,
            },
        ))
    }
}

impl<R: RngCore + CryptoRng> Backend for Garbler<R> {
    type Wire = Block;

    fn input(&mut self, owner: Party) -> Result<Block> {
        match owner {
            Party::Garbler => {
                let w = Block::random(&mut self.rng);
                self.garbler_zero_labels.push(w);
                Ok(w)
            }
            Party::Evaluator => {
                let w = match self.preset_evaluator_labels.as_mut() {
                    Some(q) => q
                        .pop_front()
                        .ok_or_else(|| ProtocolError::arg("preset evaluator labels exhausted"))?,
                    None => Block::random(&mut self.rng),
                };
                self.evaluator_zero_labels.push(w);
                Ok(w)
            }
        }
    }

    fn constant(&mut self, value: bool) -> Result<Block> {
        let w = Block::random(&mut self.rng);
        self.tables.push(w ^ self.delta.block().select(value));
        Ok(w)
    }

    #[inline]
    fn xor(&mut self, a: &Block, b: &Block) -> Block {
        *a ^ *b
    }

    #[inline]
    fn not(&mut self, a: &Block) -> Block {
        *a ^ self.delta.block()
    }

    #[inline]
    fn and(&mut self, a: &Block, b: &Block) -> Result<Block> {
        let (a, b, d) = (*a, *b, self.delta.block());
        let (pa, pb) = (a.lsb(), b.lsb());
        let j0 = tweak(self.batch_id, 2 * self.gate);
        let j1 = tweak(self.batch_id, 2 * self.gate + 1);
        self.gate += 1;
        let [ha0, ha1, hb0, hb1] = self.hash.hash_n([a, a ^ d, b, b ^ d], [j0, j0, j1, j1]);
        // Generator half gate.
        let tg = ha0 ^ ha1 ^ d.select(pb);
        let wg = ha0 ^ tg.select(pa);
        // Evaluator half gate.
        let te = hb0 ^ hb1 ^ a;
        let we = hb0 ^ (te ^ a).select(pb);
        self.tables.push(tg);
        self.tables.push(te);
        Ok(wg ^ we)
    }

    fn output(&mut self, a: &Block) -> Result<()> {
        self.decode.push(a.lsb());
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------

/// Evaluates garbled circuits. Wires are active labels.
pub struct Evaluator<'a> {
    hash: TccrHash,
    batch_id: u64,
    gate: u64,
    tables: &'a [Block],
    pos: usize,
    garbler_labels: &'a [Block],
    garbler_pos: usize,
    evaluator_labels: &'a [Block],
    evaluator_pos: usize,
    colours: Vec<bool>,
}

/// Prints positions only: the active labels are secret from the garbler (with its zero
/// labels they give the evaluator's inputs).
impl core::fmt::Debug for Evaluator<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Evaluator")
            .field("batch_id", &self.batch_id)
            .field("and_gates", &self.gate)
            .field("garbler_labels", &self.garbler_labels.len())
            .field("evaluator_labels", &self.evaluator_labels.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Evaluator<'a> {
    /// An evaluator over `tables`, with the active labels of the garbler's and the
    /// evaluator's inputs (each in declaration order).
    pub fn new(
        tables: &'a GarbledTables,
        garbler_labels: &'a [Block],
        evaluator_labels: &'a [Block],
    ) -> Self {
        Self::from_parts(
            tables.batch_id,
            &tables.blocks,
            garbler_labels,
            evaluator_labels,
        )
    }

    /// Like [`Evaluator::new`] with the tables given as a batch id and a block slice.
    pub fn from_parts(
        batch_id: u64,
        tables: &'a [Block],
        garbler_labels: &'a [Block],
        evaluator_labels: &'a [Block],
    ) -> Self {
        Evaluator {
            hash: TccrHash::new(),
            batch_id,
            gate: 0,
            tables,
            pos: 0,
            garbler_labels,
            garbler_pos: 0,
            evaluator_labels,
            evaluator_pos: 0,
            colours: Vec::new(),
        }
    }

    /// The output colour bits so far (send these to the garbler for decoding).
    pub fn colours(&self) -> &[bool] {
        &self.colours
    }

    /// Finishes: returns the output colour bits. Fails if table blocks or input labels
    /// were left over (the tables do not belong to this circuit).
    pub fn finish(self) -> Result<Vec<bool>> {
        if self.pos != self.tables.len() {
            return Err(ProtocolError::peer(format!(
                "garbled tables have {} unused blocks",
                self.tables.len() - self.pos
            )));
        }
        if self.garbler_pos != self.garbler_labels.len() {
            return Err(ProtocolError::peer("more garbler input labels than inputs"));
        }
        if self.evaluator_pos != self.evaluator_labels.len() {
            return Err(ProtocolError::arg(
                "more evaluator input labels than inputs",
            ));
        }
        Ok(self.colours)
    }

    #[inline]
    fn next_table(&mut self) -> Result<Block> {
        let b = self
            .tables
            .get(self.pos)
            .copied()
            .ok_or_else(|| ProtocolError::peer("garbled tables too short"))?;
        self.pos += 1;
        Ok(b)
    }
}

impl Backend for Evaluator<'_> {
    type Wire = Block;

    fn input(&mut self, owner: Party) -> Result<Block> {
        match owner {
            Party::Garbler => {
                let w = self
                    .garbler_labels
                    .get(self.garbler_pos)
                    .copied()
                    .ok_or_else(|| ProtocolError::peer("too few garbler input labels"))?;
                self.garbler_pos += 1;
                Ok(w)
            }
            Party::Evaluator => {
                let w = self
                    .evaluator_labels
                    .get(self.evaluator_pos)
                    .copied()
                    .ok_or_else(|| ProtocolError::arg("too few evaluator input labels"))?;
                self.evaluator_pos += 1;
                Ok(w)
            }
        }
    }

    fn constant(&mut self, _value: bool) -> Result<Block> {
        self.next_table()
    }

    #[inline]
    fn xor(&mut self, a: &Block, b: &Block) -> Block {
        *a ^ *b
    }

    #[inline]
    fn not(&mut self, a: &Block) -> Block {
        *a
    }

    #[inline]
    fn and(&mut self, a: &Block, b: &Block) -> Result<Block> {
        let (a, b) = (*a, *b);
        if self.pos + 2 > self.tables.len() {
            return Err(ProtocolError::peer("garbled tables too short"));
        }
        let tg = self.tables[self.pos];
        let te = self.tables[self.pos + 1];
        self.pos += 2;
        let j0 = tweak(self.batch_id, 2 * self.gate);
        let j1 = tweak(self.batch_id, 2 * self.gate + 1);
        self.gate += 1;
        let [ha, hb] = self.hash.hash_n([a, b], [j0, j1]);
        let wg = ha ^ tg.select(a.lsb());
        let we = hb ^ (te ^ a).select(b.lsb());
        Ok(wg ^ we)
    }

    fn output(&mut self, a: &Block) -> Result<()> {
        self.colours.push(a.lsb());
        Ok(())
    }
}

/// Encodes input values as active labels: `W⁰ ⊕ v·Δ`. Returns `None` if lengths differ.
pub fn encode_labels(zero_labels: &[Block], values: &[bool], delta: Delta) -> Option<Vec<Block>> {
    (zero_labels.len() == values.len()).then(|| {
        zero_labels
            .iter()
            .zip(values)
            .map(|(w, &v)| *w ^ delta.block().select(v))
            .collect()
    })
}
