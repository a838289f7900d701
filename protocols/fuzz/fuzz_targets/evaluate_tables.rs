#![no_main]
//! Evaluating arbitrary tables and server labels (peer data) must never panic.

use libfuzzer_sys::fuzz_target;
use protocols::Block;
use protocols::gc::GarbledTables;
use protocols::gc::relu::{GarbledRelus, ReluParams, evaluate_relus};

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let p = ReluParams::DEFAULT;
    let count = (n % 3) as usize;
    let blocks: Vec<Block> = rest
        .chunks_exact(16)
        .map(|c| {
            let mut a = [0u8; 16];
            a.copy_from_slice(c);
            Block::from_bytes(a)
        })
        .collect();
    let split = blocks.len().min(count * p.garbler_input_bits());
    let (server, tables) = blocks.split_at(split);
    let garbled = GarbledRelus {
        params: p,
        count,
        tables: GarbledTables {
            batch_id: n as u64,
            blocks: tables.to_vec(),
        },
    };
    let client = vec![Block::ZERO; count * p.evaluator_input_bits()];
    let qs: Vec<u64> = (0..count as u64).map(|i| u64::from(n) * (i + 1)).collect();
    let _ = evaluate_relus(&garbled, server, &client, &qs);
});
