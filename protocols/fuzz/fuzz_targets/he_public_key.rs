#![no_main]
//! The HE server's key setup (`HeServer::setup`: version, ring, the client's public key
//! through `parse_public_key`). First byte even: the rest is the client's stream. Odd: a
//! valid client's stream with the rest applied as `replay::patch` edits. Must never
//! panic (other than inside `guarded`, see `he_fixture`).

use libfuzzer_sys::fuzz_target;
use protocols::he::HeServer;

mod he_fixture;
mod replay;

fuzz_target!(
    init: he_fixture::init(),
    |data: &[u8]| {
        let f = he_fixture::fixture();
        let Some(stream) = he_fixture::stream(data, &f.key_stream) else {
            return;
        };
        let _ = HeServer::setup(&mut replay::ReplayChannel::new(&stream), f.params.clone());
    }
);
