//! A detector that learns, on a CPU, in minutes: SSD with a ResNet18 trained from scratch on the
//! synthetic shapes set (written by the crate, seeded), evaluated with VOC07 mAP on its
//! validation split. `make ssd-synthetic` runs it.
//!
//!     cargo run --release --example ssd_synthetic [-- --epochs N --lr LR --thresh T --out DIR [--reuse]]

use fastdet::data::synthetic::{self, SyntheticConfig};
use fastdet::data::{DataLoader, DetDataset, ImageData, TargetKind};
use fastdet::learner::{FitOpts, Learner};
use fastdet::loss::Loss;
use fastdet::metrics::{evaluate, Metric};
use fastdet::model::{feature_side, Arch, HeadKind};
use fastdet::nms::NmfOpts;
use fastdet::ssd::SsdConfig;
use fastdet::transforms::{tfms_from_model, CropType, RandomFlip, TfmY};
use std::sync::Arc;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let epochs: usize = arg("--epochs").map(|s| s.parse()).transpose()?.unwrap_or(25);
    let lr: f64 = arg("--lr").map(|s| s.parse()).transpose()?.unwrap_or(3e-3);
    let out = std::path::PathBuf::from(arg("--out").unwrap_or("out/synthetic".into()));
    let started = Instant::now();
    tch::manual_seed(0);

    let cfg = SyntheticConfig { n_train: 640, n_val: 160, size: 128, max_objects: 3, min_frac: 0.25, max_frac: 0.6, seed: 0 };
    let pascal = synthetic::write(out.join("data"), &cfg)?;
    let (trn, val) = (pascal.json("train")?, pascal.json("val")?);
    println!("synthetic set: {} train / {} val images of {} classes in {}", trn.len(), val.len(), trn.classes.len(), out.display());

    let sz = 128u32;
    let mut ssd = SsdConfig::lesson_189(trn.classes.len() as i64);
    ssd.anchors.grids = ssd.head_grids(feature_side(sz as i64));
    let device = fastdet::device::default_device();
    let tfms = tfms_from_model(sz, vec![RandomFlip::default().into()], CropType::No, TfmY::Coord)?;
    let md = ImageData::from_dataset(trn, TargetKind::AllBoxes, tfms.clone(), 32, 0.1, 42, 0, device)?;
    let mut learn = Learner::new(md, Arch::ResNet18, HeadKind::Ssd(ssd.clone()), Loss::Ssd { cfg: ssd.clone(), sz: sz as f64 }, vec![], None)?;
    learn.models_dir = out.join("models");
    learn.unfreeze();
    if args.iter().any(|a| a == "--reuse") {
        learn.load("ssd_synthetic")?; // evaluate the weights of an earlier run
    } else {
        learn.fit(lr, 1, FitOpts::clr(epochs, 10., 5))?;
        learn.save("ssd_synthetic")?;
    }

    let val_ds = DetDataset::new(Arc::new(val.clone()), (0..val.len()).collect(), tfms.1, TargetKind::AllBoxes, false)?;
    let val_dl = DataLoader::new(val_ds, 32, false, 0, device)?;
    let thresh: f32 = arg("--thresh").map(|s| s.parse()).transpose()?.unwrap_or(0.01);
    let dets = fastdet::detect::detections(&learn, &val_dl, NmfOpts { thresh, overlap: 0.4, top_k: 100 })?;
    let table = evaluate(&val, &dets, Metric::Voc07)?;
    println!("{table}");
    println!("VOC07 mAP on the synthetic validation set: {:.3} ({} detections, {:.0} s in all)", table.map, dets.len(), started.elapsed().as_secs_f32());
    Ok(())
}
