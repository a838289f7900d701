#![no_main]
//! The HE client's term (`HeClient::term`) reading the server's result ciphertexts
//! (`c1` and the trimmed `c0` of each output, then decryption), for a small convolution.
//! First byte even: the rest is the server's stream. Odd: a valid server's stream with the
//! rest applied as `replay::patch` edits. Must never panic.

use libfuzzer_sys::fuzz_target;

mod he_fixture;
mod replay;

fuzz_target!(
    init: he_fixture::init(),
    |data: &[u8]| {
        let f = he_fixture::fixture();
        let Some(stream) = he_fixture::stream(data, &f.result_stream) else {
            return;
        };
        let mut ch = replay::ReplayChannel::new(&stream);
        if let Ok(out) = f.client.term(&mut ch, &f.layout, &f.x) {
            assert_eq!(out.len(), f.layout.shape.out_len());
        }
    }
);
