//! Chou–Orlandi "simplest OT" over ristretto255 (semi-honest), producing random OTs.
//!
//! 1. Sender: `y ← Z_ℓ`, `S = y·G`; sends `S`.
//! 2. Receiver, for choice `c_i`: `x_i ← Z_ℓ`, `R_i = x_i·G + c_i·S`; sends all `R_i`;
//!    outputs `k_i = H(i, S, R_i, x_i·S)`.
//! 3. Sender outputs `k_i^0 = H(i, S, R_i, y·R_i)` and `k_i^1 = H(i, S, R_i, y·R_i − y·S)`.
//!
//! `H` is BLAKE3 with a domain-separation prefix, truncated to 128 bits. Points that do
//! not decode, or decode to the identity, are rejected as invalid peer data.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use rand_core::{CryptoRng, RngCore};
use subtle::{Choice, ConditionallySelectable};

use crate::block::Block;
use crate::channel::Channel;
use crate::error::{ProtocolError, Result};

const DOMAIN: &[u8] = b"snl-pi protocols base OT v1";

fn kdf(i: usize, s: &CompressedRistretto, r: &CompressedRistretto, p: &RistrettoPoint) -> Block {
    let mut h = blake3::Hasher::new();
    h.update(DOMAIN);
    h.update(&(i as u64).to_le_bytes());
    h.update(s.as_bytes());
    h.update(r.as_bytes());
    h.update(p.compress().as_bytes());
    let out = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&out.as_bytes()[..16]);
    Block::from_bytes(b)
}

fn recv_point<C: Channel + ?Sized>(
    ch: &mut C,
    what: &str,
) -> Result<(CompressedRistretto, RistrettoPoint)> {
    let mut bytes = [0u8; 32];
    ch.recv(&mut bytes)?;
    let c = CompressedRistretto(bytes);
    let p = c
        .decompress()
        .ok_or_else(|| ProtocolError::peer(format!("base OT: invalid {what} point encoding")))?;
    if p.is_identity() {
        return Err(ProtocolError::peer(format!(
            "base OT: {what} point is the identity"
        )));
    }
    Ok((c, p))
}

/// The sender of the base OT.
#[derive(Clone, Copy, Debug, Default)]
pub struct BaseOtSender;

impl BaseOtSender {
    /// Runs `n` random OTs; returns the pairs `(k0, k1)`.
    pub fn send_random<C: Channel + ?Sized, R: RngCore + CryptoRng>(
        ch: &mut C,
        n: usize,
        rng: &mut R,
    ) -> Result<Vec<(Block, Block)>> {
        let y = Scalar::random(rng);
        let s = &y * RISTRETTO_BASEPOINT_TABLE;
        let s_c = s.compress();
        let ys = y * s;
        ch.send(s_c.as_bytes())?;
        ch.flush()?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let (r_c, r) = recv_point(ch, "receiver")?;
            let yr = y * r;
            out.push((kdf(i, &s_c, &r_c, &yr), kdf(i, &s_c, &r_c, &(yr - ys))));
        }
        Ok(out)
    }
}

/// The receiver of the base OT.
#[derive(Clone, Copy, Debug, Default)]
pub struct BaseOtReceiver;

impl BaseOtReceiver {
    /// Runs one random OT per choice bit; returns `k_i^{c_i}`.
    pub fn receive_random<C: Channel + ?Sized, R: RngCore + CryptoRng>(
        ch: &mut C,
        choices: &[bool],
        rng: &mut R,
    ) -> Result<Vec<Block>> {
        let (s_c, s) = recv_point(ch, "sender")?;
        let mut out = Vec::with_capacity(choices.len());
        for (i, &c) in choices.iter().enumerate() {
            let x = Scalar::random(rng);
            let xg = &x * RISTRETTO_BASEPOINT_TABLE;
            let r = RistrettoPoint::conditional_select(&xg, &(xg + s), Choice::from(c as u8));
            let r_c = r.compress();
            ch.send(r_c.as_bytes())?;
            out.push(kdf(i, &s_c, &r_c, &(x * s)));
        }
        ch.flush()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::MemoryChannel;
    use crate::error::Fault;
    use rand::SeedableRng;
    use rand_chacha::ChaCha12Rng;

    #[test]
    fn base_ot_correct() {
        let (mut a, mut b) = MemoryChannel::pair();
        let choices: Vec<bool> = (0..40).map(|i| (i * 7) % 3 == 0).collect();
        let ch2 = choices.clone();
        let h = std::thread::spawn(move || {
            BaseOtReceiver::receive_random(&mut b, &ch2, &mut ChaCha12Rng::seed_from_u64(2))
        });
        let pairs =
            BaseOtSender::send_random(&mut a, 40, &mut ChaCha12Rng::seed_from_u64(1)).unwrap();
        let got = h.join().unwrap().unwrap();
        for i in 0..40 {
            let (k0, k1) = pairs[i];
            assert_ne!(k0, k1);
            assert_eq!(got[i], if choices[i] { k1 } else { k0 });
        }
    }

    #[test]
    fn invalid_points_rejected() {
        // Receiver given a non-canonical encoding.
        let (mut a, mut b) = MemoryChannel::pair();
        a.send(&[0xff; 32]).unwrap();
        a.flush().unwrap();
        let e = BaseOtReceiver::receive_random(&mut b, &[true], &mut ChaCha12Rng::seed_from_u64(2))
            .unwrap_err();
        assert_eq!(e.fault(), Fault::Peer);
        // Receiver given the identity.
        a.send(&[0u8; 32]).unwrap();
        a.flush().unwrap();
        let e = BaseOtReceiver::receive_random(&mut b, &[true], &mut ChaCha12Rng::seed_from_u64(2))
            .unwrap_err();
        assert!(matches!(e, ProtocolError::InvalidPeerData(_)));
        // Sender given an invalid receiver point.
        let (mut a, mut b) = MemoryChannel::pair();
        let h = std::thread::spawn(move || {
            let mut s = [0u8; 32];
            b.recv(&mut s).unwrap();
            b.send(&[0xee; 32]).unwrap();
            b.flush().unwrap();
        });
        let e =
            BaseOtSender::send_random(&mut a, 1, &mut ChaCha12Rng::seed_from_u64(1)).unwrap_err();
        assert_eq!(e.fault(), Fault::Peer);
        h.join().unwrap();
        // Peer hangs up.
        let (mut a, b) = MemoryChannel::pair();
        drop(b);
        let e =
            BaseOtSender::send_random(&mut a, 1, &mut ChaCha12Rng::seed_from_u64(1)).unwrap_err();
        assert_eq!(e.fault(), Fault::Peer);
    }
}
