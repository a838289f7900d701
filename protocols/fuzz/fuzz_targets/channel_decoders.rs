#![no_main]
//! The typed channel decoders (bit vectors, length-prefixed strings, blocks) must never
//! panic or allocate beyond their limits.

use libfuzzer_sys::fuzz_target;
use protocols::channel::ChannelExt;

mod replay;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let mut ch = replay::ReplayChannel::new(rest);
    let _ = ch.recv_bits(n as usize);
    let _ = ch.recv_prefixed(1 << 16);
    let _ = ch.recv_blocks(n as usize % 8);
    let _ = ch.recv_u64s(n as usize % 8);
});
