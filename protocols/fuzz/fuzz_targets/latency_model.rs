#![no_main]
//! A latency model file (`snl-bench model-cost --save`, read by `snl-train linearize
//! --cost-model`) of arbitrary bytes must never panic; whatever it accepts is valid.

use libfuzzer_sys::fuzz_target;
use models::latency::LatencyModel;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = LatencyModel::from_json(data) {
        assert!(m.validate().is_ok());
    }
});
