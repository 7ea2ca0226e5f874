//! The evaluation report: every section is there with its numbers and pictures, empty inputs
//! give documented empty sections, bad inputs a named error; `fastdet eval --report` writes it.

use crate::common;
use base64::Engine;
use fastdet::boxes::BBox;
use fastdet::data::{sample_root, Dataset, Pascal};
use fastdet::metrics::{evaluate, save_coco_results, ApMetric, Detection};
use fastdet::show::{detection_report, ReportOpts};

fn val() -> Dataset {
    Pascal::open(sample_root()).unwrap().json("val").unwrap()
}

fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html.find(&format!("<section id=\"{id}\">")).unwrap_or_else(|| panic!("no section {id}"));
    let end = html[start..].find("</section>").unwrap() + start;
    &html[start..end]
}

fn pngs(s: &str) -> Vec<Vec<u8>> {
    s.split("data:image/png;base64,")
        .skip(1)
        .map(|p| base64::engine::general_purpose::STANDARD.decode(&p[..p.find('"').unwrap()]).unwrap())
        .collect()
}

#[test]
fn every_section_with_its_numbers_and_pictures() {
    let ds = val();
    let dets = common::detections_from_truth(&ds);
    let report =
        detection_report(&ds, &dets, None, ReportOpts { n_worst: 4, n_sample: 4, ..Default::default() }).unwrap();
    let html = report.to_html();
    for m in [ApMetric::Voc07, ApMetric::Voc, ApMetric::Coco] {
        let t = evaluate(&ds, &dets, m).unwrap();
        assert!(
            section(&html, "map").contains(&format!("<td>{m}</td><td>{:.4}</td>", t.map)),
            "{m} mAP {:.4} in the page",
            t.map
        );
    }
    let per_class = section(&html, "per-class");
    let first_table = &per_class[..per_class.find("</table>").unwrap()];
    assert_eq!(first_table.matches("<tr>").count(), 1 + ds.classes.len());
    let found: usize = report.by_size.iter().map(|b| b.1).sum();
    assert_eq!(found, report.confusion.true_positives(), "the size table counts every object found");
    assert!(per_class.contains("size 0.2-0.4") && per_class.contains("touching the border"));
    for (id, n) in [("pr-curves", 1), ("confusion", 1), ("worst", 1), ("sample", 1)] {
        let p = pngs(section(&html, id));
        assert_eq!(p.len(), n, "{id}: pictures");
        assert!(p.iter().all(|png| png.starts_with(b"\x89PNG") && png.len() > 2000), "{id}: a real PNG");
        let im = image::load_from_memory(&p[0]).unwrap().to_rgb8();
        let distinct: std::collections::HashSet<[u8; 3]> = im.pixels().map(|p| p.0).collect();
        assert!(distinct.len() > 50, "{id}: the picture is not blank");
    }
    assert!(section(&html, "confusion").contains("Most confused"));
    assert!(
        report.worst.len() == 4
            && report
                .worst
                .windows(2)
                .all(|w| report.confusion.images[w[0].0].n_errors() >= report.confusion.images[w[1].0].n_errors())
    );
    let dir = std::env::temp_dir().join(format!("fastdet-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    report.save(dir.join("r.html")).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("r.html")).unwrap(), html);
}

#[test]
fn empty_and_bad_inputs() {
    let ds = val();
    // No detections: numbers are zero, sections say why they are empty, nothing panics.
    let report = detection_report(&ds, &[], None, ReportOpts::default()).unwrap();
    let html = report.to_html();
    assert!(section(&html, "map").contains("<td>0.0000</td>"));
    assert!(section(&html, "worst").contains("<img"), "every object missed: the gallery shows them");
    assert_eq!(report.confusion.missed(), report.n_objects);
    // Perfect detections: nothing confused, no worst image.
    let perfect: Vec<Detection> = ds
        .images
        .iter()
        .flat_map(|r| {
            r.objects.iter().map(move |o| Detection { image_id: r.id, class: o.class, bbox: o.bbox, score: 0.9 })
        })
        .collect();
    let html = detection_report(&ds, &perfect, None, ReportOpts::default()).unwrap().to_html();
    assert!(section(&html, "worst").contains("No image has an error"));
    assert!(section(&html, "confusion").contains("Nothing confused"));
    // An image without objects, and an empty dataset.
    let mut one = ds.subset(&[0]);
    one.images[0].objects.clear();
    let html = detection_report(&one, &[], None, ReportOpts::default()).unwrap().to_html();
    assert!(section(&html, "pr-curves").contains("No class has objects"));
    let none = ds.subset(&[]);
    assert!(detection_report(&none, &[], None, ReportOpts::default()).unwrap_err().to_string().contains("no images"));
    // Unknown images or classes are named.
    let bad = [Detection { image_id: 999_999, class: 0, bbox: BBox::new(0., 0., 5., 5.), score: 1.0 }];
    assert!(detection_report(&ds, &bad, None, ReportOpts::default())
        .unwrap_err()
        .to_string()
        .contains("image_id 999999"));
    assert!(detection_report(&ds, &[], Some(&[1.0]), ReportOpts::default()).is_err(), "losses of the wrong length");
}

#[test]
fn fastdet_eval_writes_the_report() {
    let ds = val();
    let dir = std::env::temp_dir().join(format!("fastdet-eval-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let results = dir.join("dets.json");
    save_coco_results(&results, &common::detections_from_truth(&ds), &ds).unwrap();
    let page = dir.join("report.html");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fastdet"))
        .args(["eval", "--data"])
        .arg(sample_root())
        .args(["--split", "val", "--detections"])
        .arg(&results)
        .arg("--report")
        .arg(&page)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("wrote the report"), "{stdout}");
    let html = std::fs::read_to_string(&page).unwrap();
    for id in ["map", "per-class", "pr-curves", "confusion", "worst", "sample"] {
        section(&html, id);
    }
    // An empty detections file is an error that names it.
    std::fs::write(dir.join("empty.json"), "").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fastdet"))
        .args(["eval", "--data"])
        .arg(sample_root())
        .args(["--split", "val", "--detections"])
        .arg(dir.join("empty.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty.json"));
}

/// Debian's Chromium (`apt-get install chromium`, which `make test` does as root), or the
/// browser named by `FASTDET_CHROMIUM`. None: the test is skipped, or fails under `make test`.
fn chromium() -> Option<std::path::PathBuf> {
    let named = std::env::var_os("FASTDET_CHROMIUM").map(std::path::PathBuf::from);
    let found = named.into_iter().chain(["chromium", "chromium-browser", "google-chrome"].iter().filter_map(|n| {
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(n)).find(|f| f.is_file()))
    }));
    let first = found.into_iter().next();
    if first.is_none() {
        let required = std::env::var_os("FASTDET_REQUIRE_REFERENCES").is_some_and(|v| !v.is_empty() && v != "0");
        assert!(
            !required,
            "no chromium on PATH and FASTDET_REQUIRE_REFERENCES is set (make test): the report's browser test must run"
        );
        eprintln!("skipped: no chromium on PATH (apt-get install chromium, or set FASTDET_CHROMIUM)");
    }
    first
}

/// Chromium headless on `page`, with the flags a closed network needs; returns stdout.
fn headless(browser: &std::path::Path, page: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("timeout")
        .arg("120")
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
        ])
        .args(["--disable-component-update", "--disable-sync", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed on {}: {}", page.display(), String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Share of the screenshot's pixels that are not near-white, and of those that are colourful
/// (the pictures: photos, curves, heat map; the page's text and tables are grey).
fn ink_and_colour(png: &std::path::Path) -> (f64, f64) {
    let im = image::open(png).unwrap_or_else(|e| panic!("{}: {e}", png.display())).to_rgb8();
    let n = (im.width() * im.height()) as f64;
    let (mut ink, mut colour) = (0usize, 0usize);
    for p in im.pixels() {
        let (mx, mn) = (p.0.iter().max().copied().unwrap(), p.0.iter().min().copied().unwrap());
        ink += (mn < 235) as usize;
        colour += (mx - mn > 60) as usize;
    }
    (ink as f64 / n, colour as f64 / n)
}

/// The page as a browser shows it: Chromium parses every section and image, and its screenshot
/// is not blank; the pictures are what colours it (the same page with them removed is grey).
#[test]
fn the_report_renders_in_headless_chromium() {
    let Some(browser) = chromium() else { return };
    let ds = val();
    let report = detection_report(
        &ds,
        &common::detections_from_truth(&ds),
        None,
        ReportOpts { n_worst: 4, n_sample: 4, ..Default::default() },
    )
    .unwrap();
    let html = report.to_html();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    // The DOM after Chromium's parse holds every section and every picture of the file.
    let dom = String::from_utf8(headless(&browser, &page, &["--dump-dom"])).unwrap();
    for id in ["map", "per-class", "pr-curves", "confusion", "worst", "sample"] {
        assert!(dom.contains(&format!("<section id=\"{id}\">")), "section {id} missing from Chromium's DOM");
    }
    let n_img = html.matches("<img").count();
    assert!(n_img >= 4, "PR curves, confusion and the two galleries: {n_img} pictures");
    assert_eq!(dom.matches("<img").count(), n_img, "every picture survives the parse");
    // Screenshots of the page and of the page without its pictures.
    // Kept in the test's target folder to be looked at.
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png");
    headless(&browser, &page, &["--window-size=1280,4000", &format!("--screenshot={}", shot.display())]);
    let (ink, colour) = ink_and_colour(&shot);
    let bare = dir.path().join("bare.html");
    let stripped: String = html
        .split("data:image/png;base64,")
        .enumerate()
        .map(|(i, part)| if i == 0 { part } else { &part[part.find('"').unwrap()..] })
        .collect::<Vec<_>>()
        .join("");
    std::fs::write(&bare, stripped).unwrap();
    let bare_shot = dir.path().join("bare.png");
    headless(&browser, &bare, &["--window-size=1280,4000", &format!("--screenshot={}", bare_shot.display())]);
    let (bare_ink, bare_colour) = ink_and_colour(&bare_shot);
    eprintln!(
        "rendered: {:.1}% ink, {:.1}% colour; without pictures {:.1}% ink, {:.2}% colour",
        ink * 100.0,
        colour * 100.0,
        bare_ink * 100.0,
        bare_colour * 100.0
    );
    assert!(ink > 0.10, "the rendered page is almost blank: {:.1}% ink", ink * 100.0);
    assert!(colour > 0.01, "the pictures did not render: {:.1}% colourful pixels", colour * 100.0);
    assert!(bare_colour < colour / 10.0, "the colour comes from the pictures: {bare_colour} without them vs {colour}");
}

/// `fastdet data stats` on the sample: the printed summary is the statistics' own text, and the
/// page holds every picture and the numbers.
#[test]
fn fastdet_data_stats_prints_the_statistics_and_writes_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("stats.html");
    let root = fastdet::data::sample_root();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fastdet"))
        .args(["data", "stats"])
        .arg(&root)
        .args(["--sz", "224", "--report"])
        .arg(&page)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let ds = fastdet::data::open_dataset(&root, "train").unwrap();
    let stats = fastdet::data::DatasetStats::new(&ds, 224).unwrap();
    assert!(stdout.starts_with(&stats.to_string()), "printed:\n{stdout}\nstats:\n{stats}");
    assert!(stdout.contains(&format!("tiny boxes (under 4 px at 224): {}", stats.tiny.len())));
    let html = std::fs::read_to_string(&page).unwrap();
    for section in ["summary", "classes", "objects-per-image", "shapes", "centres", "tiny-and-border", "images"] {
        assert!(html.contains(&format!("<section id=\"{section}\">")), "no section {section}");
    }
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), 5, "five pictures inline");
    assert!(!html.contains("could not draw"));
    assert!(html.contains(&format!("<tr><td>objects</td><td>{}</td></tr>", stats.n_objects)));
    // Another training size counts other tiny boxes; a bad path names itself.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fastdet"))
        .args(["data", "stats", "/nonexistent/fastdet-data"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/fastdet-data"));
}

/// The picture of the objects the lesson's 4x4 anchors leave uncovered on the sample: one panel
/// per object asked for; and an error when nothing is uncovered.
#[test]
fn uncovered_objects_are_drawn() {
    use fastdet::anchors::{AnchorConfig, Coverage};
    let ds = fastdet::data::open_dataset(fastdet::data::sample_root(), "train").unwrap();
    let cov = Coverage::of_dataset(&AnchorConfig::lesson_4x4(), &ds, 224).unwrap();
    assert!(cov.uncovered().len() > 8);
    let fig = cov.plot_uncovered(&ds, 224, 8).unwrap();
    assert_eq!(fig.num_panels(), 8);
    assert!(fig.to_png().is_ok());
    // One box exactly on a 4x4 cell is covered: nothing to draw.
    let b = fastdet::anchors::UnitBox { image: 0, object: 0, corners: [0.0, 0.0, 0.25, 0.25] };
    let all = Coverage::new(&AnchorConfig::lesson_4x4(), &[b]).unwrap();
    assert!(all.plot_uncovered(&ds, 224, 8).unwrap_err().to_string().contains("nothing uncovered"));
}
