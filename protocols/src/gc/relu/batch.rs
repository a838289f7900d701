//! Garbling and evaluating a batch of ReLU gadgets, several gadgets in lockstep (the
//! lane-parallel backends of [`crate::gc::wide`]); the table layout does not depend on
//! how many.

use rand_core::{CryptoRng, RngCore};

use super::circuit::{ReluParams, relu_core};
use super::codec::{GarbledRelus, ReluGarblerSecrets};
use crate::aes_hash::AesCipher;
use crate::block::{Block, Delta};
use crate::error::{ProtocolError, Result};
use crate::gc::backends::{GarbledTables, GarblerSecrets};
use crate::gc::wide::{LANES, LaneLayout, WideEvaluator, WideGarbler};
use crate::prg::Prg;

/// Gadgets garbled in lockstep by [`garble_relus`] (two table groups of [`LANES`]: 64
/// AES blocks per AND layer).
pub(crate) const GARBLE_LANES: usize = 2 * LANES;

/// Gadgets evaluated in lockstep by [`evaluate_relus`] (four table groups of [`LANES`]:
/// 64 AES blocks per AND layer).
pub(crate) const EVAL_LANES: usize = 4 * LANES;

/// Input labels of a batch: `count × w` server labels, `count × (w + l)` client labels
/// (`w = m - k`), and for evaluation the client's `q` values in the clear (empty when
/// garbling).
#[derive(Clone, Copy)]
pub(crate) struct Labels<'a> {
    pub(crate) server: &'a [Block],
    pub(crate) client: &'a [Block],
    pub(crate) qs: &'a [u64],
}

/// The part of a batch processed together: gadgets `start .. start + active` with the
/// same gate-id stride.
struct Span {
    start: usize,
    active: usize,
    stride: u64,
}

/// Splits gadgets `start .. end` (`start` a multiple of [`LANES`]; `end` the batch's
/// count or a multiple of [`LANES`]) into spans of `W` lanes: first runs of `W` gadgets
/// that lie in full table groups, then single groups of at most [`LANES`] gadgets (the
/// last group of a batch may be partial; its layout stride is its size).
fn spans<const W: usize>(start: usize, end: usize) -> impl Iterator<Item = (bool, Span)> {
    let full = end - (end - start) % LANES;
    let wide_end = full - (full - start) % W;
    let wide = (start..wide_end).step_by(W).map(|start| {
        (
            true,
            Span {
                start,
                active: W,
                stride: LANES as u64,
            },
        )
    });
    let narrow = (wide_end..end).step_by(LANES).map(move |start| {
        let active = LANES.min(end - start);
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

/// The input wires of `W` lanes for gadgets `span.start ..` (zero for inactive lanes).
#[allow(clippy::type_complexity)]
fn lane_inputs<const W: usize>(
    params: ReluParams,
    labels: Labels<'_>,
    span: &Span,
) -> (Vec<[Block; W]>, Vec<[Block; W]>, Vec<[Block; W]>) {
    let (m, l) = (params.width() as usize, params.l as usize);
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

/// The table layout of `W` lanes for gadgets `span.start ..`: gadget `i` is lane
/// `i mod LANES` of the group starting at gadget `i - i mod LANES`, whose tables start at
/// block `(i - i mod LANES) × blocks` (`blocks` per gadget); inactive lanes get 0.
fn lane_layout<const W: usize>(span: &Span, blocks: usize) -> LaneLayout<W> {
    let at = |j: usize, f: &dyn Fn(usize) -> u64| {
        if j < span.active {
            f(span.start + j)
        } else {
            0
        }
    };
    LaneLayout {
        base: core::array::from_fn(|j| at(j, &|i| ((i - i % LANES) * blocks) as u64)),
        lane: core::array::from_fn(|j| at(j, &|i| (i % LANES) as u64)),
        stride: span.stride,
    }
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
    for (wide, span) in spans::<W>(0, count) {
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
    let layout = lane_layout::<W>(span, params.table_blocks());
    let mut g = WideGarbler::new(delta, pi, batch_id, layout, span.active, tables);
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
/// (`count × l` bits), `W` gadgets in lockstep where the layout allows (the tests' way to
/// pick the lockstep width; [`evaluate_relus`] goes through [`evaluate_range`]).
#[cfg(test)]
pub(crate) fn evaluate_into<const W: usize>(
    params: ReluParams,
    count: usize,
    batch_id: u64,
    labels: Labels<'_>,
    tables: &[Block],
    colours: &mut [bool],
) -> Result<()> {
    evaluate_range::<W>(params, 0..count, batch_id, labels, tables, colours)
}

/// [`evaluate_into`] for gadgets `range` only (`range.start` a multiple of [`LANES`],
/// `range.end` the count or a multiple of [`LANES`]); labels, `q`s, tables and colours are
/// indexed by absolute gadget number.
pub(crate) fn evaluate_range<const W: usize>(
    params: ReluParams,
    range: core::ops::Range<usize>,
    batch_id: u64,
    labels: Labels<'_>,
    tables: &[Block],
    colours: &mut [bool],
) -> Result<()> {
    let pi = AesCipher::fixed();
    for (wide, span) in spans::<W>(range.start, range.end) {
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
    let layout = lane_layout::<W>(span, params.table_blocks());
    let active = span.active.min(W);
    let qs = &labels.qs[span.start..span.start + active];
    let known: Vec<[bool; W]> = (0..params.l)
        .map(|i| core::array::from_fn(|j| qs.get(j).is_some_and(|q| (q >> i) & 1 == 1)))
        .collect();
    let mut ev = WideEvaluator::new(pi, batch_id, layout, span.active, tables, &known);
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
/// (`count × (m - k + l)` of them, in the order of
/// [`client_input_bits`](super::circuit::client_input_bits)), typically the sender's
/// output of a correlated OT with the same `Δ`; otherwise fresh ones are drawn.
/// `batch_id` must be unique per `Δ`.
///
/// Table layout: for each group of up to [`LANES`] consecutive gadgets, each AND gate's
/// ciphertexts for every gadget of the group (gate by gate, gadget by gadget within a
/// gate): `(T_G, T_E)` for an AND gate, one block for an AND gate with an
/// evaluator-known input (the output adder's carry chain); the hash tweaks are the block
/// positions ([`crate::gc::wide`]). Internally several
/// groups are garbled in lockstep (see [`crate::gc::wide`]), which does not change the
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
    let (m, l) = (params.width() as usize, params.l as usize);
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
    let mut tables = vec![Block::ZERO; count * params.table_blocks()];
    let labels = Labels {
        server: &server,
        client: &client,
        qs: &[],
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

/// Evaluates gadgets `range` of a batch (`range.start` a multiple of [`LANES`],
/// `range.end` the count or a multiple of [`LANES`]) into `colours` (`count × l` bits,
/// written at the range's gadgets only), given the server's labels of at least those
/// gadgets (`server_labels` indexed from gadget 0), all the client's labels and all its
/// `q`s: lets the online client evaluate while the rest of the server's labels are still
/// arriving. Lengths as in [`evaluate_relus`].
pub fn evaluate_relus_range(
    garbled: &GarbledRelus,
    range: core::ops::Range<usize>,
    server_labels: &[Block],
    client_labels: &[Block],
    qs: &[u64],
    colours: &mut [bool],
) -> Result<()> {
    let p = garbled.params;
    p.validate()?;
    let count = garbled.count;
    let (m, l) = (p.width() as usize, p.l as usize);
    if range.start > range.end
        || range.end > count
        || !range.start.is_multiple_of(LANES)
        || (range.end != count && !range.end.is_multiple_of(LANES))
    {
        return Err(ProtocolError::arg(
            "gadget range not aligned to table groups",
        ));
    }
    if server_labels.len() < range.end * m {
        return Err(ProtocolError::peer("too few server input labels"));
    }
    if client_labels.len() != count * p.evaluator_input_bits() || qs.len() != count {
        return Err(ProtocolError::arg("wrong number of client inputs"));
    }
    if colours.len() != count * l {
        return Err(ProtocolError::arg("colour buffer of the wrong length"));
    }
    let tables = &garbled.tables.blocks;
    if Some(tables.len()) != count.checked_mul(p.table_blocks()) {
        return Err(ProtocolError::peer(format!(
            "garbled tables hold {} blocks, expected {} for {count} gadgets",
            tables.len(),
            count.saturating_mul(p.table_blocks())
        )));
    }
    let labels = Labels {
        server: server_labels,
        client: client_labels,
        qs,
    };
    evaluate_range::<EVAL_LANES>(p, range, garbled.tables.batch_id, labels, tables, colours)
}

/// Evaluates a batch given the active labels of the server's inputs (`count × (m - k)`) and of
/// the client's inputs (`count × (m - k + l)`), each in gadget order, and the client's
/// `q` inputs in the clear (`count` of them: the evaluator-known gates read them).
/// Returns `count × l` output colour bits, in gadget order.
pub fn evaluate_relus(
    garbled: &GarbledRelus,
    server_labels: &[Block],
    client_labels: &[Block],
    qs: &[u64],
) -> Result<Vec<bool>> {
    let p = garbled.params;
    p.validate()?;
    if server_labels.len() != garbled.count * p.garbler_input_bits() {
        return Err(ProtocolError::peer("wrong number of server input labels"));
    }
    let mut colours = vec![false; garbled.count * p.output_bits()];
    evaluate_relus_range(
        garbled,
        0..garbled.count,
        server_labels,
        client_labels,
        qs,
        &mut colours,
    )?;
    Ok(colours)
}
