//! The data loader end to end (`make bench-aug` runs this through benches/loader_peer.py, beside
//! a PyTorch `DataLoader` with albumentations): images per second delivered as normalised
//! `[64, 3, 224, 224]` batches with boxes, the lesson's training augmentations, all cores.
//!
//! Images: the sample's 65 photos (train + val) repeated `--copies` times (8: 520 images) as
//! distinct records, so the first epoch reads and decodes every one from disk (the loader's
//! cache is per record); the second epoch takes the scaled images from that cache.
//!
//!   cargo bench --bench loader -- [--copies 8] [--bs 64] [--epochs 2]
//! Output: one line of JSON on stdout.

use fastdet::data::{sample_root, DataLoader, DetDataset, Pascal, TargetKind};
use fastdet::transforms::{tfms_from_model, CropType, RandomFlip, RandomLighting, RandomRotate, TfmY};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let num = |name: &str, default: usize| {
        args.iter().position(|a| a == name).map(|i| args[i + 1].parse().expect(name)).unwrap_or(default)
    };
    let (copies, bs, n_epochs) = (num("--copies", 8), num("--bs", 64), num("--epochs", 2));
    let pascal = Pascal::open(sample_root()).expect("bundled sample");
    let mut ds = pascal.json("train").expect("sample JSON");
    let val = pascal.json("val").expect("sample JSON");
    ds.images.extend(val.images.iter().cloned());
    let one = ds.images.clone();
    for _ in 1..copies {
        ds.images.extend(one.iter().cloned());
    }
    let n = ds.images.len();
    let augs = vec![
        RandomFlip { p: 0.5 }.into(),
        RandomRotate { deg: 3.0, p: 0.5 }.into(),
        RandomLighting { b: 0.05, c: 0.05 }.into(),
    ];
    let (trn, _) = tfms_from_model(224, augs, CropType::No, TfmY::Coord).unwrap();
    let data = DetDataset::new(Arc::new(ds), (0..n).collect(), trn, TargetKind::AllBoxes, true).unwrap();
    fastdet::data::keep_freed_batches();
    let dl = DataLoader::new(data, bs, true, 0, tch::Device::Cpu).unwrap();
    let mut epochs = vec![];
    for epoch in 0..n_epochs as u64 {
        let t = Instant::now();
        let mut images = 0;
        for b in dl.iter(epoch) {
            let b = b.expect("batch");
            assert_eq!(b.x.size()[1..], [3, 224, 224]);
            images += b.indices.len();
        }
        let secs = t.elapsed().as_secs_f64();
        eprintln!("fastdet loader, epoch {epoch}: {images} images in {secs:.2} s, {:.0} img/s", images as f64 / secs);
        epochs.push(serde_json::json!({"epoch": epoch, "images": images, "secs": secs, "img_s": images as f64 / secs}));
    }
    println!(
        "{}",
        serde_json::json!({"library": "fastdet", "threads": rayon::current_num_threads(), "bs": bs, "images": n, "epochs": epochs})
    );
}
