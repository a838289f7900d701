//! Exact truncation with a square: the shares of a truncated value at two shifts and the
//! exact square of the second, in one online round trip, for learned quadratic
//! activations (docs/protocols.md §5.2).
//!
//! **Inputs.** Ring `Z_L`, `L = 2^l`. At each of `n` positions the server holds `a`
//! (known online) and the client `c` (known offline) with `a + c = Y mod L`,
//! `|Y| < L/4`, the server's rounding offset already in `a`. Two shifts `1 <= t <= t2`.
//! Write `T = 2^(l−t)`, `T2 = 2^(l−t2)`, `tr_s`/`tr_c` for [`truncate_share`] of the
//! server and the client.
//!
//! **Outputs.** Shares of `x = ⌊Y/2^t⌋` and `x~ = ⌊Y/2^t2⌋` (each possibly plus one, the
//! carry of the low bits, as in [`crate::trunc`]) and of `S = x~² mod L`, **exact** for
//! the `x~` the shares add up to. Every share of the client is fixed offline (the runtime
//! uses them as the client's masks for the next layer's preprocessing); the server's
//! shares come out of one online round trip.
//!
//! **The wrap** (as in [`crate::trunc`]): with `u = −c mod L`, `p+ = [u < L/4]`,
//! `p− = [u > 3L/4]`, `p = p+ ∨ p−` (client bits, offline) and `q` the top bit of `a`
//! (server bit, online), `tr_s(a, s) + tr_c(c, s) − 2^(l−s)·q·p + 2^(l−s)·p−` is
//! `⌊Y/2^s⌋ + {0, 1}` for every shift `s`. A single random OT with the client as sender,
//! derandomized into a correlated OT, shares `ρ + q·p`, and, in the same OT, the cross
//! term that the square needs.
//!
//! **Offline.**
//! 1. One random OT per position, client = [`OtSender`], server = [`OtReceiver`] (the
//!    direction of [`crate::trunc`]); keys are the low `2·t2` bits of the random-OT
//!    output. The client draws `ρ, ρ3 ∈ [0, 2^t2)` and fixes
//!    `x_c = tr_c(c, t) + T·(ρ + p−)`, `x~_c = tr_c(c, t2) + T2·(ρ + p−)` (one `ρ` serves
//!    both shifts: `T·ρ mod L` depends on `ρ mod 2^t` only), and its OT messages
//!    `X_j = (ρ + j·p mod 2^t2, ρ3 + j·p·x~_c mod 2^t2)`, `j = 0, 1` (the cross term
//!    enters multiplied by `T2 = 2^(l−t2)`, so only its low `t2` bits matter). Pairs are
//!    added and subtracted componentwise mod `2^t2`; `Δ = X_1 − X_0 = (p, p·x~_c)`.
//!    The client sends `γ = k_1 − k_0 − Δ` (`2·t2` bits); the server keeps
//!    `K = k_e − e·γ = k_0 + e·Δ` (the derandomization of a random OT into a correlated
//!    one, as in Beaver, "Precomputing oblivious transfer", CRYPTO 1995).
//! 2. An oblivious linear evaluation (Gilboa, "Two party RSA key generation", CRYPTO 1999)
//!    gives `o_s + o_c = U·x~_c mod L` for a uniform `U` of the server's: `l` random OTs
//!    per position with the server as [`OtSender`] and the client as [`OtReceiver`]
//!    choosing the bits `b_i` of `x~_c`. For OT `i` (keys `k0, k1` reduced mod
//!    `2^(l−i)`) the server sends the correction `γ_i = k1 − k0 − U mod 2^(l−i)`
//!    (`l − i` bits, bit-packed) and keeps `−k0`; the client takes
//!    `k_{b_i} − b_i·γ_i = k0 + b_i·U mod 2^(l−i)`. Weighted by `2^i` and summed mod `L`
//!    these give `o_s = −Σ 2^i k0_i` and `o_c = Σ 2^i k0_i + U·x~_c`. See [`ole_sender`],
//!    [`ole_receiver`].
//! 3. The client draws `σ_c ∈ Z_L`: its share of `S`.
//!
//! **Online.**
//! 4. Server → client: `d = q ⊕ e` (1 bit, `e` its random-OT choice) and
//!    `e1 = tr_s(a, t2) − U mod L` (`l` bits).
//! 5. Client → server: `m = X_0 − k_0` if `d = 0`, `m = X_1 + k_0` if `d = 1` (`2·t2`
//!    bits) and `w = x~_c² + 2·(e1·x~_c + o_c − T2·ρ·x~_c + T2·ρ3) − σ_c mod L` (`l` bits).
//! 6. The server opens `(x_q, x'_q) = X_q = (ρ + q·p, ρ3 + q·p·x~_c) mod 2^t2` as
//!    `m + K` if `d = 0` and `m − K` if `d = 1` (with `q = d ⊕ e`: for `d = 0`,
//!    `X_0 − k_0 + k_0 + e·Δ = X_e`; for `d = 1`, `X_0 + Δ + k_0 − k_0 − e·Δ = X_{1−e}`),
//!    and outputs `x_s = tr_s(a, t) − T·x_q`, `x~_s = tr_s(a, t2) − T2·x_q` and
//!    `S_s = x~_s² + 2·(o_s − T2·x'_q) + w`.
//!
//! **Why `S` is exact.** `x~² = x~_s² + 2·x~_s·x~_c + x~_c²` and
//! `x~_s·x~_c = tr_s(a, t2)·x~_c − T2·x_q·x~_c`. The first term is
//! `(e1 + U)·x~_c = e1·x~_c + o_s + o_c`. In the second, `T2·2^t2 = L` makes the reduction
//! of `x_q` mod `2^t2` vanish, so it is `T2·ρ·x~_c + q·T2·p·x~_c`, and for the same reason
//! `q·T2·p·x~_c = T2·(x'_q − ρ3) mod L`. Collecting the server's terms and the client's:
//! `x~² = x~_s² + 2·(o_s − T2·x'_q) + [x~_c² + 2·(e1·x~_c + o_c − T2·ρ·x~_c + T2·ρ3)]`,
//! and the client sends the bracket minus `σ_c`.
//!
//! **Security** (semi-honest). The client sees `d`, uniform because the OT hides `e`;
//! `e1`, uniform because `U` is (the OLE shows the client only keys it chose and
//! corrections masked by keys it did not choose, none of which depends on `U`); and its
//! OLE output, a function of its own keys. The server sees `x_q` (uniform by `ρ`), `x'_q`
//! (uniform by `ρ3`) and `w` (uniform by `σ_c`), jointly uniform since each has its own
//! mask; the correction `γ` is uniform to it, masked by the key `k_{1−e}` it did not
//! receive (IKNP random OT), and `m = X_q − (1 − 2d)·K` follows from `X_q`, `K` and `d`;
//! the OLE shows it only the IKNP receiver's messages, which hide the client's choice
//! bits. So the server's view is simulated from `X_q` and `w`. Neither view depends on whether a wrap
//! happened, on `Y`, or on the other party's shares.
//!
//! **Costs** (per position; [`online_bytes`], [`offline_bytes`]). Online:
//! `⌈n/8⌉ + n·⌈l/8⌉` bytes down and `n·(⌈2·t2/8⌉ + ⌈l/8⌉)` up (8.125 and 13 bytes at
//! `l = 61, t2 = 20`), one round trip. Offline: one IKNP random OT down (16 bytes), its
//! correction `γ` up (`⌈2·t2/8⌉` bytes), `l` IKNP random OTs up (`16 l` bytes) and
//! `l(l+1)/2` bits of corrections down, in one flight each way per batch of
//! [`OLE_BATCH`] positions.
//!
//! Requires `1 <= t <= t2 <= 40` and `t2 + 3 <= l <= 64`.

use rand_core::{CryptoRng, RngCore};

use crate::channel::{Channel, ChannelExt};
use crate::error::{ProtocolError, Result};
use crate::ot::iknp::{CHUNK, KAPPA};
use crate::ot::{OtReceiver, OtSender};
use crate::share::{Role, bit_mask, fields, truncate_share};

/// Positions per OLE batch: one IKNP extension of `OLE_BATCH · l` OTs (client → server)
/// and one flight of corrections (server → client) each. Bounds the memory of the OT
/// keys (32 bytes per OT on the server, 16 on the client) to about 8 MB at `l = 61`.
pub const OLE_BATCH: usize = 4096;

/// The parameters of one exact truncation with a square: the ring `Z_{2^l}`, the shift `t`
/// of the truncated value and the shift `t2` of the squared one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SquareParams {
    /// Ring bits `l`.
    pub l: u32,
    /// Shift of `x = ⌊Y/2^t⌋`.
    pub t: u32,
    /// Shift of `x~ = ⌊Y/2^t2⌋`, the value that is squared.
    pub t2: u32,
}

impl SquareParams {
    /// Checked parameters: `1 <= t <= t2 <= 40`, `t2 + 3 <= l <= 64`.
    pub fn new(l: u32, t: u32, t2: u32) -> Result<Self> {
        let p = SquareParams { l, t, t2 };
        p.check()?;
        Ok(p)
    }

    /// Fails unless `1 <= t <= t2 <= 40` and `t2 + 3 <= l <= 64`.
    pub fn check(self) -> Result<()> {
        let SquareParams { l, t, t2 } = self;
        if 1 <= t && t <= t2 && t2 <= 40 && t2 + 3 <= l && l <= 64 {
            Ok(())
        } else {
            Err(ProtocolError::arg(format!(
                "exact truncation with a square needs 1 <= t <= t2 <= 40 and \
                 t2 + 3 <= l <= 64, got l = {l}, t = {t}, t2 = {t2}"
            )))
        }
    }

    /// `2^l − 1`.
    const fn mask(self) -> u64 {
        bit_mask(self.l)
    }

    /// Bits of one OT message `(x, x')`: `2·t2`.
    const fn msg_bits(self) -> u32 {
        2 * self.t2
    }

    /// `2^(2·t2) − 1`.
    const fn msg_mask(self) -> u128 {
        (1u128 << self.msg_bits()) - 1
    }
}

/// Bytes of one `bits`-bit field on the wire.
const fn width(bits: u32) -> usize {
    bits.div_ceil(8) as usize
}

/// Online bytes of `n` truncations with a square: `(server → client, client → server)` =
/// `(⌈n/8⌉ + n ⌈l/8⌉, n (⌈2 t2/8⌉ + ⌈l/8⌉))`.
pub const fn online_bytes(n: usize, p: SquareParams) -> (u64, u64) {
    (
        (n.div_ceil(8) + n * width(p.l)) as u64,
        (n * (width(p.msg_bits()) + width(p.l))) as u64,
    )
}

/// Bytes of one IKNP extension of `m` OTs (receiver → sender; chunks of [`CHUNK`] OTs, each
/// rounded up to a multiple of 128).
const fn iknp_bytes(m: usize) -> u64 {
    (KAPPA * ((m / CHUNK) * (CHUNK / 8) + (m % CHUNK).div_ceil(128) * 16)) as u64
}

/// Bits of one position's OLE corrections: `l + (l−1) + … + 1`.
const fn correction_bits(l: u32) -> usize {
    (l as usize) * (l as usize + 1) / 2
}

fn ole_bytes_batched(n: usize, l: u32, batch: usize) -> (u64, u64) {
    let (mut down, mut up) = (0u64, 0u64);
    let mut done = 0;
    while done < n {
        let b = (n - done).min(batch);
        up += iknp_bytes(b * l as usize);
        down += (b * correction_bits(l)).div_ceil(8) as u64;
        done += b;
    }
    (down, up)
}

/// Bytes of [`ole_sender`]/[`ole_receiver`] on `n` values of `Z_{2^l}`:
/// `(sender → receiver, receiver → sender)`: `l(l+1)/2` bits of corrections per value
/// (bit-packed per batch of [`OLE_BATCH`]) and one IKNP extension of `l` OTs per value.
pub fn ole_bytes(n: usize, l: u32) -> (u64, u64) {
    ole_bytes_batched(n, l, OLE_BATCH)
}

/// Offline bytes of `n` truncations with a square, after the two OT setups:
/// `(server → client, client → server)`. Down: one IKNP extension of `n` OTs and the OLE
/// corrections; up: the correlation corrections `γ` (`⌈2 t2/8⌉` bytes each) and the OLE's
/// IKNP extension of `n·l` OTs. Per position at `l = 61, t2 = 20`: `16 + 1891/8 ≈ 252.4`
/// bytes down and `5 + 976` up.
pub fn offline_bytes(n: usize, p: SquareParams) -> (u64, u64) {
    let (down, up) = ole_bytes(n, p.l);
    (iknp_bytes(n) + down, (n * width(p.msg_bits())) as u64 + up)
}

/// Componentwise `x + y` of two pairs packed as `t2`-bit fields (`x` in the low field,
/// `x'` above it), each mod `2^t2`.
#[inline]
fn pair_add(x: u128, y: u128, t2: u32) -> u128 {
    let m = u128::from(bit_mask(t2));
    let lo = (x & m).wrapping_add(y & m) & m;
    let hi = ((x >> t2) & m).wrapping_add((y >> t2) & m) & m;
    lo | (hi << t2)
}

/// Componentwise `x − y` of two packed pairs (see [`pair_add`]).
#[inline]
fn pair_sub(x: u128, y: u128, t2: u32) -> u128 {
    let m = u128::from(bit_mask(t2));
    let lo = (x & m).wrapping_sub(y & m) & m;
    let hi = ((x >> t2) & m).wrapping_sub((y >> t2) & m) & m;
    lo | (hi << t2)
}

/// `if bit { b } else { a }` without a branch on `bit`.
#[inline]
fn select(a: u128, b: u128, bit: bool) -> u128 {
    a ^ ((a ^ b) & 0u128.wrapping_sub(u128::from(bit)))
}

/// Little-endian bit packing of fields of at most 64 bits.
struct BitWriter {
    out: Vec<u8>,
    acc: u128,
    bits: u32,
}

impl BitWriter {
    fn with_capacity(bytes: usize) -> Self {
        BitWriter {
            out: Vec::with_capacity(bytes),
            acc: 0,
            bits: 0,
        }
    }

    /// Appends the low `w` bits of `v` (`v < 2^w`, `w <= 64`). Fewer than 64 bits wait in
    /// the accumulator; whole words go out little-endian.
    fn push(&mut self, v: u64, w: u32) {
        self.acc |= u128::from(v) << self.bits;
        self.bits += w;
        if self.bits >= 64 {
            self.out.extend_from_slice(&(self.acc as u64).to_le_bytes());
            self.acc >>= 64;
            self.bits -= 64;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let rest = self.bits.div_ceil(8) as usize;
        self.out
            .extend_from_slice(&(self.acc as u64).to_le_bytes()[..rest]);
        self.out
    }
}

/// Reads what [`BitWriter`] wrote.
struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    acc: u128,
    bits: u32,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        BitReader {
            bytes,
            pos: 0,
            acc: 0,
            bits: 0,
        }
    }

    /// The next `w <= 64` bits (zeros past the end: the caller sized the buffer).
    fn pull(&mut self, w: u32) -> u64 {
        while self.bits < w {
            let b = self.bytes.get(self.pos).copied().unwrap_or(0);
            self.acc |= u128::from(b) << self.bits;
            self.pos += 1;
            self.bits += 8;
        }
        let v = (self.acc as u64) & bit_mask(w);
        self.acc >>= w;
        self.bits -= w;
        v
    }

    /// Fails unless every byte was read and the padding bits of the last are zero.
    fn finish(self, what: &str) -> Result<()> {
        if self.pos == self.bytes.len() && self.acc == 0 {
            Ok(())
        } else {
            Err(ProtocolError::peer(format!("{what}: nonzero padding bits")))
        }
    }
}

fn check_ring(l: u32) -> Result<()> {
    if (1..=64).contains(&l) {
        Ok(())
    } else {
        Err(ProtocolError::arg(format!(
            "oblivious linear evaluation in Z_2^{l}: need 1 <= l <= 64"
        )))
    }
}

/// Oblivious linear evaluation (Gilboa, CRYPTO 1999), sender side: for each `U` of
/// `us` (reduced mod `2^l`) and the receiver's `x`, returns `o_s` with
/// `o_s + o_c = U·x mod 2^l`. `l` random OTs per value from `ot` (this party is the IKNP
/// sender), then one correction of `l − i` bits per OT `i`, bit-packed, in one flight per
/// batch of [`OLE_BATCH`] values (sends and flushes). The receiver runs [`ole_receiver`].
pub fn ole_sender<C: Channel + ?Sized>(
    ch: &mut C,
    ot: &mut OtSender,
    us: &[u64],
    l: u32,
) -> Result<Vec<u64>> {
    ole_sender_batched(ch, ot, us, l, OLE_BATCH)
}

fn ole_sender_batched<C: Channel + ?Sized>(
    ch: &mut C,
    ot: &mut OtSender,
    us: &[u64],
    l: u32,
    batch: usize,
) -> Result<Vec<u64>> {
    check_ring(l)?;
    let mask = bit_mask(l);
    let lu = l as usize;
    let mut out = Vec::with_capacity(us.len());
    for chunk in us.chunks(batch.max(1)) {
        let pairs = ot.send_random(ch, chunk.len() * lu)?;
        let mut w = BitWriter::with_capacity((chunk.len() * correction_bits(l)).div_ceil(8));
        for (&u, keys) in chunk.iter().zip(pairs.chunks_exact(lu)) {
            let u = u & mask;
            let mut r = 0u64;
            for (i, &(k0, k1)) in (0u32..).zip(keys) {
                let wm = bit_mask(l - i);
                let (k0, k1) = (k0.lo() & wm, k1.lo() & wm);
                w.push(k1.wrapping_sub(k0).wrapping_sub(u) & wm, l - i);
                r = r.wrapping_add(k0 << i);
            }
            out.push(r.wrapping_neg() & mask);
        }
        ch.send(&w.finish())?;
        ch.flush()?;
    }
    Ok(out)
}

/// Oblivious linear evaluation (Gilboa, CRYPTO 1999), receiver side: for each `x` of `xs`
/// (reduced mod `2^l`), returns `o_c` with `o_s + o_c = U·x mod 2^l` for the sender's `U`.
/// `l` random OTs per value from `ot` (this party is the IKNP receiver, choosing the bits
/// of `x`), then the sender's corrections. See [`ole_sender`].
pub fn ole_receiver<C: Channel + ?Sized>(
    ch: &mut C,
    ot: &mut OtReceiver,
    xs: &[u64],
    l: u32,
) -> Result<Vec<u64>> {
    ole_receiver_batched(ch, ot, xs, l, OLE_BATCH)
}

fn ole_receiver_batched<C: Channel + ?Sized>(
    ch: &mut C,
    ot: &mut OtReceiver,
    xs: &[u64],
    l: u32,
    batch: usize,
) -> Result<Vec<u64>> {
    check_ring(l)?;
    let mask = bit_mask(l);
    let lu = l as usize;
    let mut out = Vec::with_capacity(xs.len());
    for chunk in xs.chunks(batch.max(1)) {
        let choices: Vec<bool> = chunk
            .iter()
            .flat_map(|&x| (0..l).map(move |i| (x >> i) & 1 == 1))
            .collect();
        let keys = ot.receive_random(ch, &choices)?;
        let mut buf = vec![0u8; (chunk.len() * correction_bits(l)).div_ceil(8)];
        ch.recv(&mut buf)?;
        let mut rd = BitReader::new(&buf);
        for (&x, ks) in chunk.iter().zip(keys.chunks_exact(lu)) {
            let mut o = 0u64;
            for (i, k) in (0u32..).zip(ks) {
                let wm = bit_mask(l - i);
                let gamma = rd.pull(l - i);
                // k_b − b·γ, branch-free in the bit b of x.
                let b = (x >> i) & 1;
                let v = k.lo().wrapping_sub(gamma & 0u64.wrapping_sub(b)) & wm;
                o = o.wrapping_add(v << i);
            }
            out.push(o & mask);
        }
        rd.finish("OLE corrections")?;
    }
    Ok(out)
}

/// The server's offline material for `n` truncations with a square (its random-OT choices
/// and keys, its OLE values `U` and `o_s`). Consumed by the online phase.
pub struct SquareServerSecrets {
    p: SquareParams,
    choices: Vec<bool>,
    /// `K = k_e − e·γ = k_0 + e·Δ` (two `t2`-bit fields).
    keys: Vec<u128>,
    /// `U` of the OLE.
    us: Vec<u64>,
    /// `o_s` of the OLE.
    os: Vec<u64>,
}

/// Prints sizes only.
impl core::fmt::Debug for SquareServerSecrets {
    fn fmt(&self, fm: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        fm.debug_struct("SquareServerSecrets")
            .field("values", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl SquareServerSecrets {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The parameters.
    pub fn params(&self) -> SquareParams {
        self.p
    }

    /// Bytes held per value (choice, key, `U`, `o_s`).
    pub const BYTES_PER_VALUE: u64 = 33;

    /// Material of `n` values filled from `rng` (keys within `2·t2` bits, values within
    /// `l`), without the offline protocol: for the fuzz targets of the online decoders,
    /// whose peer data cannot depend on it. Only in fuzzing builds.
    #[cfg(fuzzing)]
    pub fn for_fuzzing(n: usize, p: SquareParams, rng: &mut impl RngCore) -> Self {
        let mask = p.mask();
        SquareServerSecrets {
            p,
            choices: (0..n).map(|_| rng.next_u32() & 1 == 1).collect(),
            keys: (0..n)
                .map(|_| {
                    (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())) & p.msg_mask()
                })
                .collect(),
            us: (0..n).map(|_| rng.next_u64() & mask).collect(),
            os: (0..n).map(|_| rng.next_u64() & mask).collect(),
        }
    }
}

/// The client's offline material for `n` truncations with a square. Consumed by the
/// online phase.
pub struct SquareClientSecrets {
    p: SquareParams,
    /// `(X_0 − k_0, X_1 + k_0)` per value (two `t2`-bit fields each): the answer for
    /// `d = 0` and for `d = 1`.
    msgs: Vec<[u128; 2]>,
    /// `(x~_c, x~_c² + 2(o_c − T2·ρ·x~_c + T2·ρ3) − σ_c)` per value.
    lin: Vec<[u64; 2]>,
}

/// Prints sizes only.
impl core::fmt::Debug for SquareClientSecrets {
    fn fmt(&self, fm: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        fm.debug_struct("SquareClientSecrets")
            .field("values", &self.msgs.len())
            .finish_non_exhaustive()
    }
}

impl SquareClientSecrets {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// The parameters.
    pub fn params(&self) -> SquareParams {
        self.p
    }

    /// Bytes held per value.
    pub const BYTES_PER_VALUE: u64 = 48;

    /// Material of `n` values filled from `rng`, without the offline protocol (see
    /// [`SquareServerSecrets::for_fuzzing`]). Only in fuzzing builds.
    #[cfg(fuzzing)]
    pub fn for_fuzzing(n: usize, p: SquareParams, rng: &mut impl RngCore) -> Self {
        let mask = p.mask();
        let mut msg =
            || (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())) & p.msg_mask();
        let msgs = (0..n).map(|_| [msg(), msg()]).collect();
        SquareClientSecrets {
            p,
            msgs,
            lin: (0..n)
                .map(|_| [rng.next_u64() & mask, rng.next_u64() & mask])
                .collect(),
        }
    }
}

macro_rules! shares_struct {
    ($name:ident, $who:literal) => {
        #[doc = concat!("The ", $who, "'s shares of `n` truncations with a square, in `Z_{2^l}`.")]
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name {
            /// Shares of `x = ⌊Y/2^t⌋` (or that plus one).
            pub x: Vec<u64>,
            /// Shares of `x~ = ⌊Y/2^t2⌋` (or that plus one).
            pub x_tilde: Vec<u64>,
            /// Shares of `x~² mod 2^l`, exact for the `x~` that `x_tilde` shares.
            pub square: Vec<u64>,
        }

        /// Prints sizes only.
        impl core::fmt::Debug for $name {
            fn fmt(&self, fm: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                fm.debug_struct(stringify!($name))
                    .field("values", &self.x.len())
                    .finish_non_exhaustive()
            }
        }

        impl $name {
            /// Number of values.
            pub fn len(&self) -> usize {
                self.x.len()
            }

            /// Whether there are none.
            pub fn is_empty(&self) -> bool {
                self.x.is_empty()
            }
        }
    };
}

shares_struct!(SquareServerShares, "server");
shares_struct!(SquareClientShares, "client");

/// Offline phase, server side: `n` random OTs as receiver with random choices (the
/// truncation's OT, client → server direction of [`crate::trunc`]), then the OLE as sender
/// with a fresh uniform `U` per position. Sends and flushes.
pub fn square_offline_server<C: Channel + ?Sized, R: RngCore + CryptoRng + ?Sized>(
    ch: &mut C,
    trunc_ot: &mut OtReceiver,
    ole_ot: &mut OtSender,
    n: usize,
    p: SquareParams,
    rng: &mut R,
) -> Result<SquareServerSecrets> {
    p.check()?;
    let mut choices = Vec::with_capacity(n);
    while choices.len() < n {
        let w = rng.next_u64();
        let k = (n - choices.len()).min(64);
        choices.extend((0..k).map(|i| (w >> i) & 1 == 1));
    }
    let keys: Vec<u128> = if n == 0 {
        Vec::new()
    } else {
        let ks = trunc_ot.receive_random(ch, &choices)?;
        // The client's corrections γ = k_1 − k_0 − Δ: K = k_e − e·γ = k_0 + e·Δ.
        let wm = width(p.msg_bits());
        let mut buf = vec![0u8; n * wm];
        ch.recv(&mut buf)?;
        let mut keys = Vec::with_capacity(n);
        for ((k, &e), g) in ks.iter().zip(&choices).zip(buf.chunks_exact(wm)) {
            let g = read_le(g);
            if g & !p.msg_mask() != 0 {
                return Err(ProtocolError::peer(format!(
                    "square correlation: a correction has more than {} bits",
                    p.msg_bits()
                )));
            }
            let ke = k.0 & p.msg_mask();
            keys.push(select(ke, pair_sub(ke, g, p.t2), e));
        }
        keys
    };
    let us: Vec<u64> = (0..n).map(|_| rng.next_u64() & p.mask()).collect();
    let os = ole_sender(ch, ole_ot, &us, p.l)?;
    Ok(SquareServerSecrets {
        p,
        choices,
        keys,
        us,
        os,
    })
}

/// Offline phase, client side, for the client's shares `shares` (reduced mod `2^l` here):
/// `n` random OTs as sender, then the OLE as receiver on its shares of `x~`. Returns the
/// client's shares of `x`, `x~` and `x~²`, final already, and the material for the online
/// phase.
pub fn square_offline_client<C: Channel + ?Sized, R: RngCore + CryptoRng + ?Sized>(
    ch: &mut C,
    trunc_ot: &mut OtSender,
    ole_ot: &mut OtReceiver,
    shares: &[u64],
    p: SquareParams,
    rng: &mut R,
) -> Result<(SquareClientShares, SquareClientSecrets)> {
    p.check()?;
    let n = shares.len();
    let pairs = if n == 0 {
        Vec::new()
    } else {
        trunc_ot.send_random(ch, n)?
    };
    let SquareParams { l, t, t2 } = p;
    let mask = p.mask();
    let t2mask = bit_mask(t2);
    let quarter = 1u64 << (l - 2);
    let big_t = 1u64 << (l - t);
    let big_t2 = 1u64 << (l - t2);
    let mut x = Vec::with_capacity(n);
    let mut x_tilde = Vec::with_capacity(n);
    let mut rhos = Vec::with_capacity(n);
    let mut msgs = Vec::with_capacity(n);
    let mut corrections = Vec::with_capacity(n * width(p.msg_bits()));
    for (&c, &(k0, k1)) in shares.iter().zip(&pairs) {
        let c = c & mask;
        let u = c.wrapping_neg() & mask;
        let p_plus = u64::from(u < quarter);
        let p_minus = u64::from(u > 3 * quarter);
        let pp = p_plus | p_minus;
        let rho = rng.next_u64() & t2mask;
        let rho3 = rng.next_u64() & t2mask;
        let xc = truncate_share(Role::Client, c, t, l)
            .wrapping_add((rho + p_minus).wrapping_mul(big_t))
            & mask;
        let xtc = truncate_share(Role::Client, c, t2, l)
            .wrapping_add((rho + p_minus).wrapping_mul(big_t2))
            & mask;
        let cross = xtc & t2mask & 0u64.wrapping_sub(pp);
        let x0 = u128::from(rho) | (u128::from(rho3) << t2);
        let x1 =
            u128::from((rho + pp) & t2mask) | (u128::from(rho3.wrapping_add(cross) & t2mask) << t2);
        let (k0, k1) = (k0.0 & p.msg_mask(), k1.0 & p.msg_mask());
        // Δ = X_1 − X_0 = (p, p·x~_c) and the correction γ = k_1 − k_0 − Δ.
        let delta = pair_sub(x1, x0, t2);
        let gamma = pair_sub(pair_sub(k1, k0, t2), delta, t2);
        corrections.extend_from_slice(&gamma.to_le_bytes()[..width(p.msg_bits())]);
        x.push(xc);
        x_tilde.push(xtc);
        rhos.push([rho, rho3]);
        msgs.push([pair_sub(x0, k0, t2), pair_add(x1, k0, t2)]);
    }
    if n > 0 {
        ch.send(&corrections)?;
        ch.flush()?;
    }
    let ocs = ole_receiver(ch, ole_ot, &x_tilde, l)?;
    let mut square = Vec::with_capacity(n);
    let mut lin = Vec::with_capacity(n);
    for ((&xtc, &oc), &[rho, rho3]) in x_tilde.iter().zip(&ocs).zip(&rhos) {
        let sigma = rng.next_u64() & mask;
        let inner = oc
            .wrapping_sub(big_t2.wrapping_mul(rho).wrapping_mul(xtc))
            .wrapping_add(big_t2.wrapping_mul(rho3));
        let w0 = xtc
            .wrapping_mul(xtc)
            .wrapping_add(inner.wrapping_mul(2))
            .wrapping_sub(sigma)
            & mask;
        square.push(sigma);
        lin.push([xtc, w0]);
    }
    Ok((
        SquareClientShares { x, x_tilde, square },
        SquareClientSecrets { p, msgs, lin },
    ))
}

fn check_len(shares: &[u64], prepared: usize) -> Result<()> {
    if shares.len() == prepared {
        Ok(())
    } else {
        Err(ProtocolError::arg(format!(
            "{} shares to truncate and square, {prepared} prepared",
            shares.len()
        )))
    }
}

/// The server's top bit `q = [a ≥ 2^(l-1)]` of a share.
#[inline]
fn top_bit(a: u64, l: u32) -> bool {
    ((a & bit_mask(l)) >> (l - 1)) & 1 == 1
}

fn read_le(b: &[u8]) -> u128 {
    b.iter()
        .rev()
        .fold(0u128, |acc, &x| (acc << 8) | u128::from(x))
}

/// Online phase, server side, first half: sends `d = q ⊕ e` (bit-packed) and
/// `e1 = tr_s(a, t2) − U` (`⌈l/8⌉` bytes each) for its shares `shares` (the values to
/// truncate, rounding offset included). Does not flush.
pub fn square_online_server_request<C: Channel + ?Sized>(
    ch: &mut C,
    sec: &SquareServerSecrets,
    shares: &[u64],
) -> Result<()> {
    check_len(shares, sec.len())?;
    let SquareParams { l, t2, .. } = sec.p;
    let mask = sec.p.mask();
    let (n, wl) = (shares.len(), width(l));
    let mut d = Vec::with_capacity(n);
    let mut e1 = fields::buffer(n, wl);
    for (i, ((&a, &u), &e)) in shares.iter().zip(&sec.us).zip(&sec.choices).enumerate() {
        d.push(top_bit(a, l) ^ e);
        let v = truncate_share(Role::Server, a, t2, l).wrapping_sub(u) & mask;
        fields::put64(&mut e1, i * wl, v);
    }
    e1.truncate(n * wl);
    ch.send_bits(&d)?;
    ch.send(&e1)?;
    Ok(())
}

/// The client's answer to the server's request, to be sent with [`SquareAnswer::send`].
pub struct SquareAnswer {
    bytes: Vec<u8>,
}

/// Prints sizes only.
impl core::fmt::Debug for SquareAnswer {
    fn fmt(&self, fm: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        fm.debug_struct("SquareAnswer")
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl SquareAnswer {
    /// Sends the answer (does not flush).
    pub fn send<C: Channel + ?Sized>(self, ch: &mut C) -> Result<()> {
        ch.send(&self.bytes)?;
        Ok(())
    }
}

/// Online phase, client side: receives `d` and `e1` and computes the answer
/// `m = X_0 − k_0` (`d = 0`) or `X_1 + k_0` (`d = 1`) and `w` (consumes the material: the
/// keys must never be used twice). A value `e1` wider than `l` bits is the peer's error.
pub fn square_online_client<C: Channel + ?Sized>(
    ch: &mut C,
    sec: SquareClientSecrets,
) -> Result<SquareAnswer> {
    let n = sec.len();
    let p = sec.p;
    let mask = p.mask();
    let (wl, wm) = (width(p.l), width(p.msg_bits()));
    let d = ch.recv_bits(n)?;
    let mut buf = fields::buffer(n, wl);
    ch.recv(&mut buf[..n * wl])?;
    let mut bytes = fields::buffer(n, wm + wl);
    // Any bit of any e1 above l (checked once, after the loop: no branch per position).
    let mut wide = 0u64;
    for (i, ((&[a, b], &[xtc, w0]), d)) in sec.msgs.iter().zip(&sec.lin).zip(d).enumerate() {
        let e1 = fields::get64(&buf, i * wl, wl);
        wide |= e1 & !mask;
        let w = w0.wrapping_add(e1.wrapping_mul(xtc).wrapping_mul(2)) & mask;
        let off = i * (wm + wl);
        fields::put128(&mut bytes, off, select(a, b, d));
        fields::put64(&mut bytes, off + wm, w);
    }
    if wide != 0 {
        return Err(ProtocolError::peer(format!(
            "square request: a value has more than {} bits",
            p.l
        )));
    }
    bytes.truncate(n * (wm + wl));
    Ok(SquareAnswer { bytes })
}

/// Online phase, server side, second half: receives the client's answer and returns the
/// server's shares for the same `shares` as the request. A message wider than its field
/// (`2·t2` bits for `m`, `l` for `w`) is the peer's error.
pub fn square_online_server_finish<C: Channel + ?Sized>(
    ch: &mut C,
    sec: SquareServerSecrets,
    shares: &[u64],
) -> Result<SquareServerShares> {
    check_len(shares, sec.len())?;
    let p = sec.p;
    let SquareParams { l, t, t2 } = p;
    let mask = p.mask();
    let (wl, wm) = (width(l), width(p.msg_bits()));
    let n = shares.len();
    let mut buf = fields::buffer(n, wm + wl);
    ch.recv(&mut buf[..n * (wm + wl)])?;
    let t2mask = bit_mask(t2);
    let (m_mask, w_mask) = (fields::mask128(wm), fields::mask64(wl));
    let msg_over = !p.msg_mask();
    let big_t = 1u64 << (l - t);
    let big_t2 = 1u64 << (l - t2);
    let (mut x, mut x_tilde, mut square) = (vec![0; n], vec![0; n], vec![0; n]);
    // Bits above the fields' widths, checked after the loop (no branch per position).
    let (mut wide_m, mut wide_w) = (0u128, 0u64);
    // The pair arithmetic in two 64-bit lanes (t2 <= 40), the choice between `m + K` and
    // `m − K` as a conditional negation of `K` (no branch on `q`).
    for (i, (((&a, &k), &os), &e)) in shares
        .iter()
        .zip(&sec.keys)
        .zip(&sec.os)
        .zip(&sec.choices)
        .enumerate()
    {
        let off = i * (wm + wl);
        let m = fields::load128(&buf, off) & m_mask;
        let w = fields::load64(&buf, off + wm) & w_mask;
        wide_m |= m & msg_over;
        wide_w |= w & !mask;
        // X_q = m + K if d = q ⊕ e is 0, m − K if it is 1 (K = k_0 + e·Δ).
        let neg = 0u64.wrapping_sub(u64::from(top_bit(a, l) ^ e));
        let (k_lo, k_hi) = ((k as u64 & t2mask), ((k >> t2) as u64 & t2mask));
        let xq = (m as u64).wrapping_add((k_lo ^ neg).wrapping_sub(neg)) & t2mask;
        let xq2 = ((m >> t2) as u64).wrapping_add((k_hi ^ neg).wrapping_sub(neg)) & t2mask;
        let xs = truncate_share(Role::Server, a, t, l).wrapping_sub(xq.wrapping_mul(big_t)) & mask;
        let xts =
            truncate_share(Role::Server, a, t2, l).wrapping_sub(xq.wrapping_mul(big_t2)) & mask;
        let ss = xts
            .wrapping_mul(xts)
            .wrapping_add(os.wrapping_sub(big_t2.wrapping_mul(xq2)).wrapping_mul(2))
            .wrapping_add(w)
            & mask;
        x[i] = xs;
        x_tilde[i] = xts;
        square[i] = ss;
    }
    let out = SquareServerShares { x, x_tilde, square };
    if wide_m != 0 {
        return Err(ProtocolError::peer(format!(
            "square answer: a message has more than {} bits",
            p.msg_bits()
        )));
    }
    if wide_w != 0 {
        return Err(ProtocolError::peer(format!(
            "square answer: a value has more than {l} bits"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::block::Delta;
    use crate::channel::{CountingChannel, MemoryChannel};
    use crate::error::Fault;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha12Rng;

    /// What one run of the whole protocol produced.
    struct Outcome {
        server: SquareServerShares,
        client: SquareClientShares,
        /// The client's view of the online bytes `(received, sent)`.
        online: (u64, u64),
        /// The client's view of the offline bytes after the OT setups.
        offline: (u64, u64),
    }

    /// Both OT directions: the truncation's (client sends) and the OLE's (server sends).
    fn setup(
        s_ch: &mut MemoryChannel,
        c_ch: MemoryChannel,
        seed: u64,
    ) -> (
        OtReceiver,
        OtSender,
        std::thread::JoinHandle<(MemoryChannel, OtSender, OtReceiver)>,
    ) {
        let h = std::thread::spawn(move || {
            let mut ch = c_ch;
            let mut rng = ChaCha12Rng::seed_from_u64(seed + 1);
            let trunc = OtSender::setup(&mut ch, Delta::random(&mut rng), &mut rng).unwrap();
            let ole = OtReceiver::setup(&mut ch, &mut rng).unwrap();
            (ch, trunc, ole)
        });
        let mut rng = ChaCha12Rng::seed_from_u64(seed + 2);
        let trunc = OtReceiver::setup(s_ch, &mut rng).unwrap();
        let ole = OtSender::setup(s_ch, Delta::random(&mut rng), &mut rng).unwrap();
        (trunc, ole, h)
    }

    /// Runs the whole protocol on the server's shares `a` and the client's `c`.
    fn run(a: &[u64], c: &[u64], p: SquareParams, seed: u64) -> Outcome {
        let (mut s_ch, c_ch) = MemoryChannel::pair();
        let (mut s_trunc, mut s_ole, h) = setup(&mut s_ch, c_ch, seed);
        let (c_ch, mut c_trunc, mut c_ole) = h.join().unwrap();
        let c = c.to_vec();
        let h = std::thread::spawn(move || {
            let mut ch = CountingChannel::new(c_ch);
            let mut rng = ChaCha12Rng::seed_from_u64(seed + 3);
            let (shares, sec) =
                square_offline_client(&mut ch, &mut c_trunc, &mut c_ole, &c, p, &mut rng).unwrap();
            let off = ch.stats();
            let ans = square_online_client(&mut ch, sec).unwrap();
            ans.send(&mut ch).unwrap();
            ch.flush().unwrap();
            let on = ch.stats();
            (
                shares,
                (off.bytes_received, off.bytes_sent),
                (
                    on.bytes_received - off.bytes_received,
                    on.bytes_sent - off.bytes_sent,
                ),
            )
        });
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let sec = square_offline_server(&mut s_ch, &mut s_trunc, &mut s_ole, a.len(), p, &mut rng)
            .unwrap();
        square_online_server_request(&mut s_ch, &sec, a).unwrap();
        s_ch.flush().unwrap();
        let server = square_online_server_finish(&mut s_ch, sec, a).unwrap();
        let (client, offline, online) = h.join().unwrap();
        Outcome {
            server,
            client,
            online,
            offline,
        }
    }

    fn signed(x: u64, l: u32) -> i64 {
        let sh = 64 - l;
        ((x << sh) as i64) >> sh
    }

    /// `(Y, u)` pairs where local truncation wraps (u next to 0 and next to 2^l, both
    /// signs of Y), at the quarter boundaries, at the largest |Y| allowed, and random.
    fn cases(p: SquareParams, rng: &mut ChaCha12Rng, random: usize) -> Vec<(i64, u64)> {
        let (l, t, t2) = (p.l, p.t, p.t2);
        let mask = p.mask();
        let big = (1i64 << (l - 2)) - 1;
        let q = 1u64 << (l - 2);
        let mut v = Vec::new();
        for y in [
            0,
            1,
            -1,
            (1 << t) - 1,
            1 << t,
            -(1 << t2),
            (1 << t2) + 1,
            12_345_678,
            -12_345_678,
            big,
            -big,
            big - 1,
            -big + 1,
        ]
        .into_iter()
        .filter(|y| y.abs() <= big)
        {
            let ya = y.unsigned_abs();
            for u in [
                0,
                1,
                2,
                ya & mask,
                ya.wrapping_sub(1) & mask,
                mask,
                mask - 1,
                mask.wrapping_sub(ya) & mask,
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
        for _ in 0..random {
            let y = rng.gen_range(-big..=big) >> rng.gen_range(0..(l - 2));
            let u = match rng.gen_range(0..3) {
                0 => rng.r#gen::<u64>() & mask,
                1 => rng.gen_range(0..1u64 << (l - 2).min(20)),
                _ => mask - rng.gen_range(0..1u64 << (l - 2).min(20)),
            };
            v.push((y, u));
        }
        v
    }

    /// The server's share `Y + u` and the client's `−u` of each case.
    fn split(cs: &[(i64, u64)], l: u32) -> (Vec<u64>, Vec<u64>) {
        let mask = bit_mask(l);
        cs.iter()
            .map(|&(y, u)| ((y as u64).wrapping_add(u) & mask, u.wrapping_neg() & mask))
            .unzip()
    }

    #[test]
    fn exact_truncations_and_square() {
        let mut rng = ChaCha12Rng::seed_from_u64(11);
        for (l, t, t2) in [
            (61u32, 14u32, 20u32),
            (61, 28, 34),
            (32, 8, 12),
            (64, 16, 40),
            (43, 40, 40),
            (12, 1, 9),
        ] {
            let p = SquareParams::new(l, t, t2).unwrap();
            let mask = p.mask();
            let cs = cases(p, &mut rng, 1500);
            let (a, c) = split(&cs, l);
            let out = run(&a, &c, p, 100 + u64::from(l + t));
            assert_eq!(out.server.len(), cs.len());
            assert_eq!(out.client.len(), cs.len());
            let mut local_wrong = 0;
            for (i, &(y, u)) in cs.iter().enumerate() {
                let (s, cl) = (&out.server, &out.client);
                let x = signed(s.x[i].wrapping_add(cl.x[i]) & mask, l);
                let xt_ring = s.x_tilde[i].wrapping_add(cl.x_tilde[i]) & mask;
                let xt = signed(xt_ring, l);
                let sq = s.square[i].wrapping_add(cl.square[i]) & mask;
                let ctx = format!("l={l} t={t} t2={t2} Y={y} u={u}");
                assert!(x == y >> t || x == (y >> t) + 1, "{ctx}: x = {x}");
                assert!(xt == y >> t2 || xt == (y >> t2) + 1, "{ctx}: x~ = {xt}");
                assert_eq!(sq, xt_ring.wrapping_mul(xt_ring) & mask, "{ctx}: square");
                // Every share lies in the ring.
                for v in [s.x[i], s.x_tilde[i], s.square[i], cl.x[i], cl.x_tilde[i]] {
                    assert!(v <= mask, "{ctx}");
                }
                let local = signed(
                    truncate_share(Role::Server, a[i], t2, l).wrapping_add(truncate_share(
                        Role::Client,
                        c[i],
                        t2,
                        l,
                    )) & mask,
                    l,
                );
                if local != y >> t2 && local != (y >> t2) + 1 {
                    local_wrong += 1;
                }
            }
            // The cases do exercise the wrap that local truncation gets wrong.
            assert!(local_wrong > 20, "l={l}: only {local_wrong} local wraps");
        }
    }

    /// The client's shares come out of the offline phase alone: the same client seed and
    /// shares give the same client shares whatever the server's shares are online.
    #[test]
    fn client_shares_are_fixed_offline() {
        let p = SquareParams::new(61, 14, 20).unwrap();
        let mut rng = ChaCha12Rng::seed_from_u64(4);
        let cs = cases(p, &mut rng, 50);
        let (a, c) = split(&cs, p.l);
        let first = run(&a, &c, p, 8);
        // Other values Y on the same client shares.
        let a2: Vec<u64> = a.iter().map(|&x| x.wrapping_add(977) & p.mask()).collect();
        let second = run(&a2, &c, p, 8);
        assert_eq!(first.client, second.client);
        assert_ne!(first.server.x, second.server.x);
    }

    #[test]
    fn byte_counts_match_the_formulas() {
        for (n, (l, t, t2)) in [
            (1usize, (61u32, 14u32, 20u32)),
            (9, (61, 14, 20)),
            (300, (61, 14, 20)),
            (77, (32, 8, 12)),
            (5, (64, 16, 40)),
        ] {
            let p = SquareParams::new(l, t, t2).unwrap();
            let a: Vec<u64> = (0..n as u64).map(|i| i * 1_000_003).collect();
            let c: Vec<u64> = (0..n as u64)
                .map(|i| (i * 977).wrapping_neg() & p.mask())
                .collect();
            let out = run(&a, &c, p, 9);
            assert_eq!(out.online, online_bytes(n, p), "n={n} l={l}");
            assert_eq!(out.offline, offline_bytes(n, p), "n={n} l={l}");
        }
        let p = SquareParams::new(61, 14, 20).unwrap();
        // 1 bit + 8 bytes down, 5 + 8 bytes up per position.
        assert_eq!(online_bytes(8, p), (1 + 64, 104));
        // 128 OTs: 2 KiB per IKNP extension of up to 128 OTs; 5 bytes of correction each.
        assert_eq!(
            offline_bytes(128, p),
            (2048 + 128 * 1891 / 8, 128 * 5 + 61 * 2048)
        );
    }

    #[test]
    fn empty_and_bad_arguments() {
        let p = SquareParams::new(61, 14, 20).unwrap();
        let out = run(&[], &[], p, 3);
        assert!(out.server.is_empty() && out.client.is_empty());
        assert_eq!(out.online, (0, 0));
        assert_eq!(out.offline, (0, 0));
        assert_eq!(offline_bytes(0, p), (0, 0));
        for (l, t, t2) in [
            (61, 0, 20),
            (61, 21, 20),
            (61, 14, 41),
            (22, 14, 20),
            (65, 14, 20),
        ] {
            let e = SquareParams::new(l, t, t2).unwrap_err();
            assert_eq!(e.fault(), Fault::Caller);
        }
        assert!(SquareParams::new(23, 14, 20).is_ok());
        assert!(SquareParams::new(64, 40, 40).is_ok());
        // A wrong number of shares is the caller's error.
        let sec = SquareServerSecrets {
            p,
            choices: vec![false],
            keys: vec![0],
            us: vec![0],
            os: vec![0],
        };
        let (mut x, _y) = MemoryChannel::pair();
        let e = square_online_server_request(&mut x, &sec, &[1, 2]).unwrap_err();
        assert_eq!(e.fault(), Fault::Caller);
        let e = square_online_server_finish(&mut x, sec, &[]).unwrap_err();
        assert_eq!(e.fault(), Fault::Caller);
        // Bad parameters fail before anything is sent.
        let bad = SquareParams {
            l: 61,
            t: 0,
            t2: 20,
        };
        let mut rng = ChaCha12Rng::seed_from_u64(1);
        let (mut s_ch, c_ch) = MemoryChannel::pair();
        let (mut tr, mut ole, h) = setup(&mut s_ch, c_ch, 1);
        let (mut c_ch, mut ctr, mut cole) = h.join().unwrap();
        let e = square_offline_server(&mut s_ch, &mut tr, &mut ole, 3, bad, &mut rng).unwrap_err();
        assert_eq!(e.fault(), Fault::Caller);
        let e =
            square_offline_client(&mut c_ch, &mut ctr, &mut cole, &[1], bad, &mut rng).unwrap_err();
        assert_eq!(e.fault(), Fault::Caller);
        let e = ole_sender(&mut s_ch, &mut ole, &[1], 65).unwrap_err();
        assert_eq!(e.fault(), Fault::Caller);
    }

    /// Runs the offline phase on two positions and returns the server's channel and
    /// secrets after its request, and the client's channel and secrets.
    fn prepared(
        p: SquareParams,
    ) -> (
        MemoryChannel,
        SquareServerSecrets,
        MemoryChannel,
        SquareClientSecrets,
    ) {
        let (mut s_ch, c_ch) = MemoryChannel::pair();
        let (mut tr, mut ole, h) = setup(&mut s_ch, c_ch, 5);
        let (c_ch, ctr, cole) = h.join().unwrap();
        let h = std::thread::spawn(move || {
            let (mut ch, mut ctr, mut cole) = (c_ch, ctr, cole);
            let mut rng = ChaCha12Rng::seed_from_u64(6);
            let (_, sec) =
                square_offline_client(&mut ch, &mut ctr, &mut cole, &[5, 6], p, &mut rng).unwrap();
            (ch, sec)
        });
        let mut rng = ChaCha12Rng::seed_from_u64(7);
        let sec = square_offline_server(&mut s_ch, &mut tr, &mut ole, 2, p, &mut rng).unwrap();
        let (c_ch, csec) = h.join().unwrap();
        (s_ch, sec, c_ch, csec)
    }

    #[test]
    fn oversized_answer_is_a_peer_error() {
        // t2 = 21: messages of 42 bits, so their top byte has room for a stray bit.
        let p = SquareParams::new(61, 14, 21).unwrap();
        let (wl, wm) = (width(p.l), width(p.msg_bits()));
        let a = [1u64, 2];
        // (byte to spoil, what the error says): bit 47 of m, bit 63 of w.
        for (at, says) in [
            (wm - 1, "more than 42 bits"),
            (wm + wl - 1, "more than 61 bits"),
        ] {
            let (mut s_ch, sec, mut c_ch, csec) = prepared(p);
            square_online_server_request(&mut s_ch, &sec, &a).unwrap();
            s_ch.flush().unwrap();
            let h = std::thread::spawn(move || {
                let ans = square_online_client(&mut c_ch, csec).unwrap();
                let mut bytes = ans.bytes;
                // The second position's field gets a bit above its width.
                bytes[wm + wl + at] |= 0x80;
                c_ch.send(&bytes).unwrap();
                c_ch.flush().unwrap();
                c_ch
            });
            let e = square_online_server_finish(&mut s_ch, sec, &a).unwrap_err();
            assert_eq!(e.fault(), Fault::Peer);
            assert!(e.to_string().contains(says), "{e}");
            drop(h.join().unwrap());
        }
        // A request whose e1 has more than l bits is the server's fault, seen by the client.
        let (mut s_ch, _sec, mut c_ch, csec) = prepared(p);
        s_ch.send_bits(&[true, false]).unwrap();
        let mut e1 = vec![0u8; 2 * wl];
        e1[wl - 1] = 0x20; // bit 61
        s_ch.send(&e1).unwrap();
        s_ch.flush().unwrap();
        let e = square_online_client(&mut c_ch, csec).unwrap_err();
        assert_eq!(e.fault(), Fault::Peer);
        assert!(e.to_string().contains("more than 61 bits"), "{e}");
    }

    /// The offline correlation corrections γ are `2·t2` bits: a wider one is the client's
    /// fault, seen by the server before the OLE.
    #[test]
    fn oversized_correction_is_a_peer_error() {
        let p = SquareParams::new(61, 14, 21).unwrap();
        let wm = width(p.msg_bits());
        let (mut s_ch, c_ch) = MemoryChannel::pair();
        let (mut tr, mut ole, h) = setup(&mut s_ch, c_ch, 8);
        let (c_ch, ctr, _cole) = h.join().unwrap();
        let h = std::thread::spawn(move || {
            let (mut ch, mut ctr) = (c_ch, ctr);
            ctr.send_random(&mut ch, 2).unwrap();
            let mut gamma = vec![0u8; 2 * wm];
            gamma[2 * wm - 1] = 0x80; // bit 47 of the second correction
            ch.send(&gamma).unwrap();
            ch.flush().unwrap();
            ch
        });
        let mut rng = ChaCha12Rng::seed_from_u64(9);
        let e = square_offline_server(&mut s_ch, &mut tr, &mut ole, 2, p, &mut rng).unwrap_err();
        assert_eq!(e.fault(), Fault::Peer);
        assert!(
            e.to_string().contains("correction has more than 42 bits"),
            "{e}"
        );
        drop(h.join().unwrap());
    }

    /// Runs the OLE alone on `(U, x)` pairs with a given batch size; returns the outputs and
    /// the receiver's view of the bytes `(received, sent)`.
    fn ole(pairs: &[(u64, u64)], l: u32, batch: usize) -> (Vec<u64>, Vec<u64>, (u64, u64)) {
        let (mut a, b) = MemoryChannel::pair();
        let xs: Vec<u64> = pairs.iter().map(|&(_, x)| x).collect();
        let us: Vec<u64> = pairs.iter().map(|&(u, _)| u).collect();
        let h = std::thread::spawn(move || {
            let mut ch = CountingChannel::new(b);
            let mut rng = ChaCha12Rng::seed_from_u64(31);
            let mut r = OtReceiver::setup(&mut ch, &mut rng).unwrap();
            ch.reset();
            let o = ole_receiver_batched(&mut ch, &mut r, &xs, l, batch).unwrap();
            let st = ch.stats();
            (o, (st.bytes_received, st.bytes_sent))
        });
        let mut rng = ChaCha12Rng::seed_from_u64(32);
        let mut s = OtSender::setup(&mut a, Delta::random(&mut rng), &mut rng).unwrap();
        let os = ole_sender_batched(&mut a, &mut s, &us, l, batch).unwrap();
        let (oc, bytes) = h.join().unwrap();
        (os, oc, bytes)
    }

    #[test]
    fn ole_alone() {
        let mut rng = ChaCha12Rng::seed_from_u64(21);
        for (l, batch) in [(61u32, 7usize), (64, 1000), (32, 3), (1, 5), (13, 4096)] {
            let mask = bit_mask(l);
            let edges = [0, 1, 2, mask, mask - 1, 1 << (l - 1)];
            let mut pairs = Vec::new();
            for &x in &edges {
                for &u in &edges {
                    pairs.push((u & mask, x & mask));
                }
                pairs.push((rng.r#gen::<u64>() & mask, x & mask));
                pairs.push((x & mask, rng.r#gen::<u64>() & mask));
            }
            for _ in 0..40 {
                pairs.push((rng.r#gen::<u64>() & mask, rng.r#gen::<u64>() & mask));
            }
            let (os, oc, bytes) = ole(&pairs, l, batch);
            for (i, &(u, x)) in pairs.iter().enumerate() {
                assert_eq!(
                    os[i].wrapping_add(oc[i]) & mask,
                    u.wrapping_mul(x) & mask,
                    "l={l} U={u} x={x}"
                );
                assert!(os[i] <= mask && oc[i] <= mask);
            }
            let (down, up) = ole_bytes_batched(pairs.len(), l, batch);
            assert_eq!(bytes, (down, up), "l={l} batch={batch}");
        }
        // Inputs above the ring are reduced.
        let (os, oc, _) = ole(&[(u64::MAX, 3 | (1 << 40))], 32, 4);
        assert_eq!(
            os[0].wrapping_add(oc[0]) & bit_mask(32),
            bit_mask(32).wrapping_mul(3) & bit_mask(32)
        );
        // Corrections: l(l+1)/2 = 1891 bits per value at l = 61.
        assert_eq!(ole_bytes(8, 61), (1891, 4 * 2048));
        assert_eq!(ole_bytes(0, 61), (0, 0));
    }

    #[test]
    fn bad_padding_of_corrections_is_a_peer_error() {
        // l = 2: 3 bits of corrections per value, 1 value: 5 padding bits.
        let (mut a, b) = MemoryChannel::pair();
        let h = std::thread::spawn(move || {
            let mut b = b;
            let mut rng = ChaCha12Rng::seed_from_u64(1);
            let mut r = OtReceiver::setup(&mut b, &mut rng).unwrap();
            ole_receiver(&mut b, &mut r, &[1], 2).unwrap_err()
        });
        let mut rng = ChaCha12Rng::seed_from_u64(2);
        let mut s = OtSender::setup(&mut a, Delta::random(&mut rng), &mut rng).unwrap();
        s.send_random(&mut a, 2).unwrap();
        a.send(&[0x80]).unwrap();
        a.flush().unwrap();
        let e = h.join().unwrap();
        assert_eq!(e.fault(), Fault::Peer);
        assert!(e.to_string().contains("padding"), "{e}");
    }

    #[test]
    fn bit_packing_roundtrip() {
        let mut rng = ChaCha12Rng::seed_from_u64(3);
        let fields: Vec<(u64, u32)> = (0..500)
            .map(|_| {
                let w = rng.gen_range(1..=64);
                (rng.r#gen::<u64>() & bit_mask(w), w)
            })
            .collect();
        let mut wr = BitWriter::with_capacity(0);
        for &(v, w) in &fields {
            wr.push(v, w);
        }
        let total: u32 = fields.iter().map(|f| f.1).sum();
        let bytes = wr.finish();
        assert_eq!(bytes.len(), total.div_ceil(8) as usize);
        let mut rd = BitReader::new(&bytes);
        for &(v, w) in &fields {
            assert_eq!(rd.pull(w), v);
        }
        rd.finish("test").unwrap();
    }

    #[test]
    fn debug_prints_no_secrets() {
        let p = SquareParams::new(61, 14, 20).unwrap();
        let sec = SquareServerSecrets {
            p,
            choices: vec![true; 3],
            keys: vec![123_456_789; 3],
            us: vec![987_654_321; 3],
            os: vec![555_555_555; 3],
        };
        let s = format!("{sec:?}");
        assert!(
            !s.contains("123456789") && !s.contains("987654321") && !s.contains("555555555"),
            "{s}"
        );
        assert!(s.contains("values: 3"), "{s}");
        let sec = SquareClientSecrets {
            p,
            msgs: vec![[111_111_111, 222_222_222]; 2],
            lin: vec![[444_444_444, 666_666_666]; 2],
        };
        let s = format!("{sec:?}");
        for n in ["111111111", "222222222", "444444444", "666666666"] {
            assert!(!s.contains(n), "{s}");
        }
        let sh = SquareClientShares {
            x: vec![777_777_777],
            x_tilde: vec![888_888_888],
            square: vec![999_999_999],
        };
        let s = format!("{sh:?}");
        assert!(!s.contains("777777777") && !s.contains("999999999"), "{s}");
        let ans = SquareAnswer {
            bytes: vec![0xab; 30],
        };
        assert!(!format!("{ans:?}").contains("171"));
    }
}
