//! Datasets, the DataLoader and ImageData on the bundled sample (`data/coco128-voc`, 52 training
//! images): batch shapes and dtypes per target kind, the padding of all-box targets, the
//! validation split, shuffling without loss or duplication, determinism, targets against values
//! computed here from the annotations, and errors.

use fastdet::boxes::BBox;
use fastdet::data::{
    get_cv_idxs, sample_root, Batch, BatchTarget, DataLoader, DataOpts, Dataset, DetDataset, ImageData, Pascal,
    TargetKind,
};
use fastdet::model::ssd_loss::get_y;
use fastdet::tch::{Device, Kind, Tensor};
use fastdet::transforms::{tfms_from_model, Aug, CropType, RandomFlip, RandomLighting, RandomRotate, TfmY};
use std::path::Path;

const SZ: i64 = 64;
const BS: usize = 8;

fn train_set() -> Dataset {
    Pascal::open(sample_root()).unwrap().json("train").unwrap()
}

fn augs() -> Vec<Aug> {
    vec![
        RandomFlip { p: 0.5 }.into(),
        RandomRotate { deg: 3., p: 0.5 }.into(),
        RandomLighting { b: 0.05, c: 0.05 }.into(),
    ]
}

/// The brief's setup: sz 64, flip/rotate/lighting, squash, boxes follow, bs 8, 20% validation
/// with split seed 42, loader seed 0, CPU.
fn image_data(ds: Dataset, kind: TargetKind) -> ImageData {
    let tfms = tfms_from_model(SZ as u32, augs(), CropType::No, TfmY::Coord).unwrap();
    ImageData::from_dataset(ds, kind, tfms, DataOpts::new(BS, Device::Cpu)).unwrap()
}

fn md(kind: TargetKind) -> ImageData {
    image_data(train_set(), kind)
}

fn floats(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

fn ints(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.to_kind(Kind::Int64).flatten(0, -1)).unwrap()
}

/// Bitwise equality of two batches (images, targets, indices).
fn same_batch(a: &Batch, b: &Batch) -> bool {
    let t = |x: &Tensor, y: &Tensor| x.size() == y.size() && x.kind() == y.kind() && x.equal(y);
    a.indices == b.indices
        && t(&a.x, &b.x)
        && match (&a.y, &b.y) {
            (BatchTarget::Class(x), BatchTarget::Class(y)) => t(x, y),
            (BatchTarget::Box(x), BatchTarget::Box(y)) => t(x, y),
            (BatchTarget::MultiLabel(x), BatchTarget::MultiLabel(y)) => t(x, y),
            (BatchTarget::BoxClass { bbox: b1, class: c1 }, BatchTarget::BoxClass { bbox: b2, class: c2 }) => {
                t(b1, b2) && t(c1, c2)
            }
            (
                BatchTarget::Boxes { bbox: b1, class: c1, n_objects: n1 },
                BatchTarget::Boxes { bbox: b2, class: c2, n_objects: n2 },
            ) => t(b1, b2) && t(c1, c2) && t(n1, n2),
            _ => false,
        }
}

/// The non-difficult objects of an image, `(box, class)`, read here from the records.
fn objects_of(ds: &Dataset, idx: usize) -> Vec<(BBox, usize)> {
    ds.images[idx].objects.iter().filter(|o| !o.difficult).map(|o| (o.bbox, o.class)).collect()
}

/// The lesson's largest object, computed here: largest `(y2-y1)*(x2-x1)`, first on ties.
fn largest_of(ds: &Dataset, idx: usize) -> (BBox, usize) {
    let objs = objects_of(ds, idx);
    let mut best = objs[0];
    for &(b, c) in &objs[1..] {
        if (b.bottom - b.top) * (b.right - b.left) > (best.0.bottom - best.0.top) * (best.0.right - best.0.left) {
            best = (b, c);
        }
    }
    best
}

/// Where a box of a `w x h` image lands with no augmentation and `CropType::No` at `SZ`:
/// scaling the short side to `SZ` and then squashing to `SZ x SZ` scales x by `SZ/w` and y by
/// `SZ/h` overall (inclusive boxes: the outer edges `bottom+1`, `right+1` scale).
fn expected_box(b: &BBox, w: u32, h: u32) -> [f32; 4] {
    let (fy, fx) = (SZ as f64 / h as f64, SZ as f64 / w as f64);
    [
        (b.top as f64 * fy) as f32,
        (b.left as f64 * fx) as f32,
        ((b.bottom as f64 + 1.0) * fy - 1.0) as f32,
        ((b.right as f64 + 1.0) * fx - 1.0) as f32,
    ]
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

// ---------------------------------------------------------------------------------------------
// Shapes and dtypes

#[test]
fn batch_shapes_and_dtypes_per_target_kind() {
    let kinds = [
        TargetKind::LargestClass,
        TargetKind::LargestBox,
        TargetKind::BoxClass,
        TargetKind::MultiLabel,
        TargetKind::AllBoxes,
    ];
    for kind in kinds {
        let md = md(kind);
        assert_eq!(md.classes.len(), 20);
        let batch = md.trn_dl.one_batch().unwrap();
        assert_eq!(batch.x.size(), vec![BS as i64, 3, SZ, SZ], "{kind:?}");
        assert_eq!(batch.x.kind(), Kind::Float, "{kind:?}");
        assert_eq!(batch.x.device(), Device::Cpu);
        assert_eq!(batch.indices.len(), BS);
        let ds = &md.trn_dl.dataset.data;
        match (&batch.y, kind) {
            (BatchTarget::Class(c), TargetKind::LargestClass) => {
                assert_eq!((c.size(), c.kind()), (vec![BS as i64], Kind::Int64));
                let want: Vec<i64> = batch.indices.iter().map(|&i| largest_of(ds, i).1 as i64).collect();
                assert_eq!(ints(c), want);
            }
            (BatchTarget::Box(b), TargetKind::LargestBox) => {
                assert_eq!((b.size(), b.kind()), (vec![BS as i64, 4], Kind::Float));
            }
            (BatchTarget::BoxClass { bbox, class }, TargetKind::BoxClass) => {
                assert_eq!((bbox.size(), bbox.kind()), (vec![BS as i64, 4], Kind::Float));
                assert_eq!((class.size(), class.kind()), (vec![BS as i64], Kind::Int64));
                let want: Vec<i64> = batch.indices.iter().map(|&i| largest_of(ds, i).1 as i64).collect();
                assert_eq!(ints(class), want);
            }
            (BatchTarget::MultiLabel(m), TargetKind::MultiLabel) => {
                assert_eq!((m.size(), m.kind()), (vec![BS as i64, 20], Kind::Float));
                let v = floats(m);
                for (r, &idx) in batch.indices.iter().enumerate() {
                    let mut want = [0f32; 20];
                    objects_of(ds, idx).iter().for_each(|o| want[o.1] = 1.0);
                    assert_eq!(&v[r * 20..(r + 1) * 20], &want[..], "row {r} (image {idx})");
                }
            }
            (BatchTarget::Boxes { bbox, class, n_objects }, TargetKind::AllBoxes) => {
                let n = ints(n_objects);
                let big_n = *n.iter().max().unwrap();
                assert!(big_n >= 1);
                assert_eq!((n_objects.size(), n_objects.kind()), (vec![BS as i64], Kind::Int64));
                assert_eq!((bbox.size(), bbox.kind()), (vec![BS as i64, big_n, 4], Kind::Float));
                assert_eq!((class.size(), class.kind()), (vec![BS as i64, big_n], Kind::Int64));
            }
            (y, k) => panic!("{k:?} gave the target {y:?}"),
        }
        // Images are normalised: roughly zero mean, nothing absurd.
        let x = floats(&batch.x);
        assert!(x.iter().all(|v| v.is_finite() && v.abs() < 3.0));
    }
}

// ---------------------------------------------------------------------------------------------
// AllBoxes padding

fn check_padding(batch: &Batch, real_counts: Option<&[usize]>) {
    let BatchTarget::Boxes { bbox, class, n_objects } = &batch.y else { panic!("not an AllBoxes batch") };
    let n = ints(n_objects);
    let big_n = bbox.size()[1] as usize;
    assert_eq!(big_n as i64, *n.iter().max().unwrap(), "N is the largest object count of the batch");
    let b = floats(bbox);
    let c = ints(class);
    for (i, &ni) in n.iter().enumerate() {
        let ni = ni as usize;
        if let Some(counts) = real_counts {
            assert_eq!(ni, counts[i], "row {i}: n_objects");
        }
        let rows = &b[i * big_n * 4..(i + 1) * big_n * 4];
        let cls = &c[i * big_n..(i + 1) * big_n];
        for k in 0..big_n - ni {
            assert_eq!(&rows[k * 4..k * 4 + 4], &[0.0; 4], "row {i} padding {k}");
            assert_eq!(cls[k], 0, "row {i} padding {k}");
        }
        for k in big_n - ni..big_n {
            let r = &rows[k * 4..k * 4 + 4];
            assert!(r[2] >= r[0] && r[3] >= r[1], "row {i} object {k}: degenerate {r:?}");
            assert!(
                r.iter().all(|&v| (0.0..=SZ as f32 - 1.0).contains(&v)),
                "row {i} object {k}: {r:?} outside the image"
            );
            assert!((0..20).contains(&cls[k]));
        }
        // Batch::objects: exactly the real rows.
        let objs = batch.objects(i).unwrap();
        assert_eq!(objs.len(), ni, "row {i}: objects()");
        for (j, (ob, oc)) in objs.iter().enumerate() {
            let k = big_n - ni + j;
            assert_eq!(ob.to_array(), [rows[k * 4], rows[k * 4 + 1], rows[k * 4 + 2], rows[k * 4 + 3]]);
            assert_eq!(*oc, Some(cls[k] as usize));
        }
        // get_y: padding removed; real boxes one pixel high (bottom == top) go too, as in the lesson.
        let (gb, gc) = get_y(&bbox.get(i as i64), &class.get(i as i64), 1.0);
        let real_tall: Vec<usize> = (big_n - ni..big_n).filter(|&k| rows[k * 4 + 2] - rows[k * 4] > 0.0).collect();
        assert_eq!(gb.size(), vec![real_tall.len() as i64, 4]);
        assert_eq!(gc.size(), vec![real_tall.len() as i64]);
        let want_b: Vec<f32> = real_tall.iter().flat_map(|&k| rows[k * 4..k * 4 + 4].to_vec()).collect();
        let want_c: Vec<i64> = real_tall.iter().map(|&k| cls[k]).collect();
        assert_eq!(floats(&gb), want_b);
        assert_eq!(ints(&gc), want_c);
        if real_tall.len() == ni {
            assert_eq!(gb.size()[0] as usize, ni, "row {i}: get_y keeps every real box");
        }
    }
}

#[test]
fn all_boxes_padding_layout() {
    let md = md(TargetKind::AllBoxes);
    let ds = md.trn_dl.dataset.data.clone();
    // Training batches (augmented): every batch of an epoch.
    let mut seen = 0;
    for batch in md.trn_dl.iter(0) {
        let batch = batch.unwrap();
        check_padding(&batch, None);
        let BatchTarget::Boxes { n_objects, .. } = &batch.y else { unreachable!() };
        for (&n, &idx) in ints(n_objects).iter().zip(&batch.indices) {
            assert!(n as usize <= objects_of(&ds, idx).len());
            assert!(n >= 1, "image {idx}: a 3-degree rotation without crop dropped every box");
        }
        seen += batch.indices.len();
    }
    assert_eq!(seen, md.trn_dl.dataset.len());
    // Validation batches (no augmentation): every annotated box is there, in order, where the
    // scaling puts it.
    for batch in md.val_dl.iter(0) {
        let batch = batch.unwrap();
        let counts: Vec<usize> = batch.indices.iter().map(|&i| objects_of(&ds, i).len()).collect();
        check_padding(&batch, Some(&counts));
        for (row, &idx) in batch.indices.iter().enumerate() {
            let rec = &ds.images[idx];
            let objs = batch.objects(row).unwrap();
            let want = objects_of(&ds, idx);
            assert_eq!(objs.len(), want.len());
            for ((got, gc), (b, c)) in objs.iter().zip(&want) {
                assert_eq!(*gc, Some(*c));
                let e = expected_box(b, rec.width, rec.height);
                assert!(close(&got.to_array(), &e, 1e-3), "image {idx}: {got:?} vs {e:?}");
            }
        }
    }
}

/// With a centre crop, boxes outside the crop are dropped and the classes of the others stay
/// aligned with their boxes; every box and class is computed here from the annotations.
#[test]
fn all_boxes_centre_crop_drops_boxes_and_keeps_labels_aligned() {
    let data = std::sync::Arc::new(train_set());
    let (_, val_tfms) = tfms_from_model(SZ as u32, augs(), CropType::Random, TfmY::Coord).unwrap();
    assert_eq!(val_tfms.crop, CropType::Center);
    let all: Vec<usize> = (0..data.len()).collect();
    let ds = DetDataset::new(data.clone(), all, val_tfms, TargetKind::AllBoxes, false).unwrap();
    let dl = DataLoader::new(ds, BS, false, 0, Device::Cpu).unwrap();
    let (mut dropped, mut dropped_inside) = (0, 0);
    for batch in dl.iter(0) {
        let batch = batch.unwrap();
        check_padding(&batch, None);
        for (row, &idx) in batch.indices.iter().enumerate() {
            let rec = &data.images[idx];
            let (w, h) = (rec.width as f64, rec.height as f64);
            let short = w.min(h);
            let (nw, nh) = ((w * SZ as f64 / short).round(), (h * SZ as f64 / short).round());
            let (sx, sy) = (nw / w, nh / h);
            let (ox, oy) = (((nw - SZ as f64) / 2.0).ceil(), ((nh - SZ as f64) / 2.0).ceil());
            let s = SZ as f64;
            let objs = objects_of(&data, idx);
            let mut want = vec![];
            for (k, (b, c)) in objs.iter().enumerate() {
                let x0 = (b.left as f64 * sx - ox).clamp(0.0, s);
                let x1 = ((b.right as f64 + 1.0) * sx - ox).clamp(0.0, s);
                let y0 = (b.top as f64 * sy - oy).clamp(0.0, s);
                let y1 = ((b.bottom as f64 + 1.0) * sy - oy).clamp(0.0, s);
                if x1 - x0 >= 1.0 && y1 - y0 >= 1.0 {
                    want.push(([y0 as f32, x0 as f32, (y1 - 1.0) as f32, (x1 - 1.0) as f32], *c));
                } else {
                    dropped += 1;
                    if k + 1 < objs.len() && objs[k + 1..].iter().any(|o| o.1 != *c) {
                        dropped_inside += 1;
                    }
                }
            }
            let got = batch.objects(row).unwrap();
            assert_eq!(got.len(), want.len(), "image {idx}: {got:?} vs {want:?}");
            for ((gb, gc), (wb, wc)) in got.iter().zip(&want) {
                assert!(close(&gb.to_array(), wb, 1e-3), "image {idx}: {gb:?} vs {wb:?}");
                assert_eq!(*gc, Some(*wc), "image {idx}: class of {gb:?}");
            }
        }
    }
    assert!(dropped > 0, "no box fell outside a centre crop: the test checks nothing");
    assert!(dropped_inside > 0, "no dropped box was followed by one of another class");
}

// ---------------------------------------------------------------------------------------------
// Split

#[test]
fn validation_split_is_fixed_and_partitions_the_data() {
    let a = md(TargetKind::LargestClass);
    let b = md(TargetKind::AllBoxes);
    let want = get_cv_idxs(52, 0.2, 42).unwrap();
    assert_eq!(want.len(), 10);
    assert_eq!(a.val_dl.dataset.indices, want);
    assert_eq!(b.val_dl.dataset.indices, want);
    assert_eq!(a.aug_dl.dataset.indices, want);
    assert_eq!(a.trn_dl.dataset.indices, b.trn_dl.dataset.indices);
    let trn = &a.trn_dl.dataset.indices;
    assert_eq!(trn.len(), 42);
    assert!(trn.iter().all(|i| !want.contains(i)), "train and validation overlap");
    let mut all: Vec<usize> = trn.iter().chain(&want).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..52).collect::<Vec<_>>());
    assert!(a.trn_dl.shuffle && !a.val_dl.shuffle && !a.aug_dl.shuffle);
    assert_eq!((a.trn_dl.len(), a.val_dl.len(), a.aug_dl.len()), (6, 2, 2));
}

// ---------------------------------------------------------------------------------------------
// Epochs and determinism

/// Image indices of an epoch, batch by batch, with the batch sizes.
fn epoch_indices(dl: &DataLoader, epoch: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx = vec![];
    let mut sizes = vec![];
    for b in dl.iter(epoch) {
        let b = b.unwrap();
        assert_eq!(b.x.size()[0] as usize, b.indices.len());
        sizes.push(b.indices.len());
        idx.extend(b.indices);
    }
    (idx, sizes)
}

#[test]
fn epochs_are_permutations_and_deterministic() {
    let md = md(TargetKind::BoxClass);
    let dl = &md.trn_dl;
    let mut trn = dl.dataset.indices.clone();
    trn.sort_unstable();
    let (e0, sizes0) = epoch_indices(dl, 0);
    let (e1, sizes1) = epoch_indices(dl, 1);
    assert_eq!(sizes0, vec![8, 8, 8, 8, 8, 2]);
    assert_eq!(sizes1, sizes0);
    for (e, order) in [(0, &e0), (1, &e1)] {
        let mut s = order.clone();
        s.sort_unstable();
        assert_eq!(s, trn, "epoch {e} lost or duplicated images");
    }
    assert_ne!(e0, e1, "epochs 0 and 1 have the same order");
    assert_ne!(e0, dl.dataset.indices, "epoch 0 is not shuffled");
    // The order agrees with DataLoader::order.
    let by_order: Vec<usize> = dl.order(1).iter().map(|&p| dl.dataset.indices[p]).collect();
    assert_eq!(by_order, e1);

    // Same loader, same epoch: same batches, bit for bit, through iter() twice, batch(e, k), a
    // clone of the loader and a loader built afresh (cold cache).
    let first: Vec<Batch> = dl.iter(1).map(|b| b.unwrap()).collect();
    let again: Vec<Batch> = dl.iter(1).map(|b| b.unwrap()).collect();
    let fresh_md = self::md(TargetKind::BoxClass);
    let fresh: Vec<Batch> = fresh_md.trn_dl.iter(1).map(|b| b.unwrap()).collect();
    let cloned = dl.clone();
    assert_eq!(first.len(), dl.len());
    for (k, b) in first.iter().enumerate() {
        assert!(same_batch(b, &again[k]), "batch {k}: iter() twice differs");
        assert!(same_batch(b, &dl.batch(1, k).unwrap()), "batch {k}: iter() vs batch()");
        assert!(same_batch(b, &cloned.batch(1, k).unwrap()), "batch {k}: clone differs");
        assert!(same_batch(b, &fresh[k]), "batch {k}: a fresh ImageData differs");
    }
    assert!(dl.batch(1, dl.len()).is_err(), "batch past the end");
    // Another epoch augments differently: the same image in epochs 0 and 1 is not the same.
    let e0_batches: Vec<Batch> = dl.iter(0).map(|b| b.unwrap()).collect();
    let img = first[0].indices[0];
    let pick = |bs: &[Batch]| -> Vec<f32> {
        bs.iter().find_map(|b| b.indices.iter().position(|&i| i == img).map(|p| floats(&b.x.get(p as i64)))).unwrap()
    };
    assert_ne!(pick(&first), pick(&e0_batches), "image {img} augmented identically in two epochs");
    // A different loader seed shuffles differently.
    let mut other = dl.clone();
    other.seed = 1;
    assert_ne!(other.order(0), dl.order(0));
}

#[test]
fn prefetch_does_not_change_batches() {
    let md = md(TargetKind::LargestClass);
    let mut dl = md.trn_dl.clone();
    let base: Vec<Batch> = dl.iter(3).map(|b| b.unwrap()).collect();
    for p in [0, 1, 8] {
        dl.prefetch = p;
        let got: Vec<Batch> = dl.iter(3).map(|b| b.unwrap()).collect();
        assert_eq!(got.len(), base.len());
        assert!(got.iter().zip(&base).all(|(a, b)| same_batch(a, b)), "prefetch {p}");
    }
    // Dropping the iterator early is fine.
    let mut it = dl.iter(3);
    assert!(it.next().unwrap().is_ok());
    drop(it);
}

/// The loader writes each image straight into its place in the batch tensor, on rayon's
/// threads; the same samples made one by one (`DetDataset::get`) and collated must be the same
/// batch, bit for bit, for every target kind.
#[test]
fn batches_written_in_place_equal_samples_collated() {
    use fastdet::data::collate;
    for kind in [TargetKind::AllBoxes, TargetKind::MultiLabel, TargetKind::BoxClass] {
        let md = md(kind);
        let dl = &md.trn_dl;
        let order = dl.order(2);
        for (k, chunk) in dl.batches(&order).into_iter().enumerate().take(3) {
            let samples: Vec<_> = chunk.iter().map(|&i| dl.dataset.get(i, dl.sample_seed(2, i)).unwrap()).collect();
            let want = collate(&samples, kind, dl.dataset.num_classes(), Device::Cpu);
            let got = dl.batch(2, k).unwrap();
            assert!(same_batch(&got, &want), "{kind:?}, batch {k}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Targets against independent values

#[test]
fn box_class_targets_without_augmentation() {
    let md = md(TargetKind::BoxClass);
    let ds = md.val_dl.dataset.data.clone();
    let (order, _) = epoch_indices(&md.val_dl, 0);
    assert_eq!(order, md.val_dl.dataset.indices, "the validation loader is not shuffled");
    let lb = self::md(TargetKind::LargestBox);
    for (k, batch) in md.val_dl.iter(0).enumerate() {
        let batch = batch.unwrap();
        let BatchTarget::BoxClass { bbox, class } = &batch.y else { panic!() };
        let got = floats(bbox);
        let cls = ints(class);
        for (row, &idx) in batch.indices.iter().enumerate() {
            let rec = &ds.images[idx];
            let (b, c) = largest_of(&ds, idx);
            let want = expected_box(&b, rec.width, rec.height);
            assert!(
                close(&got[row * 4..row * 4 + 4], &want, 1e-3),
                "image {idx} ({}x{}) box {b:?}: {:?} vs {want:?}",
                rec.width,
                rec.height,
                &got[row * 4..row * 4 + 4]
            );
            assert_eq!(cls[row], c as i64);
        }
        // LargestBox gives the same boxes.
        let other = lb.val_dl.batch(0, k).unwrap();
        let BatchTarget::Box(b2) = &other.y else { panic!() };
        assert_eq!(floats(b2), got);
    }
    // The validation images are the plain squash of the photo: compare one with a resize made
    // here (scale short side to 64, then squash), within a few levels.
    let batch = md.val_dl.one_batch().unwrap();
    let idx = batch.indices[0];
    let shown = &batch.images().unwrap()[0];
    let photo = ds.image(idx).unwrap();
    let small = image::imageops::resize(&photo, SZ as u32, SZ as u32, image::imageops::FilterType::Triangle);
    let mean_diff: f64 = shown.as_raw().iter().zip(small.as_raw()).map(|(a, b)| a.abs_diff(*b) as f64).sum::<f64>()
        / small.as_raw().len() as f64;
    assert!(mean_diff < 12.0, "validation image {idx} differs from a plain resize by {mean_diff:.1} levels on average");
}

#[test]
fn aug_dl_is_validation_with_augmentation() {
    let md = md(TargetKind::AllBoxes);
    let (val, _) = epoch_indices(&md.val_dl, 0);
    let (aug, _) = epoch_indices(&md.aug_dl, 0);
    assert_eq!(aug, val);
    assert_eq!(md.aug_dl.dataset.tfms.augs, augs());
    assert!(md.val_dl.dataset.tfms.augs.is_empty());
    let mut differs = false;
    for k in 0..md.val_dl.len() {
        let (v, a) = (md.val_dl.batch(0, k).unwrap(), md.aug_dl.batch(0, k).unwrap());
        assert_eq!(v.indices, a.indices);
        assert_eq!(v.x.size(), a.x.size());
        differs |= !v.x.equal(&a.x);
    }
    assert!(differs, "aug_dl gave the validation images unaugmented");
    // Two epochs of aug_dl augment differently (TTA draws new augmentations).
    assert!(!md.aug_dl.batch(0, 0).unwrap().x.equal(&md.aug_dl.batch(1, 0).unwrap().x));
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn zero_batch_size_is_an_error() {
    let md = md(TargetKind::LargestClass);
    let err = DataLoader::new(md.trn_dl.dataset.clone(), 0, true, 0, Device::Cpu).err().expect("bs 0 accepted");
    assert!(err.to_string().contains("bs"), "{err}");
    let tfms = tfms_from_model(32, vec![], CropType::No, TfmY::Coord).unwrap();
    assert!(ImageData::from_dataset(
        train_set(),
        TargetKind::LargestClass,
        tfms.clone(),
        DataOpts::new(0, Device::Cpu)
    )
    .is_err());
    assert!(ImageData::from_dataset(
        train_set(),
        TargetKind::LargestClass,
        tfms.clone(),
        DataOpts { val_pct: 1.5, ..DataOpts::new(4, Device::Cpu) }
    )
    .is_err());
    // Indices past the dataset are refused.
    let data = std::sync::Arc::new(train_set());
    assert!(DetDataset::new(data.clone(), vec![0, 52], tfms.0.clone(), TargetKind::LargestClass, false).is_err());
    let ds = DetDataset::new(data, vec![0, 1], tfms.0, TargetKind::LargestClass, false).unwrap();
    assert!(ds.get(2, 0).is_err());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// A copy of the sample with one training image's file replaced by `bytes(original)`; returns
/// the loaders and the file name.
fn corrupted(kind: TargetKind, damage: impl Fn(Vec<u8>) -> Vec<u8>) -> (tempfile::TempDir, ImageData, String, usize) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&sample_root(), dir.path());
    let ds = Pascal::open(dir.path()).unwrap().json("train").unwrap();
    let val = get_cv_idxs(ds.len(), 0.2, 42).unwrap();
    let victim = (0..ds.len()).find(|i| !val.contains(i)).unwrap();
    let file = ds.images[victim].file_name.clone();
    let path = ds.path(victim);
    std::fs::write(&path, damage(std::fs::read(&path).unwrap())).unwrap();
    let md = image_data(ds, kind);
    (dir, md, file, victim)
}

fn check_corrupt_epoch(md: &ImageData, file: &str, victim: usize) {
    let items: Vec<_> = md.trn_dl.iter(0).collect();
    let errs: Vec<String> = items.iter().filter_map(|r| r.as_ref().err().map(|e| e.to_string())).collect();
    assert_eq!(errs.len(), 1, "expected one error, got {errs:?}");
    assert!(errs[0].contains(file), "the error does not name {file}: {}", errs[0]);
    assert!(items.last().unwrap().is_err(), "the error ends the epoch");
    // The batches before the error are fine and do not hold the broken image.
    for b in items.iter().filter_map(|r| r.as_ref().ok()) {
        assert!(!b.indices.contains(&victim));
    }
    // batch(e, k) reports it too, for the batch holding the image.
    let pos = md.trn_dl.dataset.indices.iter().position(|&i| i == victim).unwrap();
    let k = md.trn_dl.order(0).iter().position(|&p| p == pos).unwrap() / BS;
    let err = md.trn_dl.batch(0, k).expect_err("batch with the broken image succeeded");
    assert!(err.to_string().contains(file), "{err}");
    // The validation loader does not touch it.
    assert!(md.val_dl.iter(0).all(|b| b.is_ok()));
}

#[test]
fn corrupt_image_is_an_error_naming_the_file() {
    let (_dir, md, file, victim) =
        corrupted(TargetKind::AllBoxes, |_| b"this is not a JPEG, just some garbage bytes".repeat(50));
    check_corrupt_epoch(&md, &file, victim);
}

#[test]
fn truncated_image_is_an_error_naming_the_file() {
    let (_dir, md, file, victim) = corrupted(TargetKind::LargestClass, |mut b| {
        b.truncate(b.len() / 2);
        b
    });
    check_corrupt_epoch(&md, &file, victim);
}

/// A panic while a batch is made on the prefetch thread (here: moving it to a CUDA device
/// that does not exist; in training, e.g., running out of GPU memory) should reach the
/// consumer, as an error or a panic, not end the epoch early in silence.
#[test]
fn worker_panic_is_not_a_silently_short_epoch() {
    let md = md(TargetKind::LargestClass);
    let mut dl = md.val_dl.clone();
    dl.device = Device::Cuda(99);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dl.iter(0).collect::<Vec<_>>()));
    if let Ok(items) = outcome {
        assert!(
            items.len() == dl.len() || items.iter().any(|r| r.is_err()),
            "iter() yielded {} of {} batches and no error",
            items.len(),
            dl.len()
        );
    }
}

/// A training batch of one image never reaches BatchNorm: with 42 training images, `bs` 41
/// folds the lone last image into the batch before (one batch of 42); `bs` 40 keeps 40 + 2 and
/// `bs` 5 keeps 8 x 5 + 2; the validation loader is never changed.
#[test]
fn a_last_training_batch_of_one_is_folded_into_the_one_before() {
    let tfms = tfms_from_model(32, vec![], CropType::No, TfmY::Coord).unwrap();
    let sizes = |bs: usize| {
        let md =
            ImageData::from_dataset(train_set(), TargetKind::BoxClass, tfms.clone(), DataOpts::new(bs, Device::Cpu))
                .unwrap();
        let (idx, sizes) = epoch_indices(&md.trn_dl, 0);
        let mut sorted = idx.clone();
        sorted.sort_unstable();
        let mut want = md.trn_dl.dataset.indices.clone();
        want.sort_unstable();
        assert_eq!(sorted, want, "bs {bs}: every training image once");
        assert_eq!(md.trn_dl.len(), sizes.len());
        let (_, val_sizes) = epoch_indices(&md.val_dl, 0);
        (sizes, val_sizes)
    };
    assert_eq!(sizes(41), (vec![42], vec![10]));
    assert_eq!(sizes(40), (vec![40, 2], vec![10]));
    assert_eq!(sizes(5), (vec![5, 5, 5, 5, 5, 5, 5, 5, 2], vec![5, 5]), "a last batch of two stays");
    assert_eq!(sizes(9).1, vec![9, 1], "validation keeps its batch of one");
}
