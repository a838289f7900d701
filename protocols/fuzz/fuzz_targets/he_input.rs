#![no_main]
//! The HE server's term (`HeServer::term`) on the client's input ciphertexts
//! (`parse_input`), for a small convolution. First byte even: the rest is the client's
//! stream. Odd: a valid client's stream with the rest applied as `replay::patch` edits.
//! Must never panic (other than inside `guarded`, see `he_fixture`).

use libfuzzer_sys::fuzz_target;

mod he_fixture;
mod replay;

fuzz_target!(
    init: he_fixture::init(),
    |data: &[u8]| {
        let f = he_fixture::fixture();
        let Some(stream) = he_fixture::stream(data, &f.input_stream) else {
            return;
        };
        let mut ch = replay::ReplayChannel::new(&stream);
        let _ = f.server.term(&mut ch, &f.layout, &f.w, &f.s);
    }
);
