#![no_main]
//! The exact truncation's decoders, fed arbitrary peer messages, must never panic: the
//! server's offline corrections and online answers (from the client) and the client's
//! online request bits (from the server), for any valid `(f, l)` and count.

use libfuzzer_sys::fuzz_target;
use protocols::prg::Prg;
use protocols::trunc::{
    TruncClientSecrets, TruncServerSecrets, trunc_online_client, trunc_online_server_finish,
};
use rand_core::RngCore;

mod replay;

fuzz_target!(|data: &[u8]| {
    let Some((head, peer)) = data.split_first_chunk::<3>() else {
        return;
    };
    // `(f, l)` from the first two bytes (invalid ones are refused before any peer data is
    // read), the count from the third.
    let f = 1 + u32::from(head[0]) % 40;
    let l = (f + 3 + u32::from(head[1]) % 62).min(66);
    let n = usize::from(head[2] % 17);
    let mut rng = Prg::from_seed(protocols::Block(u128::from(u32::from_le_bytes([
        head[0], head[1], head[2], 0,
    ]))));
    if let Ok(client) = TruncClientSecrets::for_fuzzing(n, f, l, &mut rng) {
        let _ = trunc_online_client(&mut replay::ReplayChannel::new(peer), client);
    }
    let Ok(mut server) = TruncServerSecrets::for_fuzzing(n, f, l, &mut rng) else {
        return;
    };
    let mask = if l >= 64 { u64::MAX } else { (1 << l) - 1 };
    let shares: Vec<u64> = (0..n).map(|_| rng.next_u64() & mask).collect();
    // The corrections, then the answer, from one stream (as the runtime reads them).
    let mut ch = replay::ReplayChannel::new(peer);
    if n > 0 && server.receive_corrections(&mut ch).is_err() {
        return;
    }
    let _ = trunc_online_server_finish(&mut ch, server, &shares);
});
