//! Training-step throughput of the lesson's single-object detector (ResNet34 body + the
//! detection head), in images per second, fp32 or mixed precision, on the CPU or a GPU: what the
//! GPU bundle's check runs beside PyTorch doing the same step (`gpu/train_step_peer.py`).
//!
//!   cargo run --release --example train_step -- [--bs 64] [--sz 224] [--warmup 5] [--steps 20] [--amp]
//!
//! A step is the learner's: forward (under autocast with `--amp`), `detn_loss` in fp32,
//! backward (through the gradient scaler with `--amp`), Adam. Random weights and one random
//! batch, seeded; the device is `fastdet::device::default_device()` (`FASTDET_DEVICE` to force
//! one). The clock starts after the warm-up steps (cuDNN's benchmark mode picks its algorithms
//! there) and stops when the last loss is read back, which waits for the GPU. Output: a line
//! `RESULT {json}`.

use fastdet::learner::{GradScaler, ScalerOpts};
use fastdet::loss::detn_loss;
use fastdet::model::{Arch, ConvModel, HeadKind};
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
    let device = fastdet::device::default_device();
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let model = ConvModel::new(&vs, Arch::ResNet34, HeadKind::Detection { n_classes: 20, p: 0.5 }, sz);
    let x = Tensor::randn([bs, 3, sz, sz], (Kind::Float, device));
    let bbox = (Tensor::rand([bs, 4], (Kind::Float, device)) * sz as f64).sort(1, false).0;
    let class = Tensor::randint(20, [bs], (Kind::Int64, device));
    let mut opt = nn::Adam::default().build(&vs, 1e-4)?;
    let mut scaler = amp.then(|| GradScaler::new(ScalerOpts::default(), device));
    let params = vs.trainable_variables();
    let mut step = || -> anyhow::Result<Tensor> {
        let out = tch::autocast(amp, || model.forward(&x, true, 0));
        let loss = detn_loss(&out.to_kind(Kind::Float), &bbox, &class, sz as f64, 20.0);
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
        "framework": "fastdet", "device": fastdet::device::describe(device), "amp": amp, "bs": bs, "sz": sz,
        "steps": steps, "secs": secs, "img_per_s": (bs as f64 * steps as f64) / secs,
        "ms_per_step": secs * 1000.0 / steps as f64, "loss_first": first, "loss_last": last,
        "gpu_memory": fastdet::device::gpu_memory_used(),
    });
    anyhow::ensure!(first.is_finite() && last.is_finite(), "train_step: a non-finite loss ({first} then {last})");
    println!("RESULT {result}");
    Ok(())
}
