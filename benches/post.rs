//! `make bench-post` (benches/post_peers.py runs this): NMS and mAP of fastdet, timed on the
//! data post_peers.py writes, next to torchvision / pycocotools / faster-coco-eval there.
//!
//!     cargo bench --bench post -- <dir>     # reads <dir>/*, writes <dir>/rust.json
//!
//! Inputs (little-endian f32): nms_<n>.boxes (n x 4, x1 y1 x2 y2), nms_<n>.scores,
//! nms_<n>.classes (f32 class ids, for batched NMS); lesson.boxes (I x 189 x 4, y1 x1 y2 x2 in
//! 0..1), lesson.logits (I x 189 x 21); map_gt.json (COCO ground truth, iscrowd = difficult),
//! map_dets.json (COCO results). Single thread. Times: best of --reps runs.

use fastdet::boxes::BBox;
use fastdet::data::{Dataset, ImageRecord, Object};
use fastdet::metrics::{evaluate, load_coco_results, ApMetric};
use fastdet::nms::{batched_nms, nms, nms_detections, NmfOpts};
use fastdet::tch::Tensor;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn read_f32(p: &Path) -> Vec<f32> {
    let b = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn best_ms<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..reps {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
        out = Some(r);
    }
    (best, out.expect("reps > 0"))
}

fn coco_gt(path: &Path) -> Dataset {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("map_gt.json")).expect("json");
    let mut cats: Vec<(u64, String)> = v["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_u64().unwrap(), c["name"].as_str().unwrap().to_string()))
        .collect();
    cats.sort();
    let mut images: Vec<ImageRecord> = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|im| ImageRecord {
            id: im["id"].as_u64().unwrap(),
            file_name: im["file_name"].as_str().unwrap().into(),
            width: im["width"].as_u64().unwrap() as u32,
            height: im["height"].as_u64().unwrap() as u32,
            objects: vec![],
        })
        .collect();
    let index: std::collections::HashMap<u64, usize> = images.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    for a in v["annotations"].as_array().unwrap() {
        let b: Vec<f32> = a["bbox"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        images[index[&a["image_id"].as_u64().unwrap()]].objects.push(Object {
            bbox: BBox::from_xywh([b[0], b[1], b[2], b[3]]),
            class: a["category_id"].as_u64().unwrap() as usize - 1,
            difficult: a["iscrowd"].as_u64().unwrap_or(0) != 0,
        });
    }
    Dataset {
        source: path.into(),
        image_dir: ".".into(),
        classes: cats.into_iter().map(|c| c.1).collect(),
        category_ids: vec![],
        images,
        warnings: vec![],
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let dir =
        PathBuf::from(args.iter().find(|a| Path::new(a).is_dir()).expect("usage: cargo bench --bench post -- <dir>"));
    let reps: usize =
        args.iter().position(|a| a == "--reps").and_then(|i| args.get(i + 1)).and_then(|s| s.parse().ok()).unwrap_or(5);
    fastdet::tch::set_num_threads(1);
    let mut out = json!({});

    // NMS and batched NMS on random boxes.
    let mut sizes: Vec<usize> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".boxes")?.strip_prefix("nms_")?.parse().ok())
        .collect();
    sizes.sort();
    for n in sizes {
        let f = read_f32(&dir.join(format!("nms_{n}.boxes")));
        let boxes: Vec<[f32; 4]> = f.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect();
        let scores = read_f32(&dir.join(format!("nms_{n}.scores")));
        let classes: Vec<usize> = read_f32(&dir.join(format!("nms_{n}.classes"))).iter().map(|&c| c as usize).collect();
        let (ms, keep) = best_ms(reps, || nms(&boxes, &scores, 0.5).expect("nms"));
        let (bms, bkeep) = best_ms(reps, || batched_nms(&boxes, &scores, &classes, 0.5).expect("batched_nms"));
        eprintln!("nms n={n}: {ms:.3} ms ({} kept); batched {bms:.3} ms ({} kept)", keep.len(), bkeep.len());
        out[format!("nms_{n}")] = json!({"ms": ms, "keep": keep, "batched_ms": bms, "batched_keep": bkeep});
    }

    // The lesson's show_nmf on a batch of images.
    let lb = dir.join("lesson.boxes");
    if lb.is_file() {
        let b = read_f32(&lb);
        let l = read_f32(&dir.join("lesson.logits"));
        let (a, c1) = (189usize, 21usize);
        let n_img = b.len() / (a * 4);
        let bt: Vec<Tensor> =
            (0..n_img).map(|i| Tensor::from_slice(&b[i * a * 4..(i + 1) * a * 4]).view([a as i64, 4])).collect();
        let lt: Vec<Tensor> = (0..n_img)
            .map(|i| Tensor::from_slice(&l[i * a * c1..(i + 1) * a * c1]).view([a as i64, c1 as i64]))
            .collect();
        let (ms, dets) = best_ms(reps * 4, || {
            (0..n_img)
                .map(|i| nms_detections(&bt[i], &lt[i], 224.0, NmfOpts::default()).expect("nms_detections"))
                .collect::<Vec<_>>()
        });
        let flat: Vec<Value> = dets
            .iter()
            .enumerate()
            .flat_map(|(i, d)| d.iter().map(move |d| json!([i, d.class, d.bbox.to_array()])))
            .collect();
        eprintln!("lesson show_nmf, {n_img} images: {ms:.3} ms ({} detections)", flat.len());
        out["lesson"] = json!({"ms": ms, "images": n_img, "dets": flat});
    }

    // mAP.
    let gt = dir.join("map_gt.json");
    if gt.is_file() {
        let ds = coco_gt(&gt);
        let dets = load_coco_results(dir.join("map_dets.json"), &ds).expect("map_dets.json");
        for (metric, key) in [(ApMetric::Coco, "coco"), (ApMetric::Voc07, "voc07"), (ApMetric::Voc, "voc")] {
            let (ms, t) = best_ms(reps, || evaluate(&ds, &dets, metric).expect("evaluate"));
            eprintln!("mAP {key}: {ms:.3} ms = {:.6}", t.map);
            out[format!("map_{key}")] = json!({"ms": ms, "map": t.map, "map50": t.map50, "map75": t.map75,
                "ap": t.classes.iter().map(|c| c.ap).collect::<Vec<_>>()});
        }
        out["map_images"] = json!(ds.len());
        out["map_dets"] = json!(dets.len());
    }
    // The evaluation report (without the galleries, whose pictures decode images).
    let rgt = dir.join("report_gt.json");
    if rgt.is_file() {
        let ds = coco_gt(&rgt);
        let dets = load_coco_results(dir.join("report_dets.json"), &ds).expect("report_dets.json");
        let opts = fastdet::show::ReportOpts { n_worst: 0, n_sample: 0, ..Default::default() };
        let (ms, (report, html_len)) = best_ms(reps.min(3), || {
            let r = fastdet::show::detection_report(&ds, &dets, None, opts.clone()).expect("report");
            let n = r.to_html().len();
            (r, n)
        });
        let (pictures_ms, _) = best_ms(1, || {
            (report.tables[0].pr_figure(12).and_then(|f| f.to_png()), report.confusion.plot().and_then(|f| f.to_png()))
        });
        eprintln!("report, {} images / {} detections: {ms:.1} ms ({html_len} bytes of HTML)", ds.len(), dets.len());
        out["report"] = json!({"ms": ms, "images": ds.len(), "dets": dets.len(), "coco_map": report.tables[2].map, "pictures_ms": pictures_ms});
    }
    let p = dir.join("rust.json");
    std::fs::write(&p, serde_json::to_string(&out).expect("json")).expect("rust.json");
    eprintln!("wrote {}", p.display());
}
