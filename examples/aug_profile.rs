use fastdet::transforms::*;
use std::time::Instant;
fn main() {
    let pascal = fastdet::data::Pascal::open(fastdet::data::sample_root()).unwrap();
    let ds = pascal.json("train").unwrap();
    let imgs: Vec<_> = (0..ds.len()).map(|i| ds.image(i).unwrap()).collect();
    let tfms = Tfms::new(224, vec![RandomFlip { p: 0.5 }.into(), RandomRotate { deg: 3.0, p: 0.5 }.into(), RandomLighting { b: 0.05, c: 0.05 }.into()], CropType::No, TfmY::Coord).unwrap();
    let scaled: Vec<_> = imgs.iter().map(|im| scale_to(im, 224).unwrap().0).collect();
    let n = imgs.len();
    let best = |f: &dyn Fn() -> ()| { f(); (0..5).map(|_| { let t = Instant::now(); f(); t.elapsed().as_secs_f64() }).fold(f64::INFINITY, f64::min) * 1e3 / n as f64 };
    println!("scale_to          {:.3} ms/img", best(&|| { for im in &imgs { std::hint::black_box(scale_to(im, 224).unwrap()); } }));
    for (name, steps) in [("plain squash", vec![Step::Lighting { b: 0.01, c: 1.02 }]), ("flip", vec![Step::Flip, Step::Lighting { b: 0.01, c: 1.02 }]), ("rotate", vec![Step::Rotate(2.0), Step::Lighting { b: 0.01, c: 1.02 }])] {
        let plan = Plan { steps, crop_offset: (0.0, 0.0) };
        println!("apply_plan {name:12} {:.3} ms/img", best(&|| { for s in &scaled { std::hint::black_box(tfms.apply_plan(s, &[], &plan)); } }));
    }
    println!("apply (all)       {:.3} ms/img", best(&|| { for (k, im) in imgs.iter().enumerate() { std::hint::black_box(tfms.apply(im, &[], k as u64).unwrap()); } }));
}
