//! What the HE targets share: small parameters and layout, one key pair and one valid
//! transcript (key setup, input ciphertexts, results) built once per process, and a panic
//! hook that tolerates the panics `he::codec::guarded` turns into peer errors.
#![allow(dead_code)] // each target uses part of this module

use std::sync::OnceLock;

use protocols::he::{ConvLayout, ConvShape, HeClient, HeParams, HeServer, POLY_DEGREE};

use crate::replay::{Recorder, ReplayChannel};

pub const RING_BITS: u32 = 37;

/// Everything built once: the parties and the valid messages between them.
pub struct Fixture {
    pub params: HeParams,
    pub layout: ConvLayout,
    pub client: HeClient,
    pub server: HeServer,
    /// Client -> server at setup: version, ring, length-prefixed public key.
    pub key_stream: Vec<u8>,
    /// Client -> server in a term: the length-prefixed input ciphertexts.
    pub input_stream: Vec<u8>,
    /// Server -> client in a term: the result ciphertexts.
    pub result_stream: Vec<u8>,
    pub x: Vec<u64>,
    pub w: Vec<i64>,
    pub s: Vec<u64>,
}

/// One thread for rayon (the machine is shared), the hook, and the fixture.
pub fn init() {
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global();
    install_hook();
    let _ = fixture();
}

/// libfuzzer-sys aborts on every panic, also on those caught by `catch_unwind`. The HE
/// decoders run the `fhe` crate's deserializers under `he::codec::guarded`, which turns a
/// panic into a peer error by design: those are let through silently; any other panic
/// aborts as before.
fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let bt = std::backtrace::Backtrace::force_capture().to_string();
        if bt.contains("he::codec::guarded") {
            return;
        }
        eprintln!("{info}\n{bt}");
        std::process::abort();
    }));
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let params = HeParams::new(RING_BITS).expect("params");
        // 2 channels of 3 x 3, a 3 x 3 kernel to 2 channels, padding 1.
        let shape = ConvShape::square(2, 3, 2, 3, 1, 1);
        let layout = ConvLayout::new(shape, POLY_DEGREE).expect("layout");
        let mask = (1u64 << RING_BITS) - 1;
        let x: Vec<u64> = (0..shape.in_len())
            .map(|i| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) & mask)
            .collect();
        let w: Vec<i64> = (0..shape.weight_len()).map(|i| i as i64 % 7 - 3).collect();
        let s: Vec<u64> = (0..shape.out_len())
            .map(|i| (i as u64).wrapping_mul(0xd1b5_4a32_d192_ed03) & mask)
            .collect();
        let mut rec = Recorder::default();
        let client = HeClient::setup(&mut rec, params.clone()).expect("client setup");
        let key_stream = rec.sent;
        let server = HeServer::setup(&mut ReplayChannel::new(&key_stream), params.clone())
            .expect("server setup");
        let mut rec = Recorder::default();
        assert!(client.term(&mut rec, &layout, &x).is_err()); // no results to read
        let input_stream = rec.sent;
        let mut rec = Recorder::new(input_stream.clone());
        server.term(&mut rec, &layout, &w, &s).expect("server term");
        let result_stream = rec.sent;
        let got = client
            .term(&mut ReplayChannel::new(&result_stream), &layout, &x)
            .expect("client term");
        let want = shape.apply(&w, &x, mask);
        for ((g, w), s) in got.iter().zip(&want).zip(&s) {
            assert_eq!(*g, w.wrapping_sub(*s) & mask);
        }
        Fixture {
            params,
            layout,
            client,
            server,
            key_stream,
            input_stream,
            result_stream,
            x,
            w,
            s,
        }
    })
}

/// The peer's stream for one fuzz input: first byte even, the rest as is; odd, the valid
/// stream `valid` with the rest applied as `replay::patch` edits. `None` for empty input.
pub fn stream(data: &[u8], valid: &[u8]) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    Some(if mode & 1 == 0 {
        rest.to_vec()
    } else {
        crate::replay::patch(valid, rest)
    })
}
