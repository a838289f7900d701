//! The two parties' messages, the peer checks and the noise budget, with access to the
//! parties' keys.
#![allow(clippy::unwrap_used)]

use fhe::bfv::{Ciphertext, Encoding, Plaintext, PublicKey, SecretKey};
use fhe_math::rq::{Poly, Representation, traits::TryConvertFrom};
use fhe_traits::{
    DeserializeParametrized, FheDecoder, FheDecrypter, FheEncoder, FheEncrypter, Serialize,
};
use rand_core::RngCore;

use super::client::HeClient;
use super::client::c1_times_secret;
use super::codec::{N, proto_field, put_field};
use super::layout::{ConvLayout, ConvShape};
use super::params::{FLOOD_BITS, HE_VERSION, HeParams, MAX_KERNEL_NORM_BITS, MODULI};
use super::params::{RESULT_C0_BITS, RESULT_C1_BITS, SECRET_BOUND};
use super::server::{HeServer, flood_and_trim};
use super::switch::{C1_BYTES, decode, switcher};
use crate::block::Block;
use crate::channel::{Channel, ChannelExt, MemoryChannel, RecordingChannel};
use crate::prg::Prg;

/// The client's key and input ciphertexts, re-keyed to seeds of its own generator,
/// are what the `fhe` crate itself would serialize (decoding and re-encoding gives
/// the same bytes), decrypt correctly, and repeat exactly under a seeded generator.
#[test]
fn seeded_client_messages_are_canonical_and_reproducible() {
    let params = HeParams::new(37).unwrap();
    let par = params.bfv().clone();
    let key = |seed: u128| {
        let (a, mut b) = MemoryChannel::pair();
        let mut a = RecordingChannel::new(a);
        let mut rng = Prg::from_seed(Block(seed));
        let he = HeClient::setup_with_rng(&mut a, params.clone(), &mut rng).unwrap();
        let server = HeServer::setup(&mut b, params.clone()).unwrap();
        (he, server, a.sent)
    };
    let (he, server, sent) = key(5);
    assert_eq!(key(5).2, sent);
    assert_ne!(key(6).2, sent);
    let bytes = &sent[2 + 8..];
    let pk = PublicKey::from_bytes(bytes, &par).unwrap();
    assert_eq!(pk.to_bytes(), bytes);
    // Same length as the crate's own key: the variable-time mark (a proto3 bool,
    // written only when set) is as `PublicKey::new` leaves it.
    let lib = PublicKey::new(&he.sk, &mut Prg::from_entropy()).to_bytes();
    assert_eq!(lib.len(), bytes.len());
    let x: Vec<u64> = (0..N as u64)
        .map(|i| i * 0x1_0000_0001 % (1 << 37))
        .collect();
    let pt = Plaintext::try_encode(x.as_slice(), Encoding::poly(), &par).unwrap();
    let ct = he.encrypt(&x, &mut Prg::from_seed(Block(9))).unwrap();
    assert_eq!(ct, he.encrypt(&x, &mut Prg::from_seed(Block(9))).unwrap());
    let parsed = server.parse_input(&ct).unwrap();
    assert_eq!(Ciphertext::from_bytes(&ct, &par).unwrap().to_bytes(), ct);
    let lib: Ciphertext = he.sk.try_encrypt(&pt, &mut Prg::from_entropy()).unwrap();
    assert_eq!(lib.to_bytes().len(), ct.len());
    let dec = he.sk.try_decrypt(&parsed).unwrap();
    assert_eq!(Vec::<u64>::try_decode(&dec, Encoding::poly()).unwrap(), x);
    // An encryption under the re-keyed public key decrypts too.
    let fresh = pk.try_encrypt(&pt, &mut Prg::from_entropy()).unwrap();
    let dec = he.sk.try_decrypt(&fresh).unwrap();
    assert_eq!(Vec::<u64>::try_decode(&dec, Encoding::poly()).unwrap(), x);
}

/// A client's public key whose polynomials are in power-basis (or NTT-Shoup) form
/// decodes in the `fhe` crate and made `try_encrypt` panic at the first term; the
/// server now refuses it at the key setup, as the peer's fault.
#[test]
fn a_public_key_not_in_ntt_form_is_refused_at_setup() {
    let params = HeParams::new(61).unwrap();
    let par = params.bfv().clone();
    let mut rng = Prg::from_entropy();
    let sk = SecretKey::random(&par, &mut rng);
    let good = PublicKey::new(&sk, &mut rng).to_bytes();
    let setup = |key: &[u8]| {
        let (mut a, mut b) = crate::channel::MemoryChannel::pair();
        a.send(&[HE_VERSION, 61]).unwrap();
        a.send_prefixed(key).unwrap();
        a.flush().unwrap();
        HeServer::setup(&mut b, params.clone())
    };
    assert!(setup(&good).is_ok());
    let (inner, _) = proto_field(&good, 0x0a).unwrap();
    let ct = Ciphertext::from_bytes(inner, &par).unwrap();
    for repr in [Representation::PowerBasis, Representation::NttShoup] {
        let mut polys = Vec::new();
        for p in ct.iter() {
            let mut q = p.clone();
            q.change_representation(repr);
            put_field(&mut polys, 0x0a, &q.to_bytes());
        }
        let mut key = Vec::new();
        put_field(&mut key, 0x0a, &polys);
        // The library's own decoder accepts it ...
        assert!(PublicKey::from_bytes(&key, &par).is_ok());
        // ... the server does not.
        let e = setup(&key).unwrap_err();
        assert_eq!(e.fault(), crate::Fault::Peer, "{e}");
        assert!(e.to_string().contains("representation, not NTT"), "{e}");
    }
    // A well-formed key whose second polynomial is sent explicitly (here: zero, which
    // would make the re-randomization of every result strippable) is refused.
    let mut polys = Vec::new();
    put_field(&mut polys, 0x0a, &ct[0].to_bytes());
    let zero = Poly::zero(ct[1].ctx(), Representation::Ntt);
    put_field(&mut polys, 0x0a, &zero.to_bytes());
    let mut key = Vec::new();
    put_field(&mut key, 0x0a, &polys);
    assert!(PublicKey::from_bytes(&key, &par).is_ok());
    let e = setup(&key).unwrap_err();
    assert!(e.to_string().contains("not expanded from a seed"), "{e}");
    // An input ciphertext in NTT-Shoup form is refused as well.
    let server = setup(&good).unwrap();
    let mut polys = Vec::new();
    for p in ct.iter() {
        let mut q = p.clone();
        q.change_representation(Representation::NttShoup);
        put_field(&mut polys, 0x0a, &q.to_bytes());
    }
    let e = server.parse_input(&polys).unwrap_err();
    assert!(e.to_string().contains("NttShoup representation"), "{e}");
    // Framing other than one ciphertext field is refused too.
    let mut extra = good.clone();
    extra.push(0);
    assert!(setup(&extra).unwrap_err().to_string().contains("trailing"));
    assert!(setup(&good[1..]).is_err());
}

/// The noise budget of the largest layer: the widest ResNet18 convolution (512 x 512
/// x 3 x 3 on 4 x 4) with every weight at 2^17 in magnitude (|w| = 8 at scale 2^14,
/// far above trained networks), before flooding, must leave the flooding room below
/// `q / 2t` and stay 71 bits under it.
#[test]
#[allow(unsafe_code)] // `measure_noise` is `unsafe` only because it runs in variable time
fn noise_budget_of_the_largest_layer() {
    let params = HeParams::new(61).unwrap();
    let par = params.bfv().clone();
    let mut rng = Prg::from_entropy();
    let (mut a, mut b) = MemoryChannel::pair();
    let client = HeClient::setup_with_rng(&mut a, params.clone(), &mut rng).unwrap();
    let server = HeServer::setup(&mut b, params.clone()).unwrap();
    let shape = ConvShape {
        channels: 512,
        height: 4,
        width: 4,
        out_channels: 512,
        kh: 3,
        kw: 3,
        stride: 1,
        padding: 1,
        depthwise: false,
    };
    let layout = ConvLayout::new(shape, N).unwrap();
    let w: Vec<i64> = (0..shape.weight_len())
        .map(|i| if i % 3 == 0 { -(1 << 17) } else { 1 << 17 })
        .collect();
    let x: Vec<u64> = (0..shape.in_len())
        .map(|_| rng.next_u64() & ((1 << 61) - 1))
        .collect();
    let cts: Vec<Ciphertext> = layout
        .encode_input(&x)
        .unwrap()
        .iter()
        .map(|p| {
            let pt = Plaintext::try_encode(p.as_slice(), Encoding::poly(), &par).unwrap();
            client.sk.try_encrypt(&pt, &mut rng).unwrap()
        })
        .collect();
    let ctx = par.context_at_level(0).unwrap();
    let g = 0;
    let mut norm = 0u128;
    let kernels: Vec<Poly> = layout
        .blocks_of_group(g)
        .map(|b| {
            let (k, n1) = layout.kernel(&w, g, b);
            norm += n1;
            let mut p =
                Poly::try_convert_from(k.as_slice(), ctx, false, Representation::PowerBasis)
                    .unwrap();
            p.change_representation(Representation::Ntt);
            p
        })
        .collect();
    assert!(norm <= 1 << MAX_KERNEL_NORM_BITS);
    let refs: Vec<&Ciphertext> = layout.blocks_of_group(g).map(|b| &cts[b]).collect();
    let pos = layout.output_positions(0, g);
    let s = vec![0u64; shape.out_len()];
    let (c0, c1) = server
        .evaluate(&refs, &kernels, &pos, &s, &mut rng)
        .unwrap();
    let poly = |v: &[u64]| {
        let mut p =
            Poly::try_convert_from(v.to_vec(), ctx, false, Representation::PowerBasis).unwrap();
        p.change_representation(Representation::Ntt);
        p
    };
    let ct = Ciphertext::new(vec![poly(&c0), poly(&c1)], &par).unwrap();
    let noise = unsafe { client.sk.measure_noise(&ct) }.unwrap() as f64;
    let log_q: f64 = MODULI.iter().map(|&q| (q as f64).log2()).sum();
    let room = log_q - 61.0 - 1.0; // log2(q / 2t)
    eprintln!(
        "kernel 1-norm 2^{:.1}, noise before flooding 2^{noise}, flooding 2^{FLOOD_BITS}, \
         decryption bound 2^{room:.1}",
        (norm as f64).log2()
    );
    assert!(f64::from(FLOOD_BITS) - noise >= 71.0, "noise 2^{noise}");
    assert!(f64::from(FLOOD_BITS) + 1.0 < room - 4.0);
    // And the flooded, switched result decrypts to the right values.
    let (c1, c0) = flood_and_trim(&c0, &c1, &pos, &mut rng);
    assert_eq!(c1.len(), N * C1_BYTES);
    assert_eq!(c0.len(), pos.len());
    let got = client.decrypt(&pos, &c0, &c1).unwrap();
    let want = shape.apply(&w, &x, (1 << 61) - 1);
    for (idx, v) in got {
        assert_eq!(v, want[idx]);
    }
}

/// Decryption after the switch at the worst case the analysis admits: every secret
/// coefficient at the largest magnitude (`|s|_1 = 20 N`, the worst for `c1`'s rounding),
/// every coefficient's noise in `Z_q` at the largest admitted value (flooding `2^117`
/// plus `21 * 2^40 + 2^23`), both signs, uniform `c1`, messages spanning the ring.
#[test]
fn switched_results_decrypt_at_the_largest_admitted_noise() {
    let params = HeParams::new(61).unwrap();
    let par = params.bfv().clone();
    let ctx = par.context_at_level(0).unwrap();
    let ctx2 = par.context_at_level(1).unwrap();
    assert_eq!(ctx2.moduli(), &MODULI[..2]);
    let mut rng = Prg::from_seed(Block(11));
    let t_bits = 61u32;
    let tmask = (1u64 << t_bits) - 1;
    let sc: Vec<i64> = (0..N)
        .map(|i| {
            if (rng.next_u64() ^ i as u64) & 1 == 0 {
                20
            } else {
                -20
            }
        })
        .collect();
    assert!(sc.iter().all(|&v| v.unsigned_abs() <= SECRET_BOUND));
    let mut s =
        Poly::try_convert_from(sc.as_slice(), ctx, false, Representation::PowerBasis).unwrap();
    s.change_representation(Representation::Ntt);
    let mut s2 =
        Poly::try_convert_from(sc.as_slice(), ctx2, false, Representation::PowerBasis).unwrap();
    s2.change_representation(Representation::Ntt);
    // The largest noise in Z_q, as a u128 (below 2^118).
    let e_max: u128 = (1u128 << FLOOD_BITS) + 21 * (1u128 << MAX_KERNEL_NORM_BITS) + (1 << 23);
    // q mod t and t^-1 mod q_i: the fhe crate's encoding floor(q m / t) mod q_i is
    // -((q mod t) m mod t) t^-1.
    let q_mod_t = MODULI.iter().fold(1u64, |a, &q| a.wrapping_mul(q)) & tmask;
    let pow = |mut b: u128, mut e: u128, m: u128| {
        let mut r = 1u128;
        while e > 0 {
            if e & 1 == 1 {
                r = r * b % m;
            }
            b = b * b % m;
            e >>= 1;
        }
        r
    };
    for round in 0..4 {
        let m: Vec<u64> = (0..N as u64)
            .map(|i| match i {
                0 => 0,
                1 => tmask,
                _ => rng.next_u64() & tmask,
            })
            .collect();
        let c1 = Poly::random(ctx, Representation::Ntt, &mut rng);
        let mut c0 = &c1 * &s;
        c0.change_representation(Representation::PowerBasis);
        let c0 = Vec::<u64>::from(&c0);
        let mut c1p = c1.clone();
        c1p.change_representation(Representation::PowerBasis);
        let c1v = Vec::<u64>::from(&c1p);
        let sw = switcher();
        let mut c0s = Vec::with_capacity(N);
        let mut c1s = Vec::with_capacity(N);
        for j in 0..N {
            let enc_t = ((q_mod_t as u128 * u128::from(m[j])) & u128::from(tmask)) as u64;
            let sign_neg = (j + round) % 2 == 1;
            let r: [u64; 3] = std::array::from_fn(|i| {
                let q = u128::from(MODULI[i]);
                let tinv = pow(1u128 << t_bits, q - 2, q);
                let enc = (q - u128::from(enc_t) % q) * tinv % q; // -enc_t t^-1
                let e = e_max % q;
                let e = if sign_neg { (q - e) % q } else { e };
                // c0 = -c1 s + enc + e.
                ((q - u128::from(c0[i * N + j])) + enc + e) as u64 % MODULI[i]
            });
            c0s.push(sw.round(r, RESULT_C0_BITS) as u64);
            c1s.push(sw.round(std::array::from_fn(|i| c1v[i * N + j]), RESULT_C1_BITS));
        }
        let pos: Vec<(usize, usize)> = (0..N).map(|j| (j, j)).collect();
        let prod = c1_times_secret(&s2, &c1s, &pos).unwrap();
        for j in 0..N {
            assert_eq!(
                decode(c0s[j], prod[j], t_bits),
                m[j],
                "coefficient {j}, round {round}"
            );
        }
    }
}

/// The kernel cache changes no byte of the server's messages: a term run without it,
/// then storing into it, then from it, sends the same bytes under the same seeds; new
/// weights under the same key are recomputed (and decrypt to the new operator), and a
/// budget too small for the term caches nothing.
#[test]
fn the_kernel_cache_changes_no_message() {
    use super::server::KernelCache;
    let params = HeParams::new(61).unwrap();
    let (mut a, mut b) = MemoryChannel::pair();
    let client =
        HeClient::setup_with_rng(&mut a, params.clone(), &mut Prg::from_seed(Block(1))).unwrap();
    let server = HeServer::setup(&mut b, params).unwrap();
    let shape = ConvShape::square(6, 8, 5, 3, 2, 1);
    let layout = ConvLayout::new(shape, N).unwrap();
    let x: Vec<u64> = (0..shape.in_len() as u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) & ((1 << 61) - 1))
        .collect();
    let w1: Vec<i64> = (0..shape.weight_len() as i64)
        .map(|i| i * 37 - 500)
        .collect();
    let w2: Vec<i64> = w1.iter().map(|v| -3 * v + 1).collect();
    let s: Vec<u64> = (0..shape.out_len() as u64).collect();
    let lmask = (1u64 << 61) - 1;
    let run = |w: &[i64], cache: Option<(&mut KernelCache, u64)>| {
        let (a, mut b) = MemoryChannel::pair();
        let mut a = RecordingChannel::new(a);
        let out = std::thread::scope(|sc| {
            let h = sc.spawn(|| {
                client
                    .term_with_rng(&mut b, &layout, &x, &mut Prg::from_seed(Block(2)))
                    .unwrap()
            });
            server
                .term_cached_with_rng(&mut a, &layout, w, &s, &mut Prg::from_seed(Block(3)), cache)
                .unwrap();
            h.join().unwrap()
        });
        let want: Vec<u64> = shape
            .apply(w, &x, lmask)
            .iter()
            .zip(&s)
            .map(|(&l, &s)| l.wrapping_sub(s) & lmask)
            .collect();
        assert_eq!(out, want);
        a.sent
    };
    let plain = run(&w1, None);
    let mut cache = KernelCache::new(1 << 30);
    assert_eq!(run(&w1, Some((&mut cache, 7))), plain);
    let used = cache.used();
    assert!(used > 0);
    assert_eq!(run(&w1, Some((&mut cache, 7))), plain);
    assert_eq!(cache.used(), used);
    let plain2 = run(&w2, None);
    assert_ne!(plain2, plain);
    assert_eq!(run(&w2, Some((&mut cache, 7))), plain2);
    assert_eq!(cache.used(), used);
    let mut small = KernelCache::new(used - 1);
    assert_eq!(run(&w1, Some((&mut small, 7))), plain);
    assert_eq!(small.used(), 0);
}

/// The kernel residues built directly equal the `fhe` crate's conversion of the same
/// signed coefficients (zeros, both signs, the ring's extremes).
#[test]
fn kernel_residues_equal_the_crate_conversion() {
    let params = HeParams::new(61).unwrap();
    let ctx = params.bfv().context_at_level(0).unwrap();
    let mut k = vec![0i64; N];
    let edge = [
        1,
        -1,
        7,
        -7,
        (1 << 40) - 1,
        -(1 << 40),
        (1 << 60) - 1,
        -(1 << 60),
    ];
    for (j, &v) in edge.iter().enumerate() {
        k[3 * j + 1] = v;
    }
    let p = Poly::try_convert_from(k.as_slice(), ctx, false, Representation::PowerBasis).unwrap();
    assert_eq!(super::server::kernel_residues(&k), Vec::<u64>::from(&p));
}
