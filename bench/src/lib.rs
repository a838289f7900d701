//! Measurement for the SNL private-inference system.
//!
//! Criterion benchmarks grouped by area (executors, garbling, OT, HE preprocessing,
//! end-to-end inference) and the `snl-bench` sweep that measures online latency against
//! kept-ReLU count and accuracy and draws Pareto fronts. Speed is measured here, never
//! asserted in tests.
