//! The CSV files the lesson writes for fastai's `ImageClassifierData.from_csv` (lesson 8-9).

use super::Dataset;
use crate::error::{Error, Result};
use std::path::Path;

fn write(path: &Path, header: [&str; 2], rows: impl Iterator<Item = (String, String)>) -> Result<()> {
    let fail = |e: csv::Error| Error::io(path, e.into());
    let mut w = csv::Writer::from_path(path).map_err(fail)?;
    w.write_record(header).map_err(fail)?;
    for (a, b) in rows {
        w.write_record([a, b]).map_err(fail)?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}

fn join<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    items.into_iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" ")
}

/// Images whose largest object exists (images with only difficult objects are left out).
fn with_largest(ds: &Dataset) -> impl Iterator<Item = (&str, &super::Object)> {
    ds.images.iter().filter_map(|r| r.largest().map(|o| (r.file_name.as_str(), o)))
}

pub(super) fn write_lrg(ds: &Dataset, path: &Path) -> Result<()> {
    write(path, ["fn", "cat"], with_largest(ds).map(|(f, o)| (f.to_string(), ds.classes[o.class].clone())))
}

pub(super) fn write_bb(ds: &Dataset, path: &Path) -> Result<()> {
    write(path, ["fn", "bbox"], with_largest(ds).map(|(f, o)| (f.to_string(), join(o.bbox.to_array()))))
}

pub(super) fn write_mc(ds: &Dataset, path: &Path) -> Result<()> {
    let rows = ds.images.iter().enumerate().map(|(i, r)| {
        let mut names: Vec<&str> = vec![];
        for (_, c) in ds.annotations(i) {
            if !names.contains(&ds.classes[c].as_str()) {
                names.push(&ds.classes[c]);
            }
        }
        (r.file_name.clone(), names.join(" "))
    });
    write(path, ["fn", "clas"], rows)
}

pub(super) fn write_mbb(ds: &Dataset, path: &Path) -> Result<()> {
    let rows = ds
        .images
        .iter()
        .enumerate()
        .map(|(i, r)| (r.file_name.clone(), join(ds.annotations(i).iter().flat_map(|(b, _)| b.to_array()))));
    write(path, ["fn", "bbox"], rows)
}
