//! Helpers shared by the golden tests: reading `tests/golden/<name>.json` (written by the
//! `gen_*.py` script beside it) and turning its numbers into vectors and tensors.
#![allow(dead_code)]

use serde_json::Value;
use tch::Tensor;

/// `tests/golden/<name>` parsed; a missing or broken file names itself.
pub fn golden(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (written by the gen_*.py script beside it)", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every number of a (nested) JSON array, flattened.
pub fn f64s(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(f64s).collect(),
        n => vec![n.as_f64().unwrap_or_else(|| panic!("not a number: {n}"))],
    }
}

/// A float tensor of `shape` from a (nested) JSON array.
pub fn tensor(v: &Value, shape: &[i64]) -> Tensor {
    let data: Vec<f32> = f64s(v).into_iter().map(|x| x as f32).collect();
    Tensor::from_slice(&data).view(shape)
}
