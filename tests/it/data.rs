//! The bundled sample (`data/coco128-voc`): counts from its README, boxes against the raw JSON
//! and XML, the lesson's "largest object" and CSV files, image decoding, and the validation split
//! against numpy (tests/golden/cv_idxs.json, made by tests/golden/gen_cv_idxs.py).

use fastdet::boxes::BBox;
use fastdet::data::{get_cv_idxs, open_image, sample_root, Dataset, ImageRecord, Object, Pascal, VOC_CLASSES};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

fn pascal() -> Pascal {
    Pascal::open(sample_root()).expect("the bundled sample is there")
}

fn raw_json(split: &str) -> Value {
    let path = sample_root().join(format!("pascal_{split}2007.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// What the test expects of one image, computed from the raw JSON without the crate's loader:
/// `(id, file_name, width, height, [(top, left, bottom, right, category_id)])`.
type RawImage = (u64, String, u32, u32, Vec<([f32; 4], u64)>);

fn raw_images(split: &str) -> Vec<RawImage> {
    let j = raw_json(split);
    let mut out: Vec<RawImage> = j["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|im| {
            (
                im["id"].as_u64().unwrap(),
                im["file_name"].as_str().unwrap().to_string(),
                im["width"].as_u64().unwrap() as u32,
                im["height"].as_u64().unwrap() as u32,
                vec![],
            )
        })
        .collect();
    for a in j["annotations"].as_array().unwrap() {
        let image_id = a["image_id"].as_u64().unwrap();
        let bb: Vec<f32> = a["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let (x, y, w, h) = (bb[0], bb[1], bb[2], bb[3]);
        // top = y, left = x, bottom = y + h - 1, right = x + w - 1
        let tlbr = [y, x, y + h - 1.0, x + w - 1.0];
        let rec = out.iter_mut().find(|r| r.0 == image_id).expect("annotation of a listed image");
        rec.4.push((tlbr, a["category_id"].as_u64().unwrap()));
    }
    out
}

#[test]
fn json_counts_and_classes() {
    let p = pascal();
    let trn = p.json("train").unwrap();
    let val = p.json("val").unwrap();
    assert_eq!((trn.len(), trn.num_objects()), (52, 226));
    assert_eq!((val.len(), val.num_objects()), (13, 86));
    for ds in [&trn, &val] {
        assert_eq!(ds.classes, VOC_CLASSES.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(ds.warnings.is_empty(), "{:?}", ds.warnings);
        assert!(ds.images.iter().all(|r| r.objects.iter().all(|o| !o.difficult)));
        assert_eq!(ds.image_dir, sample_root().join("VOCdevkit").join("VOC2007").join("JPEGImages"));
    }
    assert_eq!(trn.source, sample_root().join("pascal_train2007.json"));
    // No image is in both splits.
    assert!(trn.images.iter().all(|r| val.index_of(r.id).is_none()));
}

#[test]
fn voc_counts() {
    let p = pascal();
    let trn = p.voc("train").unwrap();
    let val = p.voc("val").unwrap();
    assert_eq!((trn.len(), trn.num_objects()), (52, 226));
    assert_eq!((val.len(), val.num_objects()), (13, 86));
    assert!(trn.warnings.is_empty() && val.warnings.is_empty());
}

#[test]
fn known_boxes_match_the_raw_json_and_xml() {
    let p = pascal();
    let trn = p.json("train").unwrap();
    let val = p.json("val").unwrap();
    let trn_xml = p.voc("train").unwrap();
    let val_xml = p.voc("val").unwrap();
    // (dataset, image id, object index, JSON bbox [x, y, w, h], category_id, XML xmin ymin xmax ymax)
    // taken from pascal_train2007.json / pascal_val2007.json and Annotations/<id>.xml.
    type Case<'a> = (&'a Dataset, &'a Dataset, u64, usize, [f32; 4], usize, [f32; 4]);
    let cases: [Case; 3] = [
        (&trn, &trn_xml, 30, 0, [205., 31., 255., 324.], 16, [206., 32., 460., 355.]),
        (&trn, &trn_xml, 36, 0, [168., 163., 310., 465.], 15, [169., 164., 478., 628.]),
        (&val, &val_xml, 71, 1, [523., 223., 24., 12.], 7, [524., 224., 547., 235.]),
    ];
    for (ds, xml, id, k, [x, y, w, h], cat, [xmin, ymin, xmax, ymax]) in cases {
        let rec = &ds.images[ds.index_of(id).unwrap()];
        let o = &rec.objects[k];
        assert_eq!(o.bbox, BBox::new(y, x, y + h - 1., x + w - 1.), "image {id} object {k}");
        assert_eq!(o.bbox, BBox::from_xywh([x, y, w, h]));
        assert_eq!(o.class + 1, cat);
        let xrec = &xml.images[xml.index_of(id).unwrap()];
        assert_eq!(xrec.objects[k].bbox, BBox::new(ymin - 1., xmin - 1., ymax - 1., xmax - 1.));
        assert_eq!(xrec.objects[k].bbox.to_voc(), [xmin, ymin, xmax, ymax]);
    }
    // Hand-checked: image 30's pottedplant is [31 205 354 459] (top left bottom right).
    let r30 = &trn.images[trn.index_of(30).unwrap()];
    assert_eq!(r30.objects[0].bbox.to_string(), "[31 205 354 459]");
    assert_eq!(trn.class_name(r30.objects[0].class), "pottedplant");
    assert_eq!((r30.width, r30.height, r30.file_name.as_str()), (640, 428, "000000000030.jpg"));
}

#[test]
fn every_json_box_matches_the_raw_file() {
    let p = pascal();
    for split in ["train", "val"] {
        let ds = p.json(split).unwrap();
        let raw = raw_images(split);
        assert_eq!(ds.len(), raw.len());
        for (rec, (id, file_name, width, height, objs)) in ds.images.iter().zip(&raw) {
            assert_eq!((rec.id, &rec.file_name, rec.width, rec.height), (*id, file_name, *width, *height));
            let got: Vec<([f32; 4], u64)> =
                rec.objects.iter().map(|o| (o.bbox.to_array(), o.class as u64 + 1)).collect();
            assert_eq!(&got, objs, "{split} image {id}");
        }
    }
}

#[test]
fn json_and_xml_give_identical_records() {
    let p = pascal();
    for split in ["train", "val"] {
        let js = p.json(split).unwrap();
        let xml = p.voc(split).unwrap();
        assert_eq!(js.len(), xml.len(), "{split}");
        assert_eq!(js.classes, xml.classes);
        // Same order too: the JSON lists images in the split file's order.
        for (a, b) in js.images.iter().zip(&xml.images) {
            assert_eq!(a, b, "{split}: JSON vs XML for image {}", a.id);
        }
        // The XML loader's ids come from the 12-digit stems.
        let list = std::fs::read_to_string(p.voc_dir().join("ImageSets/Main").join(format!("{split}.txt"))).unwrap();
        let stems: Vec<&str> = list.lines().map(str::trim).filter(|s| !s.is_empty()).collect();
        assert_eq!(stems.len(), xml.len());
        for (s, r) in stems.iter().zip(&xml.images) {
            assert_eq!(s.len(), 12);
            assert_eq!(r.id, s.parse::<u64>().unwrap());
            assert_eq!(r.file_name, format!("{s}.jpg"));
        }
    }
}

/// The README's table: (class, train boxes, train images, val boxes, val images).
const README_TABLE: [(&str, usize, usize, usize, usize); 20] = [
    ("aeroplane", 2, 2, 1, 1),
    ("bicycle", 2, 1, 0, 0),
    ("bird", 8, 1, 0, 0),
    ("boat", 6, 2, 0, 0),
    ("bottle", 1, 1, 1, 1),
    ("bus", 4, 3, 0, 0),
    ("car", 7, 5, 18, 3),
    ("cat", 2, 2, 2, 2),
    ("chair", 14, 4, 13, 1),
    ("cow", 0, 0, 0, 0),
    ("diningtable", 5, 4, 0, 0),
    ("dog", 4, 4, 3, 3),
    ("horse", 2, 1, 0, 0),
    ("motorbike", 2, 1, 1, 1),
    ("person", 155, 36, 40, 7),
    ("pottedplant", 7, 5, 3, 2),
    ("sheep", 0, 0, 0, 0),
    ("sofa", 2, 2, 3, 2),
    ("train", 2, 2, 1, 1),
    ("tvmonitor", 1, 1, 0, 0),
];

fn class_counts(ds: &Dataset) -> HashMap<String, (usize, usize)> {
    let mut m: HashMap<String, (usize, usize)> = HashMap::new();
    for r in &ds.images {
        let mut seen = vec![];
        for o in &r.objects {
            let name = ds.class_name(o.class).to_string();
            let e = m.entry(name.clone()).or_default();
            e.0 += 1;
            if !seen.contains(&name) {
                e.1 += 1;
                seen.push(name);
            }
        }
    }
    m
}

#[test]
fn per_class_counts_match_the_readme() {
    let p = pascal();
    for loader in ["json", "voc"] {
        let (trn, val) = if loader == "json" {
            (p.json("train").unwrap(), p.json("val").unwrap())
        } else {
            (p.voc("train").unwrap(), p.voc("val").unwrap())
        };
        let (ct, cv) = (class_counts(&trn), class_counts(&val));
        let mut total = 0;
        for (name, tb, ti, vb, vi) in README_TABLE {
            assert_eq!(ct.get(name).copied().unwrap_or_default(), (tb, ti), "{loader} train {name}");
            assert_eq!(cv.get(name).copied().unwrap_or_default(), (vb, vi), "{loader} val {name}");
            total += tb + vb;
        }
        assert_eq!(total, 312);
        assert!(ct.keys().chain(cv.keys()).all(|k| VOC_CLASSES.contains(&k.as_str())));
    }
    // The "all boxes" column for a few classes.
    let all = |name: &str| {
        let t = class_counts(&p.json("train").unwrap());
        let v = class_counts(&p.json("val").unwrap());
        t.get(name).map_or(0, |c| c.0) + v.get(name).map_or(0, |c| c.0)
    };
    assert_eq!((all("person"), all("chair"), all("car"), all("pottedplant")), (195, 27, 25, 10));
    assert_eq!((all("cow"), all("sheep")), (0, 0));
}

/// Largest object computed from the raw JSON: first maximal (y2-y1)*(x2-x1).
fn raw_largest(objs: &[([f32; 4], u64)]) -> Option<([f32; 4], u64)> {
    let mut best: Option<([f32; 4], u64)> = None;
    for &(b, c) in objs {
        let key = (b[2] - b[0]) * (b[3] - b[1]);
        match best {
            Some((bb, _)) if (bb[2] - bb[0]) * (bb[3] - bb[1]) >= key => {}
            _ => best = Some((b, c)),
        }
    }
    best
}

#[test]
fn largest_is_the_first_maximal_object() {
    let p = pascal();
    for split in ["train", "val"] {
        let ds = p.json(split).unwrap();
        let lrg = ds.largest();
        for ((rec, got), raw) in ds.images.iter().zip(&lrg).zip(raw_images(split)) {
            let got = got.as_ref().expect("every sample image has an object");
            let want = raw_largest(&raw.4).unwrap();
            assert_eq!((got.bbox.to_array(), got.class as u64 + 1), want, "{split} image {}", rec.id);
            // maximal, and no earlier object has the same key
            let pos = rec.objects.iter().position(|o| o == got).unwrap();
            assert!(rec.objects.iter().all(|o| o.bbox.area() <= got.bbox.area()));
            assert!(rec.objects[..pos].iter().all(|o| o.bbox.area() < got.bbox.area()));
        }
    }
}

fn obj(top: f32, left: f32, bottom: f32, right: f32, class: usize, difficult: bool) -> Object {
    Object { bbox: BBox::new(top, left, bottom, right), class, difficult }
}

#[test]
fn largest_ties_go_to_the_first_and_difficult_ones_are_skipped() {
    let rec = |objects: Vec<Object>| ImageRecord { id: 1, file_name: "a.jpg".into(), width: 100, height: 100, objects };
    // Two boxes of the same size (key 10*10 = 100) in different places: the first wins.
    let r =
        rec(vec![obj(0., 0., 10., 10., 1, false), obj(20., 20., 30., 30., 2, false), obj(0., 0., 5., 5., 3, false)]);
    assert_eq!(r.largest().unwrap().class, 1);
    // Same key (y2-y1)*(x2-x1) = 4*25 = 100 = 10*10 though the pixel areas differ (5*26 vs 11*11).
    let r = rec(vec![obj(0., 0., 4., 25., 4, false), obj(0., 0., 10., 10., 5, false)]);
    assert_eq!(r.largest().unwrap().class, 4);
    let r = rec(vec![obj(0., 0., 10., 10., 5, false), obj(0., 0., 4., 25., 4, false)]);
    assert_eq!(r.largest().unwrap().class, 5);
    // A later, strictly larger one wins.
    let r = rec(vec![obj(0., 0., 3., 3., 6, false), obj(0., 0., 10., 10., 7, false), obj(0., 0., 11., 10., 8, false)]);
    assert_eq!(r.largest().unwrap().class, 8);
    // Difficult objects are left out, even when larger.
    let r = rec(vec![obj(0., 0., 50., 50., 9, true), obj(0., 0., 3., 3., 10, false)]);
    assert_eq!(r.largest().unwrap().class, 10);
    let r = rec(vec![obj(0., 0., 50., 50., 9, true)]);
    assert!(r.largest().is_none());
    assert!(rec(vec![]).largest().is_none());
}

fn read_csv(path: &Path) -> (String, Vec<(String, String)>) {
    let text = std::fs::read_to_string(path).unwrap();
    let header = text.lines().next().unwrap().to_string();
    let mut rd = csv::Reader::from_path(path).unwrap();
    let rows = rd.records().map(|r| {
        let r = r.unwrap();
        assert_eq!(r.len(), 2);
        (r[0].to_string(), r[1].to_string())
    });
    (header, rows.collect())
}

fn fmt_box(b: [f32; 4]) -> String {
    format!("{} {} {} {}", b[0] as i64, b[1] as i64, b[2] as i64, b[3] as i64)
}

#[test]
fn lesson_csvs() {
    let p = pascal();
    let dir = tempfile::tempdir().unwrap();
    for split in ["train", "val"] {
        let ds = p.json(split).unwrap();
        let raw = raw_images(split);
        let name = |cat: u64| VOC_CLASSES[cat as usize - 1].to_string();

        let lrg: Vec<(String, String)> =
            raw.iter().map(|r| (r.1.clone(), name(raw_largest(&r.4).unwrap().1))).collect();
        let bb: Vec<(String, String)> =
            raw.iter().map(|r| (r.1.clone(), fmt_box(raw_largest(&r.4).unwrap().0))).collect();
        let mc: Vec<(String, String)> = raw
            .iter()
            .map(|r| {
                let mut names: Vec<String> = vec![];
                for (_, c) in &r.4 {
                    if !names.contains(&name(*c)) {
                        names.push(name(*c));
                    }
                }
                (r.1.clone(), names.join(" "))
            })
            .collect();
        let mbb: Vec<(String, String)> = raw
            .iter()
            .map(|r| (r.1.clone(), r.4.iter().map(|(b, _)| fmt_box(*b)).collect::<Vec<_>>().join(" ")))
            .collect();

        let f = |n: &str| dir.path().join(format!("{split}_{n}.csv"));
        ds.write_lrg_csv(f("lrg")).unwrap();
        ds.write_bb_csv(f("bb")).unwrap();
        ds.write_mc_csv(f("mc")).unwrap();
        ds.write_mbb_csv(f("mbb")).unwrap();
        for (file, header, want) in [
            (f("lrg"), "fn,cat", &lrg),
            (f("bb"), "fn,bbox", &bb),
            (f("mc"), "fn,clas", &mc),
            (f("mbb"), "fn,bbox", &mbb),
        ] {
            let (h, rows) = read_csv(&file);
            assert_eq!(h, header, "{}", file.display());
            assert_eq!(rows.len(), ds.len(), "{}", file.display());
            assert_eq!(rows[0], want[0], "{}", file.display());
            assert_eq!(&rows, want, "{}", file.display());
            // Plain text, one line per image plus the header.
            assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), ds.len() + 1);
        }
        if split == "train" {
            // Hand-checked first rows (image 30: one pottedplant [31 205 354 459]).
            let text = std::fs::read_to_string(f("lrg")).unwrap();
            assert!(text.starts_with("fn,cat\n000000000030.jpg,pottedplant\n"), "{text}");
            let text = std::fs::read_to_string(f("bb")).unwrap();
            assert!(text.starts_with("fn,bbox\n000000000030.jpg,31 205 354 459\n"), "{text}");
        }
    }
}

#[test]
fn images_decode_to_the_annotated_size() {
    let p = pascal();
    for split in ["train", "val"] {
        let ds = p.json(split).unwrap();
        for i in 0..ds.len() {
            let im = ds.image(i).unwrap_or_else(|e| panic!("{e}"));
            let r = &ds.images[i];
            assert_eq!(im.dimensions(), (r.width, r.height), "{}", r.file_name);
            assert_eq!(im.as_raw().len(), (r.width * r.height * 3) as usize);
            // A real photo: not a single colour, and the channels are not all equal (not grey).
            let px = im.as_raw();
            assert!(px.iter().any(|&v| v != px[0]), "{}", r.file_name);
            if i < 3 {
                assert_eq!(open_image(ds.path(i)).unwrap(), im);
            }
        }
        assert!(ds.image(ds.len()).is_err());
    }
    // At least most sample photos are in colour.
    let ds = p.json("val").unwrap();
    let coloured =
        (0..ds.len()).filter(|&i| ds.image(i).unwrap().pixels().any(|q| q.0[0] != q.0[1] || q.0[1] != q.0[2])).count();
    assert!(coloured >= ds.len() - 1, "{coloured} of {}", ds.len());
}

#[test]
fn cv_idxs_equal_numpy() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cv_idxs.json");
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let val_pct = golden["val_pct"].as_f64().unwrap();
    assert_eq!(val_pct, 0.2);
    let cases = golden["cases"].as_array().unwrap();
    let mut seen = vec![];
    for c in cases {
        let n = c["n"].as_u64().unwrap() as usize;
        let seed = c["seed"].as_u64().unwrap() as u32;
        seen.push((n, seed));
        let want: Vec<usize> = c["idxs"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let got = get_cv_idxs(n, val_pct, seed).unwrap();
        assert_eq!(got.len(), (0.2 * n as f64) as usize);
        assert_eq!(got, want, "n={n} seed={seed}");
        assert_eq!(get_cv_idxs(n, val_pct, seed).unwrap(), got, "deterministic");
        // The whole permutation (val_pct = 1) starts like numpy's.
        let head: Vec<usize> =
            c["permutation_head"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let perm = get_cv_idxs(n, 1.0, seed).unwrap();
        assert_eq!(perm.len(), n);
        assert_eq!(perm[..head.len()], head[..], "permutation n={n} seed={seed}");
        let mut sorted = perm.clone();
        sorted.sort_unstable();
        assert!(sorted.iter().copied().eq(0..n));
    }
    for required in [(5011, 42), (65, 42), (1, 42), (1000, 7)] {
        assert!(seen.contains(&required), "{required:?} missing from the golden file");
    }
    // Known head of the lesson's split (VOC2007 trainval, 5011 images, seed 42).
    assert_eq!(get_cv_idxs(5011, 0.2, 42).unwrap()[..5], [1052, 3074, 1789, 764, 3822]);
}

#[test]
fn cv_idxs_rejects_bad_percentages() {
    for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
        assert!(get_cv_idxs(10, bad, 42).is_err(), "{bad}");
    }
    assert_eq!(get_cv_idxs(10, 0.0, 42).unwrap(), Vec::<usize>::new());
    assert!(get_cv_idxs(0, 0.2, 42).unwrap().is_empty());
}

/// The loader's decoding: a photo at least twice the size decoded at a reduced DCT scale
/// (libjpeg-turbo) gives the size and factors of decoding it whole and scaling it, and nearly
/// the same pixels; a small target decodes whole.
#[test]
fn reduced_jpeg_decoding_matches_the_full_decode() {
    use fastdet::data::{decode_jpeg_reduced, decode_scaled};
    use fastdet::transforms::scale_to;
    let ds = Pascal::open(sample_root()).unwrap().json("train").unwrap();
    let (mut reduced, mut diffs) = (0, vec![]);
    for i in 0..ds.len() {
        let bytes = std::fs::read(ds.path(i)).unwrap();
        let (want, wsy, wsx) = scale_to(&ds.image(i).unwrap(), 224).unwrap();
        for (got, sy, sx) in [decode_scaled(&bytes, 224).unwrap(), ds.image_scaled(i, 224).unwrap()] {
            assert_eq!((got.dimensions(), sy, sx), (want.dimensions(), wsy, wsx), "image {i}");
            // Compared as 8x8-block means: grass and fur differ pixel by pixel under the
            // sub-pixel offsets of two filters; geometry and colour must not.
            let blocks = |im: &image::RgbImage| {
                image::imageops::resize(im, im.width() / 8, im.height() / 8, image::imageops::FilterType::Triangle)
            };
            let (g, w) = (blocks(&got), blocks(&want));
            let mean = g.as_raw().iter().zip(w.as_raw()).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum::<f64>()
                / g.as_raw().len() as f64;
            // DCT scaling averages before the colour conversion clips, so saturated colours
            // shift by a few levels (PIL's `draft` gives the same: 4.6 on the blue of image 45).
            assert!(mean < 3.5, "image {i}: {mean:.2} levels from the full decode on average (8x8 blocks)");
            diffs.push(mean);
        }
        let rec = &ds.images[i];
        if let Some((img, full)) = decode_jpeg_reduced(&bytes, 224, 224) {
            assert_eq!(full, (rec.width, rec.height));
            assert!(img.width() >= 224 && img.height() >= 224 && img.width() < rec.width);
            reduced += 1;
        }
    }
    let avg = diffs.iter().sum::<f64>() / diffs.len() as f64;
    assert!(avg < 1.5, "{avg:.2} levels from the full decode on average over the sample");
    assert!(reduced >= ds.len() / 2, "most sample photos (640 px) are reduced for 224: {reduced} of {}", ds.len());
    // Nothing to reduce: the target is the image's own size.
    let bytes = std::fs::read(ds.path(0)).unwrap();
    assert!(decode_jpeg_reduced(&bytes, ds.images[0].width, ds.images[0].height).is_none());
    assert!(decode_jpeg_reduced(b"not a jpeg", 10, 10).is_none());
}

/// The loader keeps a JPEG decoded at a reduced DCT scale (320x240 for 299x224) and samples it
/// straight through the composed map (`Tfms::apply_warp`): the same plan and boxes as the image
/// resized to its scaled size first (`Tfms::apply_scaled`), and nearly the same pixels. A map
/// composed wrongly (the change of resolution left out, or applied the wrong way) moves or crops
/// the picture, which the pixel comparison catches.
#[test]
fn warping_a_reduced_decode_matches_resizing_it_first() {
    use fastdet::transforms::{lesson_augmentations, CropType, TfmY, Tfms};
    let ds = Pascal::open(sample_root()).unwrap().json("train").unwrap();
    let tfms = Tfms::new(224, lesson_augmentations(), CropType::No, TfmY::Coord).unwrap();
    let (mut larger, mut worst) = (0, 0f64);
    for i in 0..ds.len() {
        let s = ds.image_for_warp(i, 224).unwrap();
        let scaled = s.to_scaled().unwrap();
        assert_eq!(scaled.dimensions(), s.size, "image {i}");
        if s.pixels.dimensions() == s.size {
            continue;
        }
        larger += 1;
        let boxes: Vec<BBox> = ds.annotations(i).into_iter().map(|(b, _)| b).collect();
        for seed in 0..4 {
            let (a, b) = (tfms.apply_warp(&s, &boxes, seed), tfms.apply_scaled(&scaled, (s.sy, s.sx), &boxes, seed));
            assert_eq!((&a.boxes, &a.kept), (&b.boxes, &b.kept), "image {i}, seed {seed}");
            // As 8x8-block means: foliage differs pixel by pixel between two filters (9 levels on
            // image 3 at full resolution, where the pictures look the same); geometry must not.
            let blocks =
                |im: &image::RgbImage| image::imageops::resize(im, 28, 28, image::imageops::FilterType::Triangle);
            let (ra, rb) = (blocks(&a.to_rgb()), blocks(&b.to_rgb()));
            let mean = ra.as_raw().iter().zip(rb.as_raw()).map(|(&x, &y)| (x as f64 - y as f64).abs()).sum::<f64>()
                / ra.as_raw().len() as f64;
            assert!(
                mean < 3.0,
                "image {i}, seed {seed}: {mean:.2} levels from resizing first, on average (8x8 blocks)"
            );
            worst = worst.max(mean);
        }
    }
    eprintln!(
        "{larger} images warped from their reduced decode; largest mean difference {worst:.2} levels (8x8 blocks)"
    );
    assert!(larger >= ds.len() / 3, "most 640x480 photos keep their 320x240 decode: {larger} of {}", ds.len());
}
