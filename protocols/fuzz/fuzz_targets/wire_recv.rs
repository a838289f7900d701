#![no_main]
//! The session's control frames (`pi_runtime::wire::Message::recv`), as received from
//! either peer: the first byte picks the sender (bit 0: server), the rest is the stream.
//! Frames are read until one fails; none may panic or allocate beyond the tag's limit,
//! and every frame accepted must re-encode to exactly the bytes it was read from.

use libfuzzer_sys::fuzz_target;
use pi_runtime::wire::{Message, Side};

mod replay;

fuzz_target!(|data: &[u8]| {
    let Some((&side, stream)) = data.split_first() else {
        return;
    };
    let from = if side & 1 == 1 {
        Side::Server
    } else {
        Side::Client
    };
    let mut ch = replay::ReplayChannel::new(stream);
    loop {
        let before = stream.len() - ch.remaining();
        let Ok(m) = Message::recv(&mut ch, from) else {
            break;
        };
        let after = stream.len() - ch.remaining();
        assert_eq!(m.encode(), &stream[before..after], "{m:?}");
    }
});
