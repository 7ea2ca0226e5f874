//! The gradient scaler against `torch.amp.GradScaler` (tests/golden/gen_amp.py): the same
//! gradients with infs and NaNs give the same scales, the same skipped steps and the same weights.

use crate::common;
use fastdet::learner::{GradScaler, ScalerOpts};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

fn raw(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().parse::<f32>().unwrap()).collect()
}

#[test]
fn scaler_matches_torch_amp_grad_scaler() {
    let g = common::golden("amp.json");
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let p1 = root.var_copy(
        "p1",
        &Tensor::from_slice(&common::f64s(&g["p1_init"]).iter().map(|&x| x as f32).collect::<Vec<_>>()),
    );
    let p2 = root.var_copy(
        "p2",
        &Tensor::from_slice(&common::f64s(&g["p2_init"]).iter().map(|&x| x as f32).collect::<Vec<_>>()).reshape([2, 2]),
    );
    let mut opt = nn::Sgd::default().build(&vs, g["lr"].as_f64().unwrap()).unwrap();
    let opts = ScalerOpts {
        init_scale: g["init_scale"].as_f64().unwrap(),
        growth_interval: g["growth_interval"].as_i64().unwrap(),
        ..Default::default()
    };
    let mut scaler = GradScaler::new(opts, Device::Cpu);
    let params = [p1.shallow_clone(), p2.shallow_clone()];
    let steps = g["steps"].as_array().unwrap();
    for (t, s) in steps.iter().enumerate() {
        let g1 = Tensor::from_slice(&raw(&s["g1_raw"]));
        let g2 = Tensor::from_slice(&raw(&s["g2_raw"])).reshape([2, 2]);
        opt.zero_grad();
        let loss = (&p1 * &g1).sum(Kind::Float) + (&p2 * &g2).sum(Kind::Float);
        scaler.scale_loss(&loss).backward();
        let stepped = scaler.step(&mut opt, &params).unwrap();
        assert_eq!(stepped, s["stepped"].as_bool().unwrap(), "step {t}: taken or skipped");
        assert_eq!(scaler.scale(), s["scale"].as_f64().unwrap(), "step {t}: the scale after update");
        let w1: Vec<f32> = Vec::try_from(&p1).unwrap();
        let w2: Vec<f32> = Vec::try_from(p2.reshape([-1])).unwrap();
        for (a, b) in w1.iter().chain(&w2).zip(common::f64s(&s["p1"]).iter().chain(&common::f64s(&s["p2"]))) {
            assert!((*a as f64 - b).abs() <= 1e-6 * b.abs().max(1.0), "step {t}: weight {a} vs PyTorch's {b}");
        }
    }
    let skipped = steps.iter().filter(|s| !s["stepped"].as_bool().unwrap()).count();
    let scales: Vec<f64> = steps.iter().map(|s| s["scale"].as_f64().unwrap()).collect();
    assert!(skipped >= 3 && scales.windows(2).any(|w| w[1] > w[0]), "the sequence backs off and grows: {scales:?}");
    assert_eq!((scaler.skipped, scaler.steps), (skipped, steps.len() - skipped));
}
