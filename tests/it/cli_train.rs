//! `fastdet train`: a config file, a run directory with a checkpoint per stage, `--resume`.

use fastdet::data::sample_root;
use fastdet::train::{run, RunProgress, TrainConfig, Trainer, CONFIG_FILE, PROGRESS_FILE};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// A tiny detector on the bundled sample: ResNet18 at 32x32, two one-epoch stages, the second
/// changing the freezing (so a resumed run must restore it).
fn tiny_config(dir: &Path) -> TrainConfig {
    let text = format!(
        r#"{{
        "comment": "test",
        "data": {data:?},
        "arch": "resnet18", "sz": 32, "bs": 8, "device": "cpu",
        "augmentations": [{{"type": "flip"}}],
        "stages": [
            {{"freeze_to": -2, "lrs": [1e-4, 1e-3, 1e-2], "cycle_len": 1, "use_clr": [32, 5]}},
            {{"freeze_to": "unfreeze", "lrs": [1e-3], "cycle_len": 1}}
        ]}}"#,
        data = sample_root().display().to_string()
    );
    let path = dir.join("tiny.json");
    std::fs::write(&path, text).unwrap();
    TrainConfig::from_file(&path).unwrap()
}

fn checkpoint(dir: &Path, stage: usize) -> PathBuf {
    dir.join(format!("stage-{stage}.safetensors"))
}

/// Every variable of the learner equals the one in the checkpoint file.
fn assert_weights_equal_checkpoint(t: &Trainer, path: &Path) {
    let saved: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(path).unwrap().into_iter().collect();
    let vars = t.learner.model.vs.variables();
    assert_eq!(vars.len() + 1, saved.len(), "the variables and the model spec");
    assert!(saved.contains_key(fastdet::model::SPEC_KEY));
    for (name, v) in vars {
        let s = saved.get(&name).unwrap_or_else(|| panic!("{name} not in {}", path.display()));
        assert!(v.detach().equal(s), "{name} differs from {}", path.display());
    }
}

#[test]
fn a_run_writes_config_checkpoints_and_progress_and_resume_after_it_does_nothing() {
    let _rng = crate::common::torch_rng();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(tmp.path());
    let dir = tmp.path().join("run");

    let report = run(&cfg, &dir, false).unwrap();
    assert_eq!(report.stages_run, vec![1, 2]);
    assert_eq!(report.metric_names, ["detn_acc", "detn_l1"]);
    assert_eq!(report.result.len(), 3);
    assert!(checkpoint(&dir, 1).is_file() && checkpoint(&dir, 2).is_file());
    let saved = TrainConfig::from_file(dir.join(CONFIG_FILE)).unwrap();
    assert!(saved.differences(&cfg).is_empty(), "{:?}", saved.differences(&cfg));
    assert_eq!(saved.stages, cfg.stages);
    let progress = RunProgress::read(&dir.join(PROGRESS_FILE)).unwrap();
    assert_eq!(progress.completed.iter().map(|c| c.stage).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(progress.epochs.iter().map(|r| r.stage).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(progress.completed[1].result, report.result);
    assert_eq!(progress.epochs[1].val_loss, report.result[0]);
    // No temporary files left behind.
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");

    // Without --resume an existing run is not overwritten.
    let e = run(&cfg, &dir, false).unwrap_err().to_string();
    assert!(e.contains("--resume") && e.contains("--run-dir"), "{e}");

    // --resume after a complete run: nothing trained, nothing written, the same result.
    let before = std::fs::read(dir.join(PROGRESS_FILE)).unwrap();
    let ckpt_time = std::fs::metadata(checkpoint(&dir, 2)).unwrap().modified().unwrap();
    let again = run(&cfg, &dir, true).unwrap();
    assert!(again.already_complete());
    assert_eq!(again.result, report.result);
    assert!(again.to_string().contains("already done"), "{again}");
    assert_eq!(std::fs::read(dir.join(PROGRESS_FILE)).unwrap(), before);
    assert_eq!(std::fs::metadata(checkpoint(&dir, 2)).unwrap().modified().unwrap(), ckpt_time);

    // Lose the last stage (progress entry and checkpoint): --resume trains it again.
    let mut p = RunProgress::read(&dir.join(PROGRESS_FILE)).unwrap();
    p.completed.pop();
    p.epochs.retain(|r| r.stage == 1);
    std::fs::write(dir.join(PROGRESS_FILE), serde_json::to_string(&p).unwrap()).unwrap();
    std::fs::remove_file(checkpoint(&dir, 2)).unwrap();
    let resumed = run(&cfg, &dir, true).unwrap();
    assert_eq!(resumed.stages_run, vec![2]);
    assert_eq!(resumed.resumed_after, Some(1));
    assert!(checkpoint(&dir, 2).is_file());
    assert_eq!(RunProgress::read(&dir.join(PROGRESS_FILE)).unwrap().completed.len(), 2);
}

#[test]
fn an_interrupted_run_resumes_from_the_last_checkpoint_with_its_freezing() {
    let _rng = crate::common::torch_rng();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(tmp.path());
    let dir = tmp.path().join("run");

    // Train the first stage only, then "crash".
    {
        let mut t = Trainer::open(&cfg, &dir, false).unwrap();
        assert_eq!(t.next_stage(), Some(1));
        t.run_stage().unwrap().unwrap();
        assert_eq!(t.learner.frozen_to(), 1);
    }
    assert!(checkpoint(&dir, 1).is_file() && !checkpoint(&dir, 2).exists());

    let t = Trainer::open(&cfg, &dir, true).unwrap();
    assert_eq!(t.next_stage(), Some(2));
    assert_eq!(t.learner.frozen_to(), 1, "stage 1's freeze_to(-2) is restored");
    assert_weights_equal_checkpoint(&t, &checkpoint(&dir, 1));
    let report = t.run_all().unwrap();
    assert_eq!(report.stages_run, vec![2]);
    assert_eq!(report.resumed_after, Some(1));
    let progress = RunProgress::read(&dir.join(PROGRESS_FILE)).unwrap();
    assert_eq!(progress.completed.len(), 2);
    assert_eq!(progress.epochs.iter().map(|r| r.stage).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(progress.completed[1].result, report.result);
}

#[test]
fn resume_with_another_config_is_an_error_naming_the_fields() {
    let _rng = crate::common::torch_rng();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(tmp.path());
    let dir = tmp.path().join("run");
    fastdet::train::prepare(&cfg, &dir, false).unwrap(); // writes config.json, trains nothing
    let mut other = cfg.clone();
    other.sz = 64;
    other.stages[1].lrs = vec![1e-2];
    let e = run(&other, &dir, true).unwrap_err().to_string();
    assert!(e.contains("cannot resume") && e.contains("sz (run: 32, now: 64)") && e.contains("stages"), "{e}");
    assert!(e.contains("tiny.json") && e.contains(CONFIG_FILE), "{e}");
    // comment and device may change.
    let mut same = cfg.clone();
    same.comment = Some("on another machine".into());
    same.device = fastdet::train::DeviceChoice::Auto;
    assert!(same.differences(&cfg).is_empty());
}

#[test]
fn bad_configs_name_the_file_and_the_field() {
    let _rng = crate::common::torch_rng();
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let p = write("unknown.json", r#"{"arch": "resnet18", "learning_rate": 0.01}"#);
    let e = TrainConfig::from_file(&p).unwrap_err().to_string();
    assert!(e.contains("unknown.json") && e.contains("learning_rate"), "{e}");

    let p = write("nested.json", r#"{"stages": [{"lrs": [0.01], "cycle_len": 1, "clr": [32, 5]}]}"#);
    let e = TrainConfig::from_file(&p).unwrap_err().to_string();
    assert!(e.contains("nested.json") && e.contains("clr"), "{e}");

    let p = write("lrs.json", r#"{"stages": [{"lrs": [0.01]}, {"lrs": [0.001, 0.01]}]}"#);
    let e = TrainConfig::from_file(&p).unwrap_err().to_string();
    assert!(e.contains("lrs.json") && e.contains("stages[1].lrs") && e.contains("2 learning rates"), "{e}");

    // The command line says a wrapped error's message once, and a learning rate beyond f32 briefly.
    let p = write("bogus.json", r#"{"task": "bogus"}"#);
    let e = cli_error(&["train", "--config", &p.to_string_lossy()]);
    assert_eq!(e.matches("unknown variant `bogus`").count(), 1, "{e}");
    assert!(
        e.starts_with(&format!("error: {}: malformed JSON: unknown variant `bogus`, expected one of", p.display())),
        "{e}"
    );
    let p = write("huge.json", r#"{"stages": [{"lrs": [1e300]}]}"#);
    let e = TrainConfig::from_file(&p).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: stages[0].lrs: learning rate 1e300 is not a number from 0 to 3.4028235e38 (f32's largest)",
            p.display()
        )
    );

    let p = write("arch.json", r#"{"arch": "vgg16"}"#);
    let e = TrainConfig::from_file(&p).unwrap_err().to_string();
    assert!(e.contains("arch.json") && e.contains("vgg16") && e.contains("resnet34"), "{e}");

    let p = write("nodata.json", r#"{"data": "/nonexistent/pascal", "arch": "resnet18", "sz": 32}"#);
    let cfg = TrainConfig::from_file(&p).unwrap();
    let dir = tmp.path().join("nodata");
    let e = run(&cfg, &dir, false).unwrap_err().to_string();
    assert!(e.contains("nodata.json") && e.contains("data") && e.contains("/nonexistent/pascal"), "{e}");
    assert!(!dir.exists(), "a failed start leaves nothing behind");

    let e = TrainConfig::from_file(tmp.path().join("absent.json")).unwrap_err().to_string();
    assert!(e.contains("absent.json"), "{e}");

    // A CLR cut larger than the stage's iterations would make the schedule divide by zero.
    let p = write(
        "cut.json",
        &format!(
            r#"{{"data": {:?}, "arch": "resnet18", "sz": 32, "bs": 64, "device": "cpu",
            "stages": [{{"lrs": [0.01], "cycle_len": 1, "use_clr": [32, 10]}}]}}"#,
            sample_root().display().to_string()
        ),
    );
    let cfg = TrainConfig::from_file(&p).unwrap();
    let e = run(&cfg, &tmp.path().join("cut"), false).unwrap_err().to_string();
    assert!(e.contains("cut.json") && e.contains("stages[0].use_clr") && e.contains("cut 10"), "{e}");
}

#[test]
fn example_configs_parse_and_the_lesson_one_is_the_default_schedule() {
    let _rng = crate::common::torch_rng();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/configs");
    let quick = TrainConfig::from_file(root.join("detector_quick.json")).unwrap();
    assert_eq!((quick.sz, quick.bs, quick.stages.len()), (64, 8, 2));
    // The task's older name still reads (run folders saved before the rename).
    let old = TrainConfig::from_json_str(r#"{"task": "detection"}"#).unwrap();
    assert_eq!(old.task, fastdet::task::Task::SingleObject);
    assert_eq!(serde_json::to_value(old.task).unwrap(), "single_object");
    // The lesson's config names weights that may not be downloaded: parse without checking files.
    let lesson =
        TrainConfig::from_json_str(&std::fs::read_to_string(root.join("detector_lesson.json")).unwrap()).unwrap();
    let default = TrainConfig {
        weights: Some("models/resnet34.safetensors".into()),
        comment: lesson.comment.clone(),
        ..TrainConfig::default()
    };
    assert_eq!(lesson, default);
}

/// `fastdet train` with the SSD task, then `fastdet predict` (detections in COCO results format,
/// pictures) and `evaluate` on them.
#[test]
fn ssd_run_predicts_and_evaluates() {
    let _rng = crate::common::torch_rng();
    let mut cfg = fastdet::train::TrainConfig::from_file("examples/configs/ssd_quick.json").unwrap();
    cfg.sz = 64;
    cfg.data = Some(fastdet::data::sample_root());
    cfg.amp = true; // mixed precision from a config: fp32 with the gradient scaler on the CPU
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    fastdet::train::run(&cfg, &run, false).unwrap();
    let val = fastdet::data::Pascal::open(fastdet::data::sample_root()).unwrap().json("val").unwrap();
    let out = dir.path().join("dets.json");
    let pics = dir.path().join("pics");
    let opts = fastdet::nms::NmfOpts { thresh: 0.0, ..Default::default() };
    let dets = fastdet::detect::predict_run(&run, &val, &out, opts).unwrap();
    fastdet::show::save_detections(&val, &dets, &pics).unwrap();
    assert!(!dets.is_empty());
    let back = fastdet::metrics::load_coco_results(&out, &val).unwrap();
    assert_eq!(back.len(), dets.len());
    assert!(back.iter().all(|d| val.index_of(d.image_id).is_some() && d.class < 20));
    assert_eq!(std::fs::read_dir(&pics).unwrap().count(), val.len());
    let table = fastdet::metrics::evaluate(&val, &back, fastdet::metrics::ApMetric::Voc07).unwrap();
    assert!((0.0..=1.0).contains(&table.map));
    // The same detections from the model file alone (`detections_on`, notebook 07's), and a
    // dataset with other classes refused, naming both lists.
    let model = fastdet::model::Model::load(run.join(format!("stage-{}.safetensors", cfg.stages.len()))).unwrap();
    assert_eq!(
        fastdet::detect::detections_on(&model, &val, cfg.bs, opts).unwrap(),
        dets,
        "same batches, same detections"
    );
    let mut other = val.clone();
    other.classes[0] = "plane".into();
    let e = fastdet::detect::detections_on(&model, &other, 4, opts).unwrap_err().to_string();
    assert!(e.contains("has the classes [\"plane\"") && e.contains("trained on [\"aeroplane\""), "{e}");
    // `fastdet predict --report` writes the evaluation page beside the detections.
    let page = dir.path().join("report.html");
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_fastdet"))
        .args(["predict", "--weights"])
        .arg(&run)
        .arg("--data")
        .arg(fastdet::data::sample_root())
        .args(["--split", "val", "--out"])
        .arg(dir.path().join("dets2.json"))
        .arg("--report")
        .arg(&page)
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(["map", "per-class", "pr-curves", "confusion", "worst", "sample"]
        .iter()
        .all(|id| html.contains(&format!("<section id=\"{id}\">"))));
    // A run of another task cannot predict boxes.
    let mut det = cfg.clone();
    det.task = fastdet::task::Task::SingleObject;
    let run2 = dir.path().join("run2");
    det.stages.truncate(1);
    fastdet::train::run(&det, &run2, false).unwrap();
    let e = fastdet::detect::predict_run(&run2, &val, &out, opts).unwrap_err().to_string();
    assert!(e.contains("SSD"), "{e}");
}

/// `fastdet --help` gives each command its own line (predict once had train's doc comment).
#[test]
fn help_describes_each_command() {
    let _rng = crate::common::torch_rng();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fastdet")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |cmd: &str| {
        text.lines().find(|l| l.trim_start().starts_with(&format!("{cmd} "))).unwrap_or_default().to_string()
    };
    assert!(line("predict").contains("What a checkpoint of any task says about images"), "{text}");
    assert!(line("train").contains("Train the stages of a JSON config"), "{text}");
}

/// What `fastdet args...` prints on stderr when it fails.
fn cli_error(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fastdet")).args(args).output().unwrap();
    assert!(!out.status.success(), "fastdet {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A user's mistake gets its message alone, even with RUST_BACKTRACE=1 in the environment.
#[test]
fn user_errors_print_no_backtrace() {
    let _rng = crate::common::torch_rng();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fastdet"))
        .args(["info", "--data", "/nonexistent/pascal"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/pascal"), "{err}");
    assert!(!err.contains("backtrace") && err.lines().count() <= 2, "{err}");
}
