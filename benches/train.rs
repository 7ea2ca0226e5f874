//! One training step of the lesson's single-object detector in fastdet: ResNet34 body + the
//! detection head (`HeadKind::Detection`), batch 8 at 224x224, every group trainable, forward +
//! `detn_loss` + backward + Adam (tch's `nn::Adam::default()`, as `torch.optim.Adam`'s
//! defaults on the PyTorch side; the learner's own Adam, which saves its state for `--resume`,
//! follows the same PyTorch algorithm). `make bench-train` runs this through
//! benches/train_peer.py, which times the same model in PyTorch.
//!
//!   cargo bench --bench train -- --dir DIR [--model detector|ssd] [--warmup 2] [--steps 5] [--threads 2] [--lr 1e-4]
//!
//! With `--model ssd` the model is lesson 9's SSD (ResNet34 + `SsdMultiHead`, 189 anchors, the
//! config's dropout set to DIR's `p`) and the step is the learner's: forward, `Loss::Ssd` (the
//! batch matched on the device), backward, Adam; DIR then holds `bbox.npy` float32 [8, N, 4]
//! padded pixel boxes, `class.npy` int64 [8, N] and `n_objects.npy` int64 [8].
//!
//! DIR (written by train_peer.py): `weights.pth` (every variable under fastdet's names: the
//! torchvision body's `state_dict` names, and `head.lin1`, `head.bn`, `head.lin2` for the head),
//! `x.npy` float32 [8, 3, 224, 224], `bbox.npy` float32 [8, 4] (pixels), `class.npy` int64 [8],
//! `config.json` (`{"p": dropout}`). Output: one line `RESULT {json}` on stdout with the loss of
//! every step (warm-up included; step 0 runs before any update) and the timed steps' seconds.

use fastdet::data::{BatchTarget, TargetKind, VOC_CLASSES};
use fastdet::model::{read_state_dict, Arch, HeadKind, Loss, Model, ModelSpec, SsdConfig};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Tensor};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("bad value for {name}")))
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir: PathBuf = arg(&args, "--dir", String::new()).into();
    if dir.as_os_str().is_empty() {
        eprintln!("usage: cargo bench --bench train -- --dir DIR (see benches/train_peer.py, `make bench-train`)");
        std::process::exit(2);
    }
    let warmup: usize = arg(&args, "--warmup", 2);
    let steps: usize = arg(&args, "--steps", 5);
    let threads: i32 = arg(&args, "--threads", 2);
    let lr: f64 = arg(&args, "--lr", 1e-4);
    let ssd = arg(&args, "--model", "detector".to_string()) == "ssd";
    tch::set_num_threads(threads);

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let p = config["p"].as_f64().unwrap();
    let sz = 224;
    let mut cfg = SsdConfig::lesson_189(20);
    (cfg.drop, cfg.conv_drop) = (p, p);
    let classes = VOC_CLASSES.iter().map(|c| c.to_string()).collect();
    let spec = if ssd {
        ModelSpec::new(TargetKind::AllBoxes, classes, sz, Arch::ResNet34, HeadKind::Ssd(cfg), Loss::Ssd {})
    } else {
        let head = HeadKind::Detection { n_classes: 20, p };
        ModelSpec::new(TargetKind::BoxClass, classes, sz, Arch::ResNet34, head, Loss::detn(sz as f64))
    };
    let model = Model::new(spec, Device::Cpu);
    let vs = &model.vs;
    // Every variable (body and head) from the one file, by name.
    let file: std::collections::HashMap<String, Tensor> =
        read_state_dict(&dir.join("weights.pth")).unwrap().into_iter().collect();
    let vars = vs.variables();
    tch::no_grad(|| {
        for (name, var) in &vars {
            let src = file.get(name).unwrap_or_else(|| panic!("weights.pth has no {name}"));
            assert_eq!(src.size(), var.size(), "{name}");
            var.shallow_clone().copy_(src);
        }
    });
    let x = Tensor::read_npy(dir.join("x.npy")).unwrap();
    let bbox = Tensor::read_npy(dir.join("bbox.npy")).unwrap();
    let class = Tensor::read_npy(dir.join("class.npy")).unwrap();
    let boxes = ssd.then(|| BatchTarget::Boxes {
        bbox: bbox.shallow_clone(),
        class: class.shallow_clone(),
        n_objects: Tensor::read_npy(dir.join("n_objects.npy")).unwrap(),
    });
    eprintln!("fastdet: {} variables loaded, x {:?}, {threads} threads, dropout {p}", vars.len(), x.size());

    let mut opt = nn::Adam::default().build(vs, lr).unwrap();
    let (mut losses, mut secs, mut phases) = (vec![], vec![], vec![]);
    for step in 0..warmup + steps {
        let t = Instant::now();
        opt.zero_grad();
        let out = model.forward_t(&x, true, 0);
        let loss = match &boxes {
            Some(y) => model.loss(&out, y).unwrap(),
            None => model
                .loss(&out, &BatchTarget::BoxClass { bbox: bbox.shallow_clone(), class: class.shallow_clone() })
                .unwrap(),
        };
        let t_fwd = t.elapsed().as_secs_f64();
        loss.backward();
        let t_bwd = t.elapsed().as_secs_f64();
        opt.step();
        let value = f64::try_from(&loss).unwrap();
        let dt = t.elapsed().as_secs_f64();
        phases.push([t_fwd, t_bwd - t_fwd, dt - t_bwd]);
        losses.push(value);
        if step >= warmup {
            secs.push(dt);
        }
        let [f, b, o] = phases[step];
        eprintln!(
            "fastdet step {step}: loss {value:.6}, {:.1} ms (forward {:.0}, backward {:.0}, Adam {:.0})",
            dt * 1e3,
            f * 1e3,
            b * 1e3,
            o * 1e3
        );
    }
    println!(
        "RESULT {}",
        json!({ "framework": "fastdet", "threads": threads, "losses": losses, "secs": secs, "phases_s": phases, "warmup": warmup })
    );
}
