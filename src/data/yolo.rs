//! YOLO labels (darknet, ultralytics): an `images/` folder, a `labels/` folder with one
//! `<stem>.txt` per image of lines `class cx cy w h`, and the class names in `data.yaml` (its
//! `names`, a list or a map of index to name) or `classes.txt` (one name a line).
//!
//! The box convention: a YOLO box is the continuous rectangle a COCO `[x, y, w, h]` box covers,
//! in fractions of the image size: `cx = (x + w / 2) / W`, `w = w / W` (ultralytics' COCO
//! converter does the same). With the crate's inclusive [`BBox`] that is the rectangle from
//! `left` to `right + 1`: a box covering the whole image is `0.5 0.5 1 1`. Reading computes in
//! `f64` and keeps pixels to a thousandth; writing prints the shortest decimal that reads back
//! to the same `f64`, so COCO -> YOLO -> COCO gives the same pixels.

use super::{check_box, BoxCheck, Dataset, ImageRecord, Object};
use crate::boxes::BBox;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The image files fastdet decodes (the `image` crate's JPEG and PNG).
pub(super) fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| ["jpg", "jpeg", "png"].iter().any(|e| x.eq_ignore_ascii_case(e)))
}

/// The image files directly in `dir`, sorted by name.
pub(super) fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image(p))
        .collect();
    files.sort();
    Ok(files)
}

/// The class-names file of a YOLO folder: `data.yaml`, `dataset.yaml`, `classes.txt`,
/// `obj.names` in the folder, else `classes.txt` in `labels/` (labelImg puts it there).
pub(super) fn names_file(root: &Path) -> Option<PathBuf> {
    ["data.yaml", "data.yml", "dataset.yaml", "classes.txt", "obj.names", "labels/classes.txt"]
        .iter()
        .map(|f| root.join(f))
        .find(|p| p.is_file())
}

/// The class names of a `data.yaml` (its `names`) or of a text file of one name a line.
pub(super) fn read_names(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let yaml = path.extension().is_some_and(|x| x == "yaml" || x == "yml");
    let names = if yaml {
        yaml_names(path, &text)?
    } else {
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
    };
    if names.is_empty() {
        return Err(Error::Dataset { path: path.into(), problem: "names no classes".into() });
    }
    Ok(names)
}

/// A YAML scalar as written in `names`: quotes taken off, a comment after it dropped.
fn unquote(s: &str) -> String {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('\'').and_then(|r| r.rfind('\'').map(|end| &r[..end])) {
        return inner.replace("''", "'");
    }
    if let Some(inner) = s.strip_prefix('"').and_then(|r| r.rfind('"').map(|end| &r[..end])) {
        return inner.replace("\\\"", "\"").replace("\\\\", "\\");
    }
    s.split(" #").next().unwrap_or("").trim().to_string()
}

/// Split a flow list's inside (`a, 'b, c', "d"`) on the commas outside quotes.
fn flow_items(s: &str) -> Vec<String> {
    let (mut items, mut cur, mut quote) = (vec![], String::new(), None);
    for ch in s.chars() {
        match (ch, quote) {
            ('\'' | '"', None) => quote = Some(ch),
            (c, Some(q)) if c == q => quote = None,
            (',', None) => {
                items.push(unquote(&cur));
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        items.push(unquote(&cur));
    }
    items
}

/// The `names` of an ultralytics `data.yaml`: `names: [a, b]`, a block list (`- a`) or a map
/// (`0: a`); `nc`, when given, must agree. Only these two keys are read.
fn yaml_names(path: &Path, text: &str) -> Result<Vec<String>> {
    let bad = |line: usize, problem: String| Error::Label { path: path.into(), line, problem };
    let lines: Vec<&str> = text.lines().collect();
    let top = |l: &str| l.split(':').next().map(str::trim).map(String::from);
    let Some(start) = lines.iter().position(|l| !l.starts_with([' ', '\t']) && top(l).as_deref() == Some("names"))
    else {
        return Err(Error::Dataset { path: path.into(), problem: "has no `names:` (the class names)".into() });
    };
    let rest = lines[start].split_once(':').map(|x| x.1).unwrap_or("").trim();
    let mut names = vec![];
    if let Some(flow) = rest.strip_prefix('[') {
        // A flow list, possibly over several lines.
        let mut all = flow.to_string();
        let mut end = start;
        while !all.contains(']') {
            end += 1;
            let Some(l) = lines.get(end) else {
                return Err(bad(start + 1, "the list of names has no closing ]".into()));
            };
            all.push(' ');
            all.push_str(l.trim());
        }
        names = flow_items(&all[..all.rfind(']').unwrap_or(all.len())]);
    } else if !rest.is_empty() && !rest.starts_with('#') {
        return Err(bad(start + 1, format!("names is {rest:?}: expected a list or a map of index to name")));
    } else {
        for (i, l) in lines.iter().enumerate().skip(start + 1) {
            let t = l.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if !l.starts_with([' ', '\t', '-']) {
                break;
            }
            if let Some(item) = t.strip_prefix('-') {
                names.push(unquote(item));
            } else if let Some((k, v)) = t.split_once(':') {
                let k: usize =
                    k.trim().parse().map_err(|_| bad(i + 1, format!("{:?} is not a class index", k.trim())))?;
                if k != names.len() {
                    return Err(bad(i + 1, format!("class index {k} where {} was expected", names.len())));
                }
                names.push(unquote(v));
            } else {
                return Err(bad(i + 1, format!("{t:?} is not `- name` or `index: name`")));
            }
        }
    }
    if let Some((i, l)) = lines.iter().enumerate().find(|(_, l)| top(l).as_deref() == Some("nc")) {
        let v = l.split_once(':').map(|x| unquote(x.1)).unwrap_or_default();
        if v.parse::<usize>().ok() != Some(names.len()) {
            return Err(bad(i + 1, format!("nc is {v} but names lists {} classes", names.len())));
        }
    }
    Ok(names)
}

/// Read the images of `images` (directly in it, sorted by name) with their label files in
/// `labels`; `names` is where the classes came from (for messages). Ids are 1, 2, ... in that
/// order. An image with no label file has no objects: one warning counts them.
pub(super) fn load(images: &Path, labels: &Path, classes: &[String], names: &Path) -> Result<Dataset> {
    let mut ds = Dataset {
        source: labels.to_path_buf(),
        image_dir: images.to_path_buf(),
        classes: classes.to_vec(),
        category_ids: vec![],
        images: vec![],
        warnings: vec![],
    };
    let mut unlabelled = vec![];
    for (n, file) in image_files(images)?.into_iter().enumerate() {
        let file_name = file.file_name().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        let id = n as u64 + 1;
        let (width, height) = image::image_dimensions(&file).map_err(|e| Error::Image {
            path: file.clone(),
            image: file_name.clone(),
            problem: format!("cannot read its size: {e}"),
        })?;
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let label = labels.join(format!("{stem}.txt"));
        let mut rec = ImageRecord { id, file_name, width, height, objects: vec![] };
        if label.is_file() {
            let text = std::fs::read_to_string(&label).map_err(|e| Error::io(&label, e))?;
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match parse_line(&label, i + 1, line, &rec, classes.len(), names)? {
                    BoxCheck::Ok(obj) => {
                        rec.objects.push(Object { bbox: obj, class: class_of(line), difficult: false })
                    }
                    BoxCheck::Skip(w) => ds.warn(format!("{w} (line {})", i + 1)),
                }
            }
        } else {
            unlabelled.push(rec.file_name.clone());
        }
        ds.images.push(rec);
    }
    if let Some(first) = unlabelled.first() {
        ds.warn(format!(
            "{}: {} of {} images have no label file (counted as images with no objects), the first {first}",
            labels.display(),
            unlabelled.len(),
            ds.images.len()
        ));
    }
    Ok(ds)
}

/// The class of a line `parse_line` accepted.
fn class_of(line: &str) -> usize {
    line.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// One label line: 5 numbers, a class index in range, coordinates in [0, 1], a box inside its
/// image; errors name the file and line.
fn parse_line(
    path: &Path,
    line: usize,
    text: &str,
    rec: &ImageRecord,
    n_classes: usize,
    names: &Path,
) -> Result<BoxCheck> {
    let bad = |problem: String| Error::Label { path: path.into(), line, problem };
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(bad(format!("expected 5 numbers (class cx cy w h), found {}", fields.len())));
    }
    let class: usize = fields[0].parse().map_err(|_| bad(format!("class {:?} is not a class index", fields[0])))?;
    if class >= n_classes {
        return Err(bad(format!(
            "class {class} is out of range: {} names {n_classes} classes (0 to {})",
            names.display(),
            n_classes - 1
        )));
    }
    let mut v = [0f64; 4];
    for (k, name) in ["cx", "cy", "w", "h"].iter().enumerate() {
        let t = fields[k + 1];
        v[k] = t.parse().map_err(|_| bad(format!("{name} is {t:?}, not a number")))?;
        if !(0.0..=1.0).contains(&v[k]) {
            return Err(bad(format!(
                "{name} is {t}, outside [0, 1] (YOLO coordinates are fractions of the image size)"
            )));
        }
    }
    let (iw, ih) = (rec.width as f64, rec.height as f64);
    let px = |x: f64| ((x * 1000.0).round() / 1000.0) as f32;
    let [cx, cy, w, h] = v;
    let xywh = [px((cx - w / 2.0) * iw), px((cy - h / 2.0) * ih), px(w * iw), px(h * ih)];
    check_box(BBox::from_xywh(xywh), rec.width, rec.height, path, &rec.file_name).map_err(|e| match e {
        Error::Annotation { problem, .. } => bad(problem),
        e => e,
    })
}

/// One label line for `bbox` of `class` in a `width x height` image (see the module docs).
pub(super) fn label_line(class: usize, bbox: &BBox, width: u32, height: u32) -> String {
    let [x, y, w, h] = bbox.to_xywh().map(f64::from);
    let (iw, ih) = (width as f64, height as f64);
    format!("{class} {} {} {} {}", (x + w / 2.0) / iw, (y + h / 2.0) / ih, w / iw, h / ih)
}

/// `data.yaml` for `classes`, with the `train`/`val` folders given (relative to the file).
pub(super) fn data_yaml(classes: &[String], splits: &[(String, String)], note: &str) -> String {
    // No `path:`: ultralytics then takes the folder of this file.
    let mut s = format!("# {note}\n");
    for (key, dir) in splits {
        s += &format!("{key}: {dir}\n");
    }
    s += &format!("nc: {}\nnames:\n", classes.len());
    for (i, c) in classes.iter().enumerate() {
        s += &format!("  {i}: '{}'\n", c.replace('\'', "''"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_each_yaml_style() {
        let p = Path::new("data.yaml");
        let flow = "path: .\nnames: [person, 'traffic light', \"a, b\"]\nnc: 3\n";
        assert_eq!(yaml_names(p, flow).unwrap(), ["person", "traffic light", "a, b"]);
        let block = "names:\n  - cat # a comment\n  - dog\ntrain: images/train\n";
        assert_eq!(yaml_names(p, block).unwrap(), ["cat", "dog"]);
        let map = "names:\n  0: cat\n  1: 'it''s'\n";
        assert_eq!(yaml_names(p, map).unwrap(), ["cat", "it's"]);
        let e = yaml_names(p, "names:\n  0: cat\n  2: dog\n").unwrap_err();
        assert_eq!(e.to_string(), "data.yaml:3: class index 2 where 1 was expected");
        let e = yaml_names(p, "nc: 3\nnames: [a, b]\n").unwrap_err();
        assert_eq!(e.to_string(), "data.yaml:1: nc is 3 but names lists 2 classes");
        let written = data_yaml(&["a:b".into(), "it's".into()], &[], "test");
        assert_eq!(yaml_names(p, &written).unwrap(), ["a:b", "it's"]);
    }

    #[test]
    fn the_whole_image_is_half_half_one_one() {
        let b = BBox::from_xywh([0., 0., 640., 480.]);
        assert_eq!(label_line(3, &b, 640, 480), "3 0.5 0.5 1 1");
        // COCO [10, 20, 30, 40] in 100x200: cx = (10 + 15) / 100
        assert_eq!(label_line(0, &BBox::from_xywh([10., 20., 30., 40.]), 100, 200), "0 0.25 0.2 0.3 0.2");
    }
}
