//! Drawing: exact pixels of a box outline (per the `draw` module docs: a line of width `lw`
//! centred on the box's outer edge, white `x-1..=x`, black outline `x-2..=x+1` at scale 1),
//! text, ground truth thresholds, PNG encoding and panel clipping.

use fastdet::boxes::BBox;
use fastdet::data::{sample_root, Pascal};
use fastdet::draw::{draw_im, show_img, wrap_text, Color, Figure, SET3};
use fastdet::show::draw_idx;
use image::{Rgb, RgbImage};

const GREY: Rgb<u8> = Rgb([128, 128, 128]);
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);

fn grey(w: u32, h: u32) -> RgbImage {
    RgbImage::from_pixel(w, h, GREY)
}

/// `x` in `a..=b` and `y` in `c..=d`.
fn within(x: u32, y: u32, (a, b): (u32, u32), (c, d): (u32, u32)) -> bool {
    (a..=b).contains(&x) && (c..=d).contains(&y)
}

/// The canvas expected for BBox::new(10, 12, 20, 30) (top, left, bottom, right) drawn in white
/// on a grey 50x40 image, written out by hand from the module docs:
/// outer edges: left 12, right 30 + 1 = 31, top 10, bottom 20 + 1 = 21;
/// white (lw 2) covers edge-1..=edge, black (lw 4) covers edge-2..=edge+1, along the whole side
/// (corners included).
fn expected_rect_canvas() -> RgbImage {
    RgbImage::from_fn(50, 40, |x, y| {
        let white = within(x, y, (11, 31), (9, 10)) // top
            || within(x, y, (11, 31), (20, 21)) // bottom
            || within(x, y, (11, 12), (9, 21)) // left
            || within(x, y, (30, 31), (9, 21)); // right
        let black = within(x, y, (10, 32), (8, 11))
            || within(x, y, (10, 32), (19, 22))
            || within(x, y, (10, 13), (8, 22))
            || within(x, y, (29, 32), (8, 22));
        if white {
            WHITE
        } else if black {
            BLACK
        } else {
            GREY
        }
    })
}

fn drawn_rect() -> Figure {
    let mut fig = Figure::single(50, 40);
    fig.ax(0).show_img(&grey(50, 40)).draw_rect(BBox::new(10., 12., 20., 30.), Color::WHITE);
    fig
}

#[test]
fn draw_rect_pixels_at_known_positions() {
    let fig = drawn_rect();
    let im = fig.image();
    assert_eq!(im.dimensions(), (50, 40));
    let at = |x, y| *im.get_pixel(x, y);
    // Left edge, on a middle row (15): black 10, white 11 12, black 13, grey inside from 14.
    assert_eq!(
        [at(9, 15), at(10, 15), at(11, 15), at(12, 15), at(13, 15), at(14, 15)],
        [GREY, BLACK, WHITE, WHITE, BLACK, GREY]
    );
    // Right edge (outer edge 31): grey 28, black 29, white 30 31, black 32, grey 33.
    assert_eq!(
        [at(28, 15), at(29, 15), at(30, 15), at(31, 15), at(32, 15), at(33, 15)],
        [GREY, BLACK, WHITE, WHITE, BLACK, GREY]
    );
    // Top edge (row 10) on a middle column (20): grey 7, black 8, white 9 10, black 11, grey 12.
    assert_eq!(
        [at(20, 7), at(20, 8), at(20, 9), at(20, 10), at(20, 11), at(20, 12)],
        [GREY, BLACK, WHITE, WHITE, BLACK, GREY]
    );
    // Bottom edge (outer edge 21): grey 18, black 19, white 20 21, black 22, grey 23.
    assert_eq!(
        [at(20, 18), at(20, 19), at(20, 20), at(20, 21), at(20, 22), at(20, 23)],
        [GREY, BLACK, WHITE, WHITE, BLACK, GREY]
    );
    // Corners: outermost black corners, inner white corners.
    assert_eq!([at(10, 8), at(32, 8), at(10, 22), at(32, 22)], [BLACK; 4]);
    assert_eq!([at(11, 9), at(31, 9), at(11, 21), at(31, 21)], [WHITE; 4]);
    assert_eq!([at(9, 7), at(33, 7), at(9, 23), at(33, 23)], [GREY; 4]);
    // Inside the box is untouched, and so is the rest of the image.
    assert_eq!([at(14, 12), at(28, 18), at(20, 15)], [GREY; 3]);
    assert_eq!([at(0, 0), at(49, 39), at(5, 15), at(40, 15), at(20, 3), at(20, 30)], [GREY; 6]);
}

#[test]
fn draw_rect_whole_canvas_matches_the_docs() {
    let fig = drawn_rect();
    let want = expected_rect_canvas();
    let diffs: Vec<String> = fig
        .image()
        .enumerate_pixels()
        .filter(|(x, y, p)| **p != *want.get_pixel(*x, *y))
        .map(|(x, y, p)| format!("({x},{y}) got {:?} want {:?}", p.0, want.get_pixel(x, y).0))
        .collect();
    assert!(
        diffs.is_empty(),
        "{} pixels differ from the documented outline: {:?}",
        diffs.len(),
        &diffs[..diffs.len().min(20)]
    );
}

#[test]
fn outline_rect_widths() {
    // lw = 1: the line is the outer edge column itself, [edge, edge].
    let mut fig = Figure::single(20, 20);
    fig.ax(0).show_img(&grey(20, 20)).outline_rect(BBox::new(5., 5., 9., 9.), 1, Color(255, 0, 0));
    let im = fig.image();
    let red = Rgb([255, 0, 0]);
    assert_eq!([*im.get_pixel(4, 7), *im.get_pixel(5, 7), *im.get_pixel(6, 7)], [GREY, red, GREY]);
    assert_eq!([*im.get_pixel(9, 7), *im.get_pixel(10, 7), *im.get_pixel(11, 7)], [GREY, red, GREY]);
    assert_eq!(
        [*im.get_pixel(7, 4), *im.get_pixel(7, 5), *im.get_pixel(7, 10), *im.get_pixel(7, 11)],
        [GREY, red, red, GREY]
    );
    let n_red = im.pixels().filter(|p| **p == red).count();
    assert_eq!(n_red, 6 * 4 - 4, "the ring of outer edges 5..=10 x 5..=10 (a 6x6 square's border)");
}

#[test]
fn draw_rect_is_clipped_to_the_image() {
    // A box covering the whole 30x20 image (outer edges 0, 30, 0, 20): the parts of the lines
    // off the canvas are clipped, the parts on it are drawn as documented, no error.
    let mut fig = Figure::single(30, 20);
    fig.ax(0).show_img(&grey(30, 20)).draw_rect(BBox::new(0., 0., 19., 29.), Color::WHITE);
    let im = fig.image();
    let row = |y| [0, 1, 2, 27, 28, 29].map(|x| *im.get_pixel(x, y));
    let col = |x| [0, 1, 2, 17, 18, 19].map(|y| *im.get_pixel(x, y));
    // Left edge 0: white -1..=0 -> column 0, black -2..=1 -> column 1.
    // Right outer edge 30: white 29..=30 -> column 29, black 28..=31 -> column 28.
    assert_eq!(row(10), [WHITE, BLACK, GREY, GREY, BLACK, WHITE], "row 10, columns 0 1 2 27 28 29");
    // Top edge 0 and bottom outer edge 20, the same.
    assert_eq!(col(15), [WHITE, BLACK, GREY, GREY, BLACK, WHITE], "column 15, rows 0 1 2 17 18 19");
    assert!(fig.to_png().is_ok());
}

#[test]
fn boxes_never_spill_into_the_next_panel() {
    let mut fig = Figure::grid(1, 2, 50, 40).unwrap();
    assert_eq!(fig.num_panels(), 2);
    // 6 px gaps: canvas 6 + 50 + 6 + 50 + 6 wide, 6 + 40 + 6 high.
    assert_eq!(fig.image().dimensions(), (118, 52));
    // 100x80 image in panel 1 (x 62..=111): scale 0.5, fills it exactly.
    let im = grey(100, 80);
    fig.ax(1).show_img(&im).draw_rect(BBox::new(0., 0., 79., 99.), Color::WHITE);
    let c = fig.image();
    // Something is drawn on the panel's own first and last columns (exact widths are checked by
    // the tests above), and the image is untouched a few pixels in.
    assert_ne!(*c.get_pixel(62, 20), GREY);
    assert_ne!(*c.get_pixel(110, 20), GREY);
    assert_eq!([*c.get_pixel(66, 20), *c.get_pixel(106, 20), *c.get_pixel(86, 10), *c.get_pixel(86, 41)], [GREY; 4]);
    // The whole of panel 0 and the gaps (black outline would reach columns 60-61 and 112-113,
    // rows 4-5 and 46-47) are untouched white background.
    for (x, y, p) in c.enumerate_pixels() {
        if !(62..=111).contains(&x) || !(6..=45).contains(&y) {
            assert_eq!(*p, WHITE, "({x},{y}) outside panel 1 changed");
        }
    }
    // Inside panel 1 away from the edges: the grey image.
    assert_eq!(*c.get_pixel(86, 25), GREY);
}

/// A long label (notebook 05's multi-label list) near a panel's right edge stays in its panel:
/// wrapped onto more lines, cut with `…` at the bottom.
#[test]
fn text_never_leaves_its_panel() {
    let mut fig = Figure::grid(1, 2, 60, 40).unwrap();
    fig.ax(0).show_img(&grey(60, 40)).draw_text(
        2.,
        30.,
        "aeroplane bicycle bird boat bottle bus car cat chair cow",
        14,
        Color::WHITE,
    );
    let c = fig.image();
    // Panel 0 is x 6..=65, y 6..=45; everything outside it stays white.
    for (x, y, p) in c.enumerate_pixels() {
        if !(6..=65).contains(&x) || !(6..=45).contains(&y) {
            assert_eq!(*p, WHITE, "({x},{y}) outside panel 0 changed");
        }
    }
    // More than one line was drawn: text pixels in the panel's lower half.
    assert!((6..66).any(|x| (30..46).any(|y| *c.get_pixel(x, y) != GREY)), "the label wrapped");
}

#[test]
fn wrap_text_fits_width_and_lines() {
    let w = |s: &str| s.chars().count() as i32; // one unit a character
    assert_eq!(wrap_text("a bb ccc", 4, 5, &w), vec!["a bb", "ccc"]);
    assert_eq!(wrap_text("a bb ccc", 10, 5, &w), vec!["a bb ccc"]);
    assert_eq!(wrap_text("abcdefgh", 4, 5, &w), vec!["abc…"], "a long word is cut");
    assert_eq!(wrap_text("aa bb cc dd", 5, 2, &w), vec!["aa bb", "cc dd"]);
    assert_eq!(wrap_text("aa bb cc dd ee", 5, 2, &w), vec!["aa bb", "cc d…"], "left-over words end in …");
    assert_eq!(wrap_text("", 5, 2, &w), vec![""]);
    for (txt, mw, ml) in [("one two three four five six", 7, 3), ("x", 1, 1), ("tvmonitor 0.43 person 0.2", 9, 2)] {
        let lines = wrap_text(txt, mw, ml, &w);
        assert!(lines.len() <= ml && lines.iter().all(|l| w(l) <= mw), "{txt}: {lines:?}");
    }
}

fn is_white(p: &Rgb<u8>) -> bool {
    p.0.iter().all(|&v| v >= 240)
}
fn is_black(p: &Rgb<u8>) -> bool {
    p.0.iter().all(|&v| v <= 15)
}

#[test]
fn draw_text_draws_white_on_black_near_the_anchor_only() {
    let mut fig = Figure::single(120, 80);
    fig.ax(0).show_img(&grey(120, 80)).draw_text(10., 20., "Hi 0.5", 14, Color::WHITE);
    let im = fig.image();
    // plotters' VPos::Top puts the ink of capitals 1-2 px above the anchor (plus the 1 px
    // outline and anti-aliasing): allow 4 rows above it.
    let near = |x: u32, y: u32| (17..=95).contains(&x) && (6..=30).contains(&y);
    let (mut w, mut b) = (0, 0);
    for (x, y, p) in im.enumerate_pixels() {
        if near(x, y) {
            w += is_white(p) as usize;
            b += is_black(p) as usize;
        } else {
            assert_eq!(*p, GREY, "({x},{y}) changed, far from the text anchored at (20, 10)");
        }
    }
    assert!(w >= 20, "only {w} white pixels near the anchor");
    assert!(b >= 20, "only {b} black pixels near the anchor");
    // Text starting at the anchor: a capital's white ink begins within 2 rows of it.
    let first_white_row = im.enumerate_pixels().find(|(_, _, p)| is_white(p)).map(|(_, y, _)| y).unwrap();
    assert!((8..=12).contains(&first_white_row), "first white row {first_white_row}, anchor row 10");
    let first_changed_col = (0..120).find(|&x| (0..80).any(|y| *im.get_pixel(x, y) != GREY)).unwrap();
    assert!((18..=21).contains(&first_changed_col), "first drawn column {first_changed_col}, anchor column 20");
    assert!(fig.to_png().is_ok());

    // A longer / bigger text reaches further right and down.
    let mut fig2 = Figure::single(120, 80);
    fig2.ax(0).show_img(&grey(120, 80)).draw_text(10., 20., "Hi 0.5 longer", 24, Color(255, 0, 0));
    let changed_right = fig2.image().enumerate_pixels().filter(|(x, _, p)| *x > 90 && **p != GREY).count();
    assert!(changed_right > 0);
    assert!(fig2.image().pixels().any(|p| p.0[0] >= 240 && p.0[1] <= 15 && p.0[2] <= 15), "no red pixel");
}

fn classes() -> Vec<String> {
    ["aeroplane", "bicycle", "bird"].iter().map(|s| s.to_string()).collect()
}

#[test]
fn show_ground_truth_thresholds() {
    let im = RgbImage::from_fn(80, 60, |x, y| Rgb([(x * 3) as u8, (y * 4) as u8, 77]));
    assert_eq!(show_img(&im).image(), &im, "show_img at scale 1 is the image itself");
    // Lesson 9's show_img: the image under its 8-tick grid, what show_ground_truth draws boxes on.
    let mut plain = Figure::single(80, 60);
    plain.ax(0).show_img_grid(&im);
    let boxes = [BBox::new(5., 5., 30., 40.), BBox::new(20., 30., 50., 70.)];
    let clas = [0usize, 2];

    // Probabilities at or below the threshold: nothing is drawn.
    let mut fig = Figure::single(80, 60);
    fig.ax(0).show_ground_truth(&im, &boxes, Some(&clas), Some(&[0.1, 0.3]), 0.3, &classes());
    assert_eq!(fig.image(), plain.image());

    // An empty box is never drawn, whatever its probability.
    let mut fig = Figure::single(80, 60);
    fig.ax(0).show_ground_truth(&im, &[BBox::new(5., 5., 4., 40.)], Some(&clas), Some(&[0.9]), 0.3, &classes());
    assert_eq!(fig.image(), plain.image());

    // One above the threshold: box 1 is drawn in SET3[1] (and box 0 is not).
    let mut fig = Figure::single(80, 60);
    fig.ax(0).show_ground_truth(&im, &boxes, Some(&clas), Some(&[0.1, 0.9]), 0.3, &classes());
    let c = fig.image();
    assert_ne!(c, plain.image());
    let set3 = Rgb([SET3[1].0, SET3[1].1, SET3[1].2]);
    // Box 1's right edge (outer edge 71): colour at column 70, black outline at 69, on a row
    // below the label (exact widths are the business of the draw_rect tests).
    assert_eq!([*c.get_pixel(69, 45), *c.get_pixel(70, 45)], [BLACK, set3]);
    assert_eq!(*c.get_pixel(74, 45), *im.get_pixel(74, 45));
    // Box 0's left edge (column 5) is not drawn.
    assert_eq!(*c.get_pixel(5, 25), *im.get_pixel(5, 25));

    // No probabilities: every non-empty box is drawn.
    let mut fig = Figure::single(80, 60);
    fig.ax(0).show_ground_truth(&im, &boxes, Some(&clas), None, 0.3, &classes());
    let c = fig.image();
    let set3_0 = Rgb([SET3[0].0, SET3[0].1, SET3[0].2]);
    assert_eq!([*c.get_pixel(3, 25), *c.get_pixel(4, 25)], [BLACK, set3_0]);
    assert_eq!(*c.get_pixel(1, 25), *im.get_pixel(1, 25));
}

/// Lesson 9's `show_img`: `np.linspace(0, size, 8)` lines each way in matplotlib's grid grey,
/// the image untouched between them; lesson 8's `show_img` has none.
#[test]
fn show_img_grid_is_the_lessons_8_ticks() {
    let im = grey(224, 224);
    let mut fig = Figure::single(224, 224);
    fig.ax(0).show_img_grid(&im);
    let c = fig.image();
    let grid = Rgb([176, 176, 176]);
    let lines: Vec<u32> = (0..224).filter(|&x| *c.get_pixel(x, 100) == grid).collect();
    assert_eq!(
        lines,
        vec![0, 32, 64, 96, 128, 160, 192],
        "vertical lines at linspace(0, 224, 8), the last one off the image"
    );
    let rows: Vec<u32> = (0..224).filter(|&y| *c.get_pixel(50, y) == grid).collect();
    assert_eq!(rows, vec![0, 32, 64, 96, 128, 160, 192]);
    assert_eq!(*c.get_pixel(50, 100), GREY, "between the lines the image is untouched");
    let mut ax_ground_truth = Figure::single(224, 224);
    ax_ground_truth.ax(0).show_ground_truth(&im, &[], None, None, 0.0, &classes());
    assert_eq!(ax_ground_truth.image(), c, "show_ground_truth draws the same grid");
    assert_eq!(show_img(&im).image(), &im, "lesson 8's show_img has no grid");
}

#[test]
fn png_round_trip() {
    let mut fig = drawn_rect();
    fig.ax(0).draw_text(25., 2., "car", 12, Color::WHITE);
    let png = fig.to_png().unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let back = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap();
    assert_eq!(back.color(), image::ColorType::Rgb8);
    assert_eq!(&back.to_rgb8(), fig.image());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fig.png");
    fig.save_png(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), png);
    // Saving into a missing folder is an error naming the file.
    let bad = dir.path().join("no/such/dir/fig.png");
    let e = fig.save_png(&bad).unwrap_err();
    assert!(e.to_string().contains("fig.png"), "{e}");
}

#[test]
fn grid_rejects_empty_figures() {
    assert!(Figure::grid(0, 2, 10, 10).is_err());
    assert!(Figure::grid(1, 2, 0, 10).is_err());
}

#[test]
fn draw_idx_on_the_sample() {
    let ds = Pascal::open(sample_root()).unwrap().json("train").unwrap();
    let im = ds.image(0).unwrap();
    let fig = draw_idx(&ds, 0).unwrap();
    assert_eq!(fig.image().dimensions(), im.dimensions());
    // Image 30's pottedplant box [31 205 354 459]: white at column 204 (left edge 205 - 1),
    // black at 203, on a row below the label; the photo again from column 208.
    let c = fig.image();
    assert_eq!([*c.get_pixel(203, 300), *c.get_pixel(204, 300)], [BLACK, WHITE]);
    assert_eq!(*c.get_pixel(208, 300), *im.get_pixel(208, 300));
    // Right edge 459 (outer edge 460): white at 459, black at 458.
    assert_eq!([*c.get_pixel(458, 300), *c.get_pixel(459, 300)], [BLACK, WHITE]);
    // Far from the box, the photo.
    assert_eq!(*c.get_pixel(100, 400), *im.get_pixel(100, 400));
    // draw_im with no annotations is the photo itself.
    assert_eq!(draw_im(&im, &[], &ds.classes).image(), &im);
}

/// A panel index past the grid draws nothing and makes the figure an error naming the panel
/// (no panic reaches a notebook kernel).
#[test]
fn a_panel_out_of_range_is_an_error_not_a_panic() {
    let mut fig = Figure::grid(1, 2, 8, 8).unwrap();
    fig.ax(5).draw_rect(fastdet::boxes::BBox::new(1., 1., 4., 4.), Color::WHITE).draw_text(
        0.,
        0.,
        "x",
        8,
        Color::WHITE,
    );
    let e = fig.to_png().unwrap_err().to_string();
    assert!(e.contains("panel 5 of a figure with 2 panels"), "{e}");
}

/// Lesson 9's 8-tick grid and the scatter of anchor centres: lines at linspace(0, size, 8), a
/// dot on each of the 4x4 grid's 16 centres.
#[test]
fn tick_grid_and_anchor_centres() {
    let im = RgbImage::from_pixel(224, 224, Rgb([10, 20, 30]));
    let mut fig = Figure::single(224, 224);
    fig.ax(0).show_img(&im).tick_grid(8, 224.0, 224.0, Color::WHITE);
    let c = fig.image();
    assert_eq!(*c.get_pixel(32, 100), Rgb([255, 255, 255]), "line at 224 * 1/7 = 32");
    assert_eq!(*c.get_pixel(100, 64), Rgb([255, 255, 255]), "line at 224 * 2/7 = 64");
    assert_eq!(*c.get_pixel(40, 100), Rgb([10, 20, 30]));
    let anchors = fastdet::anchors::Anchors::new(&fastdet::anchors::AnchorConfig::lesson_4x4(), tch::Device::Cpu);
    let fig = anchors.show_centers(&im).unwrap();
    let c = fig.image();
    // Centres at 1/8, 3/8, 5/8, 7/8 of 224: 28, 84, 140, 196.
    for y in [28u32, 84, 140, 196] {
        for x in [28u32, 84, 140, 196] {
            assert_eq!(*c.get_pixel(x, y), Rgb([255, 60, 60]), "dot at ({y}, {x})");
        }
    }
    assert_eq!(*c.get_pixel(56, 50), Rgb([10, 20, 30]));
}

/// A fit's report charts each metric per epoch below the loss and learning rate (a second row
/// for the SSD's map, two charts a row so that a notebook does not shrink them), with the best
/// epoch as a red dot when keep_best watches it; before the first epoch ends there is nothing to
/// chart and only the two curves show.
#[test]
fn a_fit_report_charts_each_metric_per_epoch_with_its_best_epoch() {
    use fastdet::learner::{BestEpoch, EpochRow, FitReport};
    let row = |epoch, map| EpochRow { epoch, trn_loss: 2.0, val_loss: 1.5, metrics: vec![map], secs: 1.0 };
    let mut r = FitReport {
        metric_names: vec!["map".into()],
        lrs: (0..12).map(|i| 1e-3 * (i + 1) as f64).collect(),
        losses: (0..12).map(|i| 3.0 - 0.2 * i as f64).collect(),
        batches_per_epoch: 4,
        ..Default::default()
    };
    let rgb = |r: &FitReport| image::load_from_memory(&r.plot().unwrap().to_png().unwrap()).unwrap().to_rgb8();
    let one_row = rgb(&r); // no epoch yet: loss and learning rate only
    r.epochs = vec![row(0, 0.1), row(1, 0.3), row(2, 0.2)];
    let h = one_row.height();
    let red_below = |img: &RgbImage| img.enumerate_pixels().filter(|(_, y, p)| *y >= h && p.0 == [214, 39, 40]).count();
    let plain = rgb(&r);
    assert_eq!(plain.width(), one_row.width(), "two charts a row");
    assert!(plain.height() >= 2 * h - 20, "a second row for map: {} px high, {h} before", plain.height());
    assert_eq!(red_below(&plain), 0, "no best epoch without keep_best");
    r.best = Some(Box::new(BestEpoch {
        column: "map".into(),
        higher_is_better: true,
        epoch: 1,
        epochs_done: 2,
        value: 0.3,
        weights: None,
    }));
    let marked = rgb(&r);
    assert!(red_below(&marked) > 20, "the best epoch is marked");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
    std::fs::create_dir_all(&dir).unwrap();
    marked.save(dir.join("fit-report-metrics.png")).unwrap(); // to look at
}
