//! Tests of `sweep`.

#![allow(clippy::unwrap_used)]
use super::*;
use crate::results::tests::sample;

#[test]
fn agreement_counts_inferences_whose_class_is_the_fixed_points() {
    let fixed = [3, 1, 4, 1, 5];
    assert_eq!(agreement([(0, 3), (1, 1), (2, 4)], &fixed).unwrap(), 1.0);
    // One of four inferences differs (image 2, twice: two repeats).
    let a = agreement([(0, 3), (2, 4), (2, 7), (4, 5)], &fixed).unwrap();
    assert_eq!(a, 0.75);
    // Agreement is with the fixed point, not with the label.
    assert_eq!(agreement([(3, 1)], &fixed).unwrap(), 1.0);
    let e = agreement([(5, 0)], &fixed).unwrap_err().to_string();
    assert!(e.contains("image 5") && e.contains("first 5 only"), "{e}");
}

#[test]
fn table_shows_full_test_accuracy_and_the_secure_sample() {
    let mut a = sample(9_338, "loopback", 44.0);
    a.fixed_accuracy_full = Some(0.8123);
    a.full_images = Some(10_000);
    a.secure_accuracy = 0.75;
    a.secure_images = 200;
    a.secure_agreement = Some(0.995);
    let t = table(std::slice::from_ref(&a));
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 4, "{t}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    // model, series (two words), network, kept, kept %, accuracy, images, secure, images, agree
    assert_eq!(
        &cells[5..11],
        ["5.0%", "81.2%", "10000", "75.0%", "200x3", "99.5%"],
        "{t}"
    );
    assert!(!t.contains("schema version 1"));
    // A version 1 row: no full-test accuracy, no agreement, said so.
    let mut old = a.clone();
    old.schema_version = 1;
    old.fixed_accuracy_full = None;
    old.full_images = None;
    old.secure_agreement = None;
    let t = table(&[old]);
    let cells: Vec<&str> = t.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&cells[6..11], ["-", "-", "75.0%", "200x3", "-"], "{t}");
    assert!(t.contains("-: a row of results schema version 1"), "{t}");
}
