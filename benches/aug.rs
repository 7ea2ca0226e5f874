//! Throughput of the lesson's augmentation with boxes (`make bench-aug` runs this through
//! benches/aug_peers.py, which prints it next to albumentations and torchvision).
//!
//! Pipeline: RandomFlip(p = 0.5), RandomRotate { deg: 3, p: 0.5 }, RandomLighting(0.05, 0.05),
//! CropType::No to 224, normalised CHW floats, boxes moved (TfmY::Coord): `Tfms::apply`, which
//! is `scale_to` (short side 224) + a plan drawn from the seed + `apply_plan`.
//! Samples: the 65 photos of data/coco128-voc (train + val) cycled to 300.
//! Modes: from decoded `RgbImage`s (decoding excluded) and from JPEG bytes in memory
//! (`fastdet::data::decode_for_warp`, the loader's decoding: libjpeg-turbo, at a reduced DCT
//! scale when the photo is at least twice the size, then `Tfms::apply_warp`, which samples such
//! a reduced image straight through the composed map), each on a 1-thread rayon pool and on all
//! threads.
//!
//! Output: one JSON object on stdout (progress on stderr).
//!   cargo bench --bench aug                          # the timings
//!   cargo bench --bench aug -- --samples 600 --reps 5
//!   cargo bench --bench aug -- --boxes IN.json OUT.json
//! `--boxes` reads cases in the format of tests/golden/aug_boxes.json and writes fastdet's boxes
//! for each (`[input index, x0, y0, x1, y1]`, continuous edges), for the peers' agreement check.

use fastdet::boxes::BBox;
use fastdet::data::{sample_root, Pascal};
use fastdet::transforms::{move_boxes, CropType, Plan, RandomFlip, RandomLighting, RandomRotate, Step, TfmY, Tfms};
use rayon::prelude::*;
use serde_json::{json, Value};
use std::time::Instant;

struct Sample {
    jpeg: Vec<u8>,
    image: image::RgbImage,
    boxes: Vec<BBox>,
}

fn load_samples() -> Vec<Sample> {
    let pascal = Pascal::open(sample_root()).expect("bundled sample");
    let mut out = vec![];
    for split in ["train", "val"] {
        let ds = pascal.json(split).expect("sample JSON");
        for i in 0..ds.len() {
            out.push(Sample {
                jpeg: std::fs::read(ds.path(i)).expect("JPEG"),
                image: ds.image(i).expect("decodable"),
                boxes: ds.annotations(i).into_iter().map(|(b, _)| b).collect(),
            });
        }
    }
    out
}

fn pipeline() -> Tfms {
    Tfms::new(
        224,
        vec![
            RandomFlip { p: 0.5 }.into(),
            RandomRotate { deg: 3.0, p: 0.5 }.into(),
            RandomLighting { b: 0.05, c: 0.05 }.into(),
        ],
        CropType::No,
        TfmY::Coord,
    )
    .unwrap()
}

/// One pass over `n` samples on `pool`; returns seconds and a checksum (keeps the work alive).
fn pass(pool: &rayon::ThreadPool, tfms: &Tfms, samples: &[Sample], n: usize, from_jpeg: bool) -> (f64, f64) {
    let start = Instant::now();
    let check: f64 = pool.install(|| {
        (0..n)
            .into_par_iter()
            .map(|k| {
                let s = &samples[k % samples.len()];
                let aug = if from_jpeg {
                    // The loader's path: decoded at a reduced DCT scale when large enough.
                    let scaled = fastdet::data::decode_for_warp(&s.jpeg, tfms.sz).expect("decode");
                    tfms.apply_warp(&scaled, &s.boxes, k as u64)
                } else {
                    tfms.apply(&s.image, &s.boxes, k as u64).expect("augment")
                };
                aug.image[aug.image.len() / 2] as f64 + aug.boxes.len() as f64
            })
            .sum()
    });
    (start.elapsed().as_secs_f64(), check)
}

fn bench(samples: &[Sample], n: usize, reps: usize) -> Value {
    let tfms = pipeline();
    let all = rayon::current_num_threads();
    let mut rows = vec![];
    for threads in [1, all] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut row = json!({ "library": "fastdet", "threads": threads });
        for (key, from_jpeg) in [("decoded", false), ("jpeg", true)] {
            if std::env::var("FASTDET_BENCH_ONLY").is_ok_and(|m| m != key) {
                continue; // (for profiling one mode)
            }
            // Warm-up, then the best of `reps` passes: the machine is shared, the best pass is the least disturbed.
            pass(&pool, &tfms, samples, n.min(32), from_jpeg);
            let times: Vec<f64> = (0..reps).map(|_| pass(&pool, &tfms, samples, n, from_jpeg).0).collect();
            let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
            let img_s = n as f64 / best;
            eprintln!(
                "fastdet {threads} thread(s), from {key}: {img_s:.0} img/s ({:.2} ms/img), passes {:?} s",
                1e3 / img_s,
                times.iter().map(|t| (t * 1e3).round() / 1e3).collect::<Vec<_>>()
            );
            row[format!("{key}_img_s")] = json!(img_s);
            row[format!("{key}_ms_img")] = json!(1e3 / img_s);
        }
        rows.push(row);
    }
    json!({ "samples": n, "distinct_images": samples.len(), "reps": reps, "rows": rows })
}

/// fastdet's boxes for the golden cases (see tests/it/aug_golden.rs for the reasoning).
fn boxes_mode(input: &str, output: &str) {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(input).expect("read cases")).expect("JSON");
    let edges = |b: &BBox| [b.left as f64, b.top as f64, b.right as f64 + 1.0, b.bottom as f64 + 1.0];
    let mut out = vec![];
    for c in doc["cases"].as_array().unwrap() {
        let (w, h) = (c["width"].as_u64().unwrap() as u32, c["height"].as_u64().unwrap() as u32);
        let mut steps = vec![];
        let mut squash = None;
        for op in c["ops"].as_array().unwrap() {
            match op[0].as_str().unwrap() {
                "flip" => steps.push(Step::Flip),
                "rotate" => steps.push(Step::Rotate(op[1].as_f64().unwrap() as f32)),
                "squash" => squash = Some(c["out_size"][0].as_u64().unwrap() as u32),
                other => panic!("unknown op {other}"),
            }
        }
        let boxes: Vec<BBox> = c["boxes_in"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let v: Vec<f32> = b.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
                BBox::new(v[1], v[0], v[3] - 1.0, v[2] - 1.0)
            })
            .collect();
        let plan = Plan { steps, crop_offset: (0.0, 0.0) };
        // Without a squash, squash to the long side and undo it (CropType::No always squashes).
        let sz = squash.unwrap_or(w.max(h));
        let tfms = Tfms::new(sz, vec![], CropType::No, TfmY::Coord).unwrap();
        let (moved, kept) = move_boxes(&boxes, &tfms.forward_map(&plan, w, h), sz);
        let (kx, ky) = if squash.is_some() { (1.0, 1.0) } else { (w as f64 / sz as f64, h as f64 / sz as f64) };
        let got: Vec<Value> = moved
            .iter()
            .zip(&kept)
            .map(|(b, &i)| {
                let [x0, y0, x1, y1] = edges(b);
                json!([i, x0 * kx, y0 * ky, x1 * kx, y1 * ky])
            })
            .collect();
        out.push(json!({ "name": c["name"], "fastdet": got }));
    }
    std::fs::write(output, serde_json::to_string(&json!({ "cases": out })).unwrap()).expect("write");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let flag = |name: &str| args.iter().position(|a| a == name);
    if let Some(i) = flag("--boxes") {
        boxes_mode(&args[i + 1], &args[i + 2]);
        return;
    }
    let num = |name: &str, default: usize| flag(name).map(|i| args[i + 1].parse().expect(name)).unwrap_or(default);
    let (n, reps) = (num("--samples", 300), num("--reps", 3));
    let samples = load_samples();
    eprintln!("{} images cycled to {n} samples, best of {reps} passes", samples.len());
    println!("{}", bench(&samples, n, reps));
}
