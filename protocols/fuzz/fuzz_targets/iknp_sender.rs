#![no_main]
//! The IKNP sender (base-OT receiver + extension) fed arbitrary receiver messages must
//! never panic.

use libfuzzer_sys::fuzz_target;
use protocols::Block;
use protocols::block::Delta;
use protocols::ot::OtSender;
use protocols::prg::Prg;

mod replay;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let mut ch = replay::ReplayChannel::new(rest);
    let mut rng = Prg::from_seed(Block(2));
    if let Ok(mut s) = OtSender::setup(&mut ch, Delta::from_block(Block(3)), &mut rng) {
        let _ = s.send_correlated(&mut ch, n as usize);
        let _ = s.send_random(&mut ch, n as usize);
    }
});
