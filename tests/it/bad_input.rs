//! Broken and unusual input: every problem is an `Err` (never a panic) whose message names the
//! file, the image and the problem; unusual image modes decode to RGB.
//!
//! Small datasets are built in a tempdir from 3 images of the bundled sample; the tiny odd images
//! in tests/data/ were made by tests/golden/make_odd_images.py.

use fastdet::data::{open_image, sample_root, Dataset, Pascal, VOC_CLASSES};
use fastdet::Error;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// (stem, width, height) of the sample images copied into each test dataset.
const IMAGES: [(&str, u32, u32); 3] =
    [("000000000030", 640, 428), ("000000000036", 481, 640), ("000000000049", 381, 500)];

fn odd(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// An image's stem, width, height and objects: (name, xmin, ymin, xmax, ymax).
type VocEntry<'a> = (&'a str, u32, u32, &'a [(&'a str, i32, i32, i32, i32)]);

struct Fixture {
    dir: TempDir,
}

impl Fixture {
    /// A dataset root in the lesson's layout with the 3 images and an empty split file.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture { dir };
        std::fs::create_dir_all(f.jpegs()).unwrap();
        std::fs::create_dir_all(f.voc().join("Annotations")).unwrap();
        std::fs::create_dir_all(f.voc().join("ImageSets/Main")).unwrap();
        let src = Pascal::open(sample_root()).unwrap().image_dir();
        for (stem, _, _) in IMAGES {
            std::fs::copy(src.join(format!("{stem}.jpg")), f.jpegs().join(format!("{stem}.jpg"))).unwrap();
        }
        f
    }
    fn root(&self) -> &Path {
        self.dir.path()
    }
    fn voc(&self) -> PathBuf {
        self.root().join("VOCdevkit/VOC2007")
    }
    fn jpegs(&self) -> PathBuf {
        self.voc().join("JPEGImages")
    }
    fn pascal(&self) -> Pascal {
        Pascal::open(self.root()).unwrap()
    }
    fn json_path(&self) -> PathBuf {
        self.root().join("pascal_train2007.json")
    }
    fn write_json(&self, v: &Value) {
        std::fs::write(self.json_path(), serde_json::to_string(v).unwrap()).unwrap();
    }
    fn xml_path(&self, stem: &str) -> PathBuf {
        self.voc().join("Annotations").join(format!("{stem}.xml"))
    }
    /// Write `train.txt` listing `stems` and one XML per stem with `objects` = (name, xmin, ymin, xmax, ymax).
    fn write_voc(&self, entries: &[VocEntry]) {
        let list: String = entries.iter().map(|(s, ..)| format!("{s}\n")).collect();
        std::fs::write(self.voc().join("ImageSets/Main/train.txt"), list).unwrap();
        for (stem, w, h, objs) in entries {
            std::fs::write(self.xml_path(stem), voc_xml(stem, *w, *h, objs)).unwrap();
        }
    }
}

fn voc_xml(stem: &str, w: u32, h: u32, objs: &[(&str, i32, i32, i32, i32)]) -> String {
    let mut s = format!(
        "<annotation>\n<folder>VOC2007</folder>\n<filename>{stem}.jpg</filename>\n\
         <size><width>{w}</width><height>{h}</height><depth>3</depth></size>\n<segmented>0</segmented>\n"
    );
    for (name, xmin, ymin, xmax, ymax) in objs {
        s += &format!(
            "<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>\
             <bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>\n"
        );
    }
    s + "</annotation>\n"
}

fn categories() -> Value {
    Value::Array(
        VOC_CLASSES.iter().enumerate().map(|(i, n)| json!({"supercategory": "none", "id": i + 1, "name": n})).collect(),
    )
}

fn image_entry(stem: &str, w: u32, h: u32) -> Value {
    json!({"file_name": format!("{stem}.jpg"), "width": w, "height": h, "id": stem.parse::<u64>().unwrap()})
}

/// A valid JSON of the 3 images, one person box each, plus `extra` annotations.
fn good_json(extra: Vec<Value>) -> Value {
    let images: Vec<Value> = IMAGES.iter().map(|&(s, w, h)| image_entry(s, w, h)).collect();
    let mut anns: Vec<Value> = IMAGES
        .iter()
        .enumerate()
        .map(|(i, &(s, _, _))| {
            json!({"id": i + 1, "image_id": s.parse::<u64>().unwrap(), "category_id": 15, "bbox": [10, 20, 30, 40], "ignore": 0})
        })
        .collect();
    anns.extend(extra);
    json!({"images": images, "annotations": anns, "categories": categories(), "type": "instances"})
}

fn ann(id: u64, image_id: u64, category_id: u64, bbox: [i64; 4]) -> Value {
    json!({"id": id, "image_id": image_id, "category_id": category_id, "bbox": bbox, "ignore": 0})
}

#[track_caller]
fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error message {msg:?} does not mention {p:?}");
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn the_fixture_itself_loads() {
    let f = Fixture::new();
    f.write_json(&good_json(vec![]));
    let ds = f.pascal().json("train").unwrap();
    assert_eq!((ds.len(), ds.num_objects()), (3, 3));
    assert!(ds.warnings.is_empty());
    for (i, (_, w, h)) in IMAGES.iter().enumerate() {
        assert_eq!(ds.image(i).unwrap().dimensions(), (*w, *h));
    }
    f.write_voc(&[(IMAGES[0].0, 640, 428, &[("person", 11, 21, 40, 60)])]);
    let v = f.pascal().voc("train").unwrap();
    assert_eq!(v.images[0].objects, ds.images[0].objects);
}

#[test]
fn missing_dataset_folder() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-pascal");
    let e = Pascal::open(&missing).unwrap_err();
    assert!(matches!(e, Error::MissingDataset { .. }), "{e:?}");
    assert_mentions(&e.to_string(), &[&s(&missing), "not found"]);

    let e = Dataset::from_voc(missing.join("VOCdevkit/VOC2007"), "train").unwrap_err();
    assert!(matches!(e, Error::MissingDataset { .. }), "{e:?}");
    assert_mentions(&e.to_string(), &["no-such-pascal", "not found"]);

    // A root without its JSON, or without the split file: an I/O error naming the file.
    let f = Fixture::new();
    let e = f.pascal().json("train").unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert_mentions(&e.to_string(), &[&s(&f.json_path())]);
    let e = f.pascal().voc("val").unwrap_err();
    assert_mentions(&e.to_string(), &["ImageSets", "val.txt"]);

    // A JSON whose image folder is missing.
    let e = Dataset::from_json(f.json_path(), f.root().join("nope")).unwrap_err();
    f.write_json(&good_json(vec![]));
    let e2 = Dataset::from_json(f.json_path(), f.root().join("nope")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert!(matches!(e2, Error::MissingDataset { .. }), "{e2:?}");
    assert_mentions(&e2.to_string(), &["nope", "pascal_train2007.json"]);
}

#[test]
fn json_lists_an_image_missing_on_disk() {
    let f = Fixture::new();
    let mut j = good_json(vec![]);
    j["images"].as_array_mut().unwrap().push(image_entry("000000000777", 100, 100));
    f.write_json(&j);
    let e = f.pascal().json("train").unwrap_err();
    assert!(matches!(e, Error::Image { .. }), "{e:?}");
    assert_mentions(&e.to_string(), &["000000000777.jpg", "777", "not found", "pascal_train2007.json"]);

    // The same through the XML loader.
    f.write_voc(&[(IMAGES[0].0, 640, 428, &[]), ("000000000777", 100, 100, &[("dog", 1, 1, 5, 5)])]);
    let e = f.pascal().voc("train").unwrap_err();
    assert_mentions(&e.to_string(), &["000000000777.jpg", "000000000777", "not found", "train.txt"]);

    // An image deleted after loading: Dataset::image says so.
    f.write_json(&good_json(vec![]));
    let ds = f.pascal().json("train").unwrap();
    std::fs::remove_file(f.jpegs().join("000000000036.jpg")).unwrap();
    let e = ds.image(1).unwrap_err();
    assert_mentions(&e.to_string(), &["000000000036.jpg", "image 36", "not found"]);
}

#[test]
fn xml_names_a_missing_annotation_file() {
    let f = Fixture::new();
    std::fs::write(f.voc().join("ImageSets/Main/train.txt"), "000000000030\n").unwrap();
    let e = f.pascal().voc("train").unwrap_err();
    assert_mentions(&e.to_string(), &[&s(&f.xml_path("000000000030"))]);
}

/// A dataset of one image file `name` (copied from `src`) annotated as `w x h`.
fn one_image(f: &Fixture, name: &str, id: u64, w: u32, h: u32) -> Dataset {
    let j = json!({
        "images": [{"file_name": name, "width": w, "height": h, "id": id}],
        "annotations": [ann(1, id, 15, [0, 0, 2, 2])],
        "categories": categories(),
    });
    f.write_json(&j);
    f.pascal().json("train").unwrap()
}

#[test]
fn corrupt_jpegs_are_errors_naming_the_file() {
    let f = Fixture::new();
    // Random bytes.
    let mut x: u32 = 12345;
    let noise: Vec<u8> = (0..5000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(f.jpegs().join("000000000101.jpg"), &noise).unwrap();
    let ds = one_image(&f, "000000000101.jpg", 101, 640, 428);
    let e = ds.image(0).unwrap_err();
    assert!(matches!(e, Error::Image { .. }), "{e:?}");
    assert_mentions(&e.to_string(), &["000000000101.jpg", "image 101"]);

    // A JPEG header followed by garbage.
    let mut fake = vec![0xFF, 0xD8, 0xFF, 0xE0];
    fake.extend_from_slice(&noise[..1000]);
    std::fs::write(f.jpegs().join("000000000102.jpg"), &fake).unwrap();
    let ds = one_image(&f, "000000000102.jpg", 102, 640, 428);
    let e = ds.image(0).unwrap_err();
    assert_mentions(&e.to_string(), &["000000000102.jpg", "image 102", "JPEG"]);

    // An empty file.
    std::fs::write(f.jpegs().join("000000000103.jpg"), b"").unwrap();
    let ds = one_image(&f, "000000000103.jpg", 103, 640, 428);
    let e = ds.image(0).unwrap_err();
    assert_mentions(&e.to_string(), &["000000000103.jpg", "image 103"]);

    // open_image names the file too.
    let e = open_image(f.jpegs().join("000000000101.jpg")).unwrap_err();
    assert_mentions(&e.to_string(), &["000000000101.jpg"]);
}

#[test]
fn truncated_jpeg_is_an_error() {
    let f = Fixture::new();
    let full = std::fs::read(f.jpegs().join("000000000030.jpg")).unwrap();
    std::fs::write(f.jpegs().join("000000000104.jpg"), &full[..full.len() / 3]).unwrap();
    let ds = one_image(&f, "000000000104.jpg", 104, 640, 428);
    match ds.image(0) {
        Err(e) => assert_mentions(&e.to_string(), &["000000000104.jpg", "image 104"]),
        Ok(im) => panic!(
            "a JPEG cut to a third of its {} bytes decoded without error ({}x{}, bottom-right pixel {:?}): \
             the missing part is silently filled in",
            full.len(),
            im.width(),
            im.height(),
            im.get_pixel(im.width() - 1, im.height() - 1).0
        ),
    }
}

#[test]
fn unusual_modes_decode_to_rgb() {
    let near = |a: [u8; 3], b: [u8; 3], tol: i32| a.iter().zip(b).all(|(&x, y)| (x as i32 - y as i32).abs() <= tol);
    let check = |name: &str, want: &dyn Fn(u32, u32) -> [u8; 3], tol: i32| {
        let im = open_image(odd(name)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(im.dimensions(), (32, 24), "{name}");
        for (x, y, p) in im.enumerate_pixels() {
            assert!(near(p.0, want(x, y), tol), "{name} at ({x}, {y}): {:?}, want about {:?}", p.0, want(x, y));
        }
    };
    check("grey.jpg", &|_, _| [200, 200, 200], 2);
    check("grey_alpha.png", &|_, _| [60, 60, 60], 0);
    check("grey16.png", &|_, _| [191, 191, 191], 1);
    // Alpha is dropped, not composited.
    check("rgba.png", &|x, _| if x < 16 { [255, 0, 0] } else { [0, 0, 255] }, 0);
    check("cmyk_red.jpg", &|_, _| [255, 0, 0], 12);
    check("rgb_green.jpg", &|_, _| [0, 255, 0], 6);

    // Through a dataset, by content, whatever the extension.
    let f = Fixture::new();
    for (i, name) in ["grey.jpg", "rgba.png", "cmyk_red.jpg", "grey16.png"].iter().enumerate() {
        std::fs::copy(odd(name), f.jpegs().join(name)).unwrap();
        let ds = one_image(&f, name, 200 + i as u64, 32, 24);
        let im = ds.image(0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(im.dimensions(), (32, 24));
    }
    // A PNG named .jpg is still decoded (content decides).
    std::fs::copy(odd("rgba.png"), f.jpegs().join("png_really.jpg")).unwrap();
    let ds = one_image(&f, "png_really.jpg", 210, 32, 24);
    assert_eq!(ds.image(0).unwrap().get_pixel(0, 0).0, [255, 0, 0]);
}

#[test]
fn decoded_size_differing_from_the_annotation() {
    let f = Fixture::new();
    std::fs::copy(odd("rgb_green.jpg"), f.jpegs().join("000000000300.jpg")).unwrap();
    let ds = one_image(&f, "000000000300.jpg", 300, 64, 48);
    let e = ds.image(0).unwrap_err();
    assert!(matches!(e, Error::Image { .. }), "{e:?}");
    assert_mentions(&e.to_string(), &["000000000300.jpg", "image 300", "32x24", "64x48", "pascal_train2007.json"]);
    // Swapped width and height is also caught.
    let ds = one_image(&f, "000000000300.jpg", 300, 24, 32);
    assert_mentions(&ds.image(0).unwrap_err().to_string(), &["32x24", "24x32"]);
}

#[test]
fn malformed_json() {
    let f = Fixture::new();
    let text = serde_json::to_string(&good_json(vec![])).unwrap();
    std::fs::write(f.json_path(), &text[..text.len() / 2]).unwrap();
    let e = f.pascal().json("train").unwrap_err();
    assert!(matches!(e, Error::Json { .. }), "{e:?}");
    assert_mentions(&e.to_string(), &["malformed", &s(&f.json_path())]);

    // Valid JSON of the wrong shape (no "annotations").
    std::fs::write(f.json_path(), r#"{"images": [], "categories": []}"#).unwrap();
    let e = f.pascal().json("train").unwrap_err();
    assert_mentions(&e.to_string(), &["malformed", "pascal_train2007.json", "annotations"]);

    // A bbox with 3 numbers.
    let mut j = good_json(vec![]);
    j["annotations"][0]["bbox"] = json!([1, 2, 3]);
    f.write_json(&j);
    let e = f.pascal().json("train").unwrap_err();
    assert_mentions(&e.to_string(), &["malformed", "pascal_train2007.json"]);
}

/// A wrapped error says its source's message once, in `Display` and in a reporter that prints the
/// chain (`anyhow`'s `{:#}`, as the command line does).
#[test]
fn wrapped_errors_say_their_message_once() {
    let f = Fixture::new();
    let once = |e: Error, part: &str, whole: String| {
        let shown = e.to_string();
        assert_eq!(shown, whole);
        assert_eq!(shown.matches(part).count(), 1, "{shown}");
        assert_eq!(format!("{:#}", anyhow::Error::from(e)), whole);
    };
    let e = f.pascal().json("train").unwrap_err();
    let not_found = "No such file or directory (os error 2)";
    once(e, not_found, format!("{}: {not_found}", s(&f.json_path())));

    std::fs::write(f.json_path(), r#"{"images": [], "categories": []}"#).unwrap();
    let e = f.pascal().json("train").unwrap_err();
    let missing = "missing field `annotations` at line 1 column 32";
    once(e, missing, format!("{}: malformed JSON: {missing}", s(&f.json_path())));
}

#[test]
fn malformed_xml() {
    let f = Fixture::new();
    f.write_voc(&[(IMAGES[0].0, 640, 428, &[("person", 11, 21, 40, 60)])]);
    let full = std::fs::read_to_string(f.xml_path(IMAGES[0].0)).unwrap();
    std::fs::write(f.xml_path(IMAGES[0].0), &full[..full.len() - 20]).unwrap();
    let e = f.pascal().voc("train").unwrap_err();
    assert!(matches!(e, Error::Xml { .. }), "{e:?}");
    assert_mentions(&e.to_string(), &["malformed", &s(&f.xml_path(IMAGES[0].0))]);

    // Well-formed XML with a non-numeric coordinate.
    std::fs::write(f.xml_path(IMAGES[0].0), full.replace("<xmin>11</xmin>", "<xmin>eleven</xmin>")).unwrap();
    let e = f.pascal().voc("train").unwrap_err();
    assert_mentions(&e.to_string(), &[&s(&f.xml_path(IMAGES[0].0)), "000000000030", "xmin", "eleven"]);

    // No <size>.
    std::fs::write(f.xml_path(IMAGES[0].0), "<annotation><filename>000000000030.jpg</filename></annotation>").unwrap();
    let e = f.pascal().voc("train").unwrap_err();
    assert_mentions(&e.to_string(), &["000000000030", "size"]);
}

#[test]
fn zero_width_box_is_skipped_with_one_warning() {
    let f = Fixture::new();
    f.write_json(&good_json(vec![ann(50, 36, 12, [100, 100, 0, 20])]));
    let ds = f.pascal().json("train").unwrap();
    assert_eq!(ds.num_objects(), 3);
    assert_eq!(ds.warnings.len(), 1, "{:?}", ds.warnings);
    assert_mentions(&ds.warnings[0], &[&s(&f.json_path()), "image 36", "annotation 50"]);
    // Negative height too.
    f.write_json(&good_json(vec![ann(51, 49, 12, [100, 100, 5, -3])]));
    let ds = f.pascal().json("train").unwrap();
    assert_eq!((ds.num_objects(), ds.warnings.len()), (3, 1));
    assert_mentions(&ds.warnings[0], &["image 49"]);

    // XML: xmax < xmin (zero width in VOC's inclusive corners), next to a good box.
    f.write_voc(&[(IMAGES[1].0, 481, 640, &[("dog", 50, 50, 49, 80), ("cat", 1, 1, 481, 640)])]);
    let ds = f.pascal().voc("train").unwrap();
    assert_eq!(ds.num_objects(), 1);
    assert_eq!(ds.class_name(ds.images[0].objects[0].class), "cat");
    assert_eq!(ds.warnings.len(), 1, "{:?}", ds.warnings);
    assert_mentions(&ds.warnings[0], &[&s(&f.xml_path(IMAGES[1].0)), "000000000036"]);
}

#[test]
fn box_outside_the_image_is_an_error() {
    let f = Fixture::new();
    // Image 30 is 640 wide: x + w = 641 reaches column 640.
    f.write_json(&good_json(vec![ann(60, 30, 7, [600, 10, 41, 10])]));
    let e = f.pascal().json("train").unwrap_err();
    assert!(matches!(e, Error::Annotation { .. }), "{e:?}");
    assert_mentions(&e.to_string(), &[&s(&f.json_path()), "image 30", "annotation 60", "outside", "640x428"]);
    // Touching the last column and row is fine.
    f.write_json(&good_json(vec![ann(61, 30, 7, [600, 418, 40, 10])]));
    let ds = f.pascal().json("train").unwrap();
    assert_eq!(ds.images[0].objects[1].bbox.to_array(), [418., 600., 427., 639.]);
    // Negative coordinates.
    f.write_json(&good_json(vec![ann(62, 49, 7, [-1, 0, 10, 10])]));
    assert_mentions(&f.pascal().json("train").unwrap_err().to_string(), &["image 49", "outside"]);

    // XML: ymax 429 on a 428-high image.
    f.write_voc(&[(IMAGES[0].0, 640, 428, &[("car", 1, 1, 640, 429)])]);
    let e = f.pascal().voc("train").unwrap_err();
    assert_mentions(&e.to_string(), &[&s(&f.xml_path(IMAGES[0].0)), "000000000030", "outside"]);
    // xmin 0 (VOC is one-based) is outside too.
    f.write_voc(&[(IMAGES[0].0, 640, 428, &[("car", 0, 1, 10, 10)])]);
    assert_mentions(&f.pascal().voc("train").unwrap_err().to_string(), &["000000000030", "outside"]);
    // The full image is inside.
    f.write_voc(&[(IMAGES[0].0, 640, 428, &[("car", 1, 1, 640, 428)])]);
    assert_eq!(f.pascal().voc("train").unwrap().images[0].objects[0].bbox.to_array(), [0., 0., 427., 639.]);
}

#[test]
fn unknown_class_name_in_xml() {
    let f = Fixture::new();
    f.write_voc(&[(IMAGES[2].0, 381, 500, &[("person", 1, 1, 10, 10), ("zebra", 5, 5, 20, 20)])]);
    let e = f.pascal().voc("train").unwrap_err();
    assert!(matches!(e, Error::Annotation { .. }), "{e:?}");
    assert_mentions(&e.to_string(), &[&s(&f.xml_path(IMAGES[2].0)), "000000000049", "zebra"]);
    // Case matters: "Person" is not a VOC class name.
    f.write_voc(&[(IMAGES[2].0, 381, 500, &[("Person", 1, 1, 10, 10)])]);
    assert_mentions(&f.pascal().voc("train").unwrap_err().to_string(), &["\"Person\""]);
}

#[test]
fn unknown_category_id_in_json() {
    let f = Fixture::new();
    f.write_json(&good_json(vec![ann(70, 49, 99, [1, 1, 5, 5])]));
    let e = f.pascal().json("train").unwrap_err();
    assert!(matches!(e, Error::Annotation { .. }), "{e:?}");
    assert_mentions(&e.to_string(), &[&s(&f.json_path()), "image 49", "annotation 70", "category_id 99"]);
    // category 0 is not VOC's (ids are 1..=20).
    f.write_json(&good_json(vec![ann(71, 49, 0, [1, 1, 5, 5])]));
    assert_mentions(&f.pascal().json("train").unwrap_err().to_string(), &["category_id 0"]);
}

#[test]
fn annotation_of_an_unlisted_image_in_json() {
    let f = Fixture::new();
    f.write_json(&good_json(vec![ann(80, 424242, 1, [1, 1, 5, 5])]));
    let e = f.pascal().json("train").unwrap_err();
    assert_mentions(&e.to_string(), &["pascal_train2007.json", "424242", "annotation 80"]);
}

#[test]
fn duplicate_image_id_in_json() {
    let f = Fixture::new();
    let mut j = good_json(vec![]);
    let first = j["images"][0].clone();
    j["images"].as_array_mut().unwrap().push(first);
    f.write_json(&j);
    let e = f.pascal().json("train").unwrap_err();
    assert_mentions(&e.to_string(), &["pascal_train2007.json", "image 30", "twice"]);
}
