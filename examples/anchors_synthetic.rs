//! The lesson's anchors against anchors fitted to the data (issue 22, part 3), on the synthetic
//! shapes: the coverage of both on the training and validation boxes, then the same SSD (same
//! seed, same initial weights, same batches, same epochs) trained once with each, and the VOC07
//! mAP of both on the validation split. `make bench-anchors` runs it.
//!
//!     cargo run --release --example anchors_synthetic [-- --epochs N --n-train N --lr LR
//!                                                        --generations G --seed S --ssd-seed S
//!                                                        --dir DIR]
//!
//! `--seed` seeds the fit; `--ssd-seed` the SSD's initial weights and batches (the same for both
//! trainings).
//!
//! The defaults (5 epochs of 1,200 images at 160 px) keep both trainings within a few minutes
//! of a 2-core CPU; the shipped synthetic SSD (`make ssd-synthetic`) trains 9 epochs of 2,400.
//! The weights are not saved.

use fastdet::anchors::{fit_anchors, unit_boxes, Coverage, CoverageTable, FitOpts};
use fastdet::detect::{ssd_config, synthetic_dir, SyntheticOpts, SyntheticSsd};
use fastdet::learner::FitOpts as Schedule;
use fastdet::metrics::ApMetric;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    fastdet::data::keep_freed_batches(); // as fastdet's main does (docs/data.md)
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let epochs: usize = arg("--epochs").map(|s| s.parse()).transpose()?.unwrap_or(5);
    let lr: f64 = arg("--lr").map(|s| s.parse()).transpose()?.unwrap_or(3e-3);
    let seed: u64 = arg("--seed").map(|s| s.parse()).transpose()?.unwrap_or(0);
    let generations: usize = arg("--generations").map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let dir = arg("--dir").map(std::path::PathBuf::from).unwrap_or_else(|| synthetic_dir().join("bench-anchors"));
    let opts = SyntheticOpts {
        n_train: arg("--n-train").map(|s| s.parse()).transpose()?.unwrap_or(1200),
        seed: arg("--ssd-seed").map(|s| s.parse()).transpose()?.unwrap_or(0),
        ..SyntheticOpts::default()
    };
    let device = fastdet::device::default_device();
    let started = Instant::now();

    // The lesson's anchors on the grids the head makes at this size, and anchors fitted to the
    // training boxes with the same grids and as many zooms and ratios.
    let mut lesson = SyntheticSsd::with_opts(&dir, device, opts.clone())?;
    let lesson_anchors = ssd_config(&lesson.learn)?.anchors;
    let trn_boxes = unit_boxes(&lesson.trn, opts.sz)?;
    let fit = fit_anchors(&lesson_anchors, &trn_boxes, &FitOpts { seed, generations, ..Default::default() })?;
    println!(
        "fitted to {} training boxes: zooms {:?}, ratios {:?}",
        trn_boxes.len(),
        fit.config.zooms,
        fit.config.ratios
    );
    let val_boxes = unit_boxes(&lesson.val, opts.sz)?;
    for (split, boxes) in [("training", &trn_boxes), ("validation", &val_boxes)] {
        let table = CoverageTable {
            rows: vec![
                ("lesson".into(), Coverage::new(&lesson_anchors, boxes)?),
                ("fitted".into(), Coverage::new(&fit.config, boxes)?),
            ],
        };
        println!("coverage of the {split} boxes at {} px:\n{table}", opts.sz);
    }

    let mut fitted = SyntheticSsd::with_opts(&dir, device, SyntheticOpts { anchors: fit.config.clone(), ..opts })?;
    let mut rows = vec![];
    for (name, ssd) in [("lesson", &mut lesson), ("fitted", &mut fitted)] {
        let t = Instant::now();
        println!("training with the {name} anchors: {epochs} epochs, lr {lr}");
        ssd.learn.fit(lr, 1, Schedule::clr(epochs, 10., 5))?;
        let secs = t.elapsed().as_secs_f64();
        let map = ssd.evaluate(0.01, ApMetric::Voc07)?.map;
        let cov = Coverage::new(&ssd_config(&ssd.learn)?.anchors, &val_boxes)?;
        rows.push((name, cov.recall(), cov.mean_best_iou(), map, secs));
    }
    println!(
        "\n{} epochs of {} images at {} px (weights and batches seed {}, fit seed {seed}), lr {lr}, on {}:",
        epochs,
        lesson.trn.len(),
        opts.sz,
        opts.seed,
        fastdet::device::describe(device)
    );
    println!("{:<8} {:>15} {:>14} {:>10} {:>10}", "anchors", "val IoU > 0.5", "val mean IoU", "VOC07 mAP", "train s");
    for (name, recall, iou, map, secs) in rows {
        println!("{name:<8} {:>13.1} % {iou:>14.3} {map:>10.3} {secs:>10.0}", 100.0 * recall);
    }
    println!("({:.0} s in all)", started.elapsed().as_secs_f32());
    Ok(())
}
