//! A detector that learns, on a CPU, in minutes: SSD with a ResNet18 trained from scratch on the
//! synthetic shapes set (written by the crate, seeded), evaluated with VOC07 mAP on its
//! validation split. `make ssd-synthetic` runs it; the weights go to a per-user cache
//! (`fastdet::detect::synthetic_dir()`), where notebook 06 finds them.
//!
//!     cargo run --release --example ssd_synthetic [-- --epochs N --lr LR --dir DIR --if-missing --report PAGE]
//!
//! `--if-missing` only evaluates when trained weights are already there; `--report` also writes
//! the evaluation page (what the detector misses and confuses) of the validation split.

use fastdet::detect::{synthetic_dir, SyntheticOpts, SyntheticSsd};
use fastdet::metrics::ApMetric;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let epochs: usize = arg("--epochs").map(|s| s.parse()).transpose()?.unwrap_or(9);
    let lr: f64 = arg("--lr").map(|s| s.parse()).transpose()?.unwrap_or(3e-3);
    let dir = arg("--dir").map(std::path::PathBuf::from).unwrap_or_else(synthetic_dir);
    let started = Instant::now();

    let d = SyntheticOpts::default();
    let opts = SyntheticOpts {
        sz: arg("--sz").map(|s| s.parse()).transpose()?.unwrap_or(d.sz),
        n_train: arg("--n-train").map(|s| s.parse()).transpose()?.unwrap_or(d.n_train),
        bs: arg("--bs").map(|s| s.parse()).transpose()?.unwrap_or(d.bs),
        drop: arg("--drop").map(|s| s.parse()).transpose()?.unwrap_or(d.drop),
        ..d
    };
    println!("{opts:?}");
    let mut ssd = SyntheticSsd::with_opts(&dir, fastdet::device::default_device(), opts)?;
    println!("synthetic set: {} val images of {:?} in {}", ssd.val.len(), ssd.val.classes, dir.display());
    if args.iter().any(|a| a == "--if-missing") && ssd.weights().is_file() {
        println!("trained weights found: {}", ssd.weights().display());
        ssd.load_trained()?;
    } else {
        println!("training from scratch: {epochs} epochs, lr {lr} (about 90 s an epoch on 2 cores)");
        let t = std::time::Instant::now();
        ssd.train(lr, epochs)?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "trained {epochs} epochs in {secs:.1} s: {:.1} s per epoch on {}",
            secs / epochs.max(1) as f64,
            fastdet::device::describe(fastdet::device::default_device())
        );
    }
    let dets = ssd.detections(0.01)?;
    let table = fastdet::metrics::evaluate(&ssd.val, &dets, ApMetric::Voc07)?;
    println!("{table}");
    if let Some(page) = arg("--report") {
        let opts =
            fastdet::show::ReportOpts { title: format!("synthetic SSD, {}", dir.display()), ..Default::default() };
        let report = fastdet::show::detection_report(&ssd.val, &dets, None, opts)?;
        report.save(&page)?;
        println!("{}\nwrote {page}", report.confusion);
    }
    println!(
        "VOC07 mAP on the synthetic validation set: {:.3} ({:.0} s in all)",
        table.map,
        started.elapsed().as_secs_f32()
    );
    Ok(())
}
