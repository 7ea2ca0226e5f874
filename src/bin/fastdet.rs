//! The fastdet command line: a thin layer over the library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use fastdet::data::{DataSource, Dataset, Format};
use fastdet::metrics::ApMetric;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "fastdet", version, about = "fast.ai's object-detection lessons (Pascal VOC, ResNet34, SSD) in Rust")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Source {
    /// A dataset: a folder in the lesson's layout, COCO, YOLO or VOC XML, or a COCO JSON file
    /// (default: $FASTDET_DATA, data/pascal, or the bundled sample)
    #[arg(long)]
    data: Option<PathBuf>,
    /// Split: one the data names (train, val, test...); data of one set: train (all of it) or
    /// val (its seeded 20 %)
    #[arg(long, default_value = "train")]
    split: String,
    /// The data's format (default: detected)
    #[arg(long, value_enum)]
    format: Option<Format>,
}

/// The dataset at `data` (or the default root), in `format` or the one detected.
fn data_source(data: Option<&std::path::Path>, format: Option<Format>) -> Result<DataSource> {
    let path = data.map(PathBuf::from).unwrap_or_else(fastdet::data::default_root);
    Ok(match format {
        Some(f) => DataSource::with_format(&path, f)?,
        None => DataSource::detect(&path)?,
    })
}

impl Source {
    fn load(&self) -> Result<Dataset> {
        Ok(data_source(self.data.as_deref(), self.format)?.open(&self.split)?)
    }
}

/// What `fastdet data` does.
#[derive(Subcommand)]
enum DataCommand {
    /// The format found in a folder (or COCO JSON file), its splits, counts and classes.
    Info {
        path: PathBuf,
        /// Read it as this format instead of detecting it
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Write every split of a dataset as COCO JSON or YOLO into a new (or empty) folder; images
    /// are hard-linked where possible, else copied.
    Convert {
        path: PathBuf,
        #[arg(long, value_enum)]
        to: Format,
        out: PathBuf,
        /// Read the input as this format instead of detecting it
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Look at a split before training: objects and images per class, objects per image, box
    /// sizes and aspects, where centres fall, tiny and border boxes; --report writes an HTML page
    /// with the pictures and random images.
    Stats {
        path: PathBuf,
        #[arg(long, default_value = "train")]
        split: String,
        /// The training size: boxes under 4 px at it are tiny
        #[arg(long, default_value_t = 224)]
        sz: u32,
        /// Write the page here
        #[arg(long)]
        report: Option<PathBuf>,
        /// Seed of the random images on the page
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Do the anchors fit the boxes? The coverage of the lesson's 4x4 and 189 anchors at a
    /// training size, and of anchors fitted to the split (k-means with 1 - IoU, then a genetic
    /// refinement).
    Anchors {
        path: PathBuf,
        #[arg(long, default_value = "train")]
        split: String,
        #[arg(long, default_value_t = 224)]
        sz: u32,
        /// Seed of the fit
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Generations of each genetic refinement
        #[arg(long, default_value_t = 1000)]
        generations: usize,
        /// Draw the objects the lesson's 189 anchors leave uncovered (the 12 worst, with the
        /// anchor nearest each) to this PNG
        #[arg(long)]
        uncovered: Option<PathBuf>,
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// The device fastdet computes on (CUDA when a GPU is usable, else the CPU; FASTDET_DEVICE
    /// overrides), and a small computation there checked against the CPU.
    Device,
    /// Count images, objects and objects per class of a split.
    Info(Source),
    /// Datasets in other formats: what a folder holds (info), COCO or YOLO from any (convert).
    #[command(subcommand)]
    Data(DataCommand),
    /// Write the lesson's JSON (pascal_<split>2007.json) from VOC XML annotations.
    Voc2json {
        /// The VOCdevkit/VOC2007 folder
        voc: PathBuf,
        split: String,
        out: PathBuf,
    },
    /// Draw one image with its boxes and class names to a PNG file.
    Draw {
        #[command(flatten)]
        source: Source,
        /// Index of the image in the split
        #[arg(long, default_value_t = 0)]
        index: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the lesson's CSV files (lrg.csv, bb.csv, mc.csv, mbb.csv) into a folder.
    Csv {
        #[command(flatten)]
        source: Source,
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Mean average precision of detections (COCO results JSON: image_id, category_id = class
    /// index + 1, bbox [x, y, w, h], score) against a split's ground truth.
    Eval {
        /// A dataset in any format (see `data info`), a VOCdevkit/VOC2007 folder, or a JSON file
        /// (default: $FASTDET_DATA, data/pascal, or the bundled sample)
        #[arg(long)]
        data: Option<PathBuf>,
        /// Split (a JSON file given as --data is its own split)
        #[arg(long, default_value = "val")]
        split: String,
        /// The data's format (default: detected)
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// The detections, COCO results format
        #[arg(long)]
        detections: PathBuf,
        #[arg(long, value_enum, default_value = "voc07")]
        metric: ApMetric,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
        /// Also write one HTML page: mAP (VOC07, VOC, COCO), per-class AP, PR curves, the
        /// confusion matrix, the worst images and a sample, ground truth beside prediction
        #[arg(long)]
        report: Option<PathBuf>,
        /// Detections scoring below this are left out of the report's confusion matrix and
        /// pictures (the mAP uses them all)
        #[arg(long, default_value_t = 0.25)]
        score_thresh: f32,
    },
    /// What a checkpoint of any task says about images (--model FILE --image a.jpg ...), or the
    /// detections of a trained SSD run on a split as COCO results JSON (--weights RUN --out FILE,
    /// pictures with --draw).
    Predict {
        /// A checkpoint (any task: fastdet's checkpoints say what their model is): print what it
        /// predicts for each --image
        #[arg(long, conflicts_with = "weights", requires = "image")]
        model: Option<PathBuf>,
        /// Images for --model
        #[arg(long, num_args = 1.., requires = "model")]
        image: Vec<PathBuf>,
        /// A run folder of `fastdet train` (its config.json, progress.json and checkpoints)
        #[arg(long, required_unless_present = "model")]
        weights: Option<PathBuf>,
        #[command(flatten)]
        source: Source,
        /// The detections file to write (with --weights)
        #[arg(long, required_unless_present = "model")]
        out: Option<PathBuf>,
        /// A folder for one picture per image with its detections
        #[arg(long)]
        draw: Option<PathBuf>,
        /// Keep class scores above this (the lesson's show_nmf: 0.25)
        #[arg(long, default_value_t = 0.25)]
        thresh: f32,
        /// Also write the evaluation report of the detections on the split (see `eval --report`)
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Train the stages of a JSON config, with a checkpoint after every stage (see
    /// examples/configs/).
    Train {
        /// The run's JSON config (every field optional; `{}` is the lesson's detector)
        #[arg(long)]
        config: PathBuf,
        /// Where config.json, progress.json and the stage-<k> checkpoints go (default: runs/<config file stem>)
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Continue the run in --run-dir after its last completed stage
        #[arg(long)]
        resume: bool,
        /// Train at most this many stages now (the rest later with --resume)
        #[arg(long)]
        max_stages: Option<usize>,
    },
}

/// `--report`: the evaluation page of `dets` on `ds`.
fn write_report(
    ds: &Dataset,
    dets: &[fastdet::metrics::Detection],
    path: &std::path::Path,
    opts: fastdet::show::ReportOpts,
) -> Result<()> {
    let started = std::time::Instant::now();
    let report = fastdet::show::detection_report(ds, dets, None, opts)?;
    report.save(path)?;
    println!(
        "wrote the report {} ({:.1} s): {}",
        path.display(),
        started.elapsed().as_secs_f32(),
        report.confusion.summary()
    );
    Ok(())
}

/// Errors print their message alone (no backtrace, even with `RUST_BACKTRACE=1`): they name the
/// file and the problem; a failure inside libtorch adds the backtrace when one was captured.
fn main() -> std::process::ExitCode {
    // A program that trains and evaluates: malloc keeps freed batches (docs/data.md).
    fastdet::data::keep_freed_batches();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let internal = e.downcast_ref::<fastdet::Error>().is_some_and(|f| !f.is_user_error());
            if internal && e.backtrace().status() == std::backtrace::BacktraceStatus::Captured {
                eprintln!("{}", e.backtrace());
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info(source) => {
            let ds = source.load()?;
            println!("{}: {} images, {} objects", ds.source.display(), ds.len(), ds.num_objects());
            for (name, n) in ds.classes.iter().zip(ds.class_counts()) {
                println!("  {name:12} {n}");
            }
        }
        Command::Data(DataCommand::Info { path, format }) => {
            print!("{}", data_source(Some(&path), format)?.describe()?);
        }
        Command::Data(DataCommand::Convert { path, to, out, format }) => {
            let source = data_source(Some(&path), format)?;
            let sets = source.open_all()?;
            let w = fastdet::data::export(&sets, to, &out)?;
            let left_out = match w.left_out {
                0 => String::new(),
                n => format!(", {n} ignored objects left out (YOLO has no such flag)"),
            };
            println!("wrote {} ({to}): {} images, {} objects{left_out}", out.display(), w.images, w.objects);
        }
        Command::Data(DataCommand::Stats { path, split, sz, report, seed, format }) => {
            let ds = data_source(Some(&path), format)?.open(&split)?;
            let stats = fastdet::data::DatasetStats::new(&ds, sz)?;
            print!("{stats}");
            if let Some(page) = report {
                let opts = fastdet::show::DataReportOpts {
                    title: format!("{} ({split})", path.display()),
                    seed,
                    ..fastdet::show::DataReportOpts::new(sz)
                };
                fastdet::show::dataset_report_with(&ds, opts)?.save(&page)?;
                println!("wrote the report {}", page.display());
            }
        }
        Command::Data(DataCommand::Anchors { path, split, sz, seed, generations, uncovered, format }) => {
            use fastdet::anchors::{fit_anchors, unit_boxes, Coverage, CoverageTable, FitOpts};
            use fastdet::model::ssd::SsdConfig;
            let ds = data_source(Some(&path), format)?.open(&split)?;
            let boxes = unit_boxes(&ds, sz)?;
            anyhow::ensure!(!boxes.is_empty(), "{}: no objects (not difficult) to fit anchors to", ds.source.display());
            let n = ds.classes.len() as i64;
            let opts = FitOpts { seed, generations, ..Default::default() };
            let mut table = CoverageTable { rows: vec![] };
            for (name, cfg) in [("lesson 4x4", SsdConfig::lesson_4x4(n)), ("lesson 189", SsdConfig::lesson_189(n))] {
                let anchors = cfg.fitted_to(sz).anchors;
                let fit = fit_anchors(&anchors, &boxes, &opts)?;
                table.rows.push((format!("{name} ({:?})", anchors.grids), Coverage::new(&anchors, &boxes)?));
                table.rows.push((format!("{name}, fitted"), fit.after.clone()));
                println!("{name}, fitted: zooms {:?}, ratios {:?}", fit.config.zooms, fit.config.ratios);
            }
            print!("{table}");
            if let Some(png) = uncovered {
                table.rows[2].1.plot_uncovered(&ds, sz, 12)?.save_png(&png)?;
                println!("wrote {}", png.display());
            }
        }
        Command::Voc2json { voc, split, out } => {
            let ds = Dataset::from_voc(&voc, &split)?;
            ds.save_json(&out)?;
            println!("wrote {} ({} images, {} objects)", out.display(), ds.len(), ds.num_objects());
        }
        Command::Draw { source, index, out } => {
            let ds = source.load()?;
            anyhow::ensure!(index < ds.len(), "--index {index}: the split has {} images", ds.len());
            fastdet::show::draw_idx(&ds, index)?.save_png(&out)?;
            println!("wrote {}", out.display());
        }
        Command::Csv { source, out_dir } => {
            let ds = source.load()?;
            std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
            ds.write_lrg_csv(out_dir.join("lrg.csv"))?;
            ds.write_bb_csv(out_dir.join("bb.csv"))?;
            ds.write_mc_csv(out_dir.join("mc.csv"))?;
            ds.write_mbb_csv(out_dir.join("mbb.csv"))?;
            println!("wrote lrg.csv, bb.csv, mc.csv, mbb.csv to {}", out_dir.display());
        }
        Command::Eval { data, split, format, detections, metric, json, report, score_thresh } => {
            let ds = data_source(data.as_deref(), format)?.open(&split)?;
            let dets = fastdet::metrics::load_coco_results(&detections, &ds)?;
            if let Some(path) = &report {
                let title = format!("{} on {}", detections.display(), ds.source.display());
                write_report(
                    &ds,
                    &dets,
                    path,
                    fastdet::show::ReportOpts { title, score_thresh, ..Default::default() },
                )?;
            }
            let table = fastdet::metrics::evaluate(&ds, &dets, metric)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&table)?);
            } else {
                println!(
                    "{}: {} images, {} detections from {}",
                    ds.source.display(),
                    ds.len(),
                    dets.len(),
                    detections.display()
                );
                println!("{table}");
                if metric == fastdet::metrics::ApMetric::Coco {
                    println!("{}", fastdet::metrics::coco_summary(&ds, &dets)?);
                }
            }
        }
        Command::Predict { model: Some(model), image, thresh, .. } => {
            let m = fastdet::model::Model::load(&model)?;
            println!("{}: {}", model.display(), m.spec.describe());
            let opts = fastdet::nms::NmfOpts { thresh, ..Default::default() };
            for img in &image {
                let p = m.predict_file(img, opts)?;
                let text = p.to_string();
                match text.lines().count() {
                    0 | 1 => println!("{}: {text}", img.display()),
                    _ => println!("{}:\n  {}", img.display(), text.replace('\n', "\n  ")),
                }
            }
        }
        Command::Predict { weights, source, out, draw, thresh, report, .. } => {
            let (Some(weights), Some(out)) = (weights, out) else {
                anyhow::bail!("predict: give --model FILE --image IMG, or --weights RUN_DIR --out FILE");
            };
            let ds = source.load()?;
            let opts = fastdet::nms::NmfOpts { thresh, ..Default::default() };
            let dets = fastdet::detect::predict_run(&weights, &ds, &out, opts)?;
            if let Some(dir) = &draw {
                fastdet::show::save_detections(&ds, &dets, dir)?;
            }
            println!("wrote {} detections on {} images to {}", dets.len(), ds.len(), out.display());
            if let Some(path) = &report {
                let title = format!("{} on {}", weights.display(), ds.source.display());
                // The mAP needs the low-scoring detections too (NmfOpts::evaluation); --thresh
                // filters what the confusion matrix and the pictures count.
                let scored = fastdet::detect::run_detections(&weights, &ds, fastdet::nms::NmfOpts::evaluation())?;
                write_report(
                    &ds,
                    &scored,
                    path,
                    fastdet::show::ReportOpts { title, score_thresh: thresh, ..Default::default() },
                )?;
            }
        }
        Command::Device => {
            let device = fastdet::device::default_device();
            println!("device: {}", fastdet::device::describe(device));
            println!(
                "libtorch: CUDA available {}, {} CUDA device(s), cuDNN {}",
                tch::Cuda::is_available(),
                tch::Cuda::device_count(),
                tch::Cuda::cudnn_is_available()
            );
            // A matrix product on the device, checked against the same product on the CPU.
            let a = tch::Tensor::arange(12, (tch::Kind::Float, tch::Device::Cpu)).reshape([3, 4]) / 10.0;
            let on_device = a.to_device(device).matmul(&a.to_device(device).tr()).to_device(tch::Device::Cpu);
            let on_cpu = a.matmul(&a.tr());
            println!("a @ a.T on {:?}: {:?}", device, Vec::<f32>::try_from(on_device.reshape([-1]))?);
            let diff = f64::try_from((&on_device - &on_cpu).abs().max())?;
            anyhow::ensure!(diff < 1e-3, "the product on {device:?} differs from the CPU's by {diff}");
            println!("matches the CPU's to {diff:.1e}");
        }
        Command::Train { config, run_dir, resume, max_stages } => {
            let cfg = fastdet::train::TrainConfig::from_file(&config)?;
            let run_dir = run_dir.unwrap_or_else(|| fastdet::train::default_run_dir(&config));
            let report = fastdet::train::run_stages(&cfg, &run_dir, resume, max_stages.unwrap_or(usize::MAX))?;
            println!("{report}");
        }
    }
    Ok(())
}
