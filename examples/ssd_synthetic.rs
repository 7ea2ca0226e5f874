//! A detector that learns, on a CPU, in minutes: SSD with a ResNet18 trained from scratch on the
//! synthetic shapes set (written by the crate, seeded), evaluated with VOC07 mAP on its
//! validation split. fastdet ships the result (`assets/models/ssd_synthetic.safetensors`, fp16),
//! which notebooks 03-06 use; `make ssd-synthetic` retrains it from the seed and writes it again
//! (`--ship`), so `git status` shows whether the retraining reproduced it bit for bit.
//!
//!     cargo run --release --example ssd_synthetic [-- --epochs N --lr LR --dir DIR --ship FILE
//!                                                    --shipped --report PAGE]
//!
//! `--shipped` only evaluates the shipped weights; `--report` also writes the evaluation page
//! (what the detector misses and confuses) of the validation split.

use fastdet::detect::{shipped_synthetic_weights, synthetic_dir, ShippedSsd, SyntheticOpts, SyntheticSsd};
use fastdet::metrics::ApMetric;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    fastdet::data::keep_freed_batches(); // as fastdet's main does (docs/data.md)
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
    let mut ssd = SyntheticSsd::with_opts(&dir, fastdet::device::default_device(), opts.clone())?;
    println!("synthetic set: {} val images of {:?} in {}", ssd.val.len(), ssd.val.classes, dir.display());
    if args.iter().any(|a| a == "--shipped") {
        println!("the shipped weights: {}", shipped_synthetic_weights().display());
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
    let ship = arg("--ship").map(std::path::PathBuf::from);
    let before = ship.as_ref().and_then(|p| std::fs::read(p).ok());
    if let Some(path) = &ship {
        ssd.ship(path)?; // evaluated below as shipped: fp16
    }
    let dets = ssd.detections(0.01)?;
    let table = fastdet::metrics::evaluate(&ssd.val, &dets, ApMetric::Voc07)?;
    println!("{table}");
    if let Some(path) = &ship {
        let stated = ShippedSsd {
            voc07_map: table.map,
            epochs,
            lr,
            seed: 0,
            opts: format!("{opts:?}"),
            torch: torch_version(),
            threads: tch::get_num_threads(),
        };
        std::fs::write(path.with_extension("json"), serde_json::to_string_pretty(&stated)? + "\n")?;
        let same = before.as_deref() == Some(std::fs::read(path)?.as_slice());
        println!(
            "wrote {} (fp16) and its statement {}: {}",
            path.display(),
            path.with_extension("json").display(),
            match (&before, same) {
                (None, _) => "a new file".to_string(),
                (Some(_), true) => "identical, bit for bit, to the file that was there".to_string(),
                (Some(_), false) => "it DIFFERS from the file that was there (see git diff --stat)".to_string(),
            }
        );
    }
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

/// The version of the PyTorch whose libtorch this build links (`LIBTORCH_USE_PYTORCH`: the
/// `python` on PATH, which `scripts/env.sh` makes the venv's).
fn torch_version() -> String {
    std::process::Command::new("python")
        .args(["-c", "import torch; print(torch.__version__)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
