//! The integration tests, one binary (each test binary links libtorch: one link instead of twenty).
//! Tests that draw from libtorch's global generator hold `common::TORCH_RNG`.

mod amp;
mod anchor_fit;
mod aug_golden;
mod bad_input;
mod best_epoch;
mod boxes;
mod checkpoint;
mod cli_train;
mod common;
mod confusion;
mod data;
mod draw;
mod formats;
mod golden_torch;
mod interpret;
mod layers;
mod learner;
mod loader;
mod metrics;
mod nms;
mod report;
mod resume;
mod ssd;
mod synthetic;
mod transforms;
mod voc2json;
