//! WRN-22-8 with all 1,359,872 ReLUs kept, checked layer by layer like the other networks
//! in `secure_vs_fixed.rs`. It holds about 5 GB of garbled tables, 2 GB of client labels
//! and 3 GB of garbler secrets at once (peak 11.7 GB measured; 127 s on 2 cores shared with other jobs, with the HE preprocessing), so it is
//! a test binary of its own: cargo runs test binaries one after another, and nothing else
//! competes for memory while it runs.
//!
//! It is opt-in (`#[ignore]`): the default suite keeps the cheap WRN-22-8 check,
//! `wrn22_8_none_and_random_masks` in `secure_vs_fixed.rs` (no ReLU and a random 10% kept,
//! the same network and the same layer-by-layer rules). Run this one with
//!
//! ```text
//! cargo test --release -p pi-runtime --test wrn_all_kept -- --ignored
//! ```

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use pi_runtime::preprocess::Method;

#[test]
#[ignore = "11.7 GB peak and about 2 minutes; opt in with --ignored (WRN-22-8 at none and 10% kept runs by default in secure_vs_fixed.rs)"]
fn wrn22_8_all_kept() {
    common::check_network(Method::HeBfv, "wrn22_8", &[1.0], 1);
}
