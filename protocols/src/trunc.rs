//! Exact truncation of additive shares, with one preprocessed oblivious transfer per value.
//!
//! The server holds `a` and the client `c` with `a + c = Y mod 2^l`, where `Y` is a signed
//! value with `|Y| < 2^(l-2)` (the server has already added its rounding offset). Local
//! truncation ([`truncate_share`]: `a >> f` and `-((-c) >> f)`) is off by `k · 2^(l-f)`,
//! where `k ∈ {-1, 0, 1}` says whether the integers `a` and `u = -c mod 2^l` wrap around
//! the ring (`a − u = Y + k 2^l`). This module computes `k` obliviously and removes it, so
//! the result is `floor(Y / 2^f)` or that plus one, always (docs/protocols.md §5.1).
//!
//! **Which shares wrap.** Write `L = 2^l`. If `u` lies in the middle half `[L/4, 3L/4]`
//! nothing can wrap. If `u < L/4` (client bit `p+`), `k = 1` exactly when the server's
//! share has its top bit set, `q = [a ≥ L/2]`; if `u > 3L/4` (`p−`), `k = −1` exactly when
//! `q = 0`. So the correction is `−k·T = T·p− − T·q·p` with `T = 2^(l-f)` and
//! `p = p+ ∨ p−`: a product of a client bit known offline and a server bit known only
//! online. One oblivious transfer per value shares it:
//!
//! * **Offline.** A random OT with the client as sender (random keys `k0, k1` of `f` bits)
//!   and the server as receiver (random choice `e`, key `k_e`), from IKNP extension with
//!   the roles the other way round from the garbled circuits' ([`OtSender`] on the client).
//!   The client draws `ρ` uniform in `[0, 2^f)` and sets its messages `x0 = ρ`,
//!   `x1 = ρ + p (mod 2^f)`; its truncated share is fixed now:
//!   `trunc_client(c) + T·(ρ + p−)`. It derandomizes the random OT into a correlated one
//!   (Beaver, CRYPTO 1995): it sends the corrections `γ = k1 − k0 − p mod 2^f`
//!   ([`TruncCorrections`], whenever the caller likes before the online phase; the
//!   runtime sends all layers' at the end of the offline phase) and the server keeps
//!   `K = k_e − e·γ = k0 + e·p` ([`TruncServerSecrets::receive_corrections`]).
//! * **Online**: the server sends `d = q ⊕ e` (one bit), the client answers one message
//!   `m = x0 − k0` if `d = 0` or `m = x1 + k0` if `d = 1` (`f` bits, sent as `⌈f/8⌉`
//!   bytes), and the server takes `x_q = m + K` (`d = 0`: `x0 + e·p = x_e`) or `m − K`
//!   (`d = 1`: `x1 − e·p = x_{1−e}`), `ρ + q·p` either way, and outputs
//!   `(a >> f) − T·x_q`.
//!
//! The two outputs add up to `floor(Y/2^f) + {0, 1} − k·T + k·T`. The server sees `d`
//! (its own bit under its own pad), `γ`, uniform because the key `k_{1−e}` it does not
//! hold masks it, and `m = x_q ∓ K`, a function of `x_q` (which `ρ` makes uniform), of
//! `K` and of `d`. The client sees `d`, uniform because `e` is. So neither party learns
//! anything, and no result depends on whether a wrap happened.
//!
//! Online cost per value: 1 bit server → client, `⌈f/8⌉` bytes client → server (2 for
//! `f = 14`; two messages, 4 bytes, before session protocol 7), and the round trip, which
//! the runtime shares with the layer's garbled-circuit round where there is one. Offline:
//! one IKNP random OT (16 bytes server → client) and the correction (`⌈f/8⌉` bytes client
//! → server).
//!
//! Requires `1 <= f <= 32` and `f + 3 <= l <= 64`.

use rand_core::{CryptoRng, RngCore};

use crate::block::Block;
use crate::channel::{Channel, ChannelExt};
use crate::error::{ProtocolError, Result};
use crate::ot::{OtReceiver, OtSender};
use crate::share::{Role, bit_mask, fields, truncate_share};

fn check(f: u32, l: u32) -> Result<()> {
    if (1..=32).contains(&f) && f + 3 <= l && l <= 64 {
        Ok(())
    } else {
        Err(ProtocolError::arg(format!(
            "exact truncation needs 1 <= f <= 32 and f + 3 <= l <= 64, got f = {f}, l = {l}"
        )))
    }
}

/// Bytes of one `f`-bit message on the wire.
const fn width(f: u32) -> usize {
    f.div_ceil(8) as usize
}

/// Online bytes of `n` exact truncations: `(server → client, client → server)` =
/// `(⌈n/8⌉, n ⌈f/8⌉)`.
pub const fn online_bytes(n: usize, f: u32) -> (u64, u64) {
    (n.div_ceil(8) as u64, n as u64 * width(f) as u64)
}

/// Bytes the client sends offline for `n` exact truncations (the corrections `γ`, the
/// IKNP extension excluded): `n ⌈f/8⌉`.
pub const fn correction_bytes(n: usize, f: u32) -> u64 {
    n as u64 * width(f) as u64
}

/// The low `f` bits of a random-OT key.
fn key_bits(k: Block, f: u32) -> u32 {
    (k.0 as u64 & ((1u64 << f) - 1)) as u32
}

/// `if bit { b } else { a }` without a branch on `bit`.
#[inline]
fn select(a: u32, b: u32, bit: bool) -> u32 {
    a ^ ((a ^ b) & 0u32.wrapping_sub(u32::from(bit)))
}

/// The server's offline material for `n` exact truncations: the random choices and keys of
/// its random OTs. Consumed by the online phase, after
/// [`TruncServerSecrets::receive_corrections`].
pub struct TruncServerSecrets {
    f: u32,
    l: u32,
    choices: Vec<bool>,
    /// `k_e` until the corrections arrive, then `K = k_e − e·γ = k0 + e·p` (`f` bits).
    keys: Vec<u32>,
    corrected: bool,
}

/// Prints sizes only.
impl core::fmt::Debug for TruncServerSecrets {
    fn fmt(&self, fm: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        fm.debug_struct("TruncServerSecrets")
            .field("values", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl TruncServerSecrets {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Bytes held per value (choice and key).
    pub const BYTES_PER_VALUE: u64 = 5;

    /// Material of `n` values filled from `rng` (choices and `f`-bit keys, corrections
    /// not yet received), without the offline protocol: for the fuzz target of the
    /// decoders, whose peer data cannot depend on it. Only in fuzzing builds. `f` and `l`
    /// are checked as the offline phase checks them.
    #[cfg(fuzzing)]
    pub fn for_fuzzing(n: usize, f: u32, l: u32, rng: &mut impl RngCore) -> Result<Self> {
        check(f, l)?;
        let fmask = (1u64 << f) - 1;
        Ok(TruncServerSecrets {
            f,
            l,
            choices: (0..n).map(|_| rng.next_u32() & 1 == 1).collect(),
            keys: (0..n).map(|_| (rng.next_u64() & fmask) as u32).collect(),
            corrected: n == 0,
        })
    }

    /// Receives the client's corrections ([`TruncCorrections::send`]) and turns the random
    /// OTs' keys into the correlated OTs' `K = k_e − e·γ`. Must come before the online
    /// phase, at the point of the stream where the client sent them. A correction with
    /// bits above `f` is a peer error; a second call is the caller's.
    pub fn receive_corrections<C: Channel + ?Sized>(&mut self, ch: &mut C) -> Result<()> {
        if self.corrected {
            return Err(ProtocolError::arg(
                "truncation corrections received twice".to_string(),
            ));
        }
        let (f, w) = (self.f, width(self.f));
        let mut buf = vec![0u8; w * self.keys.len()];
        ch.recv(&mut buf)?;
        let fmask = ((1u64 << f) - 1) as u32;
        for ((k, &e), g) in self
            .keys
            .iter_mut()
            .zip(&self.choices)
            .zip(buf.chunks_exact(w))
        {
            let g = read_le(g);
            if u64::from(g) >> f != 0 {
                return Err(ProtocolError::peer(format!(
                    "truncation correction: more than {f} bits"
                )));
            }
            *k = select(*k, k.wrapping_sub(g) & fmask, e);
        }
        self.corrected = true;
        Ok(())
    }

    fn check_ready(&self, shares: usize) -> Result<()> {
        if !self.corrected {
            return Err(ProtocolError::arg(
                "truncation online phase before its corrections were received".to_string(),
            ));
        }
        if shares != self.len() {
            return Err(ProtocolError::arg(format!(
                "{shares} shares to truncate, {} prepared",
                self.len()
            )));
        }
        Ok(())
    }
}

/// The client's offline material for `n` exact truncations: its answer for `d = 0` and
/// for `d = 1` per value. Consumed by the online phase.
pub struct TruncClientSecrets {
    f: u32,
    /// `(x0 − k0, x1 + k0) mod 2^f` per value.
    values: Vec<[u32; 2]>,
}

/// Prints sizes only.
impl core::fmt::Debug for TruncClientSecrets {
    fn fmt(&self, fm: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        fm.debug_struct("TruncClientSecrets")
            .field("values", &self.values.len())
            .finish_non_exhaustive()
    }
}

impl TruncClientSecrets {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Bytes held per value.
    pub const BYTES_PER_VALUE: u64 = 8;

    /// Material of `n` values filled from `rng`, without the offline protocol (see
    /// [`TruncServerSecrets::for_fuzzing`]). Only in fuzzing builds.
    #[cfg(fuzzing)]
    pub fn for_fuzzing(n: usize, f: u32, l: u32, rng: &mut impl RngCore) -> Result<Self> {
        check(f, l)?;
        let fmask = (1u64 << f) - 1;
        Ok(TruncClientSecrets {
            f,
            values: (0..n)
                .map(|_| {
                    [
                        (rng.next_u64() & fmask) as u32,
                        (rng.next_u64() & fmask) as u32,
                    ]
                })
                .collect(),
        })
    }
}

/// The client's corrections `γ = k1 − k0 − p mod 2^f` of `n` exact truncations, to be sent
/// offline with [`TruncCorrections::send`] and received with
/// [`TruncServerSecrets::receive_corrections`]. Uniform to the server (each is masked by
/// the OT key it does not hold).
pub struct TruncCorrections {
    bytes: Vec<u8>,
}

/// Prints sizes only.
impl core::fmt::Debug for TruncCorrections {
    fn fmt(&self, fm: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        fm.debug_struct("TruncCorrections")
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl TruncCorrections {
    /// Sends the corrections (does not flush).
    pub fn send<C: Channel + ?Sized>(self, ch: &mut C) -> Result<()> {
        ch.send(&self.bytes)?;
        Ok(())
    }
}

/// Offline phase, server side: `n` random OTs as receiver with random choices (one IKNP
/// extension; sends and flushes).
pub fn trunc_offline_server<C: Channel + ?Sized, R: RngCore + CryptoRng + ?Sized>(
    ch: &mut C,
    ot: &mut OtReceiver,
    n: usize,
    f: u32,
    l: u32,
    rng: &mut R,
) -> Result<TruncServerSecrets> {
    check(f, l)?;
    let mut choices = Vec::with_capacity(n);
    while choices.len() < n {
        let w = rng.next_u64();
        let k = (n - choices.len()).min(64);
        choices.extend((0..k).map(|i| (w >> i) & 1 == 1));
    }
    let keys = if n == 0 {
        Vec::new()
    } else {
        ot.receive_random(ch, &choices)?
            .into_iter()
            .map(|k| key_bits(k, f))
            .collect()
    };
    Ok(TruncServerSecrets {
        f,
        l,
        choices,
        keys,
        corrected: n == 0,
    })
}

/// Offline phase, client side, for the client's shares `shares` (reduced mod `2^l` here):
/// `n` random OTs as sender, then its messages. Returns the client's truncated shares,
/// final already, the material for the online phase, and the corrections the server must
/// receive before it (sends nothing itself).
pub fn trunc_offline_client<C: Channel + ?Sized, R: RngCore + CryptoRng + ?Sized>(
    ch: &mut C,
    ot: &mut OtSender,
    shares: &[u64],
    f: u32,
    l: u32,
    rng: &mut R,
) -> Result<(Vec<u64>, TruncClientSecrets, TruncCorrections)> {
    check(f, l)?;
    let pairs = if shares.is_empty() {
        Vec::new()
    } else {
        ot.send_random(ch, shares.len())?
    };
    let mask = bit_mask(l);
    let fmask = (1u64 << f) - 1;
    let quarter = 1u64 << (l - 2);
    let mut out = Vec::with_capacity(shares.len());
    let mut values = Vec::with_capacity(shares.len());
    let w = width(f);
    let mut corrections = Vec::with_capacity(shares.len() * w);
    for (&c, &(k0, k1)) in shares.iter().zip(&pairs) {
        let c = c & mask;
        let u = c.wrapping_neg() & mask;
        let p_plus = u64::from(u < quarter);
        let p_minus = u64::from(u > 3 * quarter);
        let p = p_plus | p_minus;
        let rho = rng.next_u64() & fmask;
        let x1 = (rho + p) & fmask;
        let t = truncate_share(Role::Client, c, f, l);
        out.push(t.wrapping_add((rho + p_minus) << (l - f)) & mask);
        let (k0, k1) = (u64::from(key_bits(k0, f)), u64::from(key_bits(k1, f)));
        let gamma = k1.wrapping_sub(k0).wrapping_sub(p) & fmask;
        corrections.extend_from_slice(&gamma.to_le_bytes()[..w]);
        values.push([
            (rho.wrapping_sub(k0) & fmask) as u32,
            ((x1 + k0) & fmask) as u32,
        ]);
    }
    Ok((
        out,
        TruncClientSecrets { f, values },
        TruncCorrections { bytes: corrections },
    ))
}

/// The server's top bit `q = [a ≥ 2^(l-1)]` of each share.
fn top_bits(shares: &[u64], l: u32) -> impl Iterator<Item = bool> + '_ {
    let mask = bit_mask(l);
    shares
        .iter()
        .map(move |&a| ((a & mask) >> (l - 1)) & 1 == 1)
}

/// Online phase, server side, first half: sends `d = q ⊕ e` for its shares `shares` (the
/// values to truncate, rounding offset included). Does not flush.
pub fn trunc_online_server_request<C: Channel + ?Sized>(
    ch: &mut C,
    sec: &TruncServerSecrets,
    shares: &[u64],
) -> Result<()> {
    sec.check_ready(shares.len())?;
    let d: Vec<bool> = top_bits(shares, sec.l)
        .zip(&sec.choices)
        .map(|(q, &e)| q ^ e)
        .collect();
    ch.send_bits(&d)?;
    Ok(())
}

/// Online phase, server side, second half: receives the client's answers and returns the
/// server's truncated shares of the same `shares` as the request.
pub fn trunc_online_server_finish<C: Channel + ?Sized>(
    ch: &mut C,
    sec: TruncServerSecrets,
    shares: &[u64],
) -> Result<Vec<u64>> {
    sec.check_ready(shares.len())?;
    let (f, l) = (sec.f, sec.l);
    let (n, w) = (shares.len(), width(f));
    let mut buf = fields::buffer(n, w);
    ch.recv(&mut buf[..n * w])?;
    let mask = bit_mask(l);
    let fmask = ((1u64 << f) - 1) as u32;
    let mut out = Vec::with_capacity(n);
    // Any bit above f in any answer (checked once, after the loop).
    let mut wide = 0u32;
    for (i, (((q, &e), &k), &a)) in top_bits(shares, l)
        .zip(&sec.choices)
        .zip(&sec.keys)
        .zip(shares)
        .enumerate()
    {
        let m = fields::get64(&buf, i * w, w) as u32;
        wide |= m & !fmask;
        // d = q ⊕ e: x_q = m + K when d = 0, m − K when d = 1.
        let x = select(m.wrapping_add(k), m.wrapping_sub(k), q ^ e) & fmask;
        let t = truncate_share(Role::Server, a, f, l);
        out.push(t.wrapping_sub(u64::from(x) << (l - f)) & mask);
    }
    if wide != 0 {
        return Err(ProtocolError::peer(format!(
            "truncation answer: a message has more than {f} bits"
        )));
    }
    Ok(out)
}

fn read_le(b: &[u8]) -> u32 {
    b.iter()
        .rev()
        .fold(0u32, |acc, &x| (acc << 8) | u32::from(x))
}

/// The client's answer to the server's request, to be sent with
/// [`TruncAnswer::send`].
pub struct TruncAnswer {
    bytes: Vec<u8>,
}

impl TruncAnswer {
    /// Sends the answer (does not flush).
    pub fn send<C: Channel + ?Sized>(self, ch: &mut C) -> Result<()> {
        ch.send(&self.bytes)?;
        Ok(())
    }
}

/// Online phase, client side: receives `d` and computes the answer, `x0 − k0` or
/// `x1 + k0` by `d` (consumes the material: the keys must never be used twice).
pub fn trunc_online_client<C: Channel + ?Sized>(
    ch: &mut C,
    sec: TruncClientSecrets,
) -> Result<TruncAnswer> {
    let (n, w) = (sec.len(), width(sec.f));
    let d = ch.recv_bits(n)?;
    let mut bytes = fields::buffer(n, w);
    for (i, ([m0, m1], d)) in sec.values.into_iter().zip(d).enumerate() {
        fields::put64(&mut bytes, i * w, u64::from(select(m0, m1, d)));
    }
    bytes.truncate(n * w);
    Ok(TruncAnswer { bytes })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::block::Delta;
    use crate::channel::{CountingChannel, MemoryChannel};
    use crate::error::Fault;
    use crate::share::round_offset;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha12Rng;

    /// Runs the whole protocol on `(Y, u)` pairs: the server's share is `Y + u` (offset
    /// included in `Y`), the client's `-u`. Returns the reconstructed results and the
    /// client's view of the online bytes `(received, sent)`.
    fn run(cases: &[(i64, u64)], f: u32, l: u32, seed: u64) -> (Vec<i64>, (u64, u64)) {
        let mask = bit_mask(l);
        let a: Vec<u64> = cases
            .iter()
            .map(|&(y, u)| (y as u64).wrapping_add(u) & mask)
            .collect();
        let c: Vec<u64> = cases
            .iter()
            .map(|&(_, u)| u.wrapping_neg() & mask)
            .collect();
        let (mut s_ch, c_ch) = MemoryChannel::pair();
        let h = std::thread::spawn(move || {
            let mut ch = CountingChannel::new(c_ch);
            let mut rng = ChaCha12Rng::seed_from_u64(seed + 1);
            let delta = Delta::random(&mut rng);
            let mut ot = OtSender::setup(&mut ch, delta, &mut rng).unwrap();
            let (t, sec, corr) =
                trunc_offline_client(&mut ch, &mut ot, &c, f, l, &mut rng).unwrap();
            let sent = ch.stats().bytes_sent;
            corr.send(&mut ch).unwrap();
            ch.flush().unwrap();
            assert_eq!(ch.stats().bytes_sent - sent, correction_bytes(c.len(), f));
            let before = ch.stats();
            let ans = trunc_online_client(&mut ch, sec).unwrap();
            ans.send(&mut ch).unwrap();
            ch.flush().unwrap();
            let after = ch.stats();
            (
                t,
                (
                    after.bytes_received - before.bytes_received,
                    after.bytes_sent - before.bytes_sent,
                ),
            )
        });
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let mut ot = OtReceiver::setup(&mut s_ch, &mut rng).unwrap();
        let mut sec = trunc_offline_server(&mut s_ch, &mut ot, a.len(), f, l, &mut rng).unwrap();
        if !a.is_empty() {
            sec.receive_corrections(&mut s_ch).unwrap();
        }
        trunc_online_server_request(&mut s_ch, &sec, &a).unwrap();
        s_ch.flush().unwrap();
        let ts = trunc_online_server_finish(&mut s_ch, sec, &a).unwrap();
        let (tc, bytes) = h.join().unwrap();
        let sh = 64 - l;
        let got = ts
            .iter()
            .zip(&tc)
            .map(|(&x, &y)| ((x.wrapping_add(y) << sh) as i64) >> sh)
            .collect();
        (got, bytes)
    }

    /// Local truncation of the same shares, for comparison.
    fn local(y: i64, u: u64, f: u32, l: u32) -> i64 {
        let mask = bit_mask(l);
        let a = (y as u64).wrapping_add(u) & mask;
        let c = u.wrapping_neg() & mask;
        let t = truncate_share(Role::Server, a, f, l).wrapping_add(truncate_share(
            Role::Client,
            c,
            f,
            l,
        )) & mask;
        let sh = 64 - l;
        ((t << sh) as i64) >> sh
    }

    /// Shares chosen where local truncation wraps (u next to 0 and next to 2^l, both
    /// signs of Y), at the quarter boundaries, at the largest |Y| allowed, and random.
    fn cases(l: u32, f: u32, rng: &mut ChaCha12Rng) -> Vec<(i64, u64)> {
        let mask = bit_mask(l);
        let big = (1i64 << (l - 2)) - 1;
        let q = 1u64 << (l - 2);
        let mut v = Vec::new();
        for y in [
            0,
            1,
            -1,
            (1 << f) - 1,
            1 << f,
            -(1 << f),
            12_345_678,
            -12_345_678,
            big,
            -big,
        ]
        .into_iter()
        .filter(|y| y.abs() <= big)
        {
            for u in [
                0,
                1,
                2,
                (y.unsigned_abs()) & mask,
                (y.unsigned_abs().wrapping_sub(1)) & mask,
                mask,
                mask - 1,
                mask.wrapping_sub(y.unsigned_abs()) & mask,
                q - 1,
                q,
                q + 1,
                3 * q - 1,
                3 * q,
                3 * q + 1,
                2 * q,
            ] {
                v.push((y, u));
            }
        }
        for _ in 0..2000 {
            let y = rng.gen_range(-big..=big) >> rng.gen_range(0..(l - 2));
            let u = match rng.gen_range(0..3) {
                0 => rng.r#gen::<u64>() & mask,
                1 => rng.gen_range(0..1u64 << 20),
                _ => mask - rng.gen_range(0..1u64 << 20),
            };
            v.push((y, u));
        }
        v
    }

    #[test]
    fn exact_where_local_truncation_wraps() {
        let mut rng = ChaCha12Rng::seed_from_u64(7);
        for (l, f) in [(61u32, 14u32), (64, 16), (40, 12), (20, 5), (35, 32)] {
            let cs = cases(l, f, &mut rng);
            let (got, _) = run(&cs, f, l, 100 + u64::from(l));
            let mut local_wrong = 0;
            for (&(y, u), &g) in cs.iter().zip(&got) {
                let want = y >> f;
                assert!(
                    g == want || g == want + 1,
                    "l={l} f={f} Y={y} u={u}: got {g}, want {want} or +1"
                );
                let lo = local(y, u, f, l);
                if lo != want && lo != want + 1 {
                    local_wrong += 1;
                }
            }
            // The cases do exercise the wrap that local truncation gets wrong.
            assert!(
                local_wrong > 20,
                "l={l} f={f}: only {local_wrong} local wraps"
            );
        }
    }

    #[test]
    fn rounding_offset_gives_round_half_up() {
        let (l, f) = (61, 14);
        let off = round_offset(f) as i64;
        let ys: Vec<i64> = vec![0, 8191, 8192, 8193, -8192, -8193, 3 << 14, -(5 << 14) + 1];
        let cs: Vec<(i64, u64)> = ys.iter().map(|&y| (y + off, 0)).collect();
        let (got, _) = run(&cs, f, l, 5);
        for (&y, &g) in ys.iter().zip(&got) {
            let want = (y + off) >> f;
            assert!(g == want || g == want + 1, "y={y}: {g} vs {want}");
        }
    }

    #[test]
    fn online_bytes_match_the_formula() {
        for (n, f) in [(1usize, 14u32), (9, 14), (1000, 14), (77, 20)] {
            let cs: Vec<(i64, u64)> = (0..n).map(|i| (i as i64, i as u64 * 977)).collect();
            let (_, (recv, sent)) = run(&cs, f, 61, 9);
            assert_eq!((recv, sent), online_bytes(n, f), "n={n} f={f}");
        }
        assert_eq!(online_bytes(9, 14), (2, 18));
        assert_eq!(correction_bytes(9, 14), 18);
    }

    #[test]
    fn empty_and_bad_arguments() {
        let (got, b) = run(&[], 14, 61, 3);
        assert!(got.is_empty());
        assert_eq!(b, (0, 0));
        assert!(check(0, 61).is_err());
        assert!(check(33, 64).is_err());
        assert!(check(14, 16).is_err());
        assert!(check(14, 65).is_err());
        assert!(check(14, 17).is_ok());
    }

    #[test]
    fn oversized_answer_is_a_peer_error() {
        let (f, l) = (14, 61);
        let (mut s_ch, mut c_ch) = MemoryChannel::pair();
        let h = std::thread::spawn(move || {
            let mut rng = ChaCha12Rng::seed_from_u64(2);
            let mut ot = OtSender::setup(&mut c_ch, Delta::random(&mut rng), &mut rng).unwrap();
            let (_, _, corr) =
                trunc_offline_client(&mut c_ch, &mut ot, &[5, 6], f, l, &mut rng).unwrap();
            corr.send(&mut c_ch).unwrap();
            c_ch.flush().unwrap();
            let _ = c_ch.recv_bits(2).unwrap();
            // A malicious answer: 16-bit messages where 14 bits are allowed.
            c_ch.send(&[0xff; 4]).unwrap();
            c_ch.flush().unwrap();
        });
        let mut rng = ChaCha12Rng::seed_from_u64(1);
        let mut ot = OtReceiver::setup(&mut s_ch, &mut rng).unwrap();
        let mut sec = trunc_offline_server(&mut s_ch, &mut ot, 2, f, l, &mut rng).unwrap();
        sec.receive_corrections(&mut s_ch).unwrap();
        let a = [1u64, 2];
        trunc_online_server_request(&mut s_ch, &sec, &a).unwrap();
        s_ch.flush().unwrap();
        let e = trunc_online_server_finish(&mut s_ch, sec, &a).unwrap_err();
        assert_eq!(e.fault(), Fault::Peer);
        assert!(e.to_string().contains("more than 14 bits"), "{e}");
        h.join().unwrap();
        // A wrong number of shares is the caller's error.
        let sec = TruncServerSecrets {
            f,
            l,
            choices: vec![false],
            keys: vec![0],
            corrected: true,
        };
        let (mut x, _y) = MemoryChannel::pair();
        let e = trunc_online_server_request(&mut x, &sec, &[1, 2]).unwrap_err();
        assert_eq!(e.fault(), Fault::Caller);
    }

    #[test]
    fn oversized_correction_is_a_peer_error() {
        let (f, l) = (14, 61);
        let (mut s_ch, mut c_ch) = MemoryChannel::pair();
        let h = std::thread::spawn(move || {
            let mut rng = ChaCha12Rng::seed_from_u64(2);
            let mut ot = OtSender::setup(&mut c_ch, Delta::random(&mut rng), &mut rng).unwrap();
            let _ = trunc_offline_client(&mut c_ch, &mut ot, &[5, 6], f, l, &mut rng).unwrap();
            // A correction with bit 14 set.
            c_ch.send(&[0, 0, 0, 0x40]).unwrap();
            c_ch.flush().unwrap();
        });
        let mut rng = ChaCha12Rng::seed_from_u64(1);
        let mut ot = OtReceiver::setup(&mut s_ch, &mut rng).unwrap();
        let mut sec = trunc_offline_server(&mut s_ch, &mut ot, 2, f, l, &mut rng).unwrap();
        let e = sec.receive_corrections(&mut s_ch).unwrap_err();
        assert_eq!(e.fault(), Fault::Peer);
        assert!(
            e.to_string().contains("correction: more than 14 bits"),
            "{e}"
        );
        h.join().unwrap();
    }

    #[test]
    fn corrections_are_required_once() {
        let mut sec = TruncServerSecrets {
            f: 14,
            l: 61,
            choices: vec![false, true],
            keys: vec![0, 0],
            corrected: false,
        };
        let (mut x, mut y) = MemoryChannel::pair();
        let e = trunc_online_server_request(&mut x, &sec, &[1, 2]).unwrap_err();
        assert_eq!(e.fault(), Fault::Caller);
        assert!(e.to_string().contains("before its corrections"), "{e}");
        y.send(&[1, 0, 2, 0]).unwrap();
        y.flush().unwrap();
        sec.receive_corrections(&mut x).unwrap();
        // K = k_e − e·γ: unchanged for e = 0, −2 mod 2^14 for e = 1.
        assert_eq!(sec.keys, vec![0, (1 << 14) - 2]);
        let e = sec.receive_corrections(&mut x).unwrap_err();
        assert_eq!(e.fault(), Fault::Caller);
        trunc_online_server_request(&mut x, &sec, &[1, 2]).unwrap();
    }

    #[test]
    fn debug_prints_no_secrets() {
        let sec = TruncServerSecrets {
            f: 14,
            l: 61,
            choices: vec![true; 3],
            keys: vec![12345; 3],
            corrected: true,
        };
        let s = format!("{sec:?}");
        assert!(!s.contains("12345") && s.contains("values: 3"), "{s}");
        let sec = TruncClientSecrets {
            f: 14,
            values: vec![[11111, 4444]; 2],
        };
        let s = format!("{sec:?}");
        assert!(!s.contains("11111") && !s.contains("4444"), "{s}");
        let corr = TruncCorrections {
            bytes: vec![0xab; 3],
        };
        let s = format!("{corr:?}");
        assert!(!s.contains("171") && s.contains("bytes: 3"), "{s}");
    }
}
