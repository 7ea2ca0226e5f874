//! `fastdet train --resume` after a kill in the middle of a stage: it continues from the last
//! epoch `last/` saved (weights, optimiser, schedule position, epoch count) and ends with the
//! weights an uninterrupted run ends with, bit for bit. The run trains on a YOLO folder (the
//! bundled sample through `fastdet data convert --to yolo`), as a user's own export would be.

use fastdet::data::sample_root;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tch::Tensor;

/// The bundled sample as a YOLO folder (`images/{train,val}`, `labels/{train,val}`,
/// `data.yaml`), written by `fastdet data convert`.
fn yolo_sample(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("sample-yolo");
    let run = Command::new(env!("CARGO_BIN_EXE_fastdet"))
        .args(["data", "convert"])
        .arg(sample_root())
        .arg(&out)
        .args(["--to", "yolo"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stdout).contains("(YOLO): 65 images, 312 objects"));
    out
}

/// A small seeded SSD run: ResNet18 with random weights at 32 px on the sample as a YOLO folder
/// (its val split validates), one stage of 4 epochs with the triangular schedule (the rate
/// changes every batch, so a resumed schedule in the wrong place shows) keeping the best epoch
/// by map.
fn config(dir: &Path) -> std::path::PathBuf {
    let text = format!(
        r#"{{
        "data": {data:?}, "val_split": "val",
        "task": "ssd", "arch": "resnet18", "sz": 32, "bs": 8, "device": "cpu", "seed": 7,
        "augmentations": [{{"type": "flip"}}, {{"type": "lighting", "b": 0.05, "c": 0.05}}],
        "stages": [
            {{"freeze_to": "unfreeze", "lrs": [1e-3], "cycle_len": 4, "use_clr": [10, 4], "keep_best": "map"}}
        ]}}"#,
        data = yolo_sample(dir).display().to_string()
    );
    let path = dir.join("resume.json");
    std::fs::write(&path, text).unwrap();
    path
}

fn train(config: &Path, run: &Path, resume: bool) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fastdet"));
    c.arg("train").arg("--config").arg(config).arg("--run-dir").arg(run);
    if resume {
        c.arg("--resume");
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn finish(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}

/// Epochs the fit in `last/state.json` has done, if it is there.
fn last_fit_epochs(run: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(run.join("last/state.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["fit"]["epochs_done"].as_u64()
}

fn tensors(path: &Path) -> Vec<(String, Tensor)> {
    let mut v = Tensor::read_safetensors(path).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn resume_continues_a_killed_stage_and_ends_with_the_uninterrupted_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let (whole, cut) = (tmp.path().join("whole"), tmp.path().join("cut"));
    let t = Instant::now();
    let whole_out = finish(train(&cfg, &whole, false));
    let whole_secs = t.elapsed().as_secs_f64();

    // The same run, killed (SIGKILL) once its first epoch is saved in last/.
    let mut child = train(&cfg, &cut, false);
    let t = Instant::now();
    let before_kill = loop {
        if let Some(n) = last_fit_epochs(&cut).filter(|&n| n >= 1) {
            child.kill().unwrap();
            child.wait().unwrap();
            break n;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(t.elapsed() < Duration::from_secs(300), "no epoch saved in 300 s");
        std::thread::sleep(Duration::from_millis(5));
    };
    // What survived the kill: the epochs last/ holds (one, or more if the kill came late).
    let saved = last_fit_epochs(&cut).unwrap();
    assert!(saved >= before_kill && saved < 4, "killed mid-stage: {saved} of 4 epochs saved");
    assert!(!cut.join("stage-1.safetensors").exists(), "the stage did not finish");

    let t = Instant::now();
    let resumed = finish(train(&cfg, &cut, true));
    let resumed_secs = t.elapsed().as_secs_f64();
    assert!(
        resumed.contains(&format!("resuming stage 1/1 after its epoch {saved} of 4")),
        "the stage continues, not restarts:\n{resumed}"
    );
    let trained: u64 = resumed
        .lines()
        .find_map(|l| l.strip_prefix("epochs trained by this call: "))
        .unwrap_or_else(|| panic!("no epoch count in:\n{resumed}"))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(trained, 4 - saved, "only the missing epochs are trained");

    // Bit for bit the uninterrupted run's weights, and the same best epoch.
    let (a, b) = (tensors(&whole.join("stage-1.safetensors")), tensors(&cut.join("stage-1.safetensors")));
    assert_eq!(a.len(), b.len());
    let mut max_diff = 0f64;
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        if matches!(ta.kind(), tch::Kind::Float | tch::Kind::Double | tch::Kind::Half) {
            max_diff = max_diff.max(f64::try_from((ta - tb).abs().max()).unwrap());
        }
        assert!(ta.equal(tb), "{na} differs from the uninterrupted run's");
    }
    let best =
        |run: &Path| std::fs::read_to_string(run.join("best/best.json")).unwrap().replace(&*run.to_string_lossy(), "");
    assert_eq!(best(&whole), best(&cut), "the same best epoch, value and file");
    let progress: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cut.join("progress.json")).unwrap()).unwrap();
    assert_eq!(progress["epochs"].as_array().unwrap().len(), 4, "the stage's table has all its epochs");
    eprintln!(
        "resume: killed with {saved} of 4 epochs saved, {trained} trained after --resume; max weight difference {max_diff:e}; \
         uninterrupted {whole_secs:.1} s, resumed part {resumed_secs:.1} s\n{whole_out}"
    );
}

/// A run folder written before a metric was added to its task (the SSD's map) resumes, its old
/// rows keeping their columns; a run whose metrics are not a start of the task's is refused.
#[test]
fn resume_accepts_a_run_recorded_with_fewer_metrics() {
    use fastdet::train::{TrainConfig, Trainer, PROGRESS_FILE};
    let _rng = crate::common::torch_rng();
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        r#"{{"data": {:?}, "arch": "resnet18", "sz": 32, "bs": 8, "device": "cpu", "augmentations": [],
        "stages": [{{"lrs": [1e-3]}}, {{"lrs": [1e-3]}}]}}"#,
        sample_root().display().to_string()
    );
    let cfg = TrainConfig::from_json_str(&text).unwrap();
    let run = tmp.path().join("run");
    Trainer::open(&cfg, &run, false).unwrap().run_stage().unwrap().unwrap();
    let path = run.join(PROGRESS_FILE);
    let edit = |names: &[&str]| {
        let mut p: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        p["metric_names"] = serde_json::json!(names);
        for r in p["epochs"].as_array_mut().unwrap() {
            r["metrics"] = serde_json::json!(r["metrics"].as_array().unwrap()[..names.len()].to_vec());
        }
        std::fs::write(&path, p.to_string()).unwrap();
    };
    edit(&["detn_acc"]);
    let report = Trainer::open(&cfg, &run, true).unwrap().run_all().unwrap();
    assert_eq!(
        (report.stages_run.clone(), report.metric_names.clone()),
        (vec![2], vec!["detn_acc".into(), "detn_l1".into()])
    );
    edit(&["detn_l1"]);
    let e = Trainer::open(&cfg, &run, true).err().unwrap().to_string();
    assert!(e.contains("are not this task's"), "{e}");
}
