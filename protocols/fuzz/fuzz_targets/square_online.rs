#![no_main]
//! The online decoders of the truncation with a square, fed arbitrary peer messages,
//! must never panic: the client's (`d` and `e1` from the server) and the server's (`m`
//! and `w` from the client), for any valid parameters and count.

use libfuzzer_sys::fuzz_target;
use protocols::prg::Prg;
use protocols::square::{
    SquareClientSecrets, SquareParams, SquareServerSecrets, square_online_client,
    square_online_server_finish,
};
use rand_core::RngCore;

mod replay;

fuzz_target!(|data: &[u8]| {
    let Some((head, peer)) = data.split_first_chunk::<4>() else {
        return;
    };
    // Parameters from the first three bytes (invalid ones are refused before any peer
    // data is read), the count from the fourth.
    let t = 1 + u32::from(head[0]) % 40;
    let t2 = t + u32::from(head[1]) % (41 - t);
    let l = (t2 + 3 + u32::from(head[2]) % 62).min(64);
    let Ok(p) = SquareParams::new(l, t, t2) else {
        return;
    };
    let n = usize::from(head[3] % 9);
    let mut rng = Prg::from_seed(protocols::Block(u128::from(u32::from_le_bytes(*head))));
    let client = SquareClientSecrets::for_fuzzing(n, p, &mut rng);
    let _ = square_online_client(&mut replay::ReplayChannel::new(peer), client);
    let server = SquareServerSecrets::for_fuzzing(n, p, &mut rng);
    let mask = if l == 64 { u64::MAX } else { (1 << l) - 1 };
    let shares: Vec<u64> = (0..n).map(|_| rng.next_u64() & mask).collect();
    let _ = square_online_server_finish(&mut replay::ReplayChannel::new(peer), server, &shares);
});
