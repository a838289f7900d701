//! The two-party ReLU protocol: the server garbles a batch of ReLU gadgets ([`crate::gc`])
//! whose client-input labels come out of correlated OTs ([`crate::ot`]), and the two
//! parties exchange tables, labels and colour bits over a [`Channel`]. This module sits
//! over `gc` and `ot`, which do not import each other.
//!
//! * Offline, per batch of `n` gadgets: [`relu_offline_client`] and [`relu_offline_server`]
//!   run `n × (m + l)` correlated OTs for the client's input labels; the server garbles
//!   and sends the tables (one round trip). Split in two halves
//!   ([`relu_offline_server_ot`] / [`relu_offline_client_ot`], then
//!   [`ReluOfflineServer::garble_and_send`] / [`relu_offline_client_tables`]) so that other
//!   messages can travel between the OTs and the tables.
//! * Online: [`relu_online_server`] sends the labels of the server's inputs,
//!   [`relu_online_client`] evaluates and sends the output colour bits back (one round
//!   trip); the server decodes its share of the next layer's masked input.

use rand_core::{CryptoRng, RngCore};

use crate::block::Block;
use crate::channel::{Channel, ChannelExt};
use crate::error::{ProtocolError, Result};
use crate::gc::relu::{
    GarbledRelus, ReluGarblerSecrets, ReluOnlineSecrets, ReluParams, client_input_bits,
    evaluate_relus_range, garble_relus,
};
use crate::ot::{OtReceiver, OtSender};

/// Online phase, server side: sends the labels of its inputs `a`, waits for the client's
/// colour bits and decodes them. Returns one `l`-bit output per gadget (the server's share
/// of the next layer's masked input).
///
/// Takes the secrets by value ([`ReluGarblerSecrets`] or the smaller
/// [`ReluOnlineSecrets`]): a garbled batch must be used for exactly one input
/// (sending labels of two different inputs of the same gadget would reveal `Δ`).
pub fn relu_online_server<C: Channel + ?Sized>(
    ch: &mut C,
    secrets: impl Into<ReluOnlineSecrets>,
    a: &[u64],
) -> Result<Vec<u64>> {
    relu_online_server_chunked(ch, secrets.into(), a, ONLINE_CHUNK)
}

/// Gadgets whose labels the server sends (and flushes) at a time in the online phase,
/// and the client evaluates as soon as they have arrived: the client's evaluation of one
/// chunk overlaps the transfer of the next (a multiple of the table groups' size).
pub const ONLINE_CHUNK: usize = 2048;

fn relu_online_server_chunked<C: Channel + ?Sized>(
    ch: &mut C,
    secrets: ReluOnlineSecrets,
    a: &[u64],
    chunk: usize,
) -> Result<Vec<u64>> {
    send_labels_chunked(ch, secrets, a, chunk)?.finish(ch)
}

/// Online phase, server side, first half: sends the labels of its inputs `a` (flushed)
/// and returns what decodes the client's colour bits, for [`ReluOnlinePending::finish`].
/// In between, the server may read other messages that the client sends after it has
/// received every label (see [`relu_online_client_with`]).
pub fn relu_online_server_send<C: Channel + ?Sized>(
    ch: &mut C,
    secrets: impl Into<ReluOnlineSecrets>,
    a: &[u64],
) -> Result<ReluOnlinePending> {
    send_labels_chunked(ch, secrets.into(), a, ONLINE_CHUNK)
}

fn send_labels_chunked<C: Channel + ?Sized>(
    ch: &mut C,
    secrets: ReluOnlineSecrets,
    a: &[u64],
    chunk: usize,
) -> Result<ReluOnlinePending> {
    if a.len() != secrets.count() {
        return Err(ProtocolError::arg(format!(
            "expected {} server inputs, got {}",
            secrets.count(),
            a.len()
        )));
    }
    // The bytes are those of one message of all labels; only the flushes differ.
    let chunk = chunk.max(1);
    for (i, part) in a.chunks(chunk).enumerate() {
        let labels = secrets.encode_server_inputs_at(i * chunk, part)?;
        ch.send_blocks(&labels)?;
        ch.flush()?;
    }
    if a.is_empty() {
        ch.flush()?;
    }
    Ok(ReluOnlinePending { secrets })
}

/// A batch whose server labels are sent: decodes the client's colour bits.
pub struct ReluOnlinePending {
    secrets: ReluOnlineSecrets,
}

/// Prints the count only.
impl core::fmt::Debug for ReluOnlinePending {
    fn fmt(&self, fm: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        fm.debug_struct("ReluOnlinePending")
            .field("count", &self.secrets.count())
            .finish_non_exhaustive()
    }
}

impl ReluOnlinePending {
    /// Online phase, server side, second half: receives the client's colour bits and
    /// decodes them into one `l`-bit output per gadget.
    pub fn finish<C: Channel + ?Sized>(self, ch: &mut C) -> Result<Vec<u64>> {
        let secrets = self.secrets;
        let n = secrets.count() * secrets.params().output_bits();
        let mut colours = vec![0u8; n.div_ceil(8)];
        ch.recv(&mut colours)?;
        if !n.is_multiple_of(8) && colours.last().is_some_and(|&last| last >> (n % 8) != 0) {
            return Err(ProtocolError::peer("nonzero padding bits in bit vector"));
        }
        secrets.decode_packed(&colours)
    }
}

/// Online phase, client side: receives the server's input labels, evaluates and sends the
/// output colour bits back. `qs` are the client's `q` inputs (as given to
/// [`relu_offline_client`]), which the evaluator-known gates read in the clear.
pub fn relu_online_client<C: Channel + ?Sized>(
    ch: &mut C,
    garbled: &GarbledRelus,
    client_labels: &[Block],
    qs: &[u64],
) -> Result<()> {
    relu_online_client_chunked(ch, garbled, client_labels, qs, ONLINE_CHUNK, |_| Ok(()))
}

/// [`relu_online_client`], calling `all_received` once every server label has arrived,
/// before the last chunk is evaluated: what it sends (and flushes) travels while the
/// client evaluates, and the server reads it between [`relu_online_server_send`] and
/// [`ReluOnlinePending::finish`]. The server has sent everything by then, so neither
/// party can block the other's writes. With no gadgets it is called at once.
pub fn relu_online_client_with<C: Channel + ?Sized>(
    ch: &mut C,
    garbled: &GarbledRelus,
    client_labels: &[Block],
    qs: &[u64],
    all_received: impl FnOnce(&mut C) -> Result<()>,
) -> Result<()> {
    relu_online_client_chunked(ch, garbled, client_labels, qs, ONLINE_CHUNK, all_received)
}

/// The client's online phase, evaluating each chunk of `chunk` gadgets (a multiple of
/// the table groups' size) as soon as its labels have arrived; the colour bits go back
/// in one message at the end (so the server, still sending, never has to read).
fn relu_online_client_chunked<C: Channel + ?Sized>(
    ch: &mut C,
    garbled: &GarbledRelus,
    client_labels: &[Block],
    qs: &[u64],
    chunk: usize,
    all_received: impl FnOnce(&mut C) -> Result<()>,
) -> Result<()> {
    let (n, w) = (garbled.count, garbled.params.garbler_input_bits());
    let mut server_labels = Vec::with_capacity(n * w);
    let mut colours = vec![false; n * garbled.params.output_bits()];
    let mut all_received = Some(all_received);
    let mut start = 0;
    while start < n {
        let end = n.min(start + chunk.max(1));
        server_labels.extend(ch.recv_blocks((end - start) * w)?);
        if end == n
            && let Some(f) = all_received.take()
        {
            f(ch)?;
        }
        evaluate_relus_range(
            garbled,
            start..end,
            &server_labels,
            client_labels,
            qs,
            &mut colours,
        )?;
        start = end;
    }
    if let Some(f) = all_received.take() {
        f(ch)?;
    }
    ch.send_bits(&colours)?;
    ch.flush()?;
    Ok(())
}

/// Offline phase, server side: runs `count × (m + l)` correlated OTs (their zero
/// messages become the zero labels of the client's inputs, with `Δ` = the OT sender's
/// correlation), garbles `count` gadgets and sends the tables (length-prefixed
/// [`GarbledRelus::to_bytes`]). Returns the secrets to keep for the online phase.
///
/// The same as [`relu_offline_server_ot`] followed at once by
/// [`ReluOfflineServer::garble_and_send`].
pub fn relu_offline_server<C: Channel + ?Sized, R: RngCore + CryptoRng>(
    ch: &mut C,
    ot: &mut OtSender,
    params: ReluParams,
    count: usize,
    batch_id: u64,
    rng: R,
) -> Result<ReluGarblerSecrets> {
    relu_offline_server_ot(ch, ot, params, count, batch_id)?.garble_and_send(ch, rng)
}

/// Offline phase, server side, first half: the correlated OTs of the client's input
/// labels. The tables follow with [`ReluOfflineServer::garble_and_send`]; in between
/// the parties may exchange other messages (the runtime runs the layer's truncations
/// there, so the client can send its next layer's inputs before the tables arrive).
pub fn relu_offline_server_ot<C: Channel + ?Sized>(
    ch: &mut C,
    ot: &mut OtSender,
    params: ReluParams,
    count: usize,
    batch_id: u64,
) -> Result<ReluOfflineServer> {
    params.validate()?;
    let zero = ot.send_correlated(ch, count * params.evaluator_input_bits())?;
    Ok(ReluOfflineServer {
        params,
        count,
        batch_id,
        delta: ot.delta(),
        zero,
    })
}

/// The server's ReLU batch between its OTs and its tables
/// ([`relu_offline_server_ot`]). Holds the client's zero labels: never printed.
pub struct ReluOfflineServer {
    params: ReluParams,
    count: usize,
    batch_id: u64,
    delta: crate::block::Delta,
    zero: Vec<Block>,
}

/// Prints sizes only: the zero labels and `Δ` are the garbler's secrets.
impl std::fmt::Debug for ReluOfflineServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReluOfflineServer")
            .field("params", &self.params)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl ReluOfflineServer {
    /// Garbles the batch and sends its tables (flushed). Returns the secrets to keep for
    /// the online phase.
    pub fn garble_and_send<C: Channel + ?Sized, R: RngCore + CryptoRng>(
        self,
        ch: &mut C,
        rng: R,
    ) -> Result<ReluGarblerSecrets> {
        let (garbled, secrets) = garble_relus(
            self.params,
            self.count,
            self.delta,
            Some(self.zero),
            self.batch_id,
            rng,
        )?;
        garbled.send(ch)?;
        ch.flush()?;
        Ok(secrets)
    }
}

/// Offline phase, client side: obtains the labels of its inputs `bs`, `qs` (see
/// [`client_gadget_inputs`](crate::gc::relu::client_gadget_inputs)) by correlated OT and
/// receives the garbled tables, checking that they are for `bs.len()` gadgets with
/// `params`. The same as [`relu_offline_client_ot`] followed at once by
/// [`relu_offline_client_tables`].
pub fn relu_offline_client<C: Channel + ?Sized>(
    ch: &mut C,
    ot: &mut OtReceiver,
    params: ReluParams,
    bs: &[u64],
    qs: &[u64],
) -> Result<(GarbledRelus, Vec<Block>)> {
    let labels = relu_offline_client_ot(ch, ot, params, bs, qs)?;
    let garbled = relu_offline_client_tables(ch, params, bs.len())?;
    Ok((garbled, labels))
}

/// Offline phase, client side, first half: the labels of its inputs `bs`, `qs` by
/// correlated OT (the server's [`relu_offline_server_ot`]).
pub fn relu_offline_client_ot<C: Channel + ?Sized>(
    ch: &mut C,
    ot: &mut OtReceiver,
    params: ReluParams,
    bs: &[u64],
    qs: &[u64],
) -> Result<Vec<Block>> {
    params.validate()?;
    let choices = client_input_bits(bs, qs, params)?;
    ot.receive_correlated(ch, &choices)
}

/// Offline phase, client side, second half: receives the garbled tables of `count`
/// gadgets with `params` (the server's [`ReluOfflineServer::garble_and_send`]), checking
/// that they are what was asked for.
pub fn relu_offline_client_tables<C: Channel + ?Sized>(
    ch: &mut C,
    params: ReluParams,
    count: usize,
) -> Result<GarbledRelus> {
    params.validate()?;
    let max_len = count
        .checked_mul(params.table_bytes())
        .and_then(|t| t.checked_add(64))
        .ok_or_else(|| ProtocolError::arg("too many gadgets"))?;
    let garbled = GarbledRelus::recv(ch, max_len)?;
    if garbled.params != params || garbled.count != count {
        return Err(ProtocolError::peer(format!(
            "server garbled {} gadgets with {:?}, expected {} with {:?}",
            garbled.count, garbled.params, count, params
        )));
    }
    Ok(garbled)
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha12Rng;

    use super::*;
    use crate::block::Delta;
    use crate::channel::{CountingChannel, MemoryChannel};
    use crate::gc::encode_labels;
    use crate::gc::relu::{client_gadget_inputs, mask, server_gadget_input};

    /// The gadget inputs of values `ys` (scale `2^(2f)`) split into random shares, with a
    /// random next-layer mask `r'` each: the server's `a`, the client's `b` and `q`, and
    /// the masks.
    struct Inputs {
        a: Vec<u64>,
        bs: Vec<u64>,
        qs: Vec<u64>,
        rs: Vec<u64>,
    }

    fn share_inputs(ys: &[i64], p: ReluParams, rng: &mut ChaCha12Rng) -> Inputs {
        let mut inp = Inputs {
            a: Vec::new(),
            bs: Vec::new(),
            qs: Vec::new(),
            rs: Vec::new(),
        };
        for &y in ys {
            let s = rng.r#gen::<u64>() & mask(p.l);
            let c = (y as u64).wrapping_sub(s) & mask(p.l);
            let r_next = rng.r#gen::<u64>() & mask(p.l);
            inp.a.push(server_gadget_input(s, p));
            let (b, q) = client_gadget_inputs(c, r_next, p);
            inp.bs.push(b);
            inp.qs.push(q);
            inp.rs.push(r_next);
        }
        inp
    }

    /// The server's outputs plus the masks are `relu(round(y / 2^f))`, or with fused
    /// truncation (`k > 0`) possibly `relu(round(y / 2^f) - 1)`.
    fn check_outputs(ys: &[i64], out: &[u64], rs: &[u64], p: ReluParams) {
        for i in 0..ys.len() {
            let x = out[i].wrapping_add(rs[i]) & mask(p.l);
            let t = (ys[i] + (1 << (p.f - 1))) >> p.f;
            let (exact, below) = (t.max(0) as u64, (t - 1).max(0) as u64);
            assert!(
                x == exact || (p.k > 0 && x == below),
                "y = {}: got {x}, exact {exact}",
                ys[i]
            );
        }
    }

    #[test]
    fn relu_end_to_end_with_shares() {
        for p in [ReluParams::EXACT, ReluParams::DEFAULT] {
            relu_end_to_end_with_shares_at(p);
        }
    }

    fn relu_end_to_end_with_shares_at(p: ReluParams) {
        // Server/client shares of y (scale 2^(2f)) -> shares of relu(round(y / 2^f)) - r'.
        let mut rng = ChaCha12Rng::seed_from_u64(11);
        let ys: Vec<i64> = vec![
            0,
            1,
            -1,
            5 << 24,
            -(5 << 24),
            123_456_789,
            -987_654_321,
            (1 << 31) - (1 << 11) - 1,
        ];
        let n = ys.len();
        let delta = Delta::random(&mut rng);
        let (garbled, secrets) =
            garble_relus(p, n, delta, None, 0, ChaCha12Rng::seed_from_u64(12)).unwrap();
        let inp = share_inputs(&ys, p, &mut rng);
        let choice = client_input_bits(&inp.bs, &inp.qs, p).unwrap();
        let client_labels =
            encode_labels(&secrets.secrets.evaluator_zero_labels, &choice, delta).unwrap();
        let (mut sch, mut cch) = MemoryChannel::pair();
        let g2 = garbled.clone();
        let qs = inp.qs.clone();
        let h = std::thread::spawn(move || relu_online_client(&mut cch, &g2, &client_labels, &qs));
        let out = relu_online_server(&mut sch, secrets, &inp.a).unwrap();
        h.join().unwrap().unwrap();
        check_outputs(&ys, &out, &inp.rs, p);
    }

    /// Labels sent and evaluated in chunks (several, the last one partial, and none at
    /// all) give the same outputs and the same bytes as one message; the client's
    /// `all_received` hook runs once, after the last label, and what it sends reaches the
    /// server between its two halves.
    #[test]
    fn chunked_online_phase_equals_one_message() {
        let p = ReluParams::DEFAULT;
        for (n, chunk) in [(50usize, 16usize), (50, 8), (50, 4096), (0, 16), (7, 8)] {
            let mut rng = ChaCha12Rng::seed_from_u64(n as u64 + 5);
            let ys: Vec<i64> = (0..n as i64).map(|i| (i - 20) * 1_234_567 + 11).collect();
            let delta = Delta::random(&mut rng);
            let (garbled, secrets) =
                garble_relus(p, n, delta, None, 4, ChaCha12Rng::seed_from_u64(6)).unwrap();
            let inp = share_inputs(&ys, p, &mut rng);
            let choice = client_input_bits(&inp.bs, &inp.qs, p).unwrap();
            let client_labels =
                encode_labels(&secrets.secrets.evaluator_zero_labels, &choice, delta).unwrap();
            let (sch, cch) = MemoryChannel::pair();
            let qs = inp.qs.clone();
            let h = std::thread::spawn(move || {
                let mut cch = CountingChannel::new(cch);
                let mut seen = Vec::new();
                relu_online_client_chunked(
                    &mut cch,
                    &garbled,
                    &client_labels,
                    &qs,
                    chunk,
                    |ch: &mut CountingChannel<MemoryChannel>| {
                        seen.push(ch.stats().bytes_received);
                        ch.send(b"answers")?;
                        ch.flush()?;
                        Ok(())
                    },
                )
                .unwrap();
                (cch.stats(), seen)
            });
            let mut sch = CountingChannel::new(sch);
            let pending = send_labels_chunked(&mut sch, secrets.into(), &inp.a, chunk).unwrap();
            let mut extra = [0u8; 7];
            sch.recv(&mut extra).unwrap();
            assert_eq!(&extra, b"answers");
            let out = pending.finish(&mut sch).unwrap();
            let (c, seen) = h.join().unwrap();
            check_outputs(&ys, &out, &inp.rs, p);
            let label_bytes = n * p.width() as usize * 16;
            assert_eq!(seen, [label_bytes as u64], "n = {n}, chunk = {chunk}");
            assert_eq!(sch.stats().bytes_sent as usize, label_bytes);
            assert_eq!(c.bytes_sent as usize, 7 + (n * p.l as usize).div_ceil(8));
            // One turn of the server's (the client's ends sending): the hook's message
            // and the colour bits need no reply in between.
            // (None without labels: the server only waits.)
            assert_eq!(
                (sch.stats().rounds, c.rounds),
                (u64::from(n > 0), 0),
                "n = {n}"
            );
        }
    }

    #[test]
    fn relu_offline_online_with_ot() {
        let (sch, cch) = MemoryChannel::pair();
        relu_offline_online(sch, cch);
    }

    #[cfg(unix)]
    #[test]
    fn relu_offline_online_over_socket_pair() {
        use crate::channel::StreamChannel;
        let (x, y) = std::os::unix::net::UnixStream::pair().unwrap();
        relu_offline_online(StreamChannel::new(x), StreamChannel::new(y));
    }

    fn relu_offline_online<C: Channel + Send + 'static>(sch: C, cch: C) {
        let p = ReluParams::DEFAULT;
        let n = 50;
        let mut rng = ChaCha12Rng::seed_from_u64(31);
        let ys: Vec<i64> = (0..n as i64).map(|i| (i - 25) * 987_654 + 3).collect();
        let Inputs { a, bs, qs, rs } = share_inputs(&ys, p, &mut rng);
        let h = std::thread::spawn(move || {
            let mut cch = CountingChannel::new(cch);
            let mut ot = OtReceiver::setup(&mut cch, &mut ChaCha12Rng::seed_from_u64(1)).unwrap();
            cch.reset();
            let (garbled, labels) = relu_offline_client(&mut cch, &mut ot, p, &bs, &qs).unwrap();
            let offline = cch.stats();
            cch.reset();
            relu_online_client(&mut cch, &garbled, &labels, &qs).unwrap();
            (offline, cch.stats())
        });
        let mut sch = CountingChannel::new(sch);
        let mut srng = ChaCha12Rng::seed_from_u64(2);
        let delta = Delta::random(&mut srng);
        let mut ot = OtSender::setup(&mut sch, delta, &mut srng).unwrap();
        sch.reset();
        let secrets = relu_offline_server(&mut sch, &mut ot, p, n, 0, srng).unwrap();
        let s_off = sch.stats();
        sch.reset();
        let out = relu_online_server(&mut sch, secrets, &a).unwrap();
        let s_on = sch.stats();
        let (c_off, c_on) = h.join().unwrap();
        check_outputs(&ys, &out, &rs, p);
        // Offline: client sends 16 bytes per OT (rounded up to 128 OTs); server sends tables.
        let ots = n * p.evaluator_input_bits();
        assert_eq!(c_off.bytes_sent as usize, 16 * ots.div_ceil(128) * 128);
        // Length prefix, magic and params, count, tables header (batch id, block count).
        assert_eq!(
            s_off.bytes_sent as usize,
            8 + 8 + 8 + 16 + n * p.table_bytes()
        );
        // Online: server sends m - k labels per gadget, client sends l colour bits per
        // gadget.
        assert_eq!(s_on.bytes_sent as usize, n * p.width() as usize * 16);
        assert_eq!(c_on.bytes_sent as usize, (n * p.l as usize).div_ceil(8));
        assert_eq!(
            (s_on.messages, s_on.rounds, c_on.messages, c_on.rounds),
            (1, 1, 1, 0)
        );
    }
}
