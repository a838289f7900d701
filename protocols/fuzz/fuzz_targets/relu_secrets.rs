#![no_main]
//! `ReluGarblerSecrets::from_bytes` (the server's stored state) must never panic.

use libfuzzer_sys::fuzz_target;
use protocols::gc::relu::ReluGarblerSecrets;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = ReluGarblerSecrets::from_bytes(data) {
        let _ = s.decode_outputs(&vec![false; s.count * s.params.output_bits()]);
    }
});
