//! A 128-bit block: the unit of wire labels, hash inputs and OT messages; and [`Delta`],
//! the free-XOR offset that garbling and correlated OT share.

use core::fmt;
use core::ops::{BitAnd, BitAndAssign, BitXor, BitXorAssign};

use rand_core::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;

/// A 128-bit value. Byte conversions are little-endian: byte 0 holds bits 0..8, so
/// [`Block::lsb`] (the point-and-permute colour bit) is the low bit of byte 0.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)] // the VAES kernel encrypts `[Block]` in place (`aes_hash`)
pub struct Block(pub u128);

impl Block {
    /// The all-zero block.
    pub const ZERO: Block = Block(0);
    /// The all-one block.
    pub const ONES: Block = Block(u128::MAX);
    /// Size of a block in bytes.
    pub const BYTES: usize = 16;

    /// Builds a block from 16 little-endian bytes.
    #[inline]
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Block(u128::from_le_bytes(bytes))
    }

    /// Returns the 16 little-endian bytes of the block.
    #[inline]
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.to_le_bytes()
    }

    /// Builds a block from two 64-bit halves.
    #[inline]
    pub const fn from_halves(hi: u64, lo: u64) -> Self {
        Block(((hi as u128) << 64) | lo as u128)
    }

    /// The high 64 bits.
    #[inline]
    pub const fn hi(self) -> u64 {
        (self.0 >> 64) as u64
    }

    /// The low 64 bits.
    #[inline]
    pub const fn lo(self) -> u64 {
        self.0 as u64
    }

    /// The least significant bit (the colour bit in point-and-permute).
    #[inline]
    pub const fn lsb(self) -> bool {
        self.0 & 1 == 1
    }

    /// The block with its least significant bit set to `bit`.
    #[inline]
    pub const fn with_lsb(self, bit: bool) -> Self {
        Block((self.0 & !1) | bit as u128)
    }

    /// `self` if `bit` is true, else zero (branch-free).
    #[inline]
    pub const fn select(self, bit: bool) -> Self {
        Block(self.0 & (0u128.wrapping_sub(bit as u128)))
    }

    /// A uniformly random block.
    #[inline]
    pub fn random<R: RngCore + ?Sized>(rng: &mut R) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        Block::from_bytes(b)
    }

    /// Constant-time equality.
    #[inline]
    pub fn ct_eq(&self, other: &Block) -> bool {
        self.0.to_le_bytes().ct_eq(&other.0.to_le_bytes()).into()
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Block({:032x})", self.0)
    }
}

impl From<u128> for Block {
    fn from(v: u128) -> Self {
        Block(v)
    }
}

impl From<Block> for u128 {
    fn from(b: Block) -> Self {
        b.0
    }
}

impl From<[u8; 16]> for Block {
    fn from(b: [u8; 16]) -> Self {
        Block::from_bytes(b)
    }
}

impl From<Block> for [u8; 16] {
    fn from(b: Block) -> Self {
        b.to_bytes()
    }
}

impl BitXor for Block {
    type Output = Block;
    #[inline]
    fn bitxor(self, rhs: Block) -> Block {
        Block(self.0 ^ rhs.0)
    }
}

impl BitXorAssign for Block {
    #[inline]
    fn bitxor_assign(&mut self, rhs: Block) {
        self.0 ^= rhs.0;
    }
}

impl BitAnd for Block {
    type Output = Block;
    #[inline]
    fn bitand(self, rhs: Block) -> Block {
        Block(self.0 & rhs.0)
    }
}

impl BitAndAssign for Block {
    #[inline]
    fn bitand_assign(&mut self, rhs: Block) {
        self.0 &= rhs.0;
    }
}

/// The garbler's global free-XOR offset `Δ`; its least significant bit is always 1.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Delta(Block);

impl fmt::Debug for Delta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Delta(..)")
    }
}

impl Delta {
    /// A random offset (with the least significant bit forced to 1).
    pub fn random<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Delta(Block::random(rng).with_lsb(true))
    }

    /// Wraps `b`, forcing its least significant bit to 1.
    pub fn from_block(b: Block) -> Self {
        Delta(b.with_lsb(true))
    }

    /// The offset as a block.
    #[inline]
    pub fn block(self) -> Block {
        self.0
    }
}

/// Packs booleans into bytes, least significant bit first (bit `i` is bit `i % 8` of byte `i / 8`).
pub fn pack_bits(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, &b) in bits.iter().enumerate() {
        out[i / 8] |= (b as u8) << (i % 8);
    }
    out
}

/// Unpacks `n` booleans from bytes packed by [`pack_bits`]. Returns `None` if `bytes`
/// is shorter than `n.div_ceil(8)`.
pub fn unpack_bits(bytes: &[u8], n: usize) -> Option<Vec<bool>> {
    if bytes.len() < n.div_ceil(8) {
        return None;
    }
    Some((0..n).map(|i| (bytes[i / 8] >> (i % 8)) & 1 == 1).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn bytes_roundtrip_and_lsb() {
        let bytes: [u8; 16] = core::array::from_fn(|i| i as u8 + 1);
        let b = Block::from_bytes(bytes);
        assert_eq!(b.to_bytes(), bytes);
        assert!(b.lsb());
        assert!(!b.with_lsb(false).lsb());
        assert_eq!(b.hi(), u64::from_le_bytes(bytes[8..].try_into().unwrap()));
        assert_eq!(b.lo(), u64::from_le_bytes(bytes[..8].try_into().unwrap()));
        assert_eq!(Block::from_halves(b.hi(), b.lo()), b);
    }

    #[test]
    fn ops() {
        let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(1);
        let a = Block::random(&mut rng);
        let c = Block::random(&mut rng);
        assert_eq!((a ^ c) ^ c, a);
        assert_eq!(a & Block::ONES, a);
        assert_eq!(a & Block::ZERO, Block::ZERO);
        assert_eq!(a.select(true), a);
        assert_eq!(a.select(false), Block::ZERO);
        assert!(a.ct_eq(&a));
        assert!(!a.ct_eq(&c));
        let mut d = a;
        d ^= c;
        d &= Block::ONES;
        assert_eq!(d, a ^ c);
    }

    #[test]
    fn bits_roundtrip() {
        let bits: Vec<bool> = (0..21).map(|i| i % 3 == 0).collect();
        let packed = pack_bits(&bits);
        assert_eq!(packed.len(), 3);
        assert_eq!(unpack_bits(&packed, 21).unwrap(), bits);
        assert!(unpack_bits(&packed, 25).is_none());
    }
}
