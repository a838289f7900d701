//! IKNP OT extension (Ishai, Kilian, Nissim, Petrank 2003), semi-honest.
//!
//! Setup: the extension *sender* acts as base-OT receiver with choice bits `s = Δ`
//! (bit `j` of `Δ` for base OT `j`) and gets seeds `k_j^{s_j}`; the extension *receiver*
//! acts as base-OT sender and gets both seeds `(k_j^0, k_j^1)`. Each seed keys an AES-CTR
//! [`Prg`] that persists across extensions.
//!
//! Extension of `n` OTs with receiver choices `r` (processed in chunks of
//! [`CHUNK`] OTs, `n` rounded up to a multiple of 128):
//! receiver: `t_j = G(k_j^0)`, sends `u_j = t_j ⊕ G(k_j^1) ⊕ r` for `j < 128`;
//! sender: `q_j = G(k_j^{s_j}) ⊕ s_j·u_j = t_j ⊕ s_j·r`.
//! Transposing, row `i` satisfies `Q_i = T_i ⊕ r_i·Δ`: a correlated OT where the sender
//! holds `(Q_i, Q_i ⊕ Δ)` and the receiver `T_i`. Random OTs hash rows with the
//! tweakable correlation-robust hash under a per-OT tweak `(2^64 − 1, counter)`;
//! chosen-message OTs encrypt the sender's messages under the random-OT keys.

use rand_core::{CryptoRng, RngCore};

use super::base::{BaseOtReceiver, BaseOtSender};
use crate::aes_hash::TccrHash;
use crate::block::{Block, Delta, pack_bits};
use crate::channel::{Channel, ChannelExt};
use crate::error::{ProtocolError, Result};
use crate::prg::Prg;

/// Security parameter: number of base OTs.
pub const KAPPA: usize = 128;
/// OTs per extension message (one flight of `16 × CHUNK` bytes).
pub const CHUNK: usize = 1 << 16;
/// High half of the hash tweak for OT outputs (keep GC batch ids below it).
const OT_TWEAK_DOMAIN: u64 = u64::MAX;

/// Transposes a 128×128 bit matrix in place: bit `c` of `a[r]` moves to bit `r` of `a[c]`.
pub fn transpose_128(a: &mut [u128; 128]) {
    let mut j = 64usize;
    let mut m: u128 = (1u128 << 64) - 1;
    while j != 0 {
        let mut k = 0usize;
        while k < 128 {
            for r in k..k + j {
                let t = ((a[r] >> j) ^ a[r + j]) & m;
                a[r] ^= t << j;
                a[r + j] ^= t;
            }
            k += 2 * j;
        }
        j >>= 1;
        m ^= m << j;
    }
}

/// Turns 128 column bit-vectors (column `j` at `cols[j*cb..(j+1)*cb]`, `cb` bytes each,
/// `cb` a multiple of 16) into `8·cb` rows of 128 bits: with AVX-512 VBMI and GFNI where
/// the CPU has them ([`gfni`]), else [`transpose_128`]. Both take the same time whatever
/// the bits (no branch or address depends on them).
fn columns_to_rows(cols: &[u8], cb: usize, rows: &mut Vec<Block>) {
    let mut m = [0u128; 128];
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = gfni::Kernel::new() {
        // The columns lie `cb` bytes apart (8 KiB for a full chunk, a multiple of 4 KiB):
        // 128 such rows all fall in one L1 set. So each row's next 64 bytes (a cache line,
        // four 16-byte chunks) are first copied into a contiguous 8 KiB block, and the four
        // transposes read that.
        let mut local = vec![0u8; 128 * 64];
        let lines = cb / 64;
        for line in 0..lines {
            for (j, dst) in local.chunks_exact_mut(64).enumerate() {
                let off = j * cb + 64 * line;
                dst.copy_from_slice(&cols[off..off + 64]);
            }
            for sub in 0..4 {
                k.transpose_chunk(&local, 64, sub, &mut m);
                rows.extend(m.iter().map(|&v| Block(v)));
            }
        }
        for chunk in 4 * lines..cb / 16 {
            k.transpose_chunk(cols, cb, chunk, &mut m);
            rows.extend(m.iter().map(|&v| Block(v)));
        }
        return;
    }
    for chunk in 0..cb / 16 {
        for (j, mj) in m.iter_mut().enumerate() {
            let off = j * cb + 16 * chunk;
            let mut b = [0u8; 16];
            b.copy_from_slice(&cols[off..off + 16]);
            *mj = u128::from_le_bytes(b);
        }
        transpose_128(&mut m);
        rows.extend(m.iter().map(|&v| Block(v)));
    }
}

/// The 128 × 128 transpose of [`columns_to_rows`] on 512-bit registers (AVX-512F,
/// AVX-512 VBMI, GFNI). Write `r = 8R + r'` for the input row (column vector) and
/// `c = 8C + c'` for the bit; the output row `c` holds bit `r` of input `r` in its byte `R`,
/// bit `r'`. So: gather the 8 × 8 tiles `(R, C)` (8 bytes, one per `r'`) into 64-bit lanes
/// with a byte permutation (`vpermi2b`), transpose each tile's bits with one
/// `gf2p8affineqb` (the tile as the affine matrix applied to the bytes `1 << i`, which
/// transposes it up to a reversal of its bytes, undone by the gather), and place tile
/// `(R, C)`'s byte `c'` at output row `8C + c'`, byte `R` (a second permutation).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod gfni {
    use core::arch::x86_64::*;

    /// Whether this CPU runs [`transpose_chunk`].
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vbmi")
            && std::arch::is_x86_feature_detected!("gfni")
    }

    /// Proof that this CPU has the kernel's features (exists only where [`available`]).
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Kernel(());

    impl Kernel {
        /// `None` where the CPU lacks a feature.
        pub(super) fn new() -> Option<Self> {
            available().then_some(Kernel(()))
        }

        /// Rows `128·chunk .. +128` of [`super::columns_to_rows`] into `out`.
        #[inline]
        pub(super) fn transpose_chunk(
            self,
            cols: &[u8],
            cb: usize,
            chunk: usize,
            out: &mut [u128; 128],
        ) {
            // SAFETY: a `Kernel` exists only on a CPU with the features (`new`).
            unsafe { transpose_chunk(cols, cb, chunk, out) }
        }
    }

    /// Gather: lane `c` of half `h` (tile `C = 8h + c`), byte `m`, takes the 8-row block's
    /// byte `16 (7 − m) + C` (row `7 − m`: the affine step reverses the rows back).
    const fn gather(h: usize) -> [u8; 64] {
        let mut t = [0u8; 64];
        let mut i = 0;
        while i < 64 {
            let (c, m) = (i / 8, i % 8);
            t[i] = (16 * (7 - m) + 8 * h + c) as u8;
            i += 1;
        }
        t
    }

    /// Scatter: output byte `o = 64 h + n` of the 8 rows `8C..8C + 8` (row `c' = o / 16`,
    /// byte `R = o % 16`) takes byte `c'` of tile `(R, C)`, at `8 R + c'`.
    const fn scatter(h: usize) -> [u8; 64] {
        let mut t = [0u8; 64];
        let mut n = 0;
        while n < 64 {
            let o = 64 * h + n;
            t[n] = (8 * (o % 16) + o / 16) as u8;
            n += 1;
        }
        t
    }

    static GATHER: [[u8; 64]; 2] = [gather(0), gather(1)];
    static SCATTER: [[u8; 64]; 2] = [scatter(0), scatter(1)];
    /// The bytes `1 << i`, `i = 0..8`, in every lane.
    const UNIT: i64 = 0x8040_2010_0804_0201_u64 as i64;

    /// Rows `128·chunk .. +128` of [`super::columns_to_rows`] into `out`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F, AVX-512 VBMI and GFNI ([`available`]). (Out-of-range
    /// `cols` panics in safe slicing, as the portable path does.)
    #[target_feature(enable = "avx512f,avx512vbmi,gfni")]
    unsafe fn transpose_chunk(cols: &[u8], cb: usize, chunk: usize, out: &mut [u128; 128]) {
        // Tiles by [C][R] (16 × 16 lanes of 8 bytes).
        let mut tiles = [0u64; 256];
        let mut block = [0u8; 128];
        let mut lanes = [0u64; 16];
        // SAFETY (every intrinsic below): the features are enabled on this function and
        // present (the caller's contract); loads and stores are unaligned ones on arrays
        // of at least the 64 bytes they touch at the offsets used.
        unsafe {
            let g = [
                _mm512_loadu_si512(GATHER[0].as_ptr().cast()),
                _mm512_loadu_si512(GATHER[1].as_ptr().cast()),
            ];
            let unit = _mm512_set1_epi64(UNIT);
            for r in 0..16 {
                for k in 0..8 {
                    let off = (8 * r + k) * cb + 16 * chunk;
                    block[16 * k..16 * k + 16].copy_from_slice(&cols[off..off + 16]);
                }
                let lo = _mm512_loadu_si512(block.as_ptr().cast());
                let hi = _mm512_loadu_si512(block.as_ptr().add(64).cast());
                for (h, gh) in g.iter().enumerate() {
                    let t = _mm512_permutex2var_epi8(lo, *gh, hi);
                    let u = _mm512_gf2p8affine_epi64_epi8::<0>(unit, t);
                    _mm512_storeu_si512(lanes.as_mut_ptr().add(8 * h).cast(), u);
                }
                for (c, &lane) in lanes.iter().enumerate() {
                    tiles[16 * c + r] = lane;
                }
            }
            let s = [
                _mm512_loadu_si512(SCATTER[0].as_ptr().cast()),
                _mm512_loadu_si512(SCATTER[1].as_ptr().cast()),
            ];
            for c in 0..16 {
                let lo = _mm512_loadu_si512(tiles.as_ptr().add(16 * c).cast());
                let hi = _mm512_loadu_si512(tiles.as_ptr().add(16 * c + 8).cast());
                for (h, sh) in s.iter().enumerate() {
                    let o = _mm512_permutex2var_epi8(lo, *sh, hi);
                    _mm512_storeu_si512(out.as_mut_ptr().add(8 * c + 4 * h).cast(), o);
                }
            }
        }
    }
}

fn check_kappa(v: &[impl Sized]) -> Result<()> {
    if v.len() == KAPPA {
        Ok(())
    } else {
        Err(ProtocolError::arg(
            "base OT returned the wrong number of seeds",
        ))
    }
}

/// The IKNP sender (holds `Δ`; in this project the server/garbler).
pub struct OtSender {
    delta: Delta,
    prgs: Vec<Prg>,
    hash: TccrHash,
    counter: u64,
    /// Column buffers reused across chunks and calls (`u` received, `q` expanded): a
    /// fresh zeroed megabyte per chunk cost more than the transpose.
    cols: Columns,
}

/// Two column buffers of `KAPPA` columns, grown on demand and never shrunk (their old
/// contents are always overwritten before use).
#[derive(Default)]
struct Columns {
    a: Vec<u8>,
    b: Vec<u8>,
}

impl Columns {
    /// Both buffers at exactly `len` bytes.
    fn sized(&mut self, len: usize) -> (&mut [u8], &mut [u8]) {
        self.a.resize(len, 0);
        self.b.resize(len, 0);
        (&mut self.a[..], &mut self.b[..])
    }
}

/// Prints sizes only: `Δ` and the base-OT seeds (inside the PRGs) are secret.
impl core::fmt::Debug for OtSender {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OtSender")
            .field("base_ots", &self.prgs.len())
            .field("random_ots", &self.counter)
            .finish_non_exhaustive()
    }
}

impl OtSender {
    /// Runs the 128 base OTs (as base-OT receiver with choices = bits of `delta`).
    pub fn setup<C: Channel + ?Sized, R: RngCore + CryptoRng>(
        ch: &mut C,
        delta: Delta,
        rng: &mut R,
    ) -> Result<Self> {
        let d = delta.block().0;
        let s: Vec<bool> = (0..KAPPA).map(|j| (d >> j) & 1 == 1).collect();
        let seeds = BaseOtReceiver::receive_random(ch, &s, rng)?;
        check_kappa(&seeds)?;
        Ok(OtSender {
            delta,
            prgs: seeds.into_iter().map(Prg::from_seed).collect(),
            hash: TccrHash::new(),
            counter: 0,
            cols: Columns::default(),
        })
    }

    /// The global correlation `Δ`.
    pub fn delta(&self) -> Delta {
        self.delta
    }

    /// `n` correlated OTs: returns the zero messages `m0_i`; the pairs are
    /// `(m0_i, m0_i ⊕ Δ)`.
    pub fn send_correlated<C: Channel + ?Sized>(
        &mut self,
        ch: &mut C,
        n: usize,
    ) -> Result<Vec<Block>> {
        let mut out = Vec::with_capacity(n);
        let mut done = 0;
        let d = self.delta.block().0;
        while done < n {
            let k = (n - done).min(CHUNK);
            let cb = k.div_ceil(128) * 16;
            let (u, q) = self.cols.sized(KAPPA * cb);
            ch.recv(u)?;
            for (j, prg) in self.prgs.iter_mut().enumerate() {
                let col = &mut q[j * cb..(j + 1) * cb];
                prg.fill_bytes(col);
                // Branch-free in the secret bit s_j of Δ.
                let mask = 0u8.wrapping_sub(((d >> j) & 1) as u8);
                for (x, y) in col.iter_mut().zip(&u[j * cb..(j + 1) * cb]) {
                    *x ^= *y & mask;
                }
            }
            let start = out.len();
            columns_to_rows(q, cb, &mut out);
            out.truncate(start + k);
            done += k;
        }
        Ok(out)
    }

    /// `n` random OTs: returns the pairs `(m0_i, m1_i)`.
    pub fn send_random<C: Channel + ?Sized>(
        &mut self,
        ch: &mut C,
        n: usize,
    ) -> Result<Vec<(Block, Block)>> {
        let mut m0 = self.send_correlated(ch, n)?;
        let d = self.delta.block();
        let mut m1: Vec<Block> = m0.iter().map(|&x| x ^ d).collect();
        self.hash
            .hash_many_counter(&mut m0, OT_TWEAK_DOMAIN, self.counter);
        self.hash
            .hash_many_counter(&mut m1, OT_TWEAK_DOMAIN, self.counter);
        self.counter += n as u64;
        Ok(m0.into_iter().zip(m1).collect())
    }

    /// Chosen-message OTs: the receiver learns `msgs[i].0` or `msgs[i].1` by its choice.
    pub fn send_chosen<C: Channel + ?Sized>(
        &mut self,
        ch: &mut C,
        msgs: &[(Block, Block)],
    ) -> Result<()> {
        let keys = self.send_random(ch, msgs.len())?;
        let mut ct = Vec::with_capacity(2 * msgs.len());
        for ((x0, x1), (k0, k1)) in msgs.iter().zip(keys) {
            ct.push(*x0 ^ k0);
            ct.push(*x1 ^ k1);
        }
        ch.send_blocks(&ct)?;
        ch.flush()?;
        Ok(())
    }
}

/// The IKNP receiver (holds the choice bits; in this project the client/evaluator).
pub struct OtReceiver {
    prgs: Vec<(Prg, Prg)>,
    hash: TccrHash,
    counter: u64,
    /// Column buffers reused across chunks and calls (`t` and `u`).
    cols: Columns,
}

/// Prints sizes only: both seeds of every base OT (inside the PRGs) are secret.
impl core::fmt::Debug for OtReceiver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OtReceiver")
            .field("base_ots", &self.prgs.len())
            .field("random_ots", &self.counter)
            .finish_non_exhaustive()
    }
}

impl OtReceiver {
    /// Runs the 128 base OTs (as base-OT sender).
    pub fn setup<C: Channel + ?Sized, R: RngCore + CryptoRng>(
        ch: &mut C,
        rng: &mut R,
    ) -> Result<Self> {
        let seeds = BaseOtSender::send_random(ch, KAPPA, rng)?;
        check_kappa(&seeds)?;
        Ok(OtReceiver {
            prgs: seeds
                .into_iter()
                .map(|(a, b)| (Prg::from_seed(a), Prg::from_seed(b)))
                .collect(),
            hash: TccrHash::new(),
            counter: 0,
            cols: Columns::default(),
        })
    }

    /// Correlated OTs: returns `m0_i ⊕ r_i·Δ` for each choice `r_i`.
    pub fn receive_correlated<C: Channel + ?Sized>(
        &mut self,
        ch: &mut C,
        choices: &[bool],
    ) -> Result<Vec<Block>> {
        let mut out = Vec::with_capacity(choices.len());
        for chunk in choices.chunks(CHUNK) {
            let k = chunk.len();
            let cb = k.div_ceil(128) * 16;
            let mut r = pack_bits(chunk);
            r.resize(cb, 0);
            let (t, u) = self.cols.sized(KAPPA * cb);
            for (j, (p0, p1)) in self.prgs.iter_mut().enumerate() {
                let tc = &mut t[j * cb..(j + 1) * cb];
                let uc = &mut u[j * cb..(j + 1) * cb];
                p0.fill_bytes(tc);
                p1.fill_bytes(uc);
                for ((x, y), z) in uc.iter_mut().zip(tc.iter()).zip(&r) {
                    *x ^= *y ^ *z;
                }
            }
            ch.send(u)?;
            ch.flush()?;
            let start = out.len();
            columns_to_rows(t, cb, &mut out);
            out.truncate(start + k);
        }
        Ok(out)
    }

    /// Random OTs: returns `m_{r_i}` of the sender's random pairs.
    pub fn receive_random<C: Channel + ?Sized>(
        &mut self,
        ch: &mut C,
        choices: &[bool],
    ) -> Result<Vec<Block>> {
        let mut t = self.receive_correlated(ch, choices)?;
        self.hash
            .hash_many_counter(&mut t, OT_TWEAK_DOMAIN, self.counter);
        self.counter += choices.len() as u64;
        Ok(t)
    }

    /// Chosen-message OTs: returns `msgs[i].{r_i}` of the sender's messages.
    pub fn receive_chosen<C: Channel + ?Sized>(
        &mut self,
        ch: &mut C,
        choices: &[bool],
    ) -> Result<Vec<Block>> {
        let keys = self.receive_random(ch, choices)?;
        let ct = ch.recv_blocks(2 * choices.len())?;
        Ok(keys
            .iter()
            .zip(choices)
            .enumerate()
            // Branch- and index-free in the choice bit.
            .map(|(i, (k, &c))| ct[2 * i] ^ (ct[2 * i] ^ ct[2 * i + 1]).select(c) ^ *k)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{CountingChannel, MemoryChannel, RecordingChannel};
    use crate::error::Fault;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha12Rng;

    #[test]
    fn transpose_matches_naive() {
        let mut rng = ChaCha12Rng::seed_from_u64(3);
        let a: [u128; 128] = core::array::from_fn(|_| rng.r#gen());
        let mut b = a;
        transpose_128(&mut b);
        for (r, ar) in a.iter().enumerate() {
            for (c, bc) in b.iter().enumerate() {
                assert_eq!((ar >> c) & 1, (bc >> r) & 1);
            }
        }
        transpose_128(&mut b);
        assert_eq!(a, b);
    }

    /// The AVX-512 GFNI transpose equals the portable one on random columns of several
    /// lengths (on a CPU without the features both sides are the portable path; this
    /// machine has them, and the test says which ran).
    #[test]
    fn columns_to_rows_matches_the_portable_transpose() {
        #[cfg(target_arch = "x86_64")]
        eprintln!("gfni transpose available: {}", gfni::available());
        let mut rng = ChaCha12Rng::seed_from_u64(4);
        for cb in [16usize, 32, 48, 64, 112, 256] {
            let cols: Vec<u8> = (0..128 * cb).map(|_| rng.r#gen()).collect();
            let mut fast = Vec::new();
            columns_to_rows(&cols, cb, &mut fast);
            let mut want = Vec::new();
            for chunk in 0..cb / 16 {
                let mut m: [u128; 128] = core::array::from_fn(|j| {
                    let off = j * cb + 16 * chunk;
                    u128::from_le_bytes(cols[off..off + 16].try_into().unwrap())
                });
                transpose_128(&mut m);
                want.extend(m.iter().map(|&v| Block(v)));
            }
            assert_eq!(fast.len(), 8 * cb);
            assert_eq!(fast, want, "cb = {cb}");
        }
    }

    fn setup_pair(delta: Delta) -> (OtSender, OtReceiver, MemoryChannel, MemoryChannel) {
        let (mut a, mut b) = MemoryChannel::pair();
        let h = std::thread::spawn(move || {
            let r = OtReceiver::setup(&mut b, &mut ChaCha12Rng::seed_from_u64(22)).unwrap();
            (r, b)
        });
        let s = OtSender::setup(&mut a, delta, &mut ChaCha12Rng::seed_from_u64(21)).unwrap();
        let (r, b) = h.join().unwrap();
        (s, r, a, b)
    }

    #[test]
    fn correlated_random_and_chosen() {
        let mut rng = ChaCha12Rng::seed_from_u64(1);
        let delta = Delta::random(&mut rng);
        let (mut s, mut r, mut a, mut b) = setup_pair(delta);
        for n in [1usize, 129, 1000] {
            let choices: Vec<bool> = (0..n).map(|_| rng.r#gen()).collect();
            let msgs: Vec<(Block, Block)> = (0..n)
                .map(|_| (Block::random(&mut rng), Block::random(&mut rng)))
                .collect();
            let ch2 = choices.clone();
            let h = std::thread::spawn(move || {
                let c = r.receive_correlated(&mut b, &ch2).unwrap();
                let rr = r.receive_random(&mut b, &ch2).unwrap();
                let cc = r.receive_chosen(&mut b, &ch2).unwrap();
                (r, b, c, rr, cc)
            });
            let m0 = s.send_correlated(&mut a, n).unwrap();
            let pairs = s.send_random(&mut a, n).unwrap();
            s.send_chosen(&mut a, &msgs).unwrap();
            let (r2, b2, c, rr, cc) = h.join().unwrap();
            (r, b) = (r2, b2);
            for i in 0..n {
                assert_eq!(
                    c[i],
                    m0[i] ^ delta.block().select(choices[i]),
                    "n={n} i={i}"
                );
                let (k0, k1) = pairs[i];
                assert_ne!(k0 ^ k1, delta.block());
                assert_eq!(rr[i], if choices[i] { k1 } else { k0 });
                assert_eq!(cc[i], if choices[i] { msgs[i].1 } else { msgs[i].0 });
            }
        }
    }

    #[test]
    fn many_sizes() {
        let mut rng = ChaCha12Rng::seed_from_u64(9);
        let delta = Delta::random(&mut rng);
        let (mut s, r, mut a, b) = setup_pair(delta);
        let sizes = [1usize, 127, 128, 129, 1000, CHUNK + 300];
        let all: Vec<Vec<bool>> = sizes
            .iter()
            .map(|&n| (0..n).map(|_| rng.r#gen()).collect())
            .collect();
        let all2 = all.clone();
        let h = std::thread::spawn(move || {
            let (mut r, mut b) = (r, b);
            all2.iter()
                .map(|c| r.receive_correlated(&mut b, c).unwrap())
                .collect::<Vec<_>>()
        });
        let m0s: Vec<Vec<Block>> = sizes
            .iter()
            .map(|&n| s.send_correlated(&mut a, n).unwrap())
            .collect();
        let got = h.join().unwrap();
        for ((m0, g), c) in m0s.iter().zip(&got).zip(&all) {
            assert_eq!(m0.len(), c.len());
            for i in 0..c.len() {
                assert_eq!(g[i], m0[i] ^ delta.block().select(c[i]));
            }
        }
    }

    /// Runs setup + one correlated extension with the receiver's traffic recorded.
    fn receiver_transcript(choices: Vec<bool>) -> Vec<u8> {
        let (mut a, b) = MemoryChannel::pair();
        let n = choices.len();
        let h = std::thread::spawn(move || {
            let mut b = RecordingChannel::new(b);
            let mut r = OtReceiver::setup(&mut b, &mut ChaCha12Rng::seed_from_u64(5)).unwrap();
            r.receive_correlated(&mut b, &choices).unwrap();
            b.sent
        });
        let delta = Delta::from_block(Block(0x1234_5678_9abc_def0_1111_2222_3333_4445));
        let mut s = OtSender::setup(&mut a, delta, &mut ChaCha12Rng::seed_from_u64(6)).unwrap();
        s.send_correlated(&mut a, n).unwrap();
        h.join().unwrap()
    }

    #[test]
    fn choices_do_not_appear_in_transcript() {
        let mut rng = ChaCha12Rng::seed_from_u64(77);
        let choices: Vec<bool> = (0..1024).map(|_| rng.r#gen()).collect();
        let flipped: Vec<bool> = choices.iter().map(|c| !c).collect();
        let t1 = receiver_transcript(choices.clone());
        let t2 = receiver_transcript(flipped.clone());
        assert_eq!(t1.len(), t2.len());
        // Base OT: the receiver (as base-OT sender) sends one point; then 16 bytes per OT.
        assert_eq!(t1.len(), 32 + 16 * 1024);
        let packed = pack_bits(&choices);
        let packed_flipped = pack_bits(&flipped);
        for pattern in [&packed[..16], &packed[100..116], &packed_flipped[..16]] {
            assert!(!t1.windows(16).any(|w| w == pattern));
            assert!(!t2.windows(16).any(|w| w == pattern));
        }
    }

    #[test]
    fn traffic_accounting() {
        let (a, b) = MemoryChannel::pair();
        let h = std::thread::spawn(move || {
            let mut b = CountingChannel::new(b);
            let mut r = OtReceiver::setup(&mut b, &mut ChaCha12Rng::seed_from_u64(5)).unwrap();
            b.reset();
            r.receive_correlated(&mut b, &[true; 1000]).unwrap();
            b.stats()
        });
        let mut a = CountingChannel::new(a);
        let mut s = OtSender::setup(
            &mut a,
            Delta::from_block(Block(3)),
            &mut ChaCha12Rng::seed_from_u64(6),
        )
        .unwrap();
        assert_eq!(a.stats().bytes_sent, 32 * KAPPA as u64);
        assert_eq!(a.stats().bytes_received, 32);
        s.send_correlated(&mut a, 1000).unwrap();
        let st = h.join().unwrap();
        assert_eq!(st.bytes_sent, 16 * 1024);
        assert_eq!(st.messages, 1);
        assert_eq!(st.bytes_received, 0);
    }

    #[test]
    fn truncated_extension_is_a_peer_error() {
        let mut rng = ChaCha12Rng::seed_from_u64(1);
        let delta = Delta::random(&mut rng);
        let (mut s, _r, mut a, mut b) = setup_pair(delta);
        b.send(&[0u8; 100]).unwrap();
        drop(b);
        let e = s.send_correlated(&mut a, 128).unwrap_err();
        assert_eq!(e.fault(), Fault::Peer);
    }
}
