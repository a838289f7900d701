//! Tests of `session`.

#![allow(clippy::unwrap_used)]
use super::*;

#[test]
fn the_budget_keeps_its_high_water_mark_and_releases_on_drop() {
    let b = MemoryBudget::new(100);
    let mut a = b.try_reserve(60).unwrap();
    assert!(b.try_reserve(41).is_none(), "over the limit");
    let c = b.try_reserve(40).unwrap();
    assert_eq!((b.reserved(), b.peak()), (100, 100));
    let part = a.split(50);
    drop((a, c));
    assert_eq!((b.reserved(), b.peak()), (50, 100));
    drop(part);
    let d = b.try_reserve(30).unwrap();
    // A refused reservation leaves both untouched; the mark only rises.
    assert!(b.try_reserve(71).is_none());
    assert_eq!((b.reserved(), b.peak(), d.bytes()), (30, 100, 30));
    drop(d);
    assert_eq!((b.reserved(), b.peak()), (0, 100));
}
