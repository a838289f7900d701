#![no_main]
//! `GarbledRelus::from_bytes` (what the client receives offline) must never panic, and
//! whatever it accepts must re-serialise to the same bytes. The streaming receiver
//! `GarbledRelus::recv` (what `relu_offline_client` uses) must agree with it on the same
//! bytes sent with a length prefix, and must never panic on a raw stream either.

use libfuzzer_sys::fuzz_target;
use protocols::gc::relu::GarbledRelus;

mod replay;

fuzz_target!(|data: &[u8]| {
    let parsed = GarbledRelus::from_bytes(data);
    if let Ok(g) = &parsed {
        assert_eq!(g.to_bytes(), data);
    }
    let mut framed = (data.len() as u64).to_le_bytes().to_vec();
    framed.extend_from_slice(data);
    let streamed = GarbledRelus::recv(&mut replay::ReplayChannel::new(&framed), data.len());
    assert_eq!(streamed.ok(), parsed.ok());
    // Raw bytes as a stream: arbitrary length prefix, bounded by the limit.
    let _ = GarbledRelus::recv(&mut replay::ReplayChannel::new(data), 1 << 16);
});
