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

/// Detections made from a dataset's ground truth, with every kind of mistake in a fixed pattern
/// over the objects (k = 1, 2, ...): each box shifted by `(k % 5) * 2` px; every sixth object
/// dropped (missed), the first of each six relabelled as the next class (wrong class), the
/// second also detected a second time at its true box with half the score (a duplicate); plus
/// one box of class 0 on nothing in every image (a false detection).
pub fn detections_from_truth(ds: &fastdet::data::Dataset) -> Vec<fastdet::metrics::Detection> {
    use fastdet::boxes::BBox;
    use fastdet::metrics::Detection;
    let mut dets = vec![];
    let mut k = 0u32;
    for r in &ds.images {
        for o in &r.objects {
            k += 1;
            let s = (k % 5) as f32 * 2.0;
            let bbox = BBox::new(o.bbox.top + s, o.bbox.left + s, o.bbox.bottom + s, o.bbox.right + s);
            let score = 0.3 + ((k * 13) % 70) as f32 / 100.0;
            match k % 6 {
                0 => {}
                1 => dets.push(Detection { image_id: r.id, class: (o.class + 1) % ds.classes.len(), bbox, score }),
                2 => {
                    dets.push(Detection { image_id: r.id, class: o.class, bbox, score });
                    dets.push(Detection { image_id: r.id, class: o.class, bbox: o.bbox, score: score * 0.5 });
                }
                _ => dets.push(Detection { image_id: r.id, class: o.class, bbox, score }),
            }
        }
        dets.push(Detection { image_id: r.id, class: 0, bbox: BBox::new(1., 1., 20., 30.), score: 0.4 });
    }
    dets
}

/// libtorch's random generator is global and every test of this binary shares it: tests that
/// seed it and then draw (initialise a model, sample a tensor) hold this lock while they do.
pub static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Seed libtorch's generator and hold [`TORCH_RNG`] until the guard drops.
pub fn seed(s: i64) -> std::sync::MutexGuard<'static, ()> {
    let guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(s);
    guard
}

/// Hold [`TORCH_RNG`] without seeding (a test that draws from libtorch's generator, or seeds it
/// through the code under test).
pub fn torch_rng() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}
