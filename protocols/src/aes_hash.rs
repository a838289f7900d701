//! Fixed-key AES-128 and the tweakable correlation-robust hash built on it.
//!
//! The permutation `π` is AES-128 under a fixed, public key (the FIPS-197 Appendix C.1
//! key `00 01 .. 0f`; any public key works in the ideal-permutation model, this one makes
//! the known-answer tests checkable by hand). The hash follows Guo, Katz, Wang and Yu
//! (2020, "Efficient and secure multiparty computation from fixed-key block ciphers"):
//!
//! ```text
//! σ(x) = (x_hi ⊕ x_lo) ‖ x_hi            (a linear orthomorphism on 64-bit halves)
//! H(x, tweak) = π(σ(x) ⊕ tweak) ⊕ σ(x)
//! ```
//!
//! where `x_hi`/`x_lo` are the high/low 64 bits of the block (see [`Block::hi`]).
//! The `aes` crate selects AES-NI/VAES at run time; blocks are processed eight at a time
//! so that the AES rounds of independent blocks are pipelined.

use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use aes::{Aes128, Block as AesBlock};

use crate::block::Block;

/// The fixed public AES key (FIPS-197 Appendix C.1).
pub const FIXED_KEY: [u8; 16] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
];

/// Number of blocks the AES backend pipelines together (AES-NI: 8 in flight).
pub const BATCH: usize = 8;

/// Number of blocks per cipher call in the bulk paths ([`AesCipher::encrypt_many`],
/// [`TccrHash::hash_many`]): eight pipelined batches, which amortises the per-call
/// overhead of the `aes` crate (CPU feature check, closure set-up).
pub const CALL: usize = 8 * BATCH;

/// AES-128 under one key, with batched encryption of [`Block`]s.
#[derive(Clone)]
pub struct AesCipher {
    cipher: Aes128,
}

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

    /// Encrypts an array of blocks in one cipher call (the backend pipelines [`BATCH`]
    /// blocks at a time). Writes every buffer element exactly once: no zero-filling.
    #[inline(always)]
    pub fn encrypt_array<const N: usize>(&self, xs: [Block; N]) -> [Block; N] {
        let mut buf: [AesBlock; N] = core::array::from_fn(|i| AesBlock::from(xs[i].to_bytes()));
        self.cipher.encrypt_blocks(&mut buf);
        core::array::from_fn(|i| Block::from_bytes(buf[i].into()))
    }

    /// Encrypts blocks in the `aes` crate's representation in place, in one cipher call
    /// (for the garbling kernels, which fill the buffer directly).
    #[inline(always)]
    pub(crate) fn encrypt_raw(&self, buf: &mut [AesBlock]) {
        self.cipher.encrypt_blocks(buf);
    }

    /// Encrypts blocks in place, [`CALL`] per cipher call.
    #[inline]
    pub fn encrypt_many(&self, xs: &mut [Block]) {
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

/// The linear orthomorphism `σ(x_hi ‖ x_lo) = (x_hi ⊕ x_lo) ‖ x_hi`.
#[inline]
pub const fn sigma(x: Block) -> Block {
    Block::from_halves(x.hi() ^ x.lo(), x.hi())
}

/// The tweakable correlation-robust hash `H(x, tweak) = π(σ(x) ⊕ tweak) ⊕ σ(x)`.
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

    /// Hashes one block under one tweak.
    #[inline]
    pub fn hash(&self, x: Block, tweak: Block) -> Block {
        let s = sigma(x);
        self.pi.encrypt(s ^ tweak) ^ s
    }

    /// Hashes `N` blocks (each with its own tweak) in one batch.
    #[inline(always)]
    pub fn hash_n<const N: usize>(&self, xs: [Block; N], tweaks: [Block; N]) -> [Block; N] {
        let s: [Block; N] = core::array::from_fn(|i| sigma(xs[i]));
        let y: [Block; N] = self
            .pi
            .encrypt_array(core::array::from_fn(|i| s[i] ^ tweaks[i]));
        core::array::from_fn(|i| y[i] ^ s[i])
    }

    /// Hashes `xs[i]` under the tweak `(hi, first + i)` (high and low 64 bits) in place,
    /// [`CALL`] blocks per cipher call, without materialising the tweaks.
    pub fn hash_many_counter(&self, xs: &mut [Block], hi: u64, first: u64) {
        let base = (hi as u128) << 64;
        let tw = |i: usize| Block(base | first.wrapping_add(i as u64) as u128);
        let mut chunks = xs.chunks_exact_mut(CALL);
        let mut at = 0usize;
        for x in &mut chunks {
            let arr: [Block; CALL] = core::array::from_fn(|i| x[i]);
            let t: [Block; CALL] = core::array::from_fn(|i| tw(at + i));
            x.copy_from_slice(&self.hash_n(arr, t));
            at += CALL;
        }
        for (i, x) in chunks.into_remainder().iter_mut().enumerate() {
            *x = self.hash(*x, tw(at + i));
        }
    }

    /// Hashes `xs[i]` under `tweaks[i]` in place, [`CALL`] blocks per cipher call. Extra
    /// elements of the longer slice are left untouched.
    pub fn hash_many(&self, xs: &mut [Block], tweaks: &[Block]) {
        let n = xs.len().min(tweaks.len());
        let (xs, tweaks) = (&mut xs[..n], &tweaks[..n]);
        let mut xc = xs.chunks_exact_mut(CALL);
        let mut tc = tweaks.chunks_exact(CALL);
        for (x, t) in (&mut xc).zip(&mut tc) {
            let arr: [Block; CALL] = core::array::from_fn(|i| x[i]);
            let tw: [Block; CALL] = core::array::from_fn(|i| t[i]);
            x.copy_from_slice(&self.hash_n(arr, tw));
        }
        for (x, t) in xc
            .into_remainder()
            .chunks_mut(BATCH)
            .zip(tc.remainder().chunks(BATCH))
        {
            let mut s = [Block::ZERO; BATCH];
            let mut buf = [GenericArray::from([0u8; 16]); BATCH];
            let k = x.len();
            for i in 0..k {
                s[i] = sigma(x[i]);
                buf[i] = GenericArray::from((s[i] ^ t[i]).to_bytes());
            }
            self.pi.cipher.encrypt_blocks(&mut buf[..k]);
            for i in 0..k {
                x[i] = Block::from_bytes(buf[i].into()) ^ s[i];
            }
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
        let aes = AesCipher::fixed();
        assert_eq!(aes.encrypt(Block::from_bytes(PT)), Block::from_bytes(CT));
        let mut many = [Block::from_bytes(PT); 11];
        aes.encrypt_many(&mut many);
        assert!(many.iter().all(|&b| b == Block::from_bytes(CT)));
    }

    #[test]
    fn sigma_is_linear_orthomorphism() {
        let x = Block::from_halves(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        let y = Block::from_halves(0x1111_2222_3333_4444, 0x5555_6666_7777_8888);
        assert_eq!(sigma(x ^ y), sigma(x) ^ sigma(y));
        // σ(x) ⊕ x = (lo) ‖ (hi ⊕ lo): also a permutation.
        assert_eq!(
            sigma(x),
            Block::from_halves(
                0x0123_4567_89ab_cdef ^ 0xfedc_ba98_7654_3210,
                0x0123_4567_89ab_cdef
            )
        );
    }

    #[test]
    fn tccr_known_answers() {
        let h = TccrHash::new();
        // x = 0: σ(0) = 0, so H(0, PT) = AES(PT) = CT.
        assert_eq!(
            h.hash(Block::ZERO, Block::from_bytes(PT)),
            Block::from_bytes(CT)
        );
        // x with σ(x) = s: choosing tweak = PT ⊕ s gives H = CT ⊕ s.
        let x = Block::from_halves(0x0102_0304_0506_0708, 0x1112_1314_1516_1718);
        let s = Block::from_halves(
            0x0102_0304_0506_0708 ^ 0x1112_1314_1516_1718,
            0x0102_0304_0506_0708,
        );
        assert_eq!(sigma(x), s);
        let tweak = Block::from_bytes(PT) ^ s;
        let expect = Block::from_bytes(CT) ^ s;
        assert_eq!(h.hash(x, tweak), expect);
        // Literal value of the same answer, so a change of byte order is caught too.
        assert_eq!(
            expect.to_bytes(),
            [
                0x69 ^ 0x08,
                0xc4 ^ 0x07,
                0xe0 ^ 0x06,
                0xd8 ^ 0x05,
                0x6a ^ 0x04,
                0x7b ^ 0x03,
                0x04 ^ 0x02,
                0x30 ^ 0x01,
                0xd8 ^ 0x10,
                0xcd ^ 0x10,
                0xb7 ^ 0x10,
                0x80 ^ 0x10,
                0x70 ^ 0x10,
                0xb4 ^ 0x10,
                0xc5 ^ 0x10,
                0x5a ^ 0x10
            ]
        );
        // Batched forms agree with the scalar form.
        let got = h.hash_n([x, Block::ZERO], [tweak, Block::from_bytes(PT)]);
        assert_eq!(got, [expect, Block::from_bytes(CT)]);
        let mut xs = vec![x; 19];
        let ts = vec![tweak; 19];
        h.hash_many(&mut xs, &ts);
        assert!(xs.iter().all(|&b| b == expect));
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

    #[test]
    fn tweak_matters() {
        let h = TccrHash::new();
        let x = Block(0xdead_beef);
        assert_ne!(h.hash(x, Block(1)), h.hash(x, Block(2)));
    }
}
