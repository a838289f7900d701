//! The ReLU gadget used between two linear layers, and its batched garble/evaluate API.
//!
//! Inputs (per gadget, in this declaration order):
//! * `a` (`m` bits, garbler/server): `(server share + 2^(f-1)) mod 2^m`;
//! * `b` (`m` bits, evaluator/client): `client share mod 2^m`;
//! * `q` (`l` bits, evaluator/client): `(-r') mod 2^l`, `r'` the client's next-layer mask.
//!
//! The circuit computes `z = (a + b) mod 2^m` read as a signed `m`-bit value,
//! `t = z >> f` (arithmetic; only wires), `u = relu(t)` and outputs `o = (u + q) mod 2^l`
//! (`l` bits). Only the garbler can decode `o`; it is the server's share of the next
//! layer's masked input `x' - r'`.
//!
//! AND gates: `(m - 1)` for the `m`-bit adder, `(m - f - 1)` for the ReLU (bits
//! `f..m-2` of `z` masked with `¬sign`), `(l - 1)` for the final adder:
//! `(m - 1) + (m - f - 1) + (l - 1)`, which is **116** for `l = 61, f = 14, m = 36`,
//! i.e. 3,712 bytes of garbled tables per ReLU.
//!
//! The two-party protocol that runs a batch with correlated OT over a channel is
//! [`crate::twopc`]; it sits over `gc` and [`crate::ot`], which do not import each other.

use rand_core::{CryptoRng, RngCore};

use super::backends::{blocks_from_bytes, read_u64};
use super::gadgets::{add_mod, add_mod_zero_extended};
use super::wide::{LANES, WideEvaluator, WideGarbler};
use super::{Backend, Delta, GarbledTables, GarblerSecrets, Party, bits_to_u64};
use crate::aes_hash::AesCipher;
use crate::block::Block;
use crate::channel::{Channel, ChannelExt};
use crate::error::{ProtocolError, Result};
use crate::prg::Prg;

/// Parameters of the ReLU gadget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReluParams {
    /// Ring bit width `l` (shares live in `Z_{2^l}`).
    pub l: u32,
    /// Fractional bits `f` dropped by the truncation.
    pub f: u32,
    /// Low bits `m` of each share read by the circuit (`|y| < 2^(m-1)` required).
    pub m: u32,
}

impl Default for ReluParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `2^bits - 1` for `bits <= 64`.
#[inline]
pub(crate) const fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

impl ReluParams {
    /// The project's parameters: `l = 61, f = 14, m = 36` (the defaults of
    /// `models::fixed::FixedPointParams`; see `docs/fixed-point.md`).
    pub const DEFAULT: ReluParams = ReluParams {
        l: 61,
        f: 14,
        m: 36,
    };

    /// Checks `1 <= f`, `f + 2 <= m <= l <= 64`.
    pub fn validate(&self) -> Result<()> {
        let f_ok = self.f >= 1 && self.f.checked_add(2).is_some_and(|x| x <= self.m);
        if f_ok && self.m <= self.l && self.l <= 64 {
            Ok(())
        } else {
            Err(ProtocolError::arg(format!(
                "invalid ReLU parameters {self:?}: need 1 <= f, f + 2 <= m <= l <= 64"
            )))
        }
    }

    /// AND gates per gadget: `(m - 1) + (m - f - 1) + (l - 1)`.
    pub const fn and_gates(&self) -> usize {
        let adder = self.m.saturating_sub(1);
        let relu = self.m.saturating_sub(self.f).saturating_sub(1);
        let out = self.l.saturating_sub(1);
        adder as usize + relu as usize + out as usize
    }

    /// Garbled-table bytes per gadget (`32 × AND gates`).
    pub const fn table_bytes(&self) -> usize {
        32 * self.and_gates()
    }

    /// Garbler (server) input bits per gadget: `m`.
    pub const fn garbler_input_bits(&self) -> usize {
        self.m as usize
    }

    /// Evaluator (client) input bits per gadget: `m + l`.
    pub const fn evaluator_input_bits(&self) -> usize {
        self.m as usize + self.l as usize
    }

    /// Output bits per gadget: `l`.
    pub const fn output_bits(&self) -> usize {
        self.l as usize
    }
}

/// The server's gadget input `a = (share + 2^(f-1)) mod 2^m` (round half up).
pub fn server_gadget_input(share: u64, params: ReluParams) -> u64 {
    share.wrapping_add(crate::share::round_offset(params.f)) & mask(params.m)
}

/// The client's gadget inputs `b = share mod 2^m` and `q = (-r_next) mod 2^l`.
pub fn client_gadget_inputs(share: u64, r_next: u64, params: ReluParams) -> (u64, u64) {
    (
        share & mask(params.m),
        r_next.wrapping_neg() & mask(params.l),
    )
}

/// Integer reference of the gadget: `((max((a + b) mod 2^m as signed) >> f, 0) + q) mod 2^l`.
/// Inputs are reduced mod `2^m`, `2^m` and `2^l` first. Meaningful for valid parameters
/// (see [`ReluParams::validate`]); `m` is clamped to `1..=64` and `f` to `0..=63`.
pub fn relu_gadget_reference(a: u64, b: u64, q: u64, params: ReluParams) -> u64 {
    let m = params.m.clamp(1, 64);
    let z = (a & mask(m)).wrapping_add(b & mask(m)) & mask(m);
    // Sign-extend from m bits.
    let z = ((z << (64 - m)) as i64) >> (64 - m);
    let t = z >> params.f.min(63);
    let u = t.max(0) as u64;
    u.wrapping_add(q & mask(params.l)) & mask(params.l)
}

/// Declares the inputs of one gadget on `b`, builds it and marks its `l` outputs.
pub fn relu_gadget<B: Backend>(b: &mut B, params: ReluParams) -> Result<()> {
    params.validate()?;
    let (m, l) = (params.m as usize, params.l as usize);
    let a_bits = b.inputs(Party::Garbler, m)?;
    let b_bits = b.inputs(Party::Evaluator, m)?;
    let q_bits = b.inputs(Party::Evaluator, l)?;
    let o = relu_core(b, &a_bits, &b_bits, &q_bits, params)?;
    b.outputs(&o)
}

/// The gadget on given input wires (`m`, `m` and `l` of them); returns the `l` output
/// wires. Used by [`relu_gadget`] and by the lane-parallel batch garbling.
pub fn relu_core<B: Backend>(
    b: &mut B,
    a_bits: &[B::Wire],
    b_bits: &[B::Wire],
    q_bits: &[B::Wire],
    params: ReluParams,
) -> Result<Vec<B::Wire>> {
    params.validate()?;
    let (m, f, l) = (params.m as usize, params.f as usize, params.l as usize);
    if a_bits.len() != m || b_bits.len() != m || q_bits.len() != l {
        return Err(ProtocolError::arg(
            "ReLU gadget: wrong number of input wires",
        ));
    }
    let z = add_mod(b, a_bits, b_bits)?;
    let not_sign = b.not(&z[m - 1]);
    let u = z[f..m - 1]
        .iter()
        .map(|w| b.and(w, &not_sign))
        .collect::<Result<Vec<_>>>()?;
    add_mod_zero_extended(b, &u, q_bits)
}

/// The client's choice bits (evaluator input bits) for gadgets with inputs `bs` and `qs`,
/// in the order the garbling consumes evaluator labels.
pub fn client_input_bits(bs: &[u64], qs: &[u64], params: ReluParams) -> Result<Vec<bool>> {
    if bs.len() != qs.len() {
        return Err(ProtocolError::arg("b and q must have equal lengths"));
    }
    let mut out = Vec::with_capacity(bs.len() * params.evaluator_input_bits());
    for (&bv, &qv) in bs.iter().zip(qs) {
        if bv > mask(params.m) || qv > mask(params.l) {
            return Err(ProtocolError::arg("client gadget input out of range"));
        }
        out.extend((0..params.m).map(|i| (bv >> i) & 1 == 1));
        out.extend((0..params.l).map(|i| (qv >> i) & 1 == 1));
    }
    Ok(out)
}

/// The garbled tables of a batch of ReLU gadgets (what the server sends offline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GarbledRelus {
    /// Gadget parameters.
    pub params: ReluParams,
    /// Number of gadgets.
    pub count: usize,
    /// The tables, in groups of up to [`LANES`] gadgets (layout: see [`garble_relus`]).
    pub tables: GarbledTables,
}

const TABLES_MAGIC: [u8; 4] = *b"RLT1";
const SECRETS_MAGIC: [u8; 4] = *b"RLS1";

fn parse_params(bytes: &[u8], magic: [u8; 4]) -> Result<(ReluParams, &[u8])> {
    let (head, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| ProtocolError::peer("ReLU batch: short header"))?;
    if head[..4] != magic {
        return Err(ProtocolError::peer("ReLU batch: bad magic"));
    }
    let params = ReluParams {
        l: head[4] as u32,
        f: head[5] as u32,
        m: head[6] as u32,
    };
    if head[7] != 0 {
        return Err(ProtocolError::peer("ReLU batch: nonzero reserved byte"));
    }
    params
        .validate()
        .map_err(|e| ProtocolError::peer(format!("ReLU batch: {e}")))?;
    Ok((params, rest))
}

fn write_params(out: &mut Vec<u8>, magic: [u8; 4], p: ReluParams) {
    out.extend_from_slice(&magic);
    out.extend_from_slice(&[p.l as u8, p.f as u8, p.m as u8, 0]);
}

impl GarbledRelus {
    /// Serialises as `"RLT1" ‖ l ‖ f ‖ m ‖ 0 ‖ count (u64 LE) ‖ tables` (see
    /// [`GarbledTables::to_bytes`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::HEADER_BYTES + self.tables.byte_len());
        out.extend_from_slice(&self.header());
        for b in &self.tables.blocks {
            out.extend_from_slice(&b.to_bytes());
        }
        out
    }

    /// Parses [`GarbledRelus::to_bytes`], checking that the table length matches the count.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (head, body) = bytes
            .split_first_chunk::<{ Self::HEADER_BYTES }>()
            .ok_or_else(|| ProtocolError::peer("ReLU batch: short header"))?;
        let header = Self::parse_header(head, body.len())?;
        Ok(GarbledRelus {
            params: header.params,
            count: header.count,
            tables: GarbledTables {
                batch_id: header.batch_id,
                blocks: blocks_from_bytes(body),
            },
        })
    }

    /// Length of the serialised header: magic and parameters (8 bytes), gadget count,
    /// batch id and block count (8 bytes each).
    const HEADER_BYTES: usize = 32;

    fn header(&self) -> [u8; Self::HEADER_BYTES] {
        let mut out = Vec::with_capacity(Self::HEADER_BYTES);
        write_params(&mut out, TABLES_MAGIC, self.params);
        out.extend_from_slice(&(self.count as u64).to_le_bytes());
        out.extend_from_slice(&self.tables.batch_id.to_le_bytes());
        out.extend_from_slice(&(self.tables.blocks.len() as u64).to_le_bytes());
        let mut h = [0u8; Self::HEADER_BYTES];
        h.copy_from_slice(&out);
        h
    }

    /// Checks a header against the length of the body that follows it (in bytes).
    fn parse_header(head: &[u8; Self::HEADER_BYTES], body_len: usize) -> Result<Header> {
        let (params, rest) = parse_params(head, TABLES_MAGIC)?;
        let short = || ProtocolError::peer("ReLU batch: short header");
        let (count, rest) = read_u64(rest).ok_or_else(short)?;
        let (batch_id, rest) = read_u64(rest).ok_or_else(short)?;
        let (blocks, _) = read_u64(rest).ok_or_else(short)?;
        if !body_len.is_multiple_of(16) || (body_len / 16) as u64 != blocks {
            return Err(ProtocolError::peer(format!(
                "tables: header says {blocks} blocks, body holds {body_len} bytes"
            )));
        }
        let expected = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(2 * params.and_gates()));
        if expected != Some(body_len / 16) {
            return Err(ProtocolError::peer(
                "ReLU batch: table length does not match gadget count",
            ));
        }
        Ok(Header {
            params,
            count: body_len / 16 / (2 * params.and_gates()),
            batch_id,
        })
    }

    /// Sends the batch as one length-prefixed message, exactly as
    /// `ch.send_prefixed(&self.to_bytes())` would, but streaming the tables in chunks
    /// instead of building the whole message in memory. Does not flush.
    pub fn send<C: Channel + ?Sized>(&self, ch: &mut C) -> Result<()> {
        ch.send_u64((Self::HEADER_BYTES + self.tables.byte_len()) as u64)?;
        ch.send(&self.header())?;
        ch.send_blocks(&self.tables.blocks)?;
        Ok(())
    }

    /// Receives a batch sent by [`GarbledRelus::send`] (or `send_prefixed(&to_bytes())`),
    /// refusing messages longer than `max_len` bytes; the checks are those of
    /// [`GarbledRelus::from_bytes`]. The tables are read straight into blocks.
    pub fn recv<C: Channel + ?Sized>(ch: &mut C, max_len: usize) -> Result<Self> {
        let len = ch.recv_u64()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= max_len)
            .ok_or_else(|| {
                ProtocolError::peer(format!("length prefix {len} exceeds limit {max_len}"))
            })?;
        if len < Self::HEADER_BYTES {
            let mut buf = vec![0u8; len];
            ch.recv(&mut buf)?;
            return Self::from_bytes(&buf);
        }
        let mut head = [0u8; Self::HEADER_BYTES];
        ch.recv(&mut head)?;
        let header = Self::parse_header(&head, len - Self::HEADER_BYTES)?;
        let blocks = ch.recv_blocks((len - Self::HEADER_BYTES) / 16)?;
        Ok(GarbledRelus {
            params: header.params,
            count: header.count,
            tables: GarbledTables {
                batch_id: header.batch_id,
                blocks,
            },
        })
    }
}

/// The checked header of a serialised [`GarbledRelus`].
struct Header {
    params: ReluParams,
    count: usize,
    batch_id: u64,
}

/// What the server keeps after garbling a batch of ReLU gadgets.
#[derive(Clone)]
pub struct ReluGarblerSecrets {
    /// Gadget parameters.
    pub params: ReluParams,
    /// Number of gadgets.
    pub count: usize,
    /// Batch id of the garbling (hash tweak domain).
    pub batch_id: u64,
    /// Offset, input zero labels and output decoding bits.
    pub secrets: GarblerSecrets,
}

/// Prints the public parameters only (see [`GarblerSecrets`]'s `Debug`).
impl core::fmt::Debug for ReluGarblerSecrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReluGarblerSecrets")
            .field("params", &self.params)
            .field("count", &self.count)
            .field("batch_id", &self.batch_id)
            .finish_non_exhaustive()
    }
}

impl ReluGarblerSecrets {
    /// The active labels of the server's inputs `a[i]` (each `< 2^m`), gadget after gadget.
    pub fn encode_server_inputs(&self, a: &[u64]) -> Result<Vec<Block>> {
        encode_server_labels(
            self.params,
            self.count,
            self.secrets.delta,
            &self.secrets.garbler_zero_labels,
            a,
        )
    }

    /// Decodes the client's output colour bits into one `l`-bit output per gadget.
    pub fn decode_outputs(&self, colours: &[bool]) -> Result<Vec<u64>> {
        self.params.validate()?;
        let l = self.params.l as usize;
        if colours.len() != self.count * l {
            return Err(ProtocolError::peer(format!(
                "expected {} colour bits, got {}",
                self.count * l,
                colours.len()
            )));
        }
        if self.secrets.decode.len() != colours.len() {
            return Err(ProtocolError::arg(
                "secrets hold the wrong number of decoding bits",
            ));
        }
        Ok(colours
            .chunks_exact(l)
            .zip(self.secrets.decode.chunks_exact(l))
            .map(|(c, d)| {
                let bits: Vec<bool> = c.iter().zip(d).map(|(x, y)| x ^ y).collect();
                bits_to_u64(&bits)
            })
            .collect())
    }

    /// Serialises (for storage by the server between offline and online phases) as
    /// `"RLS1" ‖ l ‖ f ‖ m ‖ 0 ‖ count ‖ batch_id ‖ Δ ‖ server zero labels ‖ client zero
    /// labels ‖ decode bits (packed)`. This contains `Δ`: keep it secret.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_params(&mut out, SECRETS_MAGIC, self.params);
        out.extend_from_slice(&(self.count as u64).to_le_bytes());
        out.extend_from_slice(&self.batch_id.to_le_bytes());
        out.extend_from_slice(&self.secrets.delta.block().to_bytes());
        for b in self
            .secrets
            .garbler_zero_labels
            .iter()
            .chain(&self.secrets.evaluator_zero_labels)
        {
            out.extend_from_slice(&b.to_bytes());
        }
        out.extend_from_slice(&crate::block::pack_bits(&self.secrets.decode));
        out
    }

    /// Parses [`ReluGarblerSecrets::to_bytes`]; the length must match exactly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (params, rest) = parse_params(bytes, SECRETS_MAGIC)?;
        let short = || ProtocolError::peer("ReLU secrets: truncated");
        let (count, rest) = read_u64(rest).ok_or_else(short)?;
        let (batch_id, rest) = read_u64(rest).ok_or_else(short)?;
        let (delta, rest) = rest.split_first_chunk::<16>().ok_or_else(short)?;
        let delta = Block::from_bytes(*delta);
        if !delta.lsb() {
            return Err(ProtocolError::peer("ReLU secrets: delta with lsb 0"));
        }
        let count = usize::try_from(count).map_err(|_| short())?;
        let sizes = (|| {
            let g = count.checked_mul(params.garbler_input_bits())?;
            let e = count.checked_mul(params.evaluator_input_bits())?;
            let o = count.checked_mul(params.output_bits())?;
            let total = g
                .checked_add(e)?
                .checked_mul(16)?
                .checked_add(o.div_ceil(8))?;
            Some((g, e, o, total))
        })();
        let (g, e, o, total) =
            sizes.ok_or_else(|| ProtocolError::peer("ReLU secrets: count too large"))?;
        if rest.len() != total {
            return Err(ProtocolError::peer(
                "ReLU secrets: length does not match count",
            ));
        }
        let labels = blocks_from_bytes(&rest[..16 * (g + e)]);
        let decode = crate::block::unpack_bits(&rest[16 * (g + e)..], o).ok_or_else(short)?;
        Ok(ReluGarblerSecrets {
            params,
            count,
            batch_id,
            secrets: GarblerSecrets {
                delta: Delta::from_block(delta),
                garbler_zero_labels: labels[..g].to_vec(),
                evaluator_zero_labels: labels[g..].to_vec(),
                decode,
            },
        })
    }
}

/// The active labels of the server's inputs `a[i]` (each `< 2^m`) from the garbler's
/// zero labels of `count` gadgets.
fn encode_server_labels(
    params: ReluParams,
    count: usize,
    delta: Delta,
    zero_labels: &[Block],
    a: &[u64],
) -> Result<Vec<Block>> {
    params.validate()?;
    if a.len() != count {
        return Err(ProtocolError::arg(format!(
            "expected {count} server inputs, got {}",
            a.len()
        )));
    }
    let m = params.m as usize;
    let d = delta.block();
    let mut out = Vec::with_capacity(count * m);
    for (i, &v) in a.iter().enumerate() {
        if v > mask(params.m) {
            return Err(ProtocolError::arg("server gadget input out of range"));
        }
        let zero = zero_labels
            .get(i * m..(i + 1) * m)
            .ok_or_else(|| ProtocolError::arg("secrets hold too few server zero labels"))?;
        out.extend(
            zero.iter()
                .enumerate()
                .map(|(j, w)| *w ^ d.select((v >> j) & 1 == 1)),
        );
    }
    Ok(out)
}

/// What the server needs of a garbled batch in the online phase, and nothing more: `Δ`,
/// the zero labels of its own inputs and the output decoding bits packed eight to a byte.
/// The zero labels of the client's inputs, which the offline phase needs for the OT and
/// the garbling only, are dropped: per gadget this holds `16 m + l / 8` bytes (583.6 for
/// the default parameters) instead of the `16 (2m + l) + l` of [`ReluGarblerSecrets`]
/// (2,189).
#[derive(Clone)]
pub struct ReluOnlineSecrets {
    params: ReluParams,
    count: usize,
    delta: Delta,
    garbler_zero_labels: Vec<Block>,
    /// Decoding bits, gadget-major, packed by [`crate::block::pack_bits`].
    decode: Vec<u8>,
}

impl core::fmt::Debug for ReluOnlineSecrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReluOnlineSecrets")
            .field("params", &self.params)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl From<ReluGarblerSecrets> for ReluOnlineSecrets {
    fn from(s: ReluGarblerSecrets) -> Self {
        let GarblerSecrets {
            delta,
            mut garbler_zero_labels,
            evaluator_zero_labels,
            decode,
        } = s.secrets;
        drop(evaluator_zero_labels);
        garbler_zero_labels.shrink_to_fit();
        ReluOnlineSecrets {
            params: s.params,
            count: s.count,
            delta,
            garbler_zero_labels,
            decode: crate::block::pack_bits(&decode),
        }
    }
}

impl ReluOnlineSecrets {
    /// Bytes held for `count` gadgets with `params` (heap only; a few dozen bytes of
    /// fixed overhead are not counted).
    pub const fn bytes_for(params: ReluParams, count: usize) -> u64 {
        let labels = 16 * count as u64 * params.m as u64;
        let decode = (count as u64 * params.l as u64).div_ceil(8);
        labels + decode
    }

    /// Gadget parameters.
    pub fn params(&self) -> ReluParams {
        self.params
    }

    /// Number of gadgets.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Bytes held (see [`Self::bytes_for`]).
    pub fn byte_len(&self) -> u64 {
        16 * self.garbler_zero_labels.len() as u64 + self.decode.len() as u64
    }

    /// The active labels of the server's inputs `a[i]` (each `< 2^m`), gadget after gadget.
    pub fn encode_server_inputs(&self, a: &[u64]) -> Result<Vec<Block>> {
        encode_server_labels(
            self.params,
            self.count,
            self.delta,
            &self.garbler_zero_labels,
            a,
        )
    }

    /// Decodes the client's output colour bits, packed as on the wire
    /// ([`crate::block::pack_bits`], `count × l` bits), into one `l`-bit output per gadget.
    pub fn decode_packed(&self, colours: &[u8]) -> Result<Vec<u64>> {
        self.params.validate()?;
        let l = self.params.l as usize;
        let n = self.count * l;
        if colours.len() != n.div_ceil(8) || self.decode.len() != colours.len() {
            return Err(ProtocolError::peer(format!(
                "expected {n} colour bits ({} bytes), got {} bytes",
                n.div_ceil(8),
                colours.len()
            )));
        }
        let bit = |i: usize| u64::from(((colours[i / 8] ^ self.decode[i / 8]) >> (i % 8)) & 1);
        Ok((0..self.count)
            .map(|g| (0..l).fold(0u64, |acc, j| acc | (bit(g * l + j) << j)))
            .collect())
    }

    /// Decodes the client's output colour bits into one `l`-bit output per gadget.
    pub fn decode_outputs(&self, colours: &[bool]) -> Result<Vec<u64>> {
        let n = self.count * self.params.output_bits();
        if colours.len() != n {
            return Err(ProtocolError::peer(format!(
                "expected {n} colour bits, got {}",
                colours.len()
            )));
        }
        self.decode_packed(&crate::block::pack_bits(colours))
    }
}

/// Gadgets garbled in lockstep by [`garble_relus`] (two table groups of [`LANES`]: 64
/// AES blocks per AND layer).
pub(crate) const GARBLE_LANES: usize = 2 * LANES;

/// Gadgets evaluated in lockstep by [`evaluate_relus`] (four table groups of [`LANES`]:
/// 64 AES blocks per AND layer).
pub(crate) const EVAL_LANES: usize = 4 * LANES;

/// Input labels of a batch: `count × m` server labels, `count × (m + l)` client labels.
#[derive(Clone, Copy)]
pub(crate) struct Labels<'a> {
    pub(crate) server: &'a [Block],
    pub(crate) client: &'a [Block],
}

/// The part of a batch processed together: gadgets `start .. start + active` with the
/// same gate-id stride.
struct Span {
    start: usize,
    active: usize,
    stride: u64,
}

/// Splits `count` gadgets into spans of `W` lanes: first runs of `W` gadgets that lie in
/// full table groups, then single groups of at most [`LANES`] gadgets.
fn spans<const W: usize>(count: usize) -> impl Iterator<Item = (bool, Span)> {
    let full = count - count % LANES;
    let wide_end = full - full % W;
    let wide = (0..wide_end).step_by(W).map(|start| {
        (
            true,
            Span {
                start,
                active: W,
                stride: LANES as u64,
            },
        )
    });
    let narrow = (wide_end..count).step_by(LANES).map(move |start| {
        let active = LANES.min(count - start);
        (
            false,
            Span {
                start,
                active,
                stride: active as u64,
            },
        )
    });
    wide.chain(narrow)
}

/// Gate id of the first AND gate of gadget `i` in the table layout of [`garble_relus`]:
/// group `g = i / LANES` starts at gate `g × LANES × ands`, and gadget `i` is lane
/// `i mod LANES` of its group.
#[inline]
fn first_gate_id(i: usize, ands: usize) -> u64 {
    ((i - i % LANES) * ands + i % LANES) as u64
}

/// The input wires of `W` lanes for gadgets `span.start ..` (zero for inactive lanes).
#[allow(clippy::type_complexity)]
fn lane_inputs<const W: usize>(
    params: ReluParams,
    labels: Labels<'_>,
    span: &Span,
) -> (Vec<[Block; W]>, Vec<[Block; W]>, Vec<[Block; W]>) {
    let (m, l) = (params.m as usize, params.l as usize);
    let e = m + l;
    // Bit-major gather: each wire array is written contiguously (writing lane-major
    // would store with a 16·W-byte stride, which thrashes a few L1 sets).
    let active = span.active.min(W);
    let gather = |src: &[Block], stride: usize, offset: usize, n: usize| -> Vec<[Block; W]> {
        let rows = &src[span.start * stride..(span.start + active) * stride];
        (0..n)
            .map(|i| {
                let mut w = [Block::ZERO; W];
                for (wj, row) in w.iter_mut().zip(rows.chunks_exact(stride)) {
                    *wj = row[offset + i];
                }
                w
            })
            .collect()
    };
    let a = gather(labels.server, m, 0, m);
    let b = gather(labels.client, e, 0, m);
    let q = gather(labels.client, e, m, l);
    (a, b, q)
}

fn lane_ids<const W: usize>(span: &Span, ands: usize) -> [u64; W] {
    core::array::from_fn(|j| {
        if j < span.active {
            first_gate_id(span.start + j, ands)
        } else {
            0
        }
    })
}

/// Garbles `count` gadgets into `tables` (`count × 2 × ands` blocks) and `decode`
/// (`count × l` bits), `W` gadgets in lockstep where the layout allows.
pub(crate) fn garble_into<const W: usize>(
    params: ReluParams,
    count: usize,
    delta: Delta,
    batch_id: u64,
    labels: Labels<'_>,
    tables: &mut [Block],
    decode: &mut [bool],
) -> Result<()> {
    let pi = AesCipher::fixed();
    for (wide, span) in spans::<W>(count) {
        if wide {
            garble_span::<W>(params, delta, batch_id, &pi, labels, &span, tables, decode)?;
        } else {
            garble_span::<LANES>(params, delta, batch_id, &pi, labels, &span, tables, decode)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn garble_span<const W: usize>(
    params: ReluParams,
    delta: Delta,
    batch_id: u64,
    pi: &AesCipher,
    labels: Labels<'_>,
    span: &Span,
    tables: &mut [Block],
    decode: &mut [bool],
) -> Result<()> {
    let (a_w, b_w, q_w) = lane_inputs::<W>(params, labels, span);
    let ids = lane_ids::<W>(span, params.and_gates());
    let mut g = WideGarbler::new(delta, pi, batch_id, ids, span.stride, span.active, tables);
    let out = relu_core(&mut g, &a_w, &b_w, &q_w, params)?;
    let l = params.l as usize;
    for (i, w) in out.iter().enumerate() {
        for (j, wj) in w.iter().take(span.active).enumerate() {
            decode[(span.start + j) * l + i] = wj.lsb();
        }
    }
    Ok(())
}

/// Evaluates `count` gadgets from `tables` (length already checked) into `colours`
/// (`count × l` bits), `W` gadgets in lockstep where the layout allows.
pub(crate) fn evaluate_into<const W: usize>(
    params: ReluParams,
    count: usize,
    batch_id: u64,
    labels: Labels<'_>,
    tables: &[Block],
    colours: &mut [bool],
) -> Result<()> {
    let pi = AesCipher::fixed();
    for (wide, span) in spans::<W>(count) {
        if wide {
            evaluate_span::<W>(params, batch_id, &pi, labels, &span, tables, colours)?;
        } else {
            evaluate_span::<LANES>(params, batch_id, &pi, labels, &span, tables, colours)?;
        }
    }
    Ok(())
}

fn evaluate_span<const W: usize>(
    params: ReluParams,
    batch_id: u64,
    pi: &AesCipher,
    labels: Labels<'_>,
    span: &Span,
    tables: &[Block],
    colours: &mut [bool],
) -> Result<()> {
    let (a_w, b_w, q_w) = lane_inputs::<W>(params, labels, span);
    let ids = lane_ids::<W>(span, params.and_gates());
    let mut ev = WideEvaluator::new(pi, batch_id, ids, span.stride, span.active, tables);
    let out = relu_core(&mut ev, &a_w, &b_w, &q_w, params)?;
    let l = params.l as usize;
    for (i, w) in out.iter().enumerate() {
        for (j, wj) in w.iter().take(span.active).enumerate() {
            colours[(span.start + j) * l + i] = wj.lsb();
        }
    }
    Ok(())
}

/// Garbles `count` ReLU gadgets with offset `delta`.
///
/// `client_zero_labels`, if given, are the zero labels of the client's inputs
/// (`count × (m + l)` of them, in the order of [`client_input_bits`]), typically the
/// sender's output of a correlated OT with the same `Δ`; otherwise fresh ones are drawn.
/// `batch_id` must be unique per `Δ`.
///
/// Table layout: for each group of up to [`LANES`] consecutive gadgets, each AND gate's
/// ciphertexts `(T_G, T_E)` for every gadget of the group (gate by gate, gadget by gadget
/// within a gate); gate ids (hash tweaks) follow the same order. Internally several
/// groups are garbled in lockstep (see [`super::wide`]), which does not change the
/// layout. The labels, decoding bits and the [`evaluate_relus`] interface are per gadget,
/// in gadget order.
pub fn garble_relus<R: RngCore + CryptoRng>(
    params: ReluParams,
    count: usize,
    delta: Delta,
    client_zero_labels: Option<Vec<Block>>,
    batch_id: u64,
    mut rng: R,
) -> Result<(GarbledRelus, ReluGarblerSecrets)> {
    params.validate()?;
    let (m, l) = (params.m as usize, params.l as usize);
    let e = params.evaluator_input_bits();
    let client = match client_zero_labels {
        Some(labels) => {
            if labels.len() != count * e {
                return Err(ProtocolError::arg(format!(
                    "expected {} client zero labels, got {}",
                    count * e,
                    labels.len()
                )));
            }
            labels
        }
        None => Prg::from_rng(&mut rng).random_blocks(count * e),
    };
    // Bulk labels: expand a fresh 128-bit seed with AES-CTR.
    let server: Vec<Block> = Prg::from_rng(&mut rng).random_blocks(count * m);
    let mut decode = vec![false; count * l];
    let mut tables = vec![Block::ZERO; count * 2 * params.and_gates()];
    let labels = Labels {
        server: &server,
        client: &client,
    };
    garble_into::<GARBLE_LANES>(
        params,
        count,
        delta,
        batch_id,
        labels,
        &mut tables,
        &mut decode,
    )?;
    Ok((
        GarbledRelus {
            params,
            count,
            tables: GarbledTables {
                batch_id,
                blocks: tables,
            },
        },
        ReluGarblerSecrets {
            params,
            count,
            batch_id,
            secrets: GarblerSecrets {
                delta,
                garbler_zero_labels: server,
                evaluator_zero_labels: client,
                decode,
            },
        },
    ))
}

/// Evaluates a batch given the active labels of the server's inputs (`count × m`) and of
/// the client's inputs (`count × (m + l)`), each in gadget order. Returns `count × l`
/// output colour bits, in gadget order.
pub fn evaluate_relus(
    garbled: &GarbledRelus,
    server_labels: &[Block],
    client_labels: &[Block],
) -> Result<Vec<bool>> {
    let p = garbled.params;
    p.validate()?;
    let count = garbled.count;
    let (m, l) = (p.m as usize, p.l as usize);
    let e = p.evaluator_input_bits();
    if server_labels.len() != count * m {
        return Err(ProtocolError::peer("wrong number of server input labels"));
    }
    if client_labels.len() != count * e {
        return Err(ProtocolError::arg("wrong number of client input labels"));
    }
    let tables = &garbled.tables.blocks;
    if Some(tables.len()) != count.checked_mul(2 * p.and_gates()) {
        return Err(ProtocolError::peer(format!(
            "garbled tables hold {} blocks, expected {} for {count} gadgets",
            tables.len(),
            count.saturating_mul(2 * p.and_gates())
        )));
    }
    let mut colours = vec![false; count * l];
    let labels = Labels {
        server: server_labels,
        client: client_labels,
    };
    evaluate_into::<EVAL_LANES>(
        p,
        count,
        garbled.tables.batch_id,
        labels,
        tables,
        &mut colours,
    )?;
    Ok(colours)
}
