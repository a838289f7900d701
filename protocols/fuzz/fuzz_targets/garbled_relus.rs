#![no_main]
//! `GarbledRelus::from_bytes` (what the client receives offline) must never panic, and
//! whatever it accepts must re-serialise to the same bytes.

use libfuzzer_sys::fuzz_target;
use protocols::gc::relu::GarbledRelus;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = GarbledRelus::from_bytes(data) {
        assert_eq!(g.to_bytes(), data);
    }
});
