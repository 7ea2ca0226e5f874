//! Datasets in the formats people have: which format a folder holds ([`DataSource::detect`]),
//! its splits, opening a split as a [`Dataset`], and writing a dataset as COCO or YOLO
//! ([`export`]). docs/data.md, "Dataset formats", describes each layout.
//!
//! Splits: a format that names its splits (COCO `train.json`/`val.json`, YOLO `images/train`,
//! VOC `ImageSets/Main/<split>.txt`, the lesson's `pascal_<split>2007.json`) opens them by
//! name. A folder of one set has no splits: `"train"` (or `"all"`) opens all of it, which
//! training splits with the lesson's seeded 20 % (`get_cv_idxs(n, 0.2, 42)`), and `"val"` opens
//! exactly that 20 %. A JSON file given on its own is its own split, whatever the name asked.

use super::json::{self, Flavor};
use super::{get_cv_idxs, voc, yolo, Dataset, Pascal};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The annotation formats fastdet reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The lesson's layout: `pascal_<split>2007.json` beside `VOCdevkit/VOC2007/JPEGImages`.
    #[value(name = "json")]
    #[serde(rename = "json")]
    LessonJson,
    /// COCO JSON files (`<split>.json`, or `annotations/instances_<split>.json`) and their images.
    Coco,
    /// `images/` and `labels/` (each with a folder per split, or not), and `data.yaml` or `classes.txt`.
    Yolo,
    /// VOC XML: a folder with `Annotations/` and `JPEGImages/` (or a root with `VOCdevkit/VOC2007`).
    #[value(name = "voc")]
    #[serde(rename = "voc")]
    VocXml,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Format::LessonJson => "the lesson's JSON",
            Format::Coco => "COCO JSON",
            Format::Yolo => "YOLO",
            Format::VocXml => "VOC XML",
        })
    }
}

/// One split of a source: its name and what holds it (a JSON file, a VOC split file, a YOLO
/// image folder).
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub name: String,
    pub path: PathBuf,
}

/// A dataset found on disk: its format, and its splits (none for a folder of one set).
#[derive(Debug, Clone, PartialEq)]
pub struct DataSource {
    pub format: Format,
    /// The folder (or JSON file) given.
    pub path: PathBuf,
    /// The splits the data names; empty for one set (see the module docs).
    pub splits: Vec<Split>,
    /// The one set of a source without splits (a JSON file, a YOLO `images/`, a VOC folder
    /// with no split file); `None` when it has splits.
    pub whole: Option<PathBuf>,
}

/// Open a split of any dataset fastdet can read (the notebook's one call):
/// `open_dataset(path, "train")`.
pub fn open_dataset(path: impl AsRef<Path>, split: &str) -> Result<Dataset> {
    DataSource::detect(path)?.open(split)
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).into_iter().flatten().filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    v
}

fn file_stem(p: &Path) -> String {
    p.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string()
}

fn has_images(dir: &Path) -> bool {
    sorted_entries(dir).iter().any(|p| p.is_file() && yolo::is_image(p))
}

impl DataSource {
    /// The format of a folder or JSON file, tried in this order: the lesson's layout, YOLO
    /// (`images/` + `labels/`), VOC XML (`Annotations/`), COCO (JSON files).
    pub fn detect(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::MissingDataset {
                path: path.into(),
                hint: "give a dataset folder (COCO, YOLO, VOC XML or the lesson's layout) or a COCO JSON file".into(),
            });
        }
        for format in [Format::LessonJson, Format::Yolo, Format::VocXml, Format::Coco] {
            if let Some(s) = Self::probe(path, format)? {
                return Ok(s);
            }
        }
        Err(Error::Dataset {
            path: path.into(),
            problem: "no dataset found: expected pascal_<split>2007.json (the lesson's layout), images/ and labels/ \
                      (YOLO), Annotations/ (VOC XML) or COCO JSON files"
                .into(),
        })
    }

    /// `path` read as `format` (an error when it does not have that layout).
    pub fn with_format(path: impl AsRef<Path>, format: Format) -> Result<Self> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::MissingDataset { path: path.into(), hint: format!("expected a dataset in {format}") });
        }
        Self::probe(path, format)?.ok_or_else(|| Error::Dataset {
            path: path.into(),
            problem: format!("not in the layout of {format} (docs/data.md, \"Dataset formats\")"),
        })
    }

    fn new(format: Format, path: &Path, splits: Vec<Split>, whole: Option<PathBuf>) -> Self {
        Self { format, path: path.into(), splits, whole }
    }

    fn probe(path: &Path, format: Format) -> Result<Option<Self>> {
        let is_json = |p: &Path| p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("json"));
        let lesson_split = |p: &Path| -> Option<String> {
            let name = p.file_name()?.to_str()?;
            Some(name.strip_prefix("pascal_")?.strip_suffix("2007.json")?.to_string())
        };
        if path.is_file() {
            let ok = is_json(path)
                && match format {
                    Format::LessonJson => lesson_split(path).is_some(),
                    Format::Coco => lesson_split(path).is_none(),
                    _ => false,
                };
            return Ok(ok.then(|| Self::new(format, path, vec![], Some(path.into()))));
        }
        Ok(match format {
            Format::LessonJson => {
                let splits: Vec<Split> = sorted_entries(path)
                    .into_iter()
                    .filter_map(|p| Some(Split { name: lesson_split(&p)?, path: p }))
                    .collect();
                (!splits.is_empty()).then(|| Self::new(format, path, splits, None))
            }
            Format::Yolo => {
                let (images, labels) = (path.join("images"), path.join("labels"));
                if !images.is_dir() || !labels.is_dir() {
                    return Ok(None);
                }
                if has_images(&images) {
                    Some(Self::new(format, path, vec![], Some(images)))
                } else {
                    let splits = sorted_entries(&images)
                        .into_iter()
                        .filter(|p| p.is_dir())
                        .map(|p| Split { name: file_stem(&p), path: p })
                        .collect();
                    Some(Self::new(format, path, splits, None))
                }
            }
            Format::VocXml => {
                let voc =
                    if path.join("Annotations").is_dir() { path.to_path_buf() } else { path.join("VOCdevkit/VOC2007") };
                if !voc.join("Annotations").is_dir() {
                    return Ok(None);
                }
                let main = voc.join("ImageSets").join("Main");
                // Class-specific files (aeroplane_train.txt) are not splits.
                let splits: Vec<Split> = sorted_entries(&main)
                    .into_iter()
                    .filter(|p| p.extension().is_some_and(|x| x == "txt") && !file_stem(p).contains('_'))
                    .map(|p| Split { name: file_stem(&p), path: p })
                    .collect();
                let whole = splits.is_empty().then(|| voc.join("Annotations"));
                Some(Self { format, path: voc, splits, whole })
            }
            Format::Coco => {
                let mut files: Vec<PathBuf> = sorted_entries(path).into_iter().filter(|p| is_json(p)).collect();
                if files.is_empty() {
                    files = sorted_entries(&path.join("annotations")).into_iter().filter(|p| is_json(p)).collect();
                }
                match files.len() {
                    0 => None,
                    1 => Some(Self::new(format, path, vec![], Some(files.remove(0)))),
                    _ => {
                        let splits = files
                            .into_iter()
                            .map(|p| {
                                let stem = file_stem(&p);
                                Split { name: stem.strip_prefix("instances_").unwrap_or(&stem).to_string(), path: p }
                            })
                            .collect();
                        Some(Self::new(format, path, splits, None))
                    }
                }
            }
        })
    }

    /// The split names (empty for one set).
    pub fn split_names(&self) -> Vec<&str> {
        self.splits.iter().map(|s| s.name.as_str()).collect()
    }

    /// Open a split by name; a source of one set opens all of it for `"train"` or `"all"` and
    /// the lesson's seeded 20 % for `"val"` (see the module docs).
    pub fn open(&self, split: &str) -> Result<Dataset> {
        if let Some(whole) = &self.whole {
            let ds = self.read(whole, None)?;
            let single_file = self.path.is_file();
            return match split {
                _ if single_file => Ok(ds),
                "train" | "all" => Ok(ds),
                "val" => Ok(ds.subset(&get_cv_idxs(ds.len(), 0.2, 42)?)),
                other => Err(Error::Dataset {
                    path: self.path.clone(),
                    problem: format!(
                        "has no split {other:?}: it is one set (\"train\" or \"all\" opens it, \"val\" its seeded 20 %)"
                    ),
                }),
            };
        }
        let Some(s) = self.splits.iter().find(|s| s.name == split) else {
            return Err(Error::Dataset {
                path: self.path.clone(),
                problem: format!("has no split {split:?} (its splits: {})", self.split_names().join(", ")),
            });
        };
        self.read(&s.path, Some(&s.name))
    }

    /// The whole of one split, or of the one set (`split` None).
    fn read(&self, what: &Path, split: Option<&str>) -> Result<Dataset> {
        match self.format {
            Format::LessonJson => {
                let root = if self.path.is_file() { what.parent().unwrap_or(Path::new(".")) } else { &self.path };
                Dataset::from_json(what, Pascal { root: root.into() }.image_dir())
            }
            Format::Coco => json::load(what, &self.coco_image_dir(what, split), Flavor::Coco),
            Format::Yolo => {
                let names = yolo::names_file(&self.path).ok_or_else(|| Error::Dataset {
                    path: self.path.clone(),
                    problem: "has no class-names file (data.yaml, dataset.yaml, classes.txt or obj.names)".into(),
                })?;
                let classes = yolo::read_names(&names)?;
                let labels = match split {
                    Some(s) => self.path.join("labels").join(s),
                    None => self.path.join("labels"),
                };
                yolo::load(what, &labels, &classes, &names)
            }
            Format::VocXml => {
                let stems = if split.is_some() { voc::split_stems(what)? } else { voc::all_stems(&self.path)? };
                let classes =
                    match ["classes.txt", "labels.txt"].iter().map(|f| self.path.join(f)).find(|p| p.is_file()) {
                        Some(file) => yolo::read_names(&file)?,
                        None => voc::class_names(&self.path, &stems)?,
                    };
                voc::load_stems(&self.path, what, &stems, &classes)
            }
        }
    }

    /// Where the images of a COCO file are: `images/<split>`, `<split>` (COCO's `train2017/`),
    /// `images/`, else the folder itself (file names may hold a sub-folder).
    fn coco_image_dir(&self, json: &Path, split: Option<&str>) -> PathBuf {
        let root =
            if self.path.is_file() { json.parent().unwrap_or(Path::new(".")).to_path_buf() } else { self.path.clone() };
        let root = if root.file_name().is_some_and(|n| n == "annotations") {
            root.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            root
        };
        let name = split.map(String::from).unwrap_or_else(|| {
            let stem = file_stem(json);
            stem.strip_prefix("instances_").unwrap_or(&stem).to_string()
        });
        [root.join("images").join(&name), root.join(&name), root.join("images")]
            .into_iter()
            .find(|p| p.is_dir() && *p != root.join("annotations"))
            .unwrap_or(root)
    }

    /// A few lines for `fastdet data info`: the format, the splits and their counts.
    pub fn describe(&self) -> Result<String> {
        let mut s = format!("{}: {}\n", self.path.display(), self.format);
        let sets: Vec<(String, Dataset)> = if self.whole.is_some() {
            vec![("one set, no split (\"val\" is the seeded 20 %)".to_string(), self.open("all")?)]
        } else {
            self.splits
                .iter()
                .map(|sp| Ok((format!("split {}", sp.name), self.open(&sp.name)?)))
                .collect::<Result<_>>()?
        };
        for (what, ds) in &sets {
            let ignored = ds.images.iter().flat_map(|r| &r.objects).filter(|o| o.difficult).count();
            s += &format!(
                "  {what}: {} images, {} objects ({ignored} ignored), {} classes, {} warnings, from {}\n",
                ds.len(),
                ds.num_objects(),
                ds.classes.len(),
                ds.warnings.len(),
                ds.source.display()
            );
        }
        if let Some((_, ds)) = sets.first() {
            s += &format!("  classes: {}\n", ds.classes.join(", "));
        }
        Ok(s)
    }
}

/// What [`export`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Written {
    pub images: usize,
    pub objects: usize,
    /// Difficult (ignored, crowd) objects left out: YOLO has no such flag.
    pub left_out: usize,
}

/// Put `src` at `dst`: a hard link where the file system allows, else a copy.
fn place(src: &Path, dst: &Path) -> Result<()> {
    if let Some(dir) = dst.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    if std::fs::hard_link(src, dst).is_err() {
        std::fs::copy(src, dst).map_err(|e| Error::io(dst, e))?;
    }
    Ok(())
}

/// Write `sets` (each a split name, or `None` for one set, and its dataset) into the empty or
/// new folder `out` as COCO (`<split>.json` or `annotations.json`, images in `images/<split>/`
/// or `images/`) or YOLO (`images/<split>/`, `labels/<split>/`, `data.yaml`). Images are hard
/// linked where possible, else copied; their names lose any sub-folder. COCO keeps the
/// dataset's category ids ([`Dataset::category_id`]: 1..=n unless it came from COCO with
/// others); YOLO numbers classes from 0 and leaves difficult objects out (it has no such flag).
pub fn export(sets: &[(Option<String>, Dataset)], to: Format, out: &Path) -> Result<Written> {
    if !matches!(to, Format::Coco | Format::Yolo) {
        return Err(Error::Invalid(format!("fastdet writes COCO and YOLO, not {to}")));
    }
    if out.exists() && std::fs::read_dir(out).map_err(|e| Error::io(out, e))?.next().is_some() {
        return Err(Error::Dataset { path: out.into(), problem: "is not empty: give a new or empty folder".into() });
    }
    if let Some((_, first)) = sets.first() {
        if let Some((_, other)) = sets.iter().find(|(_, d)| d.classes != first.classes) {
            return Err(Error::Dataset {
                path: other.source.clone(),
                problem: format!("has other classes than {}: the splits must share them", first.source.display()),
            });
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut written = Written::default();
    let mut yaml_splits = vec![];
    for (split, ds) in sets {
        let sub = |dir: &str| match split {
            Some(s) => out.join(dir).join(s),
            None => out.join(dir),
        };
        let mut copy = ds.clone();
        copy.image_dir = sub("images");
        let mut seen = std::collections::HashSet::new();
        for (i, rec) in copy.images.iter_mut().enumerate() {
            let name = Path::new(&rec.file_name).file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            if !seen.insert(name.clone()) {
                return Err(Error::Dataset {
                    path: ds.source.clone(),
                    problem: format!("two images are named {name}: they cannot share one folder"),
                });
            }
            place(&ds.path(i), &copy.image_dir.join(&name))?;
            rec.file_name = name;
        }
        written.images += copy.len();
        match to {
            Format::Coco => {
                let file = out.join(format!("{}.json", split.as_deref().unwrap_or("annotations")));
                json::save(&copy, &file, Flavor::Coco)?;
                written.objects += copy.num_objects();
            }
            _ => {
                let labels = sub("labels");
                std::fs::create_dir_all(&labels).map_err(|e| Error::io(&labels, e))?;
                for rec in &copy.images {
                    let lines: String = rec
                        .objects
                        .iter()
                        .filter(|o| !o.difficult)
                        .map(|o| yolo::label_line(o.class, &o.bbox, rec.width, rec.height) + "\n")
                        .collect();
                    let n = rec.objects.iter().filter(|o| !o.difficult).count();
                    written.objects += n;
                    written.left_out += rec.objects.len() - n;
                    let file = labels.join(format!("{}.txt", file_stem(Path::new(&rec.file_name))));
                    crate::util::write_atomic(&file, lines.as_bytes())?;
                }
                let dir = split.as_ref().map(|s| format!("images/{s}")).unwrap_or("images".into());
                match split.as_deref() {
                    Some(s) => yaml_splits.push((s.to_string(), dir)),
                    None => yaml_splits.extend([("train".to_string(), dir.clone()), ("val".to_string(), dir)]),
                }
            }
        }
    }
    if to == Format::Yolo {
        let classes = sets.first().map(|(_, d)| d.classes.clone()).unwrap_or_default();
        let sources: Vec<String> = sets.iter().map(|(_, d)| d.source.display().to_string()).collect();
        let note = format!("written by fastdet data convert from {}", sources.join(", "));
        crate::util::write_atomic(&out.join("data.yaml"), yolo::data_yaml(&classes, &yaml_splits, &note).as_bytes())?;
    }
    Ok(written)
}

impl DataSource {
    /// Every split (or the one set) of this source, as [`export`] takes them.
    pub fn open_all(&self) -> Result<Vec<(Option<String>, Dataset)>> {
        if self.whole.is_some() {
            return Ok(vec![(None, self.open("all")?)]);
        }
        self.splits.iter().map(|s| Ok((Some(s.name.clone()), self.open(&s.name)?))).collect()
    }
}
