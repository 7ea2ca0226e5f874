use fastdet::anchors::{fit_anchors, unit_boxes, FitOpts as AnchorFit};
use fastdet::data::synthetic;
use fastdet::prelude::*;
fn main() -> anyhow::Result<()> {
    fastdet::data::keep_freed_batches();
    let a: Vec<String> = std::env::args().collect();
    let n_train: usize = a[1].parse()?;
    let epochs: usize = a[2].parse()?;
    let lr: f64 = a[3].parse()?;
    let unfreeze = a[4] == "1";
    let fitted_anchors = a[5] == "1";
    let sz = 160u32;
    let device = default_device();
    let shapes = synthetic::cached(&synthetic::SyntheticConfig { n_train, n_val: 48, size: sz, ..Default::default() })?;
    let trn = shapes.json("train")?;
    let val = shapes.json("val")?;
    let lesson = SsdConfig::lesson_189(3).fitted_to(sz);
    let boxes = unit_boxes(&trn, sz)?;
    let fitted = fit_anchors(&lesson.anchors, &boxes, &AnchorFit { seed: 0, generations: 200, ..Default::default() })?;
    let tfms = tfms_from_model(sz, vec![RandomFlip::default().into()], CropType::No, TfmY::Coord)?;
    let md = ImageData::from_split(trn, val, TargetKind::AllBoxes, tfms, DataOpts::new(16, device))?;
    let mut cfg =
        if fitted_anchors { SsdConfig { anchors: fitted.config.clone(), ..lesson.clone() } } else { lesson.clone() };
    (cfg.drop, cfg.conv_drop) = (0.1, 0.1);
    fastdet::tch::manual_seed(0);
    let body = fastdet::detect::synthetic_body();
    let mut learn =
        Learner::new(md, TaskParts::ssd(cfg, sz), LearnerOpts::new(body, "/tmp/scratch_models").arch(Arch::ResNet18))?;
    if unfreeze {
        learn.unfreeze();
    }
    let nb = learn.data.trn_dl.len();
    let t = std::time::Instant::now();
    learn.fit(lr, 1, FitOpts::clr(epochs, 10., 5).covering_cut(nb).keep_best("map"))?;
    println!("{:.1}s", t.elapsed().as_secs_f64());
    Ok(())
}
