//! Fixed-key AES-128 and the tweakable circular correlation-robust hash built on it.
//!
//! The permutation `π` is AES-128 under a fixed, public key (the FIPS-197 Appendix C.1
//! key `00 01 .. 0f`; any public key works in the ideal-permutation model, this one makes
//! the known-answer tests checkable by hand). The hash is the TCCR construction of Guo,
//! Katz, Wang and Yu (IEEE S&P 2020, "Efficient and secure multiparty computation from
//! fixed-key block ciphers", §7.3), which they prove tweakable circular
//! correlation-robust in the ideal-permutation model, the property half-gates garbling
//! needs:
//!
//! ```text
//! H(x, tweak) = π(π(x) ⊕ tweak) ⊕ π(x)
//! ```
//!
//! Two AES calls per hash. Where the CPU has AVX-512F and VAES (checked at run time),
//! blocks are encrypted four to a 512-bit register, 32 in flight; elsewhere the `aes`
//! crate's AES-NI (eight in flight) or constant-time software path is used. Both give
//! the same bits (tested).

use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use aes::{Aes128, Block as AesBlock};

use crate::block::Block;

/// The fixed public AES key (FIPS-197 Appendix C.1).
pub const FIXED_KEY: [u8; 16] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
];

/// Number of blocks the AES-NI backend pipelines together (8 in flight).
pub const BATCH: usize = 8;

/// Number of blocks per cipher call in the bulk paths ([`AesCipher::encrypt_many`],
/// [`TccrHash::hash_many`]): enough to fill either backend's pipeline and amortise the
/// per-call overhead (CPU feature check, closure set-up).
pub const CALL: usize = 8 * BATCH;

/// AES-128 under one key, with batched encryption of [`Block`]s.
#[derive(Clone)]
pub struct AesCipher {
    cipher: Aes128,
    /// The VAES-512 kernel's round keys, where the CPU has the kernel's features.
    #[cfg(target_arch = "x86_64")]
    wide: Option<vaes::RoundKeys>,
}

/// Prints the type only: the round keys of a keyed cipher (a [`Prg`](crate::prg::Prg)'s
/// seed) are secret.
impl core::fmt::Debug for AesCipher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("AesCipher { .. }")
    }
}

impl AesCipher {
    /// AES-128 keyed with `key` (the block's little-endian bytes are the key bytes).
    pub fn new(key: Block) -> Self {
        AesCipher {
            cipher: Aes128::new(&GenericArray::from(key.to_bytes())),
            #[cfg(target_arch = "x86_64")]
            wide: vaes::RoundKeys::new(key.to_bytes()),
        }
    }

    /// The same cipher without the VAES-512 kernel (the `aes` crate's AES-NI or software
    /// path), for tests and for measuring the kernel against it.
    pub fn without_vaes(mut self) -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            self.wide = None;
        }
        self
    }

    /// The VAES-512 kernel's round keys, where this cipher uses that kernel (their
    /// existence proves the CPU has AVX-512F, VAES and AES-NI).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn vaes_keys(&self) -> Option<&vaes::RoundKeys> {
        self.wide.as_ref()
    }

    /// Whether this cipher uses the VAES-512 kernel.
    pub fn uses_vaes(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self.wide.is_some()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The fixed-key permutation `π` (key [`FIXED_KEY`]).
    pub fn fixed() -> Self {
        Self::new(Block::from_bytes(FIXED_KEY))
    }

    /// Encrypts one block.
    #[inline]
    pub fn encrypt(&self, x: Block) -> Block {
        let mut b = GenericArray::from(x.to_bytes());
        self.cipher.encrypt_block(&mut b);
        Block::from_bytes(b.into())
    }

    /// Encrypts an array of blocks in one cipher call. Writes every buffer element
    /// exactly once: no zero-filling.
    #[inline(always)]
    pub fn encrypt_array<const N: usize>(&self, xs: [Block; N]) -> [Block; N] {
        let mut buf: [AesBlock; N] = core::array::from_fn(|i| AesBlock::from(xs[i].to_bytes()));
        self.encrypt_raw(&mut buf);
        core::array::from_fn(|i| Block::from_bytes(buf[i].into()))
    }

    /// Encrypts blocks in the `aes` crate's representation in place, in one cipher call.
    #[inline(always)]
    fn encrypt_raw(&self, buf: &mut [AesBlock]) {
        #[cfg(target_arch = "x86_64")]
        if let Some(wide) = &self.wide {
            wide.encrypt_raw(buf);
            return;
        }
        self.cipher.encrypt_blocks(buf);
    }

    /// Encrypts blocks in place ([`CALL`] per cipher call on the AES-NI path; in place
    /// without copies on the VAES-512 path).
    #[inline]
    pub fn encrypt_many(&self, xs: &mut [Block]) {
        #[cfg(target_arch = "x86_64")]
        if let Some(wide) = &self.wide {
            wide.encrypt_blocks(xs);
            return;
        }
        let mut chunks = xs.chunks_exact_mut(CALL);
        for chunk in &mut chunks {
            let arr: [Block; CALL] = core::array::from_fn(|i| chunk[i]);
            chunk.copy_from_slice(&self.encrypt_array(arr));
        }
        for chunk in chunks.into_remainder().chunks_mut(BATCH) {
            let mut buf = [GenericArray::from([0u8; 16]); BATCH];
            for (dst, src) in buf.iter_mut().zip(chunk.iter()) {
                *dst = GenericArray::from(src.to_bytes());
            }
            let n = chunk.len();
            self.cipher.encrypt_blocks(&mut buf[..n]);
            for (dst, src) in chunk.iter_mut().zip(buf.iter()) {
                *dst = Block::from_bytes((*src).into());
            }
        }
    }
}

/// AES-128 on 512-bit registers (AVX-512F + VAES): four blocks per `vaesenc`, eight
/// registers in flight. The key schedule uses AES-NI's `aeskeygenassist` (constant time,
/// unlike a table-driven expansion: keyed ciphers carry secret seeds).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub(crate) mod vaes {
    use aes::Block as AesBlock;
    use core::arch::x86_64::*;

    use crate::block::Block;

    /// The 11 round keys of AES-128; exists only on CPUs that run the kernel.
    #[derive(Clone)]
    pub(crate) struct RoundKeys([[u8; 16]; 11]);

    impl RoundKeys {
        /// Expands `key`, or `None` where the CPU lacks AVX-512F, VAES or AES-NI.
        pub(super) fn new(key: [u8; 16]) -> Option<Self> {
            let ok = std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("vaes")
                && std::arch::is_x86_feature_detected!("aes");
            // SAFETY: `expand` needs AES-NI and SSE2 (x86-64 baseline), checked above.
            ok.then(|| unsafe { expand(key) })
        }

        /// The 11 round keys, each broadcast to the four 128-bit lanes of a register (for
        /// kernels that fuse AES with other work, such as the half-gates kernels of
        /// `gc::vaes`).
        #[target_feature(enable = "avx512f")]
        pub(crate) fn broadcast(&self) -> [__m512i; 11] {
            core::array::from_fn(|r| {
                // SAFETY: 16-byte unaligned load from a 16-byte array.
                _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(self.0[r].as_ptr().cast()) })
            })
        }

        /// The TCCR hash `π(π(x) ⊕ τ) ⊕ π(x)` of `xs[i]` under the tweak `(hi, first + i)`
        /// (high and low 64 bits, the low half wrapping), in place, for the longest
        /// prefix of `xs` that is a multiple of four blocks; returns its length. Both AES
        /// passes and the tweaks stay in registers, 32 blocks in flight.
        pub(super) fn tccr_counter(&self, xs: &mut [Block], hi: u64, first: u64) -> usize {
            let n = xs.len() - xs.len() % 4;
            // SAFETY: `self` exists only on a CPU with the kernel's features; `Block` is
            // 16 bytes (see `encrypt_blocks`) and `n <= xs.len()`.
            unsafe { tccr_counter(self, xs.as_mut_ptr().cast(), n, hi, first) };
            n
        }

        /// The TCCR hash of `xs[i]` under the tweak `(hi, pos[i])` in place, both AES
        /// passes and the tweaks in registers. Returns `false` (and does nothing) unless
        /// `pos` has `xs`'s length and that is a multiple of four.
        pub(crate) fn tccr_positions(&self, xs: &mut [Block], hi: u64, pos: &[u64]) -> bool {
            let n = xs.len();
            if pos.len() != n || !n.is_multiple_of(4) {
                return false;
            }
            // SAFETY: `self` exists only on a CPU with the kernel's features; `Block` is
            // 16 bytes (see `encrypt_blocks`); `xs` and `pos` hold `n` elements.
            unsafe { tccr_positions(self, xs.as_mut_ptr().cast(), pos.as_ptr(), n, hi) };
            true
        }

        /// Encrypts `buf` in place.
        #[inline]
        pub(super) fn encrypt_raw(&self, buf: &mut [AesBlock]) {
            // SAFETY: `AesBlock` is `GenericArray<u8, U16>`, a `repr(transparent)` array
            // of 16 bytes, so the slice is `16 · len` contiguous bytes; `self` exists only
            // on a CPU with the kernel's features (`new`).
            unsafe { encrypt(self, buf.as_mut_ptr().cast(), buf.len()) }
        }

        /// Encrypts `xs` in place; block bytes are [`Block::to_bytes`] (little-endian).
        #[inline]
        pub(super) fn encrypt_blocks(&self, xs: &mut [Block]) {
            // SAFETY: `Block` is a `repr(transparent)` `u128`, 16 bytes stored
            // little-endian on x86-64, i.e. exactly `to_bytes()`; features as above.
            unsafe { encrypt(self, xs.as_mut_ptr().cast(), xs.len()) }
        }
    }

    /// FIPS-197 §5.2 key expansion with `aeskeygenassist` (each round: `w ⊕= w << 32`
    /// three times, then XOR the broadcast `SubWord(RotWord(w3)) ⊕ rcon`).
    #[target_feature(enable = "aes,sse2")]
    fn expand(key: [u8; 16]) -> RoundKeys {
        let mut rk = [[0u8; 16]; 11];
        rk[0] = key;
        // SAFETY: 16-byte unaligned load from a 16-byte array.
        let mut k = unsafe { _mm_loadu_si128(key.as_ptr().cast()) };
        macro_rules! round {
            ($i:literal, $rcon:literal) => {{
                let t = _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<$rcon>(k));
                k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
                k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
                k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
                k = _mm_xor_si128(k, t);
                // SAFETY: 16-byte unaligned store into a 16-byte array.
                unsafe { _mm_storeu_si128(rk[$i].as_mut_ptr().cast(), k) };
            }};
        }
        round!(1, 0x01);
        round!(2, 0x02);
        round!(3, 0x04);
        round!(4, 0x08);
        round!(5, 0x10);
        round!(6, 0x20);
        round!(7, 0x40);
        round!(8, 0x80);
        round!(9, 0x1b);
        round!(10, 0x36);
        RoundKeys(rk)
    }

    /// AES of every block of `N` registers (four blocks each), round-major: `N`
    /// registers in flight. `kw` is [`RoundKeys::broadcast`].
    #[target_feature(enable = "avx512f,vaes")]
    #[inline]
    pub(crate) fn aes_regs<const N: usize>(
        kw: &[__m512i; 11],
        mut x: [__m512i; N],
    ) -> [__m512i; N] {
        for v in &mut x {
            *v = _mm512_xor_si512(*v, kw[0]);
        }
        for key in &kw[1..10] {
            for v in &mut x {
                *v = _mm512_aesenc_epi128(*v, *key);
            }
        }
        for v in &mut x {
            *v = _mm512_aesenclast_epi128(*v, kw[10]);
        }
        x
    }

    /// The TCCR hash of the `n` blocks at `p` (a multiple of 4) in place, blocks
    /// `at .. at + 4` under the tweaks in `tweak(at)`: eight registers per step, then one.
    ///
    /// # Safety
    /// `p` must be valid for reads and writes of `16 n` bytes, `tweak` for every `at < n`
    /// that is a multiple of 4; the CPU must have AVX-512F, VAES and AES-NI.
    #[target_feature(enable = "avx512f,vaes,aes,sse2")]
    #[inline]
    unsafe fn tccr_tweaked(rk: &RoundKeys, p: *mut u8, n: usize, tweak: impl Fn(usize) -> __m512i) {
        let kw = rk.broadcast();
        // SAFETY (load and store): blocks at .. at + 4 are inside the buffer (the loop
        // keeps at + 4 <= n).
        let load = |at: usize| unsafe { _mm512_loadu_si512(p.add(16 * at).cast()) };
        let store = |at: usize, v| unsafe { _mm512_storeu_si512(p.add(16 * at).cast(), v) };
        let mut i = 0;
        while i < n {
            if i + 32 <= n {
                let u = aes_regs(&kw, core::array::from_fn::<_, 8, _>(|j| load(i + 4 * j)));
                let v: [__m512i; 8] = aes_regs(
                    &kw,
                    core::array::from_fn(|j| _mm512_xor_si512(u[j], tweak(i + 4 * j))),
                );
                for j in 0..8 {
                    store(i + 4 * j, _mm512_xor_si512(v[j], u[j]));
                }
                i += 32;
            } else {
                let [u] = aes_regs(&kw, [load(i)]);
                let [v] = aes_regs(&kw, [_mm512_xor_si512(u, tweak(i))]);
                store(i, _mm512_xor_si512(v, u));
                i += 4;
            }
        }
    }

    /// The TCCR hash of the `n` blocks at `p` (a multiple of 4) in place, block `i` under
    /// the tweak `(hi, first + i)`.
    ///
    /// # Safety
    /// `p` must be valid for reads and writes of `16 n` bytes; the CPU must have
    /// AVX-512F, VAES and AES-NI.
    #[target_feature(enable = "avx512f,vaes,aes,sse2")]
    unsafe fn tccr_counter(rk: &RoundKeys, p: *mut u8, n: usize, hi: u64, first: u64) {
        let (h, f) = (hi as i64, first as i64);
        // Tweaks of blocks 0..4: (hi, first + j) in lane j; blocks at.. add at.
        let tw = _mm512_add_epi64(
            _mm512_set_epi64(h, f, h, f, h, f, h, f),
            _mm512_set_epi64(0, 3, 0, 2, 0, 1, 0, 0),
        );
        let tweak = |at: usize| {
            let a = at as i64;
            _mm512_add_epi64(tw, _mm512_set_epi64(0, a, 0, a, 0, a, 0, a))
        };
        // SAFETY: the caller's guarantees.
        unsafe { tccr_tweaked(rk, p, n, tweak) }
    }

    /// The TCCR hash of the `n` blocks at `p` (a multiple of 4) in place, block `i` under
    /// the tweak `(hi, pos[i])`.
    ///
    /// # Safety
    /// `p` must be valid for reads and writes of `16 n` bytes and `pos` for reads of `n`
    /// `u64`; the CPU must have AVX-512F, VAES and AES-NI.
    #[target_feature(enable = "avx512f,vaes,aes,sse2")]
    unsafe fn tccr_positions(rk: &RoundKeys, p: *mut u8, pos: *const u64, n: usize, hi: u64) {
        let hv = _mm512_set1_epi64(hi as i64);
        // Positions at..at + 4 to the low halves of the four lanes, `hi` to the high halves.
        let idx = _mm512_set_epi64(8, 3, 8, 2, 8, 1, 8, 0);
        let tweak = |at: usize| {
            // SAFETY: tccr_tweaked asks only for at + 4 <= n.
            let q = unsafe { _mm256_loadu_si256(pos.add(at).cast()) };
            _mm512_permutex2var_epi64(_mm512_castsi256_si512(q), idx, hv)
        };
        // SAFETY: the caller's guarantees.
        unsafe { tccr_tweaked(rk, p, n, tweak) }
    }

    /// Encrypts the `n` blocks at `p` in place: 32 at a time (eight registers), then 4,
    /// then one at a time with 128-bit AES-NI.
    ///
    /// # Safety
    /// `p` must be valid for reads and writes of `16 n` bytes; the CPU must have
    /// AVX-512F, VAES and AES-NI.
    #[target_feature(enable = "avx512f,vaes,aes,sse2")]
    unsafe fn encrypt(rk: &RoundKeys, p: *mut u8, n: usize) {
        let mut k = [_mm_setzero_si128(); 11];
        let mut kw = [_mm512_setzero_si512(); 11];
        for r in 0..11 {
            // SAFETY: 16-byte unaligned load from a 16-byte array.
            k[r] = unsafe { _mm_loadu_si128(rk.0[r].as_ptr().cast()) };
            kw[r] = _mm512_broadcast_i32x4(k[r]);
        }
        let mut i = 0;
        while i + 32 <= n {
            let mut x = [_mm512_setzero_si512(); 8];
            for (j, v) in x.iter_mut().enumerate() {
                // SAFETY: blocks i + 4j .. i + 4j + 4 are inside the buffer (i + 32 <= n).
                *v = _mm512_xor_si512(
                    unsafe { _mm512_loadu_si512(p.add(16 * (i + 4 * j)).cast()) },
                    kw[0],
                );
            }
            for key in &kw[1..10] {
                for v in &mut x {
                    *v = _mm512_aesenc_epi128(*v, *key);
                }
            }
            for (j, v) in x.iter().enumerate() {
                let c = _mm512_aesenclast_epi128(*v, kw[10]);
                // SAFETY: as for the load.
                unsafe { _mm512_storeu_si512(p.add(16 * (i + 4 * j)).cast(), c) };
            }
            i += 32;
        }
        while i + 4 <= n {
            // SAFETY: blocks i .. i + 4 are inside the buffer.
            let mut v =
                _mm512_xor_si512(unsafe { _mm512_loadu_si512(p.add(16 * i).cast()) }, kw[0]);
            for key in &kw[1..10] {
                v = _mm512_aesenc_epi128(v, *key);
            }
            v = _mm512_aesenclast_epi128(v, kw[10]);
            // SAFETY: as for the load.
            unsafe { _mm512_storeu_si512(p.add(16 * i).cast(), v) };
            i += 4;
        }
        while i < n {
            // SAFETY: block i is inside the buffer.
            let mut v = _mm_xor_si128(unsafe { _mm_loadu_si128(p.add(16 * i).cast()) }, k[0]);
            for key in &k[1..10] {
                v = _mm_aesenc_si128(v, *key);
            }
            v = _mm_aesenclast_si128(v, k[10]);
            // SAFETY: as for the load.
            unsafe { _mm_storeu_si128(p.add(16 * i).cast(), v) };
            i += 1;
        }
    }
}

/// The tweakable circular correlation-robust hash `H(x, tweak) = π(π(x) ⊕ tweak) ⊕ π(x)`
/// of Guo, Katz, Wang and Yu (S&P 2020, §7.3).
#[derive(Clone, Debug)]
pub struct TccrHash {
    pi: AesCipher,
}

impl Default for TccrHash {
    fn default() -> Self {
        Self::new()
    }
}

impl TccrHash {
    /// The hash over the fixed-key permutation.
    pub fn new() -> Self {
        TccrHash {
            pi: AesCipher::fixed(),
        }
    }

    /// The hash over the given permutation (tests: the same hash without the VAES
    /// kernel).
    pub fn with_cipher(pi: AesCipher) -> Self {
        TccrHash { pi }
    }

    /// Hashes one block under one tweak.
    #[inline]
    pub fn hash(&self, x: Block, tweak: Block) -> Block {
        let u = self.pi.encrypt(x);
        self.pi.encrypt(u ^ tweak) ^ u
    }

    /// Hashes `N` blocks (each with its own tweak) in one batch (two cipher calls).
    #[inline(always)]
    pub fn hash_n<const N: usize>(&self, xs: [Block; N], tweaks: [Block; N]) -> [Block; N] {
        let u: [Block; N] = self.pi.encrypt_array(xs);
        let v: [Block; N] = self
            .pi
            .encrypt_array(core::array::from_fn(|i| u[i] ^ tweaks[i]));
        core::array::from_fn(|i| v[i] ^ u[i])
    }

    /// Hashes `xs[i]` under the tweak `(hi, first + i)` (high and low 64 bits) in place,
    /// [`CALL`] blocks per pair of cipher calls, without materialising the tweaks.
    pub fn hash_many_counter(&self, xs: &mut [Block], hi: u64, first: u64) {
        let base = (hi as u128) << 64;
        #[cfg(target_arch = "x86_64")]
        let (xs, first) = match self.pi.vaes_keys() {
            Some(keys) => {
                let done = keys.tccr_counter(xs, hi, first);
                (&mut xs[done..], first.wrapping_add(done as u64))
            }
            None => (xs, first),
        };
        let mut at = 0usize;
        for x in xs.chunks_mut(CALL) {
            self.hash_chunk(x, |i| {
                Block(base | first.wrapping_add((at + i) as u64) as u128)
            });
            at += CALL;
        }
    }

    /// Hashes `xs[i]` under `tweaks[i]` in place, [`CALL`] blocks per pair of cipher
    /// calls. Extra elements of the longer slice are left untouched.
    pub fn hash_many(&self, xs: &mut [Block], tweaks: &[Block]) {
        let n = xs.len().min(tweaks.len());
        for (x, t) in xs[..n].chunks_mut(CALL).zip(tweaks[..n].chunks(CALL)) {
            self.hash_chunk(x, |i| t[i]);
        }
    }

    /// Hashes up to [`CALL`] blocks in place, block `i` under `tweak(i)`.
    #[inline(always)]
    fn hash_chunk(&self, x: &mut [Block], tweak: impl Fn(usize) -> Block) {
        let k = x.len();
        debug_assert!(k <= CALL);
        let mut u = [Block::ZERO; CALL];
        u[..k].copy_from_slice(x);
        self.pi.encrypt_many(&mut u[..k]);
        for (i, (xi, ui)) in x.iter_mut().zip(&u[..k]).enumerate() {
            *xi = *ui ^ tweak(i);
        }
        self.pi.encrypt_many(x);
        for (xi, ui) in x.iter_mut().zip(&u[..k]) {
            *xi ^= *ui;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // FIPS-197 Appendix C.1 (AES-128).
    const PT: [u8; 16] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ];
    const CT: [u8; 16] = [
        0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5,
        0x5a,
    ];

    #[test]
    fn fips197_raw_cipher() {
        for aes in [AesCipher::fixed(), AesCipher::fixed().without_vaes()] {
            assert_eq!(aes.encrypt(Block::from_bytes(PT)), Block::from_bytes(CT));
            // 75 = two 32-block groups, two 4-block registers and 3 single blocks.
            for n in [1, 3, 4, 11, 32, 75] {
                let mut many = vec![Block::from_bytes(PT); n];
                aes.encrypt_many(&mut many);
                assert!(many.iter().all(|&b| b == Block::from_bytes(CT)), "n={n}");
            }
            let arr = aes.encrypt_array([Block::from_bytes(PT); 37]);
            assert!(arr.iter().all(|&b| b == Block::from_bytes(CT)));
        }
    }

    /// The VAES-512 kernel (where this CPU has it) against the `aes` crate, for the fixed
    /// key and secret-like keys, every length through two 32-block groups.
    #[test]
    fn vaes_kernel_equals_the_aes_crate() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u128;
        let mut next = || {
            state = state.wrapping_mul(0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645) + 1;
            Block(state)
        };
        let keys = [Block::from_bytes(FIXED_KEY), next(), next(), Block::ONES];
        for key in keys {
            let fast = AesCipher::new(key);
            let reference = Aes128::new(&GenericArray::from(key.to_bytes()));
            for n in 0..=70 {
                let xs: Vec<Block> = (0..n).map(|_| next()).collect();
                let mut got = xs.clone();
                fast.encrypt_many(&mut got);
                for (x, g) in xs.iter().zip(&got) {
                    let mut b = GenericArray::from(x.to_bytes());
                    reference.encrypt_block(&mut b);
                    assert_eq!(*g, Block::from_bytes(b.into()), "key {key:?} n={n}");
                }
            }
        }
        if std::arch::is_x86_feature_detected!("vaes")
            && std::arch::is_x86_feature_detected!("avx512f")
        {
            assert!(AesCipher::fixed().uses_vaes());
        }
        assert!(!AesCipher::fixed().without_vaes().uses_vaes());
    }

    #[test]
    fn tccr_known_answers() {
        for h in [
            TccrHash::new(),
            TccrHash::with_cipher(AesCipher::fixed().without_vaes()),
        ] {
            // π(PT) = CT, so with tweak CT ⊕ PT the outer input is PT again:
            // H(PT, CT ⊕ PT) = π(PT) ⊕ π(PT) = 0.
            let (pt, ct) = (Block::from_bytes(PT), Block::from_bytes(CT));
            assert_eq!(h.hash(pt, ct ^ pt), Block::ZERO);
            // And with tweak CT: H(PT, CT) = π(0) ⊕ CT, π(0) computed by the `aes` crate.
            let reference = Aes128::new(&GenericArray::from(FIXED_KEY));
            let mut zero = GenericArray::from([0u8; 16]);
            reference.encrypt_block(&mut zero);
            let expect = Block::from_bytes(zero.into()) ^ ct;
            assert_eq!(h.hash(pt, ct), expect);
            // Batched forms agree with the scalar form.
            let got = h.hash_n([pt, pt], [ct ^ pt, ct]);
            assert_eq!(got, [Block::ZERO, expect]);
            let mut xs = vec![pt; 19];
            let ts = vec![ct; 19];
            h.hash_many(&mut xs, &ts);
            assert!(xs.iter().all(|&b| b == expect));
        }
    }

    /// The definition, spelled out with two independent AES calls of the `aes` crate.
    #[test]
    fn tccr_is_pi_of_pi_x_xor_tweak_xor_pi_x() {
        let reference = Aes128::new(&GenericArray::from(FIXED_KEY));
        let pi = |x: Block| {
            let mut b = GenericArray::from(x.to_bytes());
            reference.encrypt_block(&mut b);
            Block::from_bytes(b.into())
        };
        let h = TccrHash::new();
        for i in 0..50u128 {
            let x = Block(i.wrapping_mul(0x0123_4567_89ab_cdef_0011_2233_4455_6677));
            let t = Block((i << 64) | (2 * i));
            assert_eq!(h.hash(x, t), pi(pi(x) ^ t) ^ pi(x));
        }
    }

    #[test]
    fn batched_equals_scalar_across_chunks() {
        let h = TccrHash::new();
        // Sizes below, at and across CALL, with a ragged tail.
        for n in [0usize, 1, 7, 8, 9, 63, 64, 65, 70, 2 * CALL + 13] {
            let xs: Vec<Block> = (0..n as u128)
                .map(|i| Block(i * 0x9e37_79b9_7f4a_7c15 + 3))
                .collect();
            let ts: Vec<Block> = (0..n as u128).map(|i| Block(i << 64 | 7)).collect();
            let mut ys = xs.clone();
            h.hash_many(&mut ys, &ts);
            for i in 0..n {
                assert_eq!(ys[i], h.hash(xs[i], ts[i]), "n={n} i={i}");
            }
            // A shorter tweak slice leaves the extra inputs untouched.
            let mut us = xs.clone();
            h.hash_many(&mut us, &ts[..n / 2]);
            for i in 0..n {
                let expect = if i < n / 2 { ys[i] } else { xs[i] };
                assert_eq!(us[i], expect, "n={n} i={i}");
            }
            let aes = AesCipher::fixed();
            let mut zs = xs.clone();
            aes.encrypt_many(&mut zs);
            for i in 0..n {
                assert_eq!(zs[i], aes.encrypt(xs[i]));
            }
            let mut cs = xs.clone();
            h.hash_many_counter(&mut cs, 0xabc, u64::MAX - 3);
            for i in 0..n {
                let t = Block::from_halves(0xabc, (u64::MAX - 3).wrapping_add(i as u64));
                assert_eq!(cs[i], h.hash(xs[i], t), "n={n} i={i}");
            }
            let arr: [Block; 5] = core::array::from_fn(|i| Block(i as u128 * 77 + n as u128));
            let enc = aes.encrypt_array(arr);
            for i in 0..5 {
                assert_eq!(enc[i], aes.encrypt(arr[i]));
            }
        }
    }

    /// The in-register hash under arbitrary positions (where this CPU has VAES) equals
    /// the scalar hash; lengths it does not take are refused untouched.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn vaes_hash_under_positions_equals_scalar() {
        let h = TccrHash::new();
        let Some(keys) = h.pi.vaes_keys() else {
            return;
        };
        for n in [0usize, 4, 8, 28, 32, 36, 64] {
            let xs: Vec<Block> = (0..n as u128)
                .map(|i| Block(i * 0x1234_5678_9abc + 1))
                .collect();
            let pos: Vec<u64> = (0..n as u64).map(|i| i.wrapping_mul(0x9e37) ^ 5).collect();
            let mut ys = xs.clone();
            assert!(keys.tccr_positions(&mut ys, 77, &pos));
            for i in 0..n {
                assert_eq!(
                    ys[i],
                    h.hash(xs[i], Block::from_halves(77, pos[i])),
                    "n={n} i={i}"
                );
            }
        }
        let mut three = [Block(1); 3];
        assert!(!keys.tccr_positions(&mut three, 0, &[0, 1, 2]));
        assert!(!keys.tccr_positions(&mut [Block(1); 4], 0, &[0, 1, 2]));
        assert_eq!(three, [Block(1); 3]);
    }

    #[test]
    fn tweak_matters() {
        let h = TccrHash::new();
        let x = Block(0xdead_beef);
        assert_ne!(h.hash(x, Block(1)), h.hash(x, Block(2)));
    }
}
