//! The synthetic shapes set: VOC layout, JSON and XML agree, seeded, boxes on the shapes.

use fastdet::data::synthetic::{write, SyntheticConfig, SHAPES};
use fastdet::data::Dataset;

fn cfg(seed: u64) -> SyntheticConfig {
    SyntheticConfig { n_train: 60, n_val: 4, size: 96, seed, ..Default::default() }
}

#[test]
fn writes_a_loadable_seeded_voc_layout() {
    let dir = tempfile::tempdir().unwrap();
    let pascal = write(dir.path(), &cfg(3)).unwrap();
    let trn = pascal.json("train").unwrap();
    let val = pascal.json("val").unwrap();
    assert_eq!((trn.len(), val.len()), (60, 4));
    assert_eq!(trn.classes, SHAPES.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let classes = trn.classes.clone();
    let xml = Dataset::from_voc_with_classes(pascal.voc_dir(), "train", &classes).unwrap();
    assert_eq!(xml.images, trn.images);
    for (i, r) in trn.images.iter().enumerate() {
        assert!(!r.objects.is_empty());
        assert_eq!(trn.image(i).unwrap().dimensions(), (96, 96));
        assert!(r.objects.iter().all(|o| o.bbox.is_inside(96, 96) && o.bbox.width() >= 4.0));
    }
    // Same seed, same files; another seed, other files.
    let again = tempfile::tempdir().unwrap();
    write(again.path(), &cfg(3)).unwrap();
    let other = tempfile::tempdir().unwrap();
    write(other.path(), &cfg(4)).unwrap();
    let read = |d: &std::path::Path| std::fs::read(d.join("pascal_train2007.json")).unwrap();
    assert_eq!(read(dir.path()), read(again.path()));
    assert_ne!(read(dir.path()), read(other.path()));
    let jpg = |d: &std::path::Path| std::fs::read(d.join("VOCdevkit/VOC2007/JPEGImages/000001.jpg")).unwrap();
    assert_eq!(jpg(dir.path()), jpg(again.path()));
}

#[test]
fn nonsense_configs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(write(dir.path(), &SyntheticConfig { min_frac: 0.6, max_frac: 0.5, ..cfg(0) }).is_err());
    assert!(write(dir.path(), &SyntheticConfig { n_train: 0, ..cfg(0) }).is_err());
}

/// The synthetic SSD fastdet ships (`assets/models/ssd_synthetic.safetensors`, fp16, written by
/// `make ssd-synthetic`) loads and scores on the validation split the VOC07 mAP its statement
/// beside it gives; a file from another recipe, or weights that do not load, fail here.
#[test]
fn the_shipped_synthetic_ssd_reproduces_its_stated_map() {
    use fastdet::detect::{shipped_synthetic_weights, synthetic_dir, ShippedSsd, SyntheticSsd};
    use fastdet::metrics::ApMetric;
    let _rng = crate::common::torch_rng();
    let weights = shipped_synthetic_weights();
    let stated = ShippedSsd::read(&weights).unwrap();
    assert!(stated.voc07_map >= 0.82, "the shipped SSD states {}", stated.voc07_map);
    let mut ssd = SyntheticSsd::new(&synthetic_dir(), tch::Device::Cpu).unwrap();
    let untrained = ssd.evaluate(0.01, ApMetric::Voc07).unwrap().map;
    ssd.load_trained().unwrap();
    let map = ssd.evaluate(0.01, ApMetric::Voc07).unwrap().map;
    // Another CPU may pick other libtorch kernels: the same detections up to rounding.
    assert!((map - stated.voc07_map).abs() < 2e-3, "mAP {map}, stated {}", stated.voc07_map);
    assert!(untrained < 0.1, "untrained weights already score {untrained}");
}
