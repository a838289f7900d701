//! The client's side of the HE preprocessing: it holds the secret key, sends its public
//! key and encrypted masks, and decrypts the results.

use fhe::bfv::{Ciphertext, Encoding, Plaintext, SecretKey};
use fhe_math::rq::{Poly, Representation, traits::TryConvertFrom};
use fhe_traits::{FheDecoder, FheDecrypter, FheEncoder, FheEncrypter};
use rand_core::{CryptoRng, RngCore};
use rayon::prelude::*;
use zeroize::Zeroizing;

use super::codec::{K, N, check_residues, fhe_err, math_err, put_field};
use super::layout::ConvLayout;
use super::params::{HE_VERSION, HeParams};
use super::rekey::{secret_poly, seeded_ciphertext};
use crate::channel::{Channel, ChannelExt};
use crate::error::{ProtocolError, Result};
use crate::prg::Prg;

/// The client: holds the secret key.
pub struct HeClient {
    pub(super) params: HeParams,
    pub(super) sk: SecretKey,
    /// The secret key as a polynomial in NTT form (re-keying fresh ciphertexts).
    pub(super) s: Zeroizing<Poly>,
}

impl std::fmt::Debug for HeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeClient")
            .field("ring_bits", &self.params.ring_bits())
            .finish_non_exhaustive()
    }
}

impl HeClient {
    /// Draws a key pair (OS CSPRNG) and sends the version, the ring and the public key.
    pub fn setup(ch: &mut dyn Channel, params: HeParams) -> Result<Self> {
        Self::setup_with_rng(ch, params, &mut Prg::from_entropy())
    }

    /// [`Self::setup`] with the key pair drawn from `rng` (a seeded one in tests).
    pub fn setup_with_rng<R: RngCore + CryptoRng + ?Sized>(
        ch: &mut dyn Channel,
        params: HeParams,
        rng: &mut R,
    ) -> Result<Self> {
        let mut prg = Prg::from_rng(rng);
        let par = params.bfv();
        let sk = SecretKey::random(par, &mut prg);
        let s = secret_poly(&sk, &params)?;
        // `PublicKey::new`: an encryption of zero, both polynomials constant-time.
        let zero = Plaintext::zero(Encoding::poly(), par).map_err(fhe_err("zero"))?;
        let ct = sk
            .try_encrypt(&zero, &mut prg)
            .map_err(fhe_err("drawing the public key"))?;
        let mut key = Vec::new();
        put_field(&mut key, 0x0a, &seeded_ciphertext(&ct, &s, &mut prg, true)?);
        ch.send(&[HE_VERSION, params.ring_bits() as u8])?;
        ch.send_prefixed(&key)?;
        ch.flush()?;
        Ok(HeClient { params, sk, s })
    }

    /// Runs one term: returns `L(x) - s` for the layout's operator `L`, the client's
    /// value `x` and the server's `s` (ring elements).
    pub fn term(&self, ch: &mut dyn Channel, layout: &ConvLayout, x: &[u64]) -> Result<Vec<u64>> {
        self.term_with_rng(ch, layout, x, &mut Prg::from_entropy())
    }

    /// [`Self::term`] with the encryptions drawn from `rng` (a seeded one in tests).
    pub fn term_with_rng<R: RngCore + CryptoRng + ?Sized>(
        &self,
        ch: &mut dyn Channel,
        layout: &ConvLayout,
        x: &[u64],
        rng: &mut R,
    ) -> Result<Vec<u64>> {
        self.check_layout(layout)?;
        let par = self.params.bfv();
        let polys = layout.encode_input(x)?;
        // One generator per ciphertext, drawn in order: the parallel encryptions do not
        // depend on the scheduling.
        let prgs: Vec<Prg> = polys.iter().map(|_| Prg::from_rng(rng)).collect();
        let cts = polys
            .par_iter()
            .zip(prgs)
            .map(|(p, mut prg)| {
                let pt = Plaintext::try_encode(p.as_slice(), Encoding::poly(), par)
                    .map_err(fhe_err("encoding a mask"))?;
                self.encrypt(&pt, &mut prg)
            })
            .collect::<Result<Vec<_>>>()?;
        for c in &cts {
            ch.send_prefixed(c)?;
        }
        ch.flush()?;
        drop(cts);
        let mut received = Vec::with_capacity(layout.output_cts());
        for t in 0..layout.tiles {
            for g in 0..layout.groups {
                let pos = layout.output_positions(t, g);
                let c1 = ch.recv_u64s(K * N)?;
                check_residues(&c1, N, "HE result c1")?;
                let c0 = ch.recv_u64s(K * pos.len())?;
                check_residues(&c0, pos.len(), "HE result c0")?;
                received.push((pos, c0, c1));
            }
        }
        let parts = received
            .into_par_iter()
            .map(|(pos, c0, c1)| self.decrypt(&pos, &c0, c1))
            .collect::<Result<Vec<_>>>()?;
        let mut out = vec![0u64; layout.shape.out_len()];
        for part in parts {
            for (idx, v) in part {
                out[idx] = v;
            }
        }
        Ok(out)
    }

    /// A fresh encryption of `pt` under the secret key, serialized in the seeded form.
    pub(super) fn encrypt(&self, pt: &Plaintext, rng: &mut Prg) -> Result<Vec<u8>> {
        let ct: Ciphertext = self
            .sk
            .try_encrypt(pt, rng)
            .map_err(fhe_err("encrypting a mask"))?;
        seeded_ciphertext(&ct, &self.s, rng, false)
    }

    fn check_layout(&self, layout: &ConvLayout) -> Result<()> {
        if layout.n != N {
            return Err(ProtocolError::arg(format!(
                "layout for degree {} with HE degree {N}",
                layout.n
            )));
        }
        Ok(())
    }

    /// Decrypts the output coefficients `pos` of one result.
    pub(super) fn decrypt(
        &self,
        pos: &[(usize, usize)],
        c0: &[u64],
        c1: Vec<u64>,
    ) -> Result<Vec<(usize, u64)>> {
        let par = self.params.bfv();
        let ctx = par.context_at_level(0).map_err(fhe_err("context"))?;
        let mut full = vec![0u64; K * N];
        for i in 0..K {
            for (k, &(coeff, _)) in pos.iter().enumerate() {
                full[i * N + coeff] = c0[i * pos.len() + k];
            }
        }
        let mut p0 = Poly::try_convert_from(full, ctx, false, Representation::PowerBasis)
            .map_err(math_err("result c0"))?;
        p0.change_representation(Representation::Ntt);
        let mut p1 = Poly::try_convert_from(c1, ctx, false, Representation::PowerBasis)
            .map_err(math_err("result c1"))?;
        p1.change_representation(Representation::Ntt);
        let ct = Ciphertext::new(vec![p0, p1], par).map_err(fhe_err("result"))?;
        let pt = self.sk.try_decrypt(&ct).map_err(fhe_err("decrypting"))?;
        let v = Vec::<u64>::try_decode(&pt, Encoding::poly()).map_err(fhe_err("decoding"))?;
        Ok(pos.iter().map(|&(coeff, idx)| (idx, v[coeff])).collect())
    }
}
