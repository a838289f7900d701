#![no_main]
//! The base-OT receiver fed arbitrary sender messages (point decoding) must never panic.

use libfuzzer_sys::fuzz_target;
use protocols::ot::BaseOtReceiver;
use protocols::prg::Prg;

mod replay;

fuzz_target!(|data: &[u8]| {
    let mut ch = replay::ReplayChannel::new(data);
    let _ = BaseOtReceiver::receive_random(
        &mut ch,
        &[false, true, true],
        &mut Prg::from_seed(protocols::Block(1)),
    );
});
