//! What garbling a batch of ReLU gadgets produces, and its byte formats: the tables the
//! client receives ([`GarbledRelus`], whole or streamed over a channel), the secrets the
//! server keeps ([`ReluGarblerSecrets`], storable between the phases) and the part of them
//! the online phase needs ([`ReluOnlineSecrets`]).

use super::circuit::{ReluParams, mask};
use crate::block::{Block, Delta};
use crate::channel::{Channel, ChannelExt};
use crate::error::{ProtocolError, Result};
use crate::gc::backends::{GarbledTables, GarblerSecrets, blocks_from_bytes, read_u64};
use crate::gc::circuit::bits_to_u64;

/// The garbled tables of a batch of ReLU gadgets (what the server sends offline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GarbledRelus {
    /// Gadget parameters.
    pub params: ReluParams,
    /// Number of gadgets.
    pub count: usize,
    /// The tables, in groups of up to [`LANES`](crate::gc::wide::LANES) gadgets (layout:
    /// see [`garble_relus`](super::batch::garble_relus)).
    pub tables: GarbledTables,
}

// Version 2: the fourth parameter byte (reserved, 0, in version 1) is `k`.
const TABLES_MAGIC: [u8; 4] = *b"RLT2";
const SECRETS_MAGIC: [u8; 4] = *b"RLS2";

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
        k: head[7] as u32,
    };
    params
        .validate()
        .map_err(|e| ProtocolError::peer(format!("ReLU batch: {e}")))?;
    Ok((params, rest))
}

fn write_params(out: &mut Vec<u8>, magic: [u8; 4], p: ReluParams) {
    out.extend_from_slice(&magic);
    out.extend_from_slice(&[p.l as u8, p.f as u8, p.m as u8, p.k as u8]);
}

impl GarbledRelus {
    /// Serialises as `"RLT2" ‖ l ‖ f ‖ m ‖ k ‖ count (u64 LE) ‖ tables` (see
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
            .and_then(|c| c.checked_mul(params.table_blocks()));
        if expected != Some(body_len / 16) {
            return Err(ProtocolError::peer(
                "ReLU batch: table length does not match gadget count",
            ));
        }
        Ok(Header {
            params,
            count: body_len / 16 / params.table_blocks(),
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
        let len = ch.recv_prefix(max_len)?;
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
    /// The active labels of the server's inputs `a[i]` (each `< 2^(m-k)`), gadget after
    /// gadget.
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
    /// `"RLS2" ‖ l ‖ f ‖ m ‖ k ‖ count ‖ batch_id ‖ Δ ‖ server zero labels ‖ client zero
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

/// The active labels of the server's inputs `a[i]` (each `< 2^(m-k)`) from the garbler's
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
    let m = params.width() as usize;
    let d = delta.block();
    let mut out = Vec::with_capacity(count * m);
    for (i, &v) in a.iter().enumerate() {
        if v > mask(params.width()) {
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
/// the garbling only, are dropped: per gadget this holds `16 (m - k) + l / 8` bytes
/// (359.6 for the default parameters) instead of the `16 (2 (m - k) + l) + l / 8` of
/// [`ReluGarblerSecrets`].
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
        let labels = 16 * count as u64 * params.width() as u64;
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

    /// The active labels of the server's inputs `a[i]` (each `< 2^(m-k)`), gadget after
    /// gadget.
    pub fn encode_server_inputs(&self, a: &[u64]) -> Result<Vec<Block>> {
        encode_server_labels(
            self.params,
            self.count,
            self.delta,
            &self.garbler_zero_labels,
            a,
        )
    }

    /// The active labels of the server's inputs of gadgets `start .. start + a.len()`
    /// (a part of [`Self::encode_server_inputs`], for sending in chunks).
    pub fn encode_server_inputs_at(&self, start: usize, a: &[u64]) -> Result<Vec<Block>> {
        let w = self.params.width() as usize;
        let end = start
            .checked_add(a.len())
            .filter(|&e| e <= self.count)
            .ok_or_else(|| ProtocolError::arg("server inputs beyond the batch"))?;
        encode_server_labels(
            self.params,
            end - start,
            self.delta,
            &self.garbler_zero_labels[start * w..end * w],
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
