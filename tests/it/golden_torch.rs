//! fastdet against PyTorch / torchvision / fastai 0.7, value for value.
//!
//! - ResNet bodies: `tests/golden/gen_resnet34.py` builds a torchvision ResNet (random init,
//!   non-trivial BatchNorm statistics), saves its `state_dict` with `torch.save`, an input and
//!   `nn.Sequential(*list(m.children())[:-2])(x)` in eval mode. The weights are ~85 MB, so they
//!   are not checked in: the test runs the script into a temporary directory (python from
//!   `$PYTHON`, else `python3`/`python` on PATH; `make test` provides the venv). A missing python
//!   fails the test; a python without torch/torchvision skips it with a message. Weights go
//!   through `scripts/convert_weights.py` (.safetensors) and a plain-dict `.pth`; the
//!   `state_dict()` `.pth` itself cannot be read yet (see the ignored test).
//! - `detn_loss` value and gradient: `tests/golden/detn_loss.json` (`gen_detn_loss.py`).
//! - One to three Adam steps: `tests/golden/adam.json` (`gen_adam.py`, `torch.optim.Adam`).
//! - Learning-rate schedules: `tests/golden/schedules.json` (`gen_schedules.py`, a verbatim copy
//!   of fastai 0.7's `CosAnneal`, `CircularLR` and `LR_Finder` driven as fastai's fit loop does).

use fastdet::model::loss::{detn_loss, Loss};
use fastdet::model::{load_backbone, Arch, ConvModel, HeadKind, ResNetBody};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::common::{f64s, golden, tensor};

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// ResNet bodies against torchvision

/// The python that has torch (see the module docs).
pub(crate) fn python() -> Option<String> {
    let candidates: Vec<String> = match std::env::var("PYTHON") {
        Ok(p) if !p.is_empty() => vec![p],
        _ => vec!["python3".into(), "python".into()],
    };
    let mut found_any = false;
    for py in &candidates {
        match Command::new(py).args(["-c", "import torch, torchvision"]).output() {
            Ok(o) if o.status.success() => return Some(py.clone()),
            Ok(_) => found_any = true,
            Err(_) => {}
        }
    }
    assert!(
        found_any,
        "no python found (tried {candidates:?}): run the tests with `make test`, or `source scripts/env.sh` first, or set PYTHON"
    );
    // Under `make test` the references are always there: missing is a failure, not a skip.
    assert!(
        std::env::var_os("FASTDET_REQUIRE_REFERENCES").is_none_or(|v| v.is_empty() || v == "0"),
        "{candidates:?} cannot import torch and torchvision, and FASTDET_REQUIRE_REFERENCES is set (make test): the golden references must run"
    );
    eprintln!("SKIPPED: {candidates:?} cannot import torch and torchvision; `source scripts/env.sh` (or `make test`) provides them");
    None
}

/// What `gen_resnet34.py` wrote into a temp dir (kept alive by `_dir`).
struct TorchvisionGolden {
    _dir: tempfile::TempDir,
    py: String,
    /// `torch.save(m.state_dict())`: an OrderedDict, as torchvision's downloads.
    state_dict_pth: PathBuf,
    /// `torch.save(dict(m.state_dict()))`
    plain_dict_pth: PathBuf,
    x: Tensor,
    features: Tensor,
}

/// Runs `gen_resnet34.py --arch <arch> --plain-dict` into a temp dir; `None` when torch is
/// unavailable.
fn torchvision_golden(arch: Arch, size: i64) -> Option<TorchvisionGolden> {
    let py = python()?;
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gen_resnet34.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg(dir.path())
        .args(["--arch", arch.name(), "--size", &size.to_string(), "--plain-dict"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let name = arch.name();
    let p = |f: String| dir.path().join(f);
    Some(TorchvisionGolden {
        x: Tensor::read_npy(p(format!("{name}_x.npy"))).unwrap(),
        features: Tensor::read_npy(p(format!("{name}_features.npy"))).unwrap(),
        state_dict_pth: p(format!("{name}.pth")),
        plain_dict_pth: p(format!("{name}_dict.pth")),
        py,
        _dir: dir,
    })
}

/// Loads `weights` into a fresh body and compares its eval-mode features with torchvision's.
fn check_body(arch: Arch, weights: &Path, x: &Tensor, expected: &Tensor) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let body = ResNetBody::new(&vs.root(), arch);
    let n = load_backbone(&mut vs, weights).unwrap_or_else(|e| panic!("load_backbone({}): {e}", weights.display()));
    assert_eq!(n, vs.variables().len(), "every body variable is loaded");
    let y = tch::no_grad(|| body.forward_groups(x, [false, false]));
    assert_eq!(y.size(), expected.size());
    let diff = max_abs_diff(&y, expected);
    let scale = f64::try_from(expected.abs().max()).unwrap();
    eprintln!(
        "{} {:?} from {}: max |fastdet - torchvision| = {diff:.3e} (max |y| = {scale:.3})",
        arch.name(),
        y.size(),
        weights.file_name().unwrap().to_string_lossy()
    );
    assert!(diff < 1e-4, "{}: features differ from torchvision by {diff} (max |y| {scale})", arch.name());
}

/// `scripts/convert_weights.py IN.pth OUT.safetensors`, the conversion fastdet's error message
/// points to.
fn convert_to_safetensors(py: &str, pth: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/convert_weights.py");
    let out_path = pth.with_extension("safetensors");
    let out = Command::new(py).arg(&script).arg(pth).arg(&out_path).output().unwrap();
    assert!(out.status.success(), "convert_weights.py failed: {}", String::from_utf8_lossy(&out.stderr));
    out_path
}

/// The features through both readers fastdet has: `.safetensors` (converted from torchvision's
/// state dict by scripts/convert_weights.py) and a `torch.save`d plain dict (`loadz_multi`).
fn resnet_value_check(arch: Arch, size: i64) {
    let Some(g) = torchvision_golden(arch, size) else { return };
    let st = convert_to_safetensors(&g.py, &g.state_dict_pth);
    check_body(arch, &st, &g.x, &g.features);
    check_body(arch, &g.plain_dict_pth, &g.x, &g.features);
}

#[test]
fn resnet34_body_matches_torchvision() {
    let _rng = crate::common::torch_rng();
    resnet_value_check(Arch::ResNet34, 128);
}

#[test]
fn resnet18_body_matches_torchvision() {
    let _rng = crate::common::torch_rng();
    resnet_value_check(Arch::ResNet18, 128);
}

#[test]
fn resnet50_body_matches_torchvision() {
    let _rng = crate::common::torch_rng();
    // Bottleneck blocks, downsample in layer1.0; a small input keeps it cheap.
    resnet_value_check(Arch::ResNet50, 64);
}

/// `model.state_dict()` saved as it is (an OrderedDict, like torchvision's ImageNet downloads)
/// cannot be read by libtorch's C++ loader ("Expected GenericDict but got None"): the error must
/// name the file and say how to convert it (scripts/convert_weights.py), which the test above
/// shows gives the same features.
#[test]
fn an_ordered_dict_pth_gets_an_error_saying_how_to_convert_it() {
    let _rng = crate::common::torch_rng();
    let Some(g) = torchvision_golden(Arch::ResNet18, 64) else { return };
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _body = ResNetBody::new(&vs.root(), Arch::ResNet18);
    let e = fastdet::model::load_backbone(&mut vs, &g.state_dict_pth).unwrap_err().to_string();
    assert!(e.contains("convert_weights.py") && e.contains(&g.state_dict_pth.display().to_string()), "{e}");
}

#[test]
fn resnet_body_shapes() {
    let _rng = crate::common::torch_rng();
    for (arch, c) in [(Arch::ResNet18, 512), (Arch::ResNet34, 512), (Arch::ResNet50, 2048)] {
        let vs = nn::VarStore::new(Device::Cpu);
        let body = ResNetBody::new(&vs.root(), arch);
        for (sz, side) in [(224, 7), (64, 2), (100, 4)] {
            let y = tch::no_grad(|| {
                body.forward_groups(&Tensor::zeros([1, 3, sz, sz], (Kind::Float, Device::Cpu)), [false, false])
            });
            assert_eq!(y.size(), vec![1, c, side, side], "{} at {sz}", arch.name());
            assert_eq!(fastdet::model::feature_side(sz), side);
        }
        // torchvision's parameter counts without fc: resnet18 11,689,512 - 513,000;
        // resnet34 21,797,672 - 513,000; resnet50 25,557,032 - 2,049,000.
        let expected = match arch {
            Arch::ResNet18 => 11_689_512 - 513_000,
            Arch::ResNet34 => 21_797_672 - 513_000,
            Arch::ResNet50 => 25_557_032 - 2_049_000,
        };
        assert_eq!(fastdet::model::count_params(&vs, ""), expected, "{}", arch.name());
    }
}

// ---------------------------------------------------------------------------------------------
// detn_loss against PyTorch

#[test]
fn detn_loss_value_and_gradient_match_pytorch() {
    let _rng = crate::common::torch_rng();
    let g = golden("detn_loss.json");
    for c in g["cases"].as_array().unwrap() {
        let out = tensor(&c["out"], &[4, 24]).set_requires_grad(true);
        let bbox = tensor(&c["bbox"], &[4, 4]);
        let class =
            Tensor::from_slice(&c["class"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect::<Vec<_>>());
        let sz = c["sz"].as_f64().unwrap();
        let w = c["class_weight"].as_f64().unwrap();
        let loss = detn_loss(&out.narrow(1, 0, 4), &out.narrow(1, 4, 20), &bbox, &class, sz, w);
        let value = f64::try_from(&loss).unwrap();
        let expected = c["loss"].as_f64().unwrap();
        assert!(((value - expected) / expected).abs() < 1e-5, "seed {}: loss {value} vs PyTorch {expected}", c["seed"]);
        // The same through Loss::compute, as the learner calls it.
        let y = fastdet::data::BatchTarget::BoxClass { bbox: bbox.shallow_clone(), class: class.shallow_clone() };
        let typed = fastdet::model::ModelOutput::single_from_packed(&out);
        let via = f64::try_from(Loss::detn(sz).compute(&typed, &y).unwrap()).unwrap();
        assert!(((via - expected) / expected).abs() < 1e-5);
        loss.backward();
        let grad = to_vec(&out.grad());
        let want = f64s(&c["grad"]);
        let gmax = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, (a, b)) in grad.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(gmax * 1e-2),
                "seed {}: grad[{i}] {a} vs PyTorch {b}",
                c["seed"]
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Adam against torch.optim.Adam

#[test]
fn adam_steps_match_torch_optim_adam() {
    let _rng = crate::common::torch_rng();
    let g = golden("adam.json");
    // tch's defaults against the ones the generator recorded from torch.optim.Adam.
    let d = &g["defaults"];
    let a = nn::Adam::default();
    assert_eq!([a.beta1, a.beta2], [f64s(&d["betas"])[0], f64s(&d["betas"])[1]]);
    assert_eq!(a.eps, d["eps"].as_f64().unwrap());
    assert_eq!(a.wd, d["weight_decay"].as_f64().unwrap());
    assert_eq!(a.amsgrad, d["amsgrad"].as_bool().unwrap());
    for c in g["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "lin", 5, 3, Default::default());
        tch::no_grad(|| {
            lin.ws.shallow_clone().copy_(&tensor(&c["weight0"], &[3, 5]));
            lin.bs.as_ref().unwrap().shallow_clone().copy_(&tensor(&c["bias0"], &[3]));
        });
        let x = tensor(&c["x"], &[4, 5]);
        let y = tensor(&c["y"], &[4, 3]);
        let steps = c["steps"].as_array().unwrap();
        // As Learner::optimizer builds it: nn::Adam::default().build(&vs, lr), then set_lr_group.
        let mut opt = nn::Adam::default().build(&vs, f64s(&steps[0]["lr"])[0]).unwrap();
        for (k, s) in steps.iter().enumerate() {
            opt.set_lr_group(0, s["lr"].as_f64().unwrap());
            let out = x.apply(&lin);
            let loss = match c["loss"].as_str().unwrap() {
                "mse_loss" => out.mse_loss(&y, tch::Reduction::Mean),
                "l1_loss" => out.l1_loss(&y, tch::Reduction::Mean),
                other => panic!("unknown loss {other}"),
            };
            let lv = f64::try_from(&loss).unwrap();
            assert!((lv - s["loss"].as_f64().unwrap()).abs() < 1e-5, "{name} step {k}: loss {lv} vs {}", s["loss"]);
            opt.backward_step(&loss);
            let dw = max_abs_diff(&lin.ws, &tensor(&s["weight"], &[3, 5]));
            let db = max_abs_diff(lin.bs.as_ref().unwrap(), &tensor(&s["bias"], &[3]));
            assert!(dw < 1e-6 && db < 1e-6, "{name} after step {}: weight off by {dw:e}, bias by {db:e}", k + 1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Learning-rate schedules against fastai 0.7

#[test]
fn schedules_match_fastai_0_7() {
    let _rng = crate::common::torch_rng();
    use fastdet::learner::Schedule;
    let g = golden("schedules.json");
    let mut n = 0;
    for c in g["cases"].as_array().unwrap() {
        let nb = c["nb"].as_u64().unwrap() as usize;
        let mut sched = match c["kind"].as_str().unwrap() {
            "circular" => Schedule::circular(nb, c["div"].as_f64().unwrap(), c["cut_div"].as_u64().unwrap() as usize),
            "cos_anneal" => Schedule::cos_anneal(nb, c["cycle_mult"].as_u64().unwrap() as usize),
            _ => continue, // lr_finder: see lr_find_matches_fastai_0_7
        };
        if c.get("error").is_some_and(|e| !e.is_null()) {
            continue; // see circular_schedule_with_fewer_batches_than_cut_div
        }
        let want = f64s(&c["mults"]);
        assert_eq!(want.len() as u64, c["n_iter"].as_u64().unwrap());
        for (i, w) in want.iter().enumerate() {
            let got = sched.next_mult();
            assert!(
                (got - w).abs() < 1e-12,
                "{c_kind} nb={nb} {c}: batch {i}: fastdet {got} vs fastai {w}",
                c_kind = c["kind"],
                c = brief(c)
            );
        }
        n += 1;
    }
    assert!(n >= 15, "only {n} schedule cases");
}

fn brief(c: &Value) -> String {
    let mut c = c.clone();
    c.as_object_mut().unwrap().remove("mults");
    c.to_string()
}

/// fastai 0.7 raises ZeroDivisionError here (`cut_pt = nb // cut_div = 0`, then `0 / 0`), e.g.
/// `fit(lr, 1, cycle_len=1, use_clr=(32, 10))` with fewer than 10 batches per epoch; fastdet
/// puts the peak one iteration in (cut_pt = 1) and comes down linearly.
#[test]
fn circular_schedule_with_fewer_batches_than_cut_div() {
    let _rng = crate::common::torch_rng();
    let mut s = fastdet::learner::Schedule::circular(7, 32.0, 10);
    let m: Vec<f64> = (0..7).map(|_| s.next_mult()).collect();
    assert!(m.iter().all(|v| v.is_finite()), "multipliers {m:?}");
    assert_eq!(m[0], 1.0 / 32.0);
    assert_eq!(m[1], 1.0);
    assert!(m.windows(2).skip(1).all(|w| w[1] < w[0]), "{m:?}");
}

#[test]
fn lr_find_matches_fastai_0_7() {
    let _rng = crate::common::torch_rng();
    use fastdet::data::{sample_root, DataOpts, ImageData, Pascal, TargetKind};
    use fastdet::learner::{Learner, LearnerOpts};
    use fastdet::task::TaskParts;
    use fastdet::transforms::{tfms_from_model, CropType, TfmY};
    tch::manual_seed(0);
    let sz = 32;
    let trn = Pascal::open(sample_root()).unwrap().json("train").unwrap();
    let tfms = tfms_from_model(sz, vec![], CropType::No, TfmY::Coord).unwrap();
    let data = ImageData::from_dataset(trn, TargetKind::BoxClass, tfms, DataOpts::new(4, Device::Cpu)).unwrap();
    let nb = data.trn_dl.len();
    let parts = TaskParts {
        target: TargetKind::BoxClass,
        head: HeadKind::detection(20),
        loss: Loss::detn(sz as f64),
        metrics: vec![],
    };
    let mut l = Learner::new(data, parts, LearnerOpts::default().arch(Arch::ResNet18)).unwrap();
    let found = l.lr_find(1e-5, 10.0).unwrap();
    let g = golden("schedules.json");
    let case = g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "lr_finder" && c["nb"].as_u64() == Some(nb as u64))
        .unwrap_or_else(|| panic!("no lr_finder case for nb={nb} in schedules.json: add it to gen_schedules.py"));
    let want = f64s(&case["lrs"]);
    // fastai stops on divergence before recording that batch; compare what both ran.
    let k = want.len().min(found.lrs.len());
    assert!(k >= 10.min(nb), "lr_find ran {} batches", found.lrs.len());
    for (i, (&a, &b)) in found.lrs.iter().zip(&want).take(k).enumerate() {
        assert!(((a - b) / b).abs() < 1e-12, "lr_find batch {i}: fastdet {a} vs fastai {b}");
    }
}

/// The losses lr_find records and where it stops, on raw loss sequences fed through fastai
/// 0.7's own `fit` smoothing and `LR_Finder.on_batch_end` (tests/golden/gen_schedules.py):
/// a fall then a blow-up, a NaN, a first loss over 4x fastai's initial best, a calm run, and a
/// spike before iteration 10 (which must not stop it).
#[test]
fn lr_finder_losses_and_stop_rule_match_fastai_0_7() {
    let _rng = crate::common::torch_rng();
    use fastdet::learner::LrFinder;
    let g = golden("schedules.json");
    let cases: Vec<&serde_json::Value> =
        g["cases"].as_array().unwrap().iter().filter(|c| c["kind"] == "lr_finder_losses").collect();
    assert_eq!(cases.len(), 5, "schedules.json lacks the lr_finder_losses cases: run gen_schedules.py");
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let nb = c["nb"].as_u64().unwrap() as usize;
        let raw: Vec<f64> = c["raw"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect();
        let mut finder = LrFinder::new(&[1e-5 / 100.0, 1e-5 / 10.0, 1e-5], 10.0, nb);
        let (mut stepped, mut batches) = (vec![], 0);
        for &loss in &raw[..nb] {
            let lrs = finder.lrs();
            assert!(((lrs[0] * 100.0 - lrs[2]) / lrs[2]).abs() < 1e-12, "{name}: the groups keep their ratios");
            stepped.push(lrs[2]);
            batches += 1;
            if finder.on_batch_end(loss).1 {
                break;
            }
        }
        assert_eq!(batches as u64, c["batches"].as_u64().unwrap(), "{name}: batches run before the stop");
        let found = finder.finish();
        for (what, ours, want) in [
            ("stepped lr", &stepped, f64s(&c["stepped"])),
            ("recorded lr", &found.lrs, f64s(&c["lrs"])),
            ("loss", &found.losses, f64s(&c["losses"])),
        ] {
            assert_eq!(ours.len(), want.len(), "{name}: {what} count");
            for (i, (a, b)) in ours.iter().zip(&want).enumerate() {
                assert!(((a - b) / b).abs() < 1e-12, "{name}: {what} {i}: fastdet {a} vs fastai {b}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The detection model's head names, which benches/train.rs maps PyTorch's onto.

#[test]
fn detection_head_variable_names() {
    let _rng = crate::common::torch_rng();
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = ConvModel::new(&vs, Arch::ResNet34, HeadKind::detection(20), 224);
    let mut head: Vec<(String, Vec<i64>)> =
        vs.variables().into_iter().filter(|(n, _)| n.starts_with("head.")).map(|(n, t)| (n, t.size())).collect();
    head.sort();
    let want: Vec<(String, Vec<i64>)> = [
        ("head.bn.bias", vec![256]),
        ("head.bn.running_mean", vec![256]),
        ("head.bn.running_var", vec![256]),
        ("head.bn.weight", vec![256]),
        ("head.lin1.bias", vec![256]),
        ("head.lin1.weight", vec![256, 25088]),
        ("head.lin2.bias", vec![24]),
        ("head.lin2.weight", vec![24, 256]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect();
    assert_eq!(head, want);
}
