//! Training-step throughput of the lesson's single-object detector (ResNet34 body + the
//! detection head) or, with `--head ssd`, of lesson 9's SSD (ResNet34 + `SsdMultiHead`, 189
//! anchors, `Loss::Ssd` on padded targets of 1-4 random boxes an image), in images per second, fp32 or mixed precision, on the CPU or a GPU: what the
//! GPU bundle's check runs beside PyTorch doing the same step (`gpu/train_step_peer.py`).
//!
//!   cargo run --release --example train_step -- [--bs 64] [--sz 224] [--warmup 5] [--steps 20] [--amp] [--head ssd]
//!
//! A step is the learner's: forward (under autocast with `--amp`), `detn_loss` in fp32,
//! backward (through the gradient scaler with `--amp`), Adam. Random weights and one random
//! batch, seeded; the device is `fastdet::device::default_device()` (`FASTDET_DEVICE` to force
//! one). The clock starts after the warm-up steps (cuDNN's benchmark mode picks its algorithms
//! there) and stops when the last loss is read back, which waits for the GPU. Output: a line
//! `RESULT {json}`.

use fastdet::data::{BatchTarget, TargetKind, VOC_CLASSES};
use fastdet::learner::{GradScaler, ScalerOpts};
use fastdet::model::{Arch, HeadKind, Loss, Model, ModelSpec, SsdConfig};
use std::time::Instant;
use tch::nn::{self, OptimizerConfig};
use tch::{Kind, Tensor};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)) {
        Some(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("train_step: bad value {v:?} for {name}");
            std::process::exit(2)
        }),
        None => default,
    }
}

fn main() -> anyhow::Result<()> {
    let (bs, sz): (i64, i64) = (arg("--bs", 64), arg("--sz", 224));
    let (warmup, steps): (usize, usize) = (arg("--warmup", 5), arg("--steps", 20));
    let amp = std::env::args().any(|a| a == "--amp");
    let ssd = arg("--head", "detection".to_string()) == "ssd";
    let device = fastdet::device::default_device();
    tch::manual_seed(0);
    let cfg = SsdConfig::lesson_189(20).fitted_to(sz as u32);
    let classes = VOC_CLASSES.iter().map(|c| c.to_string()).collect();
    let spec = if ssd {
        ModelSpec::new(TargetKind::AllBoxes, classes, sz as u32, Arch::ResNet34, HeadKind::Ssd(cfg), Loss::Ssd {})
    } else {
        let head = HeadKind::Detection { n_classes: 20, p: 0.5 };
        ModelSpec::new(TargetKind::BoxClass, classes, sz as u32, Arch::ResNet34, head, Loss::detn(sz as f64))
    };
    let model = Model::new(spec, device);
    let vs = &model.vs;
    let x = Tensor::randn([bs, 3, sz, sz], (Kind::Float, device));
    let bbox = (Tensor::rand([bs, 4], (Kind::Float, device)) * sz as f64).sort(1, false).0;
    let class = Tensor::randint(20, [bs], (Kind::Int64, device));
    // The SSD's targets: 4 rows an image, the last 1..=4 of them objects (at least 8 px a side).
    let n_objects = Tensor::randint_low(1, 5, [bs], (Kind::Int64, device));
    let corners = (Tensor::rand([bs, 4, 2, 2], (Kind::Float, device)) * (sz - 8) as f64).sort(2, false).0; // [B, 4, 2, 2]
    let lo = corners.select(2, 0); // [B, 4, 2]
    let boxes = Tensor::cat(&[&lo, &(corners.select(2, 1) + 8.0)], 2).round(); // [B, 4, 4]
    let real = Tensor::arange(4, (Kind::Int64, device)).unsqueeze(0).ge_tensor(&(-&n_objects + 4).unsqueeze(1)); // [B, 4]
    let y = BatchTarget::Boxes {
        bbox: boxes * real.unsqueeze(2),
        class: Tensor::randint(20, [bs, 4], (Kind::Int64, device)) * &real,
        n_objects,
    };
    let single = BatchTarget::BoxClass { bbox: bbox.shallow_clone(), class: class.shallow_clone() };
    let mut opt = nn::Adam::default().build(vs, 1e-4)?;
    let mut scaler = amp.then(|| GradScaler::new(ScalerOpts::default(), device));
    let params = vs.trainable_variables();
    let mut step = || -> anyhow::Result<Tensor> {
        let out = tch::autocast(amp, || model.forward_t(&x, true, 0)).float();
        let loss = if ssd { model.loss(&out, &y)? } else { model.loss(&out, &single)? };
        match scaler.as_mut() {
            Some(s) => {
                opt.zero_grad();
                s.scale_loss(&loss).backward();
                s.step(&mut opt, &params)?;
            }
            None => opt.backward_step(&loss),
        }
        Ok(loss.detach())
    };
    let first = f64::try_from(step()?)?;
    for _ in 1..warmup.max(1) {
        let _ = step()?;
    }
    f64::try_from(step()?)?; // waits for the GPU before the clock starts
    let t = Instant::now();
    let mut last = Tensor::zeros([], (Kind::Float, device));
    for _ in 0..steps {
        last = step()?;
    }
    let last = f64::try_from(&last)?;
    let secs = t.elapsed().as_secs_f64();
    let result = serde_json::json!({
        "framework": "fastdet", "head": if ssd { "ssd" } else { "detection" }, "device": fastdet::device::describe(device), "amp": amp, "bs": bs, "sz": sz,
        "steps": steps, "secs": secs, "img_per_s": (bs as f64 * steps as f64) / secs,
        "ms_per_step": secs * 1000.0 / steps as f64, "loss_first": first, "loss_last": last,
        "gpu_memory": fastdet::device::gpu_memory_used(),
    });
    anyhow::ensure!(first.is_finite() && last.is_finite(), "train_step: a non-finite loss ({first} then {last})");
    println!("RESULT {result}");
    Ok(())
}
