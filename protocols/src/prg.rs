//! A pseudorandom generator for bulk randomness: AES-128 in counter mode.
//!
//! The key is a 128-bit seed, either drawn from the operating system's CSPRNG
//! ([`Prg::from_entropy`]) or given by the caller ([`Prg::from_seed`], for tests and for
//! expanding OT seeds). Output block `i` is `AES_seed(i)`, with `i` a 128-bit little-endian
//! counter, generated [`BATCH`] blocks at a time (large fills: [`CALL`] blocks per cipher
//! call, written straight into the destination).
//!
//! [`Prg`] implements the `RngCore` and `CryptoRng` traits of both `rand_core` 0.6 (this
//! crate's protocols) and 0.9 (the `fhe` crate's API). [`RngSource`] is where a party's
//! generators come from: fresh OS entropy for each (the default, production) or a chain
//! derived from one seed (tests: a whole inference reproducible from seeds).

use rand_core::{CryptoRng, OsRng, RngCore};

use crate::aes_hash::{AesCipher, BATCH, CALL};
use crate::block::Block;

/// AES-CTR pseudorandom generator. Implements [`RngCore`] and [`CryptoRng`].
#[derive(Clone)]
pub struct Prg {
    aes: AesCipher,
    counter: u128,
    buf: [u8; 16 * BATCH],
    pos: usize,
}

/// Prints the type only: the key is the seed, and the buffer holds output not yet used
/// (labels, masks, OT pads).
impl core::fmt::Debug for Prg {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Prg { .. }")
    }
}

impl Prg {
    /// A generator keyed with `seed`.
    pub fn from_seed(seed: Block) -> Self {
        Prg {
            aes: AesCipher::new(seed),
            counter: 0,
            buf: [0u8; 16 * BATCH],
            pos: 16 * BATCH,
        }
    }

    /// A generator keyed from the operating system's CSPRNG.
    pub fn from_entropy() -> Self {
        Self::from_seed(Block::random(&mut OsRng))
    }

    /// A generator keyed from another random source (e.g. a seeded test RNG).
    pub fn from_rng<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_seed(Block::random(rng))
    }

    #[inline]
    fn next_batch(&mut self) -> [Block; BATCH] {
        let mut blocks: [Block; BATCH] =
            core::array::from_fn(|i| Block(self.counter.wrapping_add(i as u128)));
        self.counter = self.counter.wrapping_add(BATCH as u128);
        self.aes.encrypt_many(&mut blocks);
        blocks
    }

    /// The next pseudorandom block.
    pub fn random_block(&mut self) -> Block {
        let mut b = [0u8; 16];
        self.fill_bytes(&mut b);
        Block::from_bytes(b)
    }

    /// `n` pseudorandom blocks.
    pub fn random_blocks(&mut self, n: usize) -> Vec<Block> {
        let mut out = Vec::with_capacity(n);
        // Drain any buffered bytes first so the stream is identical to repeated `random_block`.
        while out.len() < n && self.pos < self.buf.len() {
            out.push(self.random_block());
        }
        while out.len() + BATCH <= n {
            out.extend_from_slice(&self.next_batch());
        }
        while out.len() < n {
            out.push(self.random_block());
        }
        out
    }
}

impl RngCore for Prg {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let mut off = 0;
        while off < dest.len() {
            if self.pos == self.buf.len() {
                // Bulk path (buffer empty): whole batches of CALL blocks straight into
                // `dest`, same counter sequence as the buffered path.
                while dest.len() - off >= 16 * CALL {
                    let ctr: [Block; CALL] =
                        core::array::from_fn(|i| Block(self.counter.wrapping_add(i as u128)));
                    self.counter = self.counter.wrapping_add(CALL as u128);
                    let out = self.aes.encrypt_array(ctr);
                    for (chunk, b) in dest[off..off + 16 * CALL].chunks_exact_mut(16).zip(&out) {
                        chunk.copy_from_slice(&b.to_bytes());
                    }
                    off += 16 * CALL;
                }
                if off == dest.len() {
                    break;
                }
                let blocks = self.next_batch();
                for (chunk, b) in self.buf.chunks_exact_mut(16).zip(blocks.iter()) {
                    chunk.copy_from_slice(&b.to_bytes());
                }
                self.pos = 0;
            }
            let n = (self.buf.len() - self.pos).min(dest.len() - off);
            dest[off..off + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            off += n;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for Prg {}

/// The same stream through the `rand_core` 0.9 traits, which the `fhe` crate takes.
impl rand09::RngCore for Prg {
    fn next_u32(&mut self) -> u32 {
        RngCore::next_u32(self)
    }

    fn next_u64(&mut self) -> u64 {
        RngCore::next_u64(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        RngCore::fill_bytes(self, dest)
    }
}

impl rand09::CryptoRng for Prg {}

/// Where a party draws its generators from.
///
/// [`RngSource::Entropy`] (the default, and what production uses) keys every generator
/// [`RngSource::prg`] hands out from the operating system's CSPRNG. [`RngSource::Seeded`]
/// derives them, one after the other, from a single seeded [`Prg`]: a party that draws
/// its generators in a fixed order then behaves deterministically, so a test can
/// reproduce (and compare) a whole protocol run from seeds. Never use it in production.
#[derive(Clone, Default)]
pub enum RngSource {
    /// Every generator keyed from the OS CSPRNG.
    #[default]
    Entropy,
    /// Every generator keyed from this one's output (tests only).
    Seeded(Box<Prg>),
}

/// Names the variant only: a seeded source's state is its seed.
impl core::fmt::Debug for RngSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RngSource::Entropy => f.write_str("RngSource::Entropy"),
            RngSource::Seeded(_) => f.write_str("RngSource::Seeded(..)"),
        }
    }
}

impl RngSource {
    /// A deterministic source from `seed` (tests only).
    pub fn seeded(seed: Block) -> Self {
        RngSource::Seeded(Box::new(Prg::from_seed(seed)))
    }

    /// The next generator: keyed from the OS CSPRNG, or from the seeded chain.
    pub fn prg(&mut self) -> Prg {
        match self {
            RngSource::Entropy => Prg::from_entropy(),
            RngSource::Seeded(p) => Prg::from_rng(p.as_mut()),
        }
    }

    /// A source for a sub-component (an independent chain when seeded).
    pub fn fork(&mut self) -> RngSource {
        match self {
            RngSource::Entropy => RngSource::Entropy,
            RngSource::Seeded(p) => RngSource::Seeded(Box::new(Prg::from_rng(p.as_mut()))),
        }
    }

    /// True for [`RngSource::Seeded`].
    pub fn is_seeded(&self) -> bool {
        matches!(self, RngSource::Seeded(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_counter_mode() {
        let seed = Block(42);
        let mut a = Prg::from_seed(seed);
        let mut b = Prg::from_seed(seed);
        assert_eq!(a.next_u64(), b.next_u64());
        // Output block i is AES_seed(i).
        let aes = AesCipher::new(seed);
        let mut c = Prg::from_seed(seed);
        let blocks = c.random_blocks(20);
        for (i, blk) in blocks.iter().enumerate() {
            assert_eq!(*blk, aes.encrypt(Block(i as u128)));
        }
        // random_blocks after a partial read continues the byte stream.
        let mut d = Prg::from_seed(seed);
        let mut e = Prg::from_seed(seed);
        let _ = d.next_u32();
        let _ = e.next_u32();
        let bulk = d.random_blocks(13);
        let single: Vec<Block> = (0..13).map(|_| e.random_block()).collect();
        assert_eq!(bulk, single);
        // Large fills (bulk path) continue the same stream, aligned or not.
        for skip in [0usize, 5, 16] {
            let mut f = Prg::from_seed(seed);
            let mut g = Prg::from_seed(seed);
            let mut head = vec![0u8; skip];
            f.fill_bytes(&mut head);
            g.fill_bytes(&mut head);
            let mut big = vec![0u8; 16 * 3 * CALL + 7];
            f.fill_bytes(&mut big);
            let mut small = vec![0u8; big.len()];
            for c in small.chunks_mut(3) {
                g.fill_bytes(c);
            }
            assert_eq!(big, small, "skip {skip}");
            assert_eq!(f.next_u64(), g.next_u64());
        }
    }

    #[test]
    fn different_seeds_differ() {
        let mut a = Prg::from_seed(Block(1));
        let mut b = Prg::from_seed(Block(2));
        assert_ne!(a.random_block(), b.random_block());
        let mut e1 = Prg::from_entropy();
        let mut e2 = Prg::from_entropy();
        assert_ne!(e1.random_block(), e2.random_block());
    }

    #[test]
    fn both_trait_versions_give_the_same_stream() {
        let mut a = Prg::from_seed(Block(7));
        let mut b = Prg::from_seed(Block(7));
        let mut x = [0u8; 37];
        let mut y = [0u8; 37];
        RngCore::fill_bytes(&mut a, &mut x);
        rand09::RngCore::fill_bytes(&mut b, &mut y);
        assert_eq!(x, y);
        assert_eq!(RngCore::next_u64(&mut a), rand09::RngCore::next_u64(&mut b));
    }

    #[test]
    fn seeded_sources_repeat_and_hide_their_seed() {
        let seed = Block(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        let mut a = RngSource::seeded(seed);
        let mut b = RngSource::seeded(seed);
        let mut fa = a.fork();
        let mut fb = b.fork();
        assert_eq!(a.prg().random_block(), b.prg().random_block());
        assert_eq!(fa.prg().random_block(), fb.prg().random_block());
        assert_ne!(a.prg().random_block(), fa.prg().random_block());
        let mut c = RngSource::seeded(Block(1));
        assert_ne!(
            RngSource::seeded(seed).prg().random_block(),
            c.prg().random_block()
        );
        let mut e = RngSource::default();
        assert!(!e.is_seeded() && a.is_seeded());
        assert_ne!(e.prg().random_block(), e.prg().random_block());
        let s = format!("{a:?} {:?}", Prg::from_seed(seed));
        assert!(!s.contains("1234") && !s.contains("305419896"), "{s}");
        assert_eq!(s, "RngSource::Seeded(..) Prg { .. }");
    }
}
