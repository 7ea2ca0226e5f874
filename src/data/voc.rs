//! The original VOC XML annotations (`VOCdevkit/VOC2007/Annotations/<id>.xml`): one-based,
//! inclusive corners, read into the crate's zero-based [`BBox`].

use super::{check_box, BoxCheck, Dataset, ImageRecord, Object, VOC_CLASSES};
use crate::boxes::BBox;
use crate::error::{Error, Result};
use std::path::Path;

pub(super) fn load(voc: &Path, split: &str, classes: &[String]) -> Result<Dataset> {
    if !voc.is_dir() {
        return Err(Error::MissingDataset {
            path: voc.to_path_buf(),
            hint: "expected a VOCdevkit/VOC2007 folder; `make data-voc` downloads it".into(),
        });
    }
    let list = voc.join("ImageSets").join("Main").join(format!("{split}.txt"));
    load_stems(voc, &list, &split_stems(&list)?, classes)
}

/// The stems listed in a split file, each with its 1-based line.
pub(super) fn split_stems(list: &Path) -> Result<Vec<(usize, String)>> {
    let text = std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?;
    Ok(text.lines().map(str::trim).enumerate().filter(|(_, s)| !s.is_empty()).map(|(i, s)| (i + 1, s.into())).collect())
}

/// Every `Annotations/*.xml` stem, sorted, numbered from 1 (a VOC folder with no split file).
pub(super) fn all_stems(voc: &Path) -> Result<Vec<(usize, String)>> {
    let dir = voc.join("Annotations");
    let mut stems: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("xml")))
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(String::from))
        .collect();
    stems.sort();
    Ok(stems.into_iter().enumerate().map(|(i, s)| (i + 1, s)).collect())
}

/// The class names the XML files of `stems` use: the 20 VOC classes in the lesson's order when
/// every name is one of them, else every name found, sorted.
pub(super) fn class_names(voc: &Path, stems: &[(usize, String)]) -> Result<Vec<String>> {
    let mut names = std::collections::BTreeSet::new();
    for (_, stem) in stems {
        let path = voc.join("Annotations").join(format!("{stem}.xml"));
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let doc =
            roxmltree::Document::parse(&text).map_err(|e| Error::Xml { path: path.clone(), message: e.to_string() })?;
        for obj in doc.root_element().children().filter(|c| c.has_tag_name("object")) {
            if let Some(name) = child(obj, "name").and_then(|c| c.text()) {
                names.insert(name.trim().to_string());
            }
        }
    }
    Ok(if names.iter().all(|n| VOC_CLASSES.contains(&n.as_str())) {
        VOC_CLASSES.iter().map(|s| s.to_string()).collect()
    } else {
        names.into_iter().collect()
    })
}

/// Read the XML of each `(line, stem)`; `source` is what lists them (a split file, or the
/// `Annotations` folder). The id is the stem read as a number, else the line.
pub(super) fn load_stems(voc: &Path, source: &Path, stems: &[(usize, String)], classes: &[String]) -> Result<Dataset> {
    let mut ds = Dataset {
        source: source.to_path_buf(),
        image_dir: voc.join("JPEGImages"),
        classes: classes.to_vec(),
        category_ids: vec![],
        images: vec![],
        warnings: vec![],
    };
    for (line_no, stem) in stems {
        let xml = voc.join("Annotations").join(format!("{stem}.xml"));
        let id = stem.parse::<u64>().unwrap_or(*line_no as u64);
        let (record, warnings) = parse_annotation(&xml, stem, id, classes)?;
        let image = ds.image_dir.join(&record.file_name);
        if !image.is_file() {
            return Err(Error::Image {
                path: image,
                image: stem.clone(),
                problem: format!("file not found (listed in {})", source.display()),
            });
        }
        ds.images.push(record);
        for w in warnings {
            ds.warn(w);
        }
    }
    Ok(ds)
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| c.has_tag_name(name))
}

/// Read one `Annotations/<stem>.xml`; returns the record and the warnings of skipped boxes.
pub(crate) fn parse_annotation(
    path: &Path,
    stem: &str,
    id: u64,
    classes: &[String],
) -> Result<(ImageRecord, Vec<String>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let doc =
        roxmltree::Document::parse(&text).map_err(|e| Error::Xml { path: path.into(), message: e.to_string() })?;
    let bad = |problem: String| Error::Annotation { path: path.into(), image: stem.into(), problem };
    let root = doc.root_element();
    let text_of = |node: roxmltree::Node<'_, '_>, name: &str| -> Result<String> {
        child(node, name)
            .and_then(|c| c.text())
            .map(|t| t.trim().to_string())
            .ok_or_else(|| bad(format!("<{}> has no <{name}>", node.tag_name().name())))
    };
    let number = |node: roxmltree::Node<'_, '_>, name: &str| -> Result<f32> {
        let t = text_of(node, name)?;
        t.parse::<f32>().map_err(|_| bad(format!("<{name}> is {t:?}, not a number")))
    };

    let file_name =
        child(root, "filename").and_then(|c| c.text()).map(|t| t.trim().to_string()).unwrap_or(format!("{stem}.jpg"));
    let size = child(root, "size").ok_or_else(|| bad("no <size>".into()))?;
    let (width, height) = (number(size, "width")?, number(size, "height")?);
    if width < 1.0 || height < 1.0 {
        return Err(bad(format!("image size {width}x{height} is empty")));
    }
    let (width, height) = (width as u32, height as u32);

    let mut objects = vec![];
    let mut warnings = vec![];
    for obj in root.children().filter(|c| c.has_tag_name("object")) {
        let name = text_of(obj, "name")?;
        let class = classes.iter().position(|c| *c == name).ok_or_else(|| {
            let expected = if classes.len() == VOC_CLASSES.len() && classes.iter().zip(VOC_CLASSES).all(|(a, b)| a == b)
            {
                "one of the 20 VOC classes".to_string()
            } else {
                format!("one of {}", classes.join(", "))
            };
            bad(format!("unknown class name {name:?} (expected {expected})"))
        })?;
        let difficult = match child(obj, "difficult").and_then(|c| c.text()).map(str::trim) {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => return Err(bad(format!("<difficult> is {other:?}, expected 0 or 1"))),
        };
        let bb = child(obj, "bndbox").ok_or_else(|| bad(format!("object {name:?} has no <bndbox>")))?;
        let bbox = BBox::from_voc(number(bb, "xmin")?, number(bb, "ymin")?, number(bb, "xmax")?, number(bb, "ymax")?);
        match check_box(bbox, width, height, path, stem)? {
            BoxCheck::Ok(bbox) => objects.push(Object { bbox, class, difficult }),
            BoxCheck::Skip(w) => warnings.push(w),
        }
    }
    Ok((ImageRecord { id, file_name, width, height, objects }, warnings))
}
