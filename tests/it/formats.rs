//! Datasets in other formats (src/data/formats.rs): COCO and YOLO written from a few images of
//! the bundled sample, read back and compared box by box to the pixel; detection of each
//! layout; the splits; and each bad input with its exact message.

use fastdet::data::{export, open_dataset, sample_root, DataSource, Dataset, Format, Pascal};
use fastdet::Error;
use std::path::{Path, PathBuf};

/// A new empty folder under the system's temp folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("fastdet-formats-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The first `n` images of a split of the sample, one object made difficult (so the ignored flag
/// goes through COCO) where there is more than one object.
fn few(split: &str, n: usize) -> Dataset {
    let ds = Pascal::open(sample_root()).unwrap().json(split).unwrap();
    let mut ds = ds.subset(&(0..n).collect::<Vec<_>>());
    if let Some(r) = ds.images.iter_mut().find(|r| r.objects.len() > 1) {
        r.objects[1].difficult = true;
    }
    ds
}

/// Every image (by file name), every box to the pixel, every class name and difficult flag
/// (YOLO has no difficult objects: `with_difficult` false leaves them out of `a`).
fn assert_same(a: &Dataset, b: &Dataset, with_difficult: bool) {
    assert_eq!(a.len(), b.len());
    for ra in &a.images {
        let rb = b.images.iter().find(|r| r.file_name == ra.file_name).expect(&ra.file_name);
        assert_eq!((ra.width, ra.height), (rb.width, rb.height), "{}", ra.file_name);
        let objs = |ds: &Dataset, r: &fastdet::data::ImageRecord| -> Vec<(fastdet::boxes::BBox, String, bool)> {
            r.objects
                .iter()
                .filter(|o| with_difficult || !o.difficult)
                .map(|o| (o.bbox, ds.classes[o.class].clone(), o.difficult))
                .collect()
        };
        assert_eq!(objs(a, ra), objs(b, rb), "{}", ra.file_name);
    }
}

#[test]
fn coco_and_yolo_round_trip_to_the_pixel() {
    let dir = TempDir::new("round-trip");
    let sets = vec![(Some("train".to_string()), few("train", 4)), (Some("val".to_string()), few("val", 2))];

    let coco = dir.0.join("coco");
    let w = export(&sets, Format::Coco, &coco).unwrap();
    assert_eq!((w.images, w.left_out), (6, 0));
    let src = DataSource::detect(&coco).unwrap();
    assert_eq!((src.format, src.split_names()), (Format::Coco, vec!["train", "val"]));
    for (name, ds) in &sets {
        let back = src.open(name.as_deref().unwrap()).unwrap();
        assert_eq!(back.classes, ds.classes);
        assert_same(ds, &back, true);
    }

    let yolo = dir.0.join("yolo");
    let w = export(&sets, Format::Yolo, &yolo).unwrap();
    assert_eq!(w.left_out, 2, "the one difficult object of each split");
    let src = DataSource::detect(&yolo).unwrap();
    assert_eq!((src.format, src.split_names()), (Format::Yolo, vec!["train", "val"]));
    let trn = src.open("train").unwrap();
    assert_eq!(trn.classes, sets[0].1.classes);
    assert!(trn.warnings.is_empty(), "{:?}", trn.warnings);
    assert_same(&sets[0].1, &trn, false);

    // COCO -> YOLO -> COCO: the same pixels again.
    let again = dir.0.join("coco-again");
    export(&src.open_all().unwrap(), Format::Coco, &again).unwrap();
    let back = open_dataset(&again, "val").unwrap();
    assert_same(&sets[1].1, &back, false);

    // One set (no split): train opens it all, val is the seeded 20 %.
    let one = dir.0.join("one");
    export(&[(None, few("train", 10))], Format::Yolo, &one).unwrap();
    let src = DataSource::detect(&one).unwrap();
    assert!(src.splits.is_empty());
    assert_eq!(src.open("train").unwrap().len(), 10);
    let val = src.open("val").unwrap();
    let idx = fastdet::data::get_cv_idxs(10, 0.2, 42).unwrap();
    let all = src.open("all").unwrap();
    assert_eq!(val.images, idx.iter().map(|&i| all.images[i].clone()).collect::<Vec<_>>());
    let e = src.open("test").unwrap_err();
    assert!(e.to_string().contains("has no split \"test\""), "{e}");

    // A folder that is not empty is not written into.
    let e = export(&sets, Format::Yolo, &yolo).unwrap_err();
    assert_eq!(e.to_string(), format!("{}: is not empty: give a new or empty folder", yolo.display()));
}

#[test]
fn formats_are_detected() {
    let root = sample_root();
    assert_eq!(DataSource::detect(&root).unwrap().format, Format::LessonJson);
    let voc = DataSource::detect(root.join("VOCdevkit/VOC2007")).unwrap();
    assert_eq!((voc.format, voc.split_names()), (Format::VocXml, vec!["train", "val"]));
    // The lesson's JSON and the XML give the same data.
    let (a, b) = (open_dataset(&root, "val").unwrap(), voc.open("val").unwrap());
    assert_eq!(a.classes, b.classes);
    assert_eq!(a.images, b.images);
    let file = DataSource::detect(root.join("pascal_val2007.json")).unwrap();
    assert_eq!(file.open("whatever").unwrap().len(), 13);
    let e = DataSource::detect(root.join("VOCdevkit")).unwrap_err();
    assert!(e.to_string().contains("no dataset found"), "{e}");
    let e = DataSource::with_format(&root, Format::Yolo).unwrap_err();
    assert!(e.to_string().contains("not in the layout of YOLO"), "{e}");
}

/// VOC XML with its own classes and no split file: the names come from the XML, sorted.
#[test]
fn voc_xml_with_its_own_classes() {
    let dir = TempDir::new("voc-own");
    let voc = dir.0.join("mine");
    std::fs::create_dir_all(voc.join("Annotations")).unwrap();
    std::fs::create_dir_all(voc.join("JPEGImages")).unwrap();
    let img = sample_root().join("VOCdevkit/VOC2007/JPEGImages/000000000030.jpg");
    std::fs::copy(&img, voc.join("JPEGImages/a.jpg")).unwrap();
    let (w, h) = image::image_dimensions(&img).unwrap();
    let obj = |name: &str, x: u32| {
        format!("<object><name>{name}</name><bndbox><xmin>{x}</xmin><ymin>1</ymin><xmax>{}</xmax><ymax>10</ymax></bndbox></object>", x + 9)
    };
    let xml = format!(
        "<annotation><filename>a.jpg</filename><size><width>{w}</width><height>{h}</height></size>{}{}</annotation>",
        obj("zebra", 1),
        obj("apple", 20)
    );
    std::fs::write(voc.join("Annotations/a.xml"), xml).unwrap();
    let src = DataSource::detect(&voc).unwrap();
    assert_eq!(src.format, Format::VocXml);
    let ds = src.open("train").unwrap();
    assert_eq!(ds.classes, ["apple", "zebra"]);
    assert_eq!(ds.images[0].objects.iter().map(|o| o.class).collect::<Vec<_>>(), [1, 0]);
    assert_eq!(ds.images[0].objects[0].bbox, fastdet::boxes::BBox::new(0., 0., 9., 9.));
}

/// A YOLO folder of one image `a.jpg` (the sample's first) with `label` as its label file and
/// `names` as data.yaml. Returns the folder and the image size.
fn yolo_folder(dir: &Path, label: Option<&str>, names: &str) -> (PathBuf, u32, u32) {
    let root = dir.join("yolo");
    std::fs::create_dir_all(root.join("images")).unwrap();
    std::fs::create_dir_all(root.join("labels")).unwrap();
    let img = sample_root().join("VOCdevkit/VOC2007/JPEGImages/000000000030.jpg");
    std::fs::copy(&img, root.join("images/a.jpg")).unwrap();
    std::fs::copy(&img, root.join("images/b.jpg")).unwrap();
    std::fs::write(root.join("labels/b.txt"), "").unwrap();
    if let Some(l) = label {
        std::fs::write(root.join("labels/a.txt"), l).unwrap();
    }
    std::fs::write(root.join("data.yaml"), names).unwrap();
    let (w, h) = image::image_dimensions(&img).unwrap();
    (root, w, h)
}

fn yolo_error(label: &str) -> String {
    let dir = TempDir::new("yolo-bad");
    let (root, ..) = yolo_folder(&dir.0, Some(label), "names: [cat, dog]\n");
    let e = open_dataset(&root, "train").unwrap_err();
    assert!(matches!(e, Error::Label { .. }), "{e:?}");
    e.to_string().replace(&root.display().to_string(), "YOLO")
}

#[test]
fn bad_yolo_labels_name_the_file_and_line() {
    assert_eq!(
        yolo_error("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n"),
        "YOLO/labels/a.txt:2: expected 5 numbers (class cx cy w h), found 4"
    );
    assert_eq!(
        yolo_error("\n2 0.5 0.5 0.2 0.2\n"),
        "YOLO/labels/a.txt:2: class 2 is out of range: YOLO/data.yaml names 2 classes (0 to 1)"
    );
    assert_eq!(
        yolo_error("0 1.7 0.5 0.2 0.2\n"),
        "YOLO/labels/a.txt:1: cx is 1.7, outside [0, 1] (YOLO coordinates are fractions of the image size)"
    );
    assert_eq!(yolo_error("0 0.5 0.5 x 0.2\n"), "YOLO/labels/a.txt:1: w is \"x\", not a number");
    let e = yolo_error("0 0.95 0.5 0.2 0.2\n");
    assert!(e.starts_with("YOLO/labels/a.txt:1: box (x y w h = ") && e.contains("reaches outside"), "{e}");
}

#[test]
fn an_image_with_no_label_file_has_no_objects_said_once() {
    let dir = TempDir::new("yolo-unlabelled");
    let (root, w, h) = yolo_folder(&dir.0, None, "names:\n  0: cat\n  1: dog\n");
    let ds = open_dataset(&root, "train").unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.num_objects(), 0);
    assert_eq!(
        ds.warnings,
        [format!(
            "{}: 1 of 2 images have no label file (counted as images with no objects), the first a.jpg",
            root.join("labels").display()
        )]
    );
    // A whole-image box reads as the whole image.
    std::fs::write(root.join("labels/a.txt"), "1 0.5 0.5 1 1\n").unwrap();
    let ds = open_dataset(&root, "train").unwrap();
    assert_eq!(ds.images[0].objects[0].bbox, fastdet::boxes::BBox::new(0., 0., h as f32 - 1., w as f32 - 1.));
    assert_eq!(ds.images[0].objects[0].class, 1);
    assert!(ds.warnings.is_empty());
}

/// A COCO file of one image with these annotations and categories (JSON text).
fn coco_file(dir: &Path, images: &str, annotations: &str, categories: &str) -> PathBuf {
    let root = dir.join("coco");
    std::fs::create_dir_all(root.join("images")).unwrap();
    let img = sample_root().join("VOCdevkit/VOC2007/JPEGImages/000000000030.jpg");
    std::fs::copy(img, root.join("images/a.jpg")).unwrap();
    let path = root.join("annotations.json");
    let text = format!(r#"{{"images": {images}, "annotations": {annotations}, "categories": {categories}}}"#);
    std::fs::write(&path, text).unwrap();
    root
}

#[test]
fn coco_ids_need_not_be_contiguous_and_crowds_are_ignored() {
    let dir = TempDir::new("coco-ids");
    let (w, h) = image::image_dimensions(sample_root().join("VOCdevkit/VOC2007/JPEGImages/000000000030.jpg")).unwrap();
    let images = format!(r#"[{{"id": 7, "file_name": "a.jpg", "width": {w}, "height": {h}}}]"#);
    let anns = r#"[{"id": 1, "image_id": 7, "category_id": 90, "bbox": [1, 2, 30, 40], "iscrowd": 1},
                   {"id": 2, "image_id": 7, "category_id": 5, "bbox": [10, 20, 3, 4]}]"#;
    let cats = r#"[{"id": 90, "name": "toothbrush"}, {"id": 5, "name": "airplane"}, {"id": 40, "name": "glove"}]"#;
    let root = coco_file(&dir.0, &images, anns, cats);
    let src = DataSource::detect(&root).unwrap();
    assert_eq!((src.format, src.splits.len()), (Format::Coco, 0));
    let ds = src.open("train").unwrap();
    assert_eq!(ds.classes, ["airplane", "glove", "toothbrush"]);
    let objs: Vec<_> = ds.images[0].objects.iter().map(|o| (o.class, o.difficult, o.bbox.to_xywh())).collect();
    assert_eq!(objs, [(2, true, [1., 2., 30., 40.]), (0, false, [10., 20., 3., 4.])]);
    // A category no annotation uses stays a class, with one warning naming the file.
    assert_eq!(
        ds.warnings,
        [format!(
            "{}: category ids used by no annotation (kept as classes): 40 (\"glove\")",
            root.join("annotations.json").display()
        )]
    );
}

/// Issue 22: a COCO dataset whose category ids are not 1..=n keeps them. Results files carry
/// those ids both ways (`save_coco_results` writes them, `fastdet eval` reads them), an id the
/// dataset does not have is an error listing the ones it has, and `fastdet data convert` to
/// COCO keeps them.
#[test]
fn fastdet_eval_on_a_coco_dataset_with_its_own_category_ids() {
    use fastdet::metrics::{evaluate, load_coco_results, save_coco_results, ApMetric, Detection};
    let dir = TempDir::new("coco-eval-ids");
    let (w, h) = image::image_dimensions(sample_root().join("VOCdevkit/VOC2007/JPEGImages/000000000030.jpg")).unwrap();
    let images = format!(r#"[{{"id": 7, "file_name": "a.jpg", "width": {w}, "height": {h}}}]"#);
    let anns = r#"[{"id": 1, "image_id": 7, "category_id": 90, "bbox": [1, 2, 30, 40]},
                   {"id": 2, "image_id": 7, "category_id": 5, "bbox": [100, 120, 50, 60]}]"#;
    let cats = r#"[{"id": 90, "name": "toothbrush"}, {"id": 5, "name": "airplane"}, {"id": 40, "name": "glove"}]"#;
    let root = coco_file(&dir.0, &images, anns, cats);
    let ds = open_dataset(&root, "all").unwrap();
    assert_eq!(ds.category_ids, [5, 40, 90]);
    assert_eq!((ds.category_id(2), ds.class_of_category(90), ds.class_of_category(1)), (90, Some(2), None));

    // The truth as detections, written with the dataset's ids and read back the same.
    let dets: Vec<Detection> = ds.images[0]
        .objects
        .iter()
        .map(|o| Detection { image_id: 7, class: o.class, bbox: o.bbox, score: 0.9 })
        .collect();
    let results = dir.0.join("dets.json");
    save_coco_results(&results, &dets, &ds).unwrap();
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    let ids: Vec<u64> = written.as_array().unwrap().iter().map(|d| d["category_id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [90, 5]);
    assert_eq!(load_coco_results(&results, &ds).unwrap(), dets);
    let table = evaluate(&ds, &dets, ApMetric::Voc07).unwrap();
    // `fastdet eval --split all --data ROOT --detections RESULTS [extra]`.
    let eval = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fastdet"))
            .args(["eval", "--split", "all", "--data"])
            .arg(&root)
            .arg("--detections")
            .arg(&results)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = eval(&["--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["map"].as_f64().unwrap(), table.map);
    assert!(
        (table.map - 1.0).abs() < 1e-9,
        "the truth scores a perfect mAP on the two classes with objects: {}",
        table.map
    );

    // An id the dataset does not have (the lesson's class + 1) names the ids it has.
    std::fs::write(&results, r#"[{"image_id": 7, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.5}]"#).unwrap();
    let out = eval(&[]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("dets.json") && e.contains("entry 0: unknown category_id 1 (the dataset's are [5, 40, 90])"),
        "{e}"
    );

    // Converted to COCO the ids stay; to YOLO and back they become 1..=n (YOLO has none).
    let coco = dir.0.join("as-coco");
    export(&[(None, ds.clone())], Format::Coco, &coco).unwrap();
    assert_eq!(open_dataset(&coco, "all").unwrap().category_ids, [5, 40, 90]);
    let yolo = dir.0.join("as-yolo");
    export(&[(None, ds.clone())], Format::Yolo, &yolo).unwrap();
    let back = open_dataset(&yolo, "all").unwrap();
    assert_eq!((back.classes.clone(), back.category_id(2)), (ds.classes.clone(), 3));
}

#[test]
fn coco_duplicate_image_ids_and_unknown_categories_are_errors() {
    let dir = TempDir::new("coco-bad");
    let im = r#"{"id": 7, "file_name": "a.jpg", "width": 640, "height": 480}"#;
    let root = coco_file(&dir.0, &format!("[{im}, {im}]"), "[]", r#"[{"id": 1, "name": "a"}]"#);
    let e = open_dataset(&root, "train").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: image 7: image id is listed twice", root.join("annotations.json").display())
    );

    let anns = r#"[{"id": 3, "image_id": 7, "category_id": 2, "bbox": [1, 2, 3, 4]}]"#;
    let root = coco_file(&dir.0, &format!("[{im}]"), anns, r#"[{"id": 1, "name": "a"}]"#);
    let e = open_dataset(&root, "train").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: image 7: annotation 3 has unknown category_id 2", root.join("annotations.json").display())
    );
}

/// `fastdet data convert` then `fastdet data info` on what it wrote.
#[test]
fn fastdet_data_convert_and_info() {
    let dir = TempDir::new("cli");
    let out = dir.0.join("yolo");
    let run = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_fastdet")).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let s = |x: &str| std::ffi::OsString::from(x);
    let root = sample_root().into_os_string();
    let text = run(&[&s("data"), &s("convert"), &root, &s("--to"), &s("yolo"), out.as_os_str()]);
    assert!(text.contains("(YOLO): 65 images, 312 objects"), "{text}");
    let text = run(&[&s("data"), &s("info"), out.as_os_str()]);
    assert!(text.starts_with(&format!("{}: YOLO\n", out.display())), "{text}");
    assert!(text.contains("split val: 13 images, 86 objects (0 ignored), 20 classes, 0 warnings"), "{text}");
}

/// A config's `val_split` validates on the data's own split; without it, the seeded 20 %.
#[test]
fn training_data_from_a_given_split() {
    use fastdet::data::{DataOpts, ImageData, TargetKind};
    use fastdet::transforms::{tfms_from_model, CropType, TfmY};
    let (trn, val) = (few("train", 6), few("val", 3));
    let tfms = tfms_from_model(64, vec![], CropType::No, TfmY::Coord).unwrap();
    let opts = DataOpts::new(2, tch::Device::Cpu);
    let data = ImageData::from_split(trn.clone(), val.clone(), TargetKind::AllBoxes, tfms.clone(), opts).unwrap();
    assert_eq!((data.trn_dl.dataset.len(), data.val_dl.dataset.len()), (6, 3));
    let mut other = val;
    other.classes[0] = "plane".into();
    let e = ImageData::from_split(trn, other, TargetKind::AllBoxes, tfms, opts).err().unwrap();
    assert!(e.to_string().contains("has other classes than the training set"), "{e}");

    let cfg =
        fastdet::train::TrainConfig::from_json_str(r#"{"data": "d", "format": "yolo", "val_split": "val"}"#).unwrap();
    assert_eq!((cfg.format, cfg.val_split.as_deref()), (Some(Format::Yolo), Some("val")));
    let same = fastdet::train::TrainConfig { val_split: Some("train".into()), ..cfg };
    let e = same.validate().unwrap_err();
    assert_eq!(e.to_string(), "config: val_split: is the training split: validate on another one");
}

/// `ImageData::from_source` (notebook 07's data): a folder with train and val splits trains and
/// validates on them; a folder of one set keeps the seeded 20 % for validation; splits without a
/// validation split are an error naming the ones there are.
#[test]
fn training_data_from_a_source_follows_its_splits() {
    use fastdet::data::{DataOpts, ImageData, TargetKind};
    use fastdet::transforms::{tfms_from_model, CropType, TfmY};
    let dir = TempDir::new("from-source");
    let tfms = tfms_from_model(64, vec![], CropType::No, TfmY::Coord).unwrap();
    let opts = DataOpts::new(2, tch::Device::Cpu);
    let load = |path: &Path| {
        ImageData::from_source(&DataSource::detect(path).unwrap(), TargetKind::AllBoxes, tfms.clone(), opts)
    };
    let split = |name: &str, ds: Dataset| (Some(name.to_string()), ds);
    let both = dir.0.join("both");
    export(&[split("train", few("train", 6)), split("val", few("val", 3))], Format::Yolo, &both).unwrap();
    let data = load(&both).unwrap();
    assert_eq!((data.trn_dl.dataset.len(), data.val_dl.dataset.len()), (6, 3));
    let one = dir.0.join("one");
    export(&[(None, few("train", 10))], Format::Coco, &one).unwrap();
    let data = load(&one).unwrap();
    assert_eq!((data.trn_dl.dataset.len(), data.val_dl.dataset.len()), (8, 2), "the seeded 20 %");
    let odd = dir.0.join("odd");
    export(&[split("train", few("train", 4)), split("extra", few("val", 2))], Format::Coco, &odd).unwrap();
    let e = load(&odd).err().unwrap().to_string();
    assert!(e.contains("has the splits extra, train") && e.contains("a validation split"), "{e}");
}
