#![no_main]
//! A results file of `snl-bench sweep` (CSV or JSON, read by `table`, `plot`,
//! `model-cost` and by a sweep appending to it) of arbitrary bytes must never panic; what
//! it accepts and can write back reads back to the same bytes.

use std::path::Path;

use bench::results::{Format, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let format = if pick & 1 == 0 {
        Format::Csv
    } else {
        Format::Json
    };
    let Ok(rows) = decode(bytes, format, Path::new("fuzz")) else {
        return;
    };
    // Rows of older versions are read but never written (encode refuses them).
    let Ok(written) = encode(&rows, format) else {
        return;
    };
    let again = decode(&written, format, Path::new("fuzz")).expect("written rows read back");
    assert_eq!(encode(&again, format).expect("and write again"), written);
});
