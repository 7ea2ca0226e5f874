//! COCO JSON (`images`, `annotations`, `categories`), of which the lesson's
//! `pascal_train2007.json` (lesson 8) is one: classes in category-id order (ids need not be
//! contiguous), `ignore: 1` or `iscrowd: 1` kept as a difficult (ignored) object.

use super::{check_box, BoxCheck, Dataset, ImageRecord, Object};
use crate::boxes::BBox;
use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

#[derive(Deserialize)]
struct File {
    images: Vec<JsonImage>,
    annotations: Vec<JsonAnnotation>,
    categories: Vec<JsonCategory>,
}

#[derive(Deserialize)]
struct JsonImage {
    file_name: String,
    height: u32,
    width: u32,
    id: u64,
}

#[derive(Deserialize)]
struct JsonAnnotation {
    #[serde(default)]
    id: Option<u64>,
    image_id: u64,
    category_id: u64,
    bbox: [f32; 4],
    #[serde(default)]
    ignore: u8,
    #[serde(default)]
    iscrowd: u8,
}

#[derive(Deserialize)]
struct JsonCategory {
    id: u64,
    name: String,
}

/// Which JSON a file is: the lesson's or any COCO file. Both read the same; a COCO file also
/// gets a warning for each category no annotation uses (the lesson's files list all 20 VOC
/// classes, used or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavor {
    Lesson,
    Coco,
}

pub(super) fn load(path: &Path, image_dir: &Path, flavor: Flavor) -> Result<Dataset> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let file: File = serde_json::from_str(&text).map_err(|e| Error::json(path, e))?;
    let bad = |image: String, problem: String| Error::Annotation { path: path.into(), image, problem };

    // Classes in category-id order; for the lesson's JSON that is VOC_CLASSES, ids 1..=20.
    let mut cats: Vec<&JsonCategory> = file.categories.iter().collect();
    cats.sort_by_key(|c| c.id);
    if let Some(w) = cats.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(bad("-".into(), format!("category id {} is listed twice", w[0].id)));
    }
    let class_of: HashMap<u64, usize> = cats.iter().enumerate().map(|(i, c)| (c.id, i)).collect();

    let mut ds = Dataset {
        source: path.to_path_buf(),
        image_dir: image_dir.to_path_buf(),
        classes: cats.iter().map(|c| c.name.clone()).collect(),
        category_ids: cats.iter().map(|c| c.id).collect(),
        images: Vec::with_capacity(file.images.len()),
        warnings: Vec::new(),
    };
    if !image_dir.is_dir() {
        return Err(Error::MissingDataset {
            path: image_dir.to_path_buf(),
            hint: format!("the image folder of {}", path.display()),
        });
    }
    let mut index_of = HashMap::with_capacity(file.images.len());
    for im in file.images {
        if index_of.insert(im.id, ds.images.len()).is_some() {
            return Err(bad(im.id.to_string(), "image id is listed twice".into()));
        }
        if im.width == 0 || im.height == 0 {
            return Err(bad(im.id.to_string(), format!("image size {}x{} is empty", im.width, im.height)));
        }
        if !image_dir.join(&im.file_name).is_file() {
            return Err(Error::Image {
                path: image_dir.join(&im.file_name),
                image: im.id.to_string(),
                problem: format!("file not found (listed in {})", path.display()),
            });
        }
        ds.images.push(ImageRecord {
            id: im.id,
            file_name: im.file_name,
            width: im.width,
            height: im.height,
            objects: vec![],
        });
    }

    let mut used = vec![false; cats.len()];
    for (n, a) in file.annotations.into_iter().enumerate() {
        let what = match a.id {
            Some(id) => format!("annotation {id}"),
            None => format!("annotation #{n}"),
        };
        let Some(&i) = index_of.get(&a.image_id) else {
            return Err(bad(a.image_id.to_string(), format!("{what} refers to an image id that is not in \"images\"")));
        };
        let Some(&class) = class_of.get(&a.category_id) else {
            return Err(bad(a.image_id.to_string(), format!("{what} has unknown category_id {}", a.category_id)));
        };
        let rec = &ds.images[i];
        let check = check_box(BBox::from_xywh(a.bbox), rec.width, rec.height, path, &rec.id.to_string()).map_err(
            |e| match e {
                Error::Annotation { path, image, problem } => {
                    Error::Annotation { path, image, problem: format!("{what}: {problem}") }
                }
                e => e,
            },
        )?;
        match check {
            BoxCheck::Ok(bbox) => {
                let difficult = a.ignore != 0 || a.iscrowd != 0;
                ds.images[i].objects.push(Object { bbox, class, difficult })
            }
            BoxCheck::Skip(warning) => ds.warn(format!("{warning} ({what})")),
        }
        used[class] = true;
    }
    if flavor == Flavor::Coco {
        let unused: Vec<String> =
            cats.iter().zip(&used).filter(|(_, u)| !**u).map(|(c, _)| format!("{} ({:?})", c.id, c.name)).collect();
        if !unused.is_empty() {
            let list = unused.join(", ");
            ds.warn(format!("{}: category ids used by no annotation (kept as classes): {list}", path.display()));
        }
    }
    Ok(ds)
}

/// A number as the lesson's JSON writes it: an integer when it is whole.
fn num(v: f32) -> serde_json::Value {
    if v.fract() == 0.0 && v.abs() < 1e9 {
        serde_json::json!(v as i64)
    } else {
        serde_json::json!(v)
    }
}

/// Write `ds` in the lesson's JSON format (what `pascal_train2007.json` holds: boxes as
/// `[x, y, w, h]`, a rectangle `segmentation`, `area = w * h`, `ignore` for difficult objects,
/// category ids as the dataset has them ([`Dataset::category_id`]: from 1 unless it came from a
/// COCO file with other ids), annotation ids from 1 in image order). As [`Flavor::Coco`] a difficult
/// object is also written `iscrowd: 1`, so that COCO tools ignore it too.
pub(super) fn save(ds: &Dataset, path: &Path, flavor: Flavor) -> Result<()> {
    use serde_json::json;
    let images: Vec<_> = ds
        .images
        .iter()
        .map(|r| json!({"file_name": r.file_name, "height": r.height, "width": r.width, "id": r.id}))
        .collect();
    let mut annotations = vec![];
    for r in &ds.images {
        for o in &r.objects {
            let [x, y, w, h] = o.bbox.to_xywh();
            annotations.push(json!({
                "segmentation": [[num(x), num(y), num(x), num(y + h), num(x + w), num(y + h), num(x + w), num(y)]],
                "area": num(w * h),
                "iscrowd": u8::from(flavor == Flavor::Coco && o.difficult),
                "image_id": r.id,
                "bbox": [num(x), num(y), num(w), num(h)],
                "category_id": ds.category_id(o.class),
                "id": annotations.len() + 1,
                "ignore": u8::from(o.difficult),
            }));
        }
    }
    let categories: Vec<_> = ds
        .classes
        .iter()
        .enumerate()
        .map(|(i, name)| json!({"supercategory": "none", "id": ds.category_id(i), "name": name}))
        .collect();
    let file = json!({"images": images, "type": "instances", "annotations": annotations, "categories": categories});
    let text = serde_json::to_string(&file).map_err(|e| Error::json(path, e))?;
    crate::util::write_atomic(path, text.as_bytes())
}
