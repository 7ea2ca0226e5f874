//! Box-aware augmentation (`fastdet::transforms`): identities, where boxes go under any
//! geometric plan, lighting, determinism, hand-computed cases and bad configurations.
//!
//! Images are small random `RgbImage`s so that the property tests stay fast in debug builds.

use fastdet::boxes::BBox;
use fastdet::transforms::{
    apply_lighting, scale_to, tfms_from_model, Aug, Augmented, CropType, Plan, RandomFlip, RandomLighting,
    RandomRotate, Step, TfmY, Tfms, IMAGENET_MEAN, IMAGENET_STD,
};
use image::{Rgb, RgbImage};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A `w x h` image of random bytes made from `seed`.
fn random_image(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    RgbImage::from_fn(w, h, |_, _| Rgb([rng.random(), rng.random(), rng.random()]))
}

/// Random inclusive boxes inside a `w x h` image, from `seed`.
fn random_boxes(w: u32, h: u32, n: usize, seed: u64) -> Vec<BBox> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xB0C5);
    (0..n)
        .map(|_| {
            let (t, b) = {
                let a = rng.random_range(0..h);
                let c = rng.random_range(0..h);
                (a.min(c), a.max(c))
            };
            let (l, r) = {
                let a = rng.random_range(0..w);
                let c = rng.random_range(0..w);
                (a.min(c), a.max(c))
            };
            BBox::new(t as f32, l as f32, b as f32, r as f32)
        })
        .collect()
}

fn plan(steps: Vec<Step>) -> Plan {
    Plan { steps, crop_offset: (0.0, 0.0) }
}

fn tfms(sz: u32, crop: CropType, tfm_y: TfmY) -> Tfms {
    Tfms::new(sz, vec![], crop, tfm_y).unwrap()
}

/// The normalised CHW output back to 0..1 levels (inverse of the ImageNet normalisation).
fn to_unit(a: &Augmented) -> Vec<f32> {
    let n = (a.sz * a.sz) as usize;
    assert_eq!(a.image.len(), 3 * n, "image is [3, sz, sz]");
    a.image.iter().enumerate().map(|(k, &x)| x * IMAGENET_STD[k / n] + IMAGENET_MEAN[k / n]).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn boxes_close(a: &[BBox], b: &[BBox], tol: f32) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| x.to_array().iter().zip(y.to_array()).all(|(p, q)| (p - q).abs() <= tol))
}

/// Largest difference, in 0..255 levels, between two RGB images of the same size.
fn max_level_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
}

fn square_image() -> impl Strategy<Value = (u32, u64)> {
    (16u32..=48, any::<u64>())
}

fn geo_step() -> impl Strategy<Value = Step> {
    prop_oneof![Just(Step::Flip), (-45.0f32..=45.0).prop_map(Step::Rotate)]
}

fn crop_type() -> impl Strategy<Value = CropType> {
    prop_oneof![Just(CropType::No), Just(CropType::Center), Just(CropType::Random)]
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 64, ..ProptestConfig::default() }
}

// ---------------------------------------------------------------------------------------------
// Identities

proptest! {
    #![proptest_config(config())]

    /// Flipping twice is the identity, for pixels and boxes (square image, sz = its size, so the
    /// squash of `CropType::No` is the identity too).
    #[test]
    fn flip_twice_is_identity((n, seed) in square_image(), nb in 0usize..6) {
        let img = random_image(n, n, seed);
        let boxes = random_boxes(n, n, nb, seed);
        let t = tfms(n, CropType::No, TfmY::Coord);
        let twice = t.apply_plan(&img, &boxes, &plan(vec![Step::Flip, Step::Flip]));
        let none = t.apply_plan(&img, &boxes, &plan(vec![]));
        prop_assert!(max_abs_diff(&twice.image, &none.image) <= 1e-5);
        prop_assert!(boxes_close(&twice.boxes, &none.boxes, 1e-4), "{:?} vs {:?}", twice.boxes, none.boxes);
        prop_assert!(boxes_close(&none.boxes, &boxes, 1e-4), "the no-op plan moved boxes: {:?} vs {:?}", none.boxes, boxes);
        prop_assert_eq!(&twice.kept, &(0..nb).collect::<Vec<_>>());
        prop_assert_eq!(max_level_diff(&none.to_rgb(), &img), 0);
    }

    /// One flip mirrors every pixel: output (r, c) = input (r, n-1-c); boxes mirror as
    /// `left' = n-1-right`, `right' = n-1-left`.
    #[test]
    fn one_flip_mirrors((n, seed) in square_image(), nb in 0usize..6) {
        let img = random_image(n, n, seed);
        let boxes = random_boxes(n, n, nb, seed);
        let out = tfms(n, CropType::No, TfmY::Coord).apply_plan(&img, &boxes, &plan(vec![Step::Flip]));
        let rgb = out.to_rgb();
        for r in 0..n {
            for c in 0..n {
                prop_assert_eq!(rgb.get_pixel(c, r), img.get_pixel(n - 1 - c, r), "pixel row {} col {}", r, c);
            }
        }
        let want: Vec<BBox> = boxes.iter().map(|b| BBox::new(b.top, n as f32 - 1.0 - b.right, b.bottom, n as f32 - 1.0 - b.left)).collect();
        prop_assert!(boxes_close(&out.boxes, &want, 1e-4), "{:?} vs {:?}", out.boxes, want);
    }

    /// Rotating by 0 degrees changes nothing.
    #[test]
    fn rotate_zero_is_identity((n, seed) in square_image(), nb in 0usize..6) {
        let img = random_image(n, n, seed);
        let boxes = random_boxes(n, n, nb, seed);
        let out = tfms(n, CropType::No, TfmY::Coord).apply_plan(&img, &boxes, &plan(vec![Step::Rotate(0.0)]));
        prop_assert!(max_level_diff(&out.to_rgb(), &img) <= 1);
        prop_assert!(boxes_close(&out.boxes, &boxes, 1e-4), "{:?} vs {:?}", out.boxes, boxes);
        prop_assert_eq!(&out.kept, &(0..nb).collect::<Vec<_>>());
    }

    /// Squashing (and scaling) a square image to its own size is the identity, through the
    /// whole `Tfms::apply` pipeline: denormalised output = input, boxes unchanged.
    #[test]
    fn squash_to_same_size_is_identity((n, seed) in square_image(), nb in 0usize..6, aseed in any::<u64>()) {
        let img = random_image(n, n, seed);
        let boxes = random_boxes(n, n, nb, seed);
        let out = tfms(n, CropType::No, TfmY::Coord).apply(&img, &boxes, aseed).unwrap();
        prop_assert_eq!(out.sz, n);
        prop_assert!(max_level_diff(&out.to_rgb(), &img) <= 1);
        // Also on the 0..1 level, without denorm's rounding.
        let unit = to_unit(&out);
        let nn = (n * n) as usize;
        for (k, &v) in unit.iter().enumerate() {
            let (ch, o) = (k / nn, k % nn);
            let want = img.as_raw()[3 * o + ch] as f32 / 255.0;
            prop_assert!((v - want).abs() <= 1e-5, "channel {} pixel {}: {} vs {}", ch, o, v, want);
        }
        prop_assert_eq!(&out.boxes, &boxes);
    }

    /// `scale_to` leaves an image whose short side is already `sz` alone (factors 1).
    #[test]
    fn scale_to_own_short_side_is_identity(w in 20u32..=60, h in 20u32..=50, seed in any::<u64>()) {
        let img = random_image(w, h, seed);
        let (out, sy, sx) = scale_to(&img, w.min(h)).unwrap();
        prop_assert_eq!((sy, sx), (1.0, 1.0));
        prop_assert_eq!(out, img);
    }

    /// `scale_to` makes the short side `sz`, keeps the aspect ratio to a rounding, and returns
    /// the factors `new / old` for each axis.
    #[test]
    fn scale_to_sets_short_side(w in 20u32..=60, h in 20u32..=50, sz in 16u32..=48, seed in any::<u64>()) {
        let img = random_image(w, h, seed);
        let (out, sy, sx) = scale_to(&img, sz).unwrap();
        let (nw, nh) = out.dimensions();
        prop_assert_eq!(nw.min(nh), sz);
        let long_want = (w.max(h) as f64 * sz as f64 / w.min(h) as f64).round() as u32;
        prop_assert_eq!(nw.max(nh), long_want);
        prop_assert!((sx - nw as f32 / w as f32).abs() < 1e-6 && (sy - nh as f32 / h as f32).abs() < 1e-6);
    }

    /// A square crop without other steps is a pure integer translation: output (r, c) =
    /// scaled (r + oy, c + ox), exactly.
    #[test]
    fn crop_is_a_translation(w in 20u32..=60, h in 20u32..=50, sz in 16u32..=48, seed in any::<u64>(), random in any::<bool>()) {
        prop_assume!(sz <= w.min(h));
        let img = random_image(w, h, seed);
        let crop = if random { CropType::Random } else { CropType::Center };
        let t = tfms(sz, crop, TfmY::Coord);
        let p = t.plan(&mut ChaCha8Rng::seed_from_u64(seed), w, h);
        let (ox, oy) = p.crop_offset;
        prop_assert!(ox.fract() == 0.0 && oy.fract() == 0.0);
        prop_assert!(ox >= 0.0 && ox <= (w - sz) as f32 && oy >= 0.0 && oy <= (h - sz) as f32, "offset {:?}", p.crop_offset);
        if !random {
            // Centred to within half a pixel (fastai 0.7 rounds the start up, this crate down).
            let centred = |o: f32, d: u32| o == (d / 2) as f32 || o == d.div_ceil(2) as f32;
            prop_assert!(centred(ox, w - sz) && centred(oy, h - sz), "centre crop offset {:?} for {}x{} -> {}", p.crop_offset, w, h, sz);
        }
        let rgb = t.apply_plan(&img, &[], &p).to_rgb();
        for r in 0..sz {
            for c in 0..sz {
                prop_assert_eq!(rgb.get_pixel(c, r), img.get_pixel(c + ox as u32, r + oy as u32));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Boxes under any geometric plan

/// Independent hull of a box's 4 corners through the plan's forward map, clipped to `[0, sz]`:
/// `(x0, y0, x1, y1)` in continuous coordinates, and the unclipped hull.
fn clipped_hull(t: &Tfms, p: &Plan, w: u32, h: u32, b: &BBox) -> ([f64; 4], [f64; 4]) {
    let fwd = t.forward_map(p, w, h);
    let (l, tp, r, bt) = (b.left as f64, b.top as f64, b.right as f64 + 1.0, b.bottom as f64 + 1.0);
    let pts = [fwd.apply(l, tp), fwd.apply(r, tp), fwd.apply(l, bt), fwd.apply(r, bt)];
    let xs = pts.map(|p| p.0);
    let ys = pts.map(|p| p.1);
    let min = |v: [f64; 4]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: [f64; 4]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let raw = [min(xs), min(ys), max(xs), max(ys)];
    let s = t.sz as f64;
    (raw.map(|v| v.clamp(0.0, s)), raw)
}

proptest! {
    #![proptest_config(config())]

    /// Every kept box is the clipped hull of its moved corners (so contains it), lies in
    /// `[0, sz-1]`, and is at least one pixel; `kept` is strictly increasing; a box is dropped
    /// exactly when its clipped hull is under a pixel, in particular when it left the image.
    #[test]
    fn boxes_follow_any_geometric_plan(
        w in 20u32..=60,
        h in 20u32..=50,
        sz in 16u32..=48,
        seed in any::<u64>(),
        nb in 0usize..8,
        steps in prop::collection::vec(geo_step(), 0..4),
        crop in crop_type(),
        offset_frac in (0.0f32..=1.0, 0.0f32..=1.0),
    ) {
        let img = random_image(w, h, seed);
        let boxes = random_boxes(w, h, nb, seed);
        let t = tfms(sz, crop, TfmY::Coord);
        let crop_offset = match crop {
            CropType::No => (0.0, 0.0),
            _ => ((w.saturating_sub(sz) as f32 * offset_frac.0).floor(), (h.saturating_sub(sz) as f32 * offset_frac.1).floor()),
        };
        let p = Plan { steps, crop_offset };
        let out = t.apply_plan(&img, &boxes, &p);
        prop_assert_eq!(out.image.len(), (3 * sz * sz) as usize);
        prop_assert!(out.image.iter().all(|v| v.is_finite()));
        prop_assert_eq!(out.boxes.len(), out.kept.len());
        prop_assert!(out.kept.windows(2).all(|k| k[0] < k[1]), "kept not strictly increasing: {:?}", out.kept);
        prop_assert!(out.kept.iter().all(|&k| k < boxes.len()));
        let lim = sz as f32 - 1.0;
        for (o, &k) in out.boxes.iter().zip(&out.kept) {
            let ([x0, y0, x1, y1], _) = clipped_hull(&t, &p, w, h, &boxes[k]);
            let tol = 1e-3;
            // Contains the clipped hull...
            prop_assert!(o.left as f64 <= x0 + tol && o.top as f64 <= y0 + tol, "box {} = {:?} vs hull {:?}", k, o, (x0, y0, x1, y1));
            prop_assert!(o.right as f64 + 1.0 >= x1 - tol && o.bottom as f64 + 1.0 >= y1 - tol, "box {} = {:?} vs hull {:?}", k, o, (x0, y0, x1, y1));
            // ...and is no larger (the documented rule is the hull itself).
            prop_assert!((o.left as f64 - x0).abs() <= tol && (o.right as f64 + 1.0 - x1).abs() <= tol);
            prop_assert!((o.top as f64 - y0).abs() <= tol && (o.bottom as f64 + 1.0 - y1).abs() <= tol);
            prop_assert!(o.top >= 0.0 && o.left >= 0.0 && o.bottom <= lim && o.right <= lim, "box {:?} outside [0, {}]", o, lim);
            prop_assert!(o.right >= o.left && o.bottom >= o.top, "degenerate kept box {:?}", o);
        }
        for (i, b) in boxes.iter().enumerate() {
            let ([x0, y0, x1, y1], [rx0, ry0, rx1, ry1]) = clipped_hull(&t, &p, w, h, b);
            let visible = x1 - x0 >= 1.0 && y1 - y0 >= 1.0;
            prop_assert_eq!(out.kept.contains(&i), visible, "box {} {:?}: clipped hull {:?}", i, b, (x0, y0, x1, y1));
            let s = sz as f64;
            if rx1 <= 0.0 || ry1 <= 0.0 || rx0 >= s || ry0 >= s {
                prop_assert!(!out.kept.contains(&i), "box {} {:?} left the image but was kept", i, b);
            }
        }
    }

    /// The same through `Tfms::plan` (random flips, rotations up to 45 degrees, any crop) on an
    /// image scaled with `scale_to`, as the data loader does.
    #[test]
    fn boxes_follow_drawn_plans(w in 20u32..=60, h in 20u32..=50, sz in 16u32..=48, seed in any::<u64>(), nb in 1usize..6, crop in crop_type()) {
        let img = random_image(w, h, seed);
        let boxes = random_boxes(w, h, nb, seed);
        let (scaled, sy, sx) = scale_to(&img, sz).unwrap();
        let scaled_boxes: Vec<BBox> = boxes.iter().map(|b| b.scale(sy, sx)).collect();
        let augs: Vec<Aug> = vec![RandomFlip { p: 0.5 }.into(), RandomRotate { deg: 45.0, p: 0.75 }.into()];
        let t = Tfms::new(sz, augs, crop, TfmY::Coord).unwrap();
        let p = t.plan(&mut ChaCha8Rng::seed_from_u64(seed), scaled.width(), scaled.height());
        for s in &p.steps {
            match s {
                Step::Flip => {}
                Step::Rotate(d) => prop_assert!(d.abs() <= 45.0),
                Step::Lighting { .. } => prop_assert!(false, "lighting drawn without RandomLighting"),
            }
        }
        let out = t.apply_plan(&scaled, &scaled_boxes, &p);
        // apply() = scale_to + plan from the seed + apply_plan
        let via_apply = t.apply(&img, &boxes, seed).unwrap();
        prop_assert_eq!(&via_apply.image, &out.image);
        prop_assert_eq!(&via_apply.boxes, &out.boxes);
        prop_assert_eq!(&via_apply.kept, &out.kept);
        let lim = sz as f32 - 1.0;
        for (o, &k) in out.boxes.iter().zip(&out.kept) {
            let ([x0, y0, x1, y1], _) = clipped_hull(&t, &p, scaled.width(), scaled.height(), &scaled_boxes[k]);
            prop_assert!((o.left as f64 - x0).abs() <= 1e-3 && (o.right as f64 + 1.0 - x1).abs() <= 1e-3);
            prop_assert!((o.top as f64 - y0).abs() <= 1e-3 && (o.bottom as f64 + 1.0 - y1).abs() <= 1e-3);
            prop_assert!(o.top >= 0.0 && o.left >= 0.0 && o.bottom <= lim && o.right <= lim);
        }
        prop_assert!(out.kept.windows(2).all(|k| k[0] < k[1]));
    }
}

/// A box wholly outside the centre crop is dropped and its index is absent from `kept`; the
/// labels of the others stay aligned.
#[test]
fn box_outside_the_crop_is_dropped() {
    let img = random_image(40, 20, 7);
    let t = tfms(20, CropType::Center, TfmY::Coord);
    let p = t.plan(&mut ChaCha8Rng::seed_from_u64(0), 40, 20);
    assert_eq!(p.crop_offset, (10.0, 0.0));
    let boxes = [
        BBox::new(2., 0., 10., 5.),   // columns 0..=5: left of the crop
        BBox::new(3., 12., 8., 20.),  // inside
        BBox::new(0., 31., 19., 39.), // columns 31..=39: right of the crop
        BBox::new(5., 8., 6., 10.),   // straddles the left edge: columns 10..=10 remain
        BBox::new(0., 0., 19., 39.),  // the whole image: the whole crop
    ];
    let out = t.apply_plan(&img, &boxes, &p);
    assert_eq!(out.kept, vec![1, 3, 4]);
    assert_eq!(out.boxes, vec![BBox::new(3., 2., 8., 10.), BBox::new(5., 0., 6., 0.), BBox::new(0., 0., 19., 19.)]);
    // Rotated far enough, a box near a corner leaves the image too.
    let corner = [BBox::new(0., 0., 1., 1.)];
    let out = tfms(20, CropType::No, TfmY::Coord).apply_plan(
        &random_image(20, 20, 1),
        &corner,
        &plan(vec![Step::Rotate(45.0)]),
    );
    assert!(out.boxes.is_empty() && out.kept.is_empty(), "{:?}", out.boxes);
}

// ---------------------------------------------------------------------------------------------
// Lighting

proptest! {
    #![proptest_config(config())]

    /// Lighting keeps pixel levels in [0, 1] (checked after inverting the normalisation) and
    /// never moves boxes.
    #[test]
    fn lighting_stays_in_range_and_keeps_boxes(
        (n, seed) in square_image(),
        nb in 0usize..6,
        b in -0.6f32..=0.6,
        c in 0.2f32..=4.0,
        geo in prop::collection::vec(geo_step(), 0..3),
    ) {
        let img = random_image(n, n, seed);
        let boxes = random_boxes(n, n, nb, seed);
        let t = tfms(n, CropType::No, TfmY::Coord);
        let mut lit_steps = geo.clone();
        lit_steps.push(Step::Lighting { b, c });
        let lit = t.apply_plan(&img, &boxes, &plan(lit_steps));
        let dark = t.apply_plan(&img, &boxes, &plan(geo));
        let unit = to_unit(&lit);
        let eps = 1e-5;
        prop_assert!(unit.iter().all(|&v| (-eps..=1.0 + eps).contains(&v)), "level out of [0, 1]: {:?}",
            unit.iter().copied().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v))));
        prop_assert_eq!(&lit.boxes, &dark.boxes);
        prop_assert_eq!(&lit.kept, &dark.kept);
    }

    /// The same through `Tfms::apply` with a strong `RandomLighting`.
    #[test]
    fn random_lighting_stays_in_range(w in 20u32..=60, h in 20u32..=50, sz in 16u32..=48, seed in any::<u64>()) {
        let img = random_image(w, h, seed);
        let boxes = random_boxes(w, h, 3, seed);
        let lit = Tfms::new(sz, vec![RandomLighting { b: 0.5, c: 0.9 }.into()], CropType::No, TfmY::Coord).unwrap();
        let plain = tfms(sz, CropType::No, TfmY::Coord);
        let a = lit.apply(&img, &boxes, seed).unwrap();
        let b = plain.apply(&img, &boxes, seed).unwrap();
        prop_assert!(to_unit(&a).iter().all(|&v| (-1e-5..=1.0 + 1e-5).contains(&v)));
        prop_assert_eq!(&a.boxes, &b.boxes);
        prop_assert_eq!(&a.kept, &b.kept);
    }

    /// `apply_lighting` is `clip((x - m) * c + m + b, 0, 1)` with `m` the mean of all values.
    #[test]
    fn apply_lighting_formula(v in prop::collection::vec(0.0f32..=1.0, 1..40), b in -0.5f32..=0.5, c in 0.2f32..=3.0) {
        let m = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let want: Vec<f32> = v.iter().map(|&x| (((x as f64 - m) * c as f64 + m + b as f64).clamp(0.0, 1.0)) as f32).collect();
        let mut got = v.clone();
        apply_lighting(&mut got, b, c);
        prop_assert!(max_abs_diff(&got, &want) <= 1e-5, "{:?} vs {:?}", got, want);
    }

    /// `Tfms::plan` draws `b' ~ U(-b, b)` then `c' ~ U(-c, c)` from the seeded ChaCha8Rng and
    /// maps `c'` to the contrast factor `c'' = -1/(c'-1)` if `c' < 0` else `c'+1`.
    #[test]
    fn lighting_plan_maps_contrast(seed in any::<u64>(), bmax in 0.0f32..=0.5, cmax in 0.0f32..0.99) {
        let t = Tfms::new(32, vec![RandomLighting { b: bmax, c: cmax }.into()], CropType::No, TfmY::Coord).unwrap();
        let p = t.plan(&mut ChaCha8Rng::seed_from_u64(seed), 40, 32);
        prop_assert_eq!(p.steps.len(), 1);
        let Step::Lighting { b, c } = p.steps[0] else { panic!("not a lighting step: {:?}", p.steps) };
        // Re-derive with the same generator.
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let b_want: f32 = rng.random_range(-bmax..=bmax);
        let c_raw: f32 = rng.random_range(-cmax..=cmax);
        let c_want = if c_raw < 0.0 { -1.0 / (c_raw - 1.0) } else { c_raw + 1.0 };
        prop_assert_eq!(b, b_want);
        prop_assert!((c - c_want).abs() <= 1e-6, "c'' = {} for c' = {}, want {}", c, c_raw, c_want);
        // Ranges that hold whatever the generator: |b| <= bmax, c'' in [1/(1+cmax), 1+cmax].
        prop_assert!(b.abs() <= bmax);
        prop_assert!(c >= 1.0 / (1.0 + cmax) - 1e-6 && c <= 1.0 + cmax + 1e-6, "c'' = {}", c);
        if c_raw < 0.0 { prop_assert!(c <= 1.0) } else { prop_assert!(c >= 1.0) }
    }
}

/// A constant image has mean = its value, so contrast does nothing and the output is
/// `clip(value + b)`; with a constant colour, `m` is the mean over all three channels.
#[test]
fn lighting_on_constant_images() {
    let t = tfms(8, CropType::No, TfmY::Coord);
    let grey = RgbImage::from_pixel(8, 8, Rgb([100, 100, 100]));
    for (b, c) in [(0.1f32, 1.7f32), (-0.2, 0.6), (0.8, 1.0), (-0.9, 2.0), (0.0, 3.0)] {
        let out = t.apply_plan(&grey, &[], &plan(vec![Step::Lighting { b, c }]));
        let want = (100.0 / 255.0 + b).clamp(0.0, 1.0);
        let unit = to_unit(&out);
        assert!(unit.iter().all(|&v| (v - want).abs() <= 1e-5), "b = {b}, c = {c}: {} vs {want}", unit[0]);
    }
    // Constant colour (r, g, b) = (51, 102, 204): m = (0.2 + 0.4 + 0.8) / 3.
    let colour = RgbImage::from_pixel(6, 6, Rgb([51, 102, 204]));
    let (b, c) = (0.05f32, 1.5f32);
    let out = tfms(6, CropType::No, TfmY::Coord).apply_plan(&colour, &[], &plan(vec![Step::Lighting { b, c }]));
    let m = (0.2 + 0.4 + 0.8) / 3.0;
    let unit = to_unit(&out);
    for (ch, v) in [0.2f32, 0.4, 0.8].into_iter().enumerate() {
        let want = ((v - m) * c + m + b).clamp(0.0, 1.0);
        assert!(
            unit[ch * 36..(ch + 1) * 36].iter().all(|&x| (x - want).abs() <= 1e-5),
            "channel {ch}: {} vs {want}",
            unit[ch * 36]
        );
    }
}

/// Hand-computed `apply_lighting` values.
#[test]
fn apply_lighting_by_hand() {
    // m = 0.5; b = 0.1, c = 1.5: (x - 0.5) * 1.5 + 0.6
    let mut v = vec![0.2f32, 0.4, 0.6, 0.8];
    apply_lighting(&mut v, 0.1, 1.5);
    let want = [0.15f32, 0.45, 0.75, 1.0]; // 1.05 clipped
    assert!(max_abs_diff(&v, &want) < 1e-6, "{v:?}");
    // c' = -0.5 -> c'' = -1/(-1.5) = 2/3: contrast goes down.
    let c = -1.0 / (-0.5f32 - 1.0);
    let mut v = vec![0.0f32, 1.0];
    apply_lighting(&mut v, -0.1, c);
    let want = [(0.0 - 0.5) * c + 0.4, (1.0 - 0.5) * c + 0.4];
    assert!(max_abs_diff(&v, &want) < 1e-6, "{v:?} vs {want:?}");
    // b = 0, c = 1 is the identity.
    let mut v = vec![0.3f32, 0.9, 0.1];
    apply_lighting(&mut v, 0.0, 1.0);
    assert_eq!(v, vec![0.3, 0.9, 0.1]);
    // A constant vector: clip(value + b), whatever c.
    let mut v = vec![0.7f32; 5];
    apply_lighting(&mut v, 0.2, 0.3);
    assert!(v.iter().all(|&x| (x - 0.9).abs() < 1e-6), "{v:?}");
    let mut v = vec![0.7f32; 5];
    apply_lighting(&mut v, 0.5, 2.5);
    assert!(v.iter().all(|&x| x == 1.0), "{v:?}");
}

// ---------------------------------------------------------------------------------------------
// Determinism

fn full_pipeline(sz: u32) -> Tfms {
    Tfms::new(
        sz,
        vec![
            RandomFlip { p: 0.5 }.into(),
            RandomRotate { deg: 10.0, p: 0.75 }.into(),
            RandomLighting { b: 0.1, c: 0.1 }.into(),
        ],
        CropType::Random,
        TfmY::Coord,
    )
    .unwrap()
}

proptest! {
    #![proptest_config(config())]

    /// Same seed, same output, bit for bit.
    #[test]
    fn same_seed_same_output(w in 20u32..=60, h in 20u32..=50, sz in 16u32..=48, seed in any::<u64>(), aseed in any::<u64>()) {
        let img = random_image(w, h, seed);
        let boxes = random_boxes(w, h, 4, seed);
        let t = full_pipeline(sz);
        let a = t.apply(&img, &boxes, aseed).unwrap();
        let b = t.apply(&img, &boxes, aseed).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&a.image), bits(&b.image));
        prop_assert_eq!(&a.boxes, &b.boxes);
        prop_assert_eq!(&a.kept, &b.kept);
        prop_assert_eq!(t.plan(&mut ChaCha8Rng::seed_from_u64(aseed), w, h), t.plan(&mut ChaCha8Rng::seed_from_u64(aseed), w, h));
    }
}

/// Different seeds give different augmentations (lighting alone is drawn from a continuum).
#[test]
fn different_seeds_differ() {
    let img = random_image(40, 30, 3);
    let boxes = random_boxes(40, 30, 3, 3);
    let t = full_pipeline(24);
    let outs: Vec<Vec<u32>> =
        (0..16u64).map(|s| t.apply(&img, &boxes, s).unwrap().image.iter().map(|x| x.to_bits()).collect()).collect();
    for i in 0..outs.len() {
        for j in i + 1..outs.len() {
            assert_ne!(outs[i], outs[j], "seeds {i} and {j} gave the same image");
        }
    }
    // Flips, rotations and crops vary too, not only lighting.
    let plans: Vec<Plan> = (0..32u64).map(|s| t.plan(&mut ChaCha8Rng::seed_from_u64(s), 32, 24)).collect();
    let flips = plans.iter().filter(|p| p.steps.contains(&Step::Flip)).count();
    let rotations = plans.iter().filter(|p| p.steps.iter().any(|s| matches!(s, Step::Rotate(_)))).count();
    assert!(flips > 4 && flips < 28, "{flips} flips in 32 draws with p = 0.5");
    assert!(rotations > 12 && rotations < 32, "{rotations} rotations in 32 draws with p = 0.75");
    let offsets: std::collections::HashSet<(u32, u32)> =
        plans.iter().map(|p| (p.crop_offset.0 as u32, p.crop_offset.1 as u32)).collect();
    assert!(offsets.len() > 3, "random crop offsets: {offsets:?}");
}

// ---------------------------------------------------------------------------------------------
// TfmY::None

/// `TfmY::None` leaves the boxes exactly as given (the lesson's bug) while the image is
/// transformed just as with `TfmY::Coord`.
#[test]
fn tfm_y_none_leaves_boxes() {
    let img = random_image(50, 30, 11);
    let boxes = vec![BBox::new(2., 3., 20., 30.), BBox::new(0., 40., 29., 49.)];
    let flip = vec![Aug::from(RandomFlip { p: 1.0 }), RandomRotate { deg: 20.0, p: 1.0 }.into()];
    let none = Tfms::new(24, flip.clone(), CropType::No, TfmY::None).unwrap().apply(&img, &boxes, 5).unwrap();
    let coord = Tfms::new(24, flip, CropType::No, TfmY::Coord).unwrap().apply(&img, &boxes, 5).unwrap();
    let plain = Tfms::new(24, vec![], CropType::No, TfmY::None).unwrap().apply(&img, &boxes, 5).unwrap();
    assert_eq!(none.boxes, boxes);
    assert_eq!(none.kept, vec![0, 1]);
    assert_eq!(plain.boxes, boxes, "not even the scaling moves them");
    assert_eq!(none.image, coord.image, "the image is transformed whatever tfm_y is");
    assert!(max_abs_diff(&none.image, &plain.image) > 0.1, "the flip and rotation changed the image");
    assert_ne!(coord.boxes, boxes);
}

// ---------------------------------------------------------------------------------------------
// Hand-computed cases

fn numbered_4x4() -> RgbImage {
    // Distinct values per pixel and channel.
    RgbImage::from_fn(4, 4, |c, r| Rgb([(r * 4 + c) as u8 * 10, 200 - (r * 4 + c) as u8 * 5, (c * 60 + r) as u8]))
}

/// 4x4 flip: pixel (r, c) goes to (r, 3-c) exactly; BBox(1,0,2,1) -> BBox(1,2,2,3).
#[test]
fn flip_4x4_by_hand() {
    let img = numbered_4x4();
    let out =
        tfms(4, CropType::No, TfmY::Coord).apply_plan(&img, &[BBox::new(1., 0., 2., 1.)], &plan(vec![Step::Flip]));
    let rgb = out.to_rgb();
    for r in 0..4 {
        for c in 0..4 {
            assert_eq!(rgb.get_pixel(3 - c, r), img.get_pixel(c, r), "row {r} col {c}");
        }
    }
    assert_eq!(out.boxes, vec![BBox::new(1., 2., 2., 3.)]);
    assert_eq!(out.kept, vec![0]);
}

/// 4x4 rotation by +90 degrees (counter-clockwise on screen): input (r, c) goes to
/// (3-c, r); the top-right 1x2 box goes to the top-left 2x1 box.
#[test]
fn rotate_90_4x4_by_hand() {
    let img = numbered_4x4();
    let out = tfms(4, CropType::No, TfmY::Coord).apply_plan(
        &img,
        &[BBox::new(0., 2., 0., 3.)],
        &plan(vec![Step::Rotate(90.0)]),
    );
    let rgb = out.to_rgb();
    for r in 0..4 {
        for c in 0..4 {
            assert_eq!(rgb.get_pixel(r, 3 - c), img.get_pixel(c, r), "input row {r} col {c}");
        }
    }
    assert!(boxes_close(&out.boxes, &[BBox::new(0., 0., 1., 0.)], 1e-4), "{:?}", out.boxes);
}

/// Squash of a non-square image: a 2x1 image of two colours squashed to 2x2 keeps the left
/// column one colour and the right the other; boxes scale by (sz/h, sz/w).
#[test]
fn squash_scales_boxes_by_axis() {
    let img = RgbImage::from_fn(8, 4, |c, _| if c < 4 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
    let t = tfms(4, CropType::No, TfmY::Coord);
    let out = t.apply_plan(&img, &[BBox::new(0., 0., 3., 3.), BBox::new(1., 4., 2., 7.)], &plan(vec![]));
    assert_eq!(out.boxes, vec![BBox::new(0., 0., 3., 1.), BBox::new(1., 2., 2., 3.)]);
    let rgb = out.to_rgb();
    for r in 0..4 {
        assert_eq!(rgb.get_pixel(0, r), &Rgb([255, 0, 0]));
        assert_eq!(rgb.get_pixel(3, r), &Rgb([0, 0, 255]));
    }
}

// ---------------------------------------------------------------------------------------------
// Configurations

fn err_of(r: fastdet::Result<Tfms>) -> String {
    match r {
        Ok(t) => panic!("accepted a bad configuration: {t:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_configs_are_errors_naming_the_parameter() {
    let new = |sz: u32, aug: Aug| Tfms::new(sz, vec![aug], CropType::No, TfmY::Coord);
    let cases: Vec<(fastdet::Result<Tfms>, &str)> = vec![
        (Tfms::new(0, vec![], CropType::No, TfmY::Coord), "sz"),
        (tfms_from_model(0, vec![], CropType::Random, TfmY::Coord).map(|t| t.0), "sz"),
        (new(8, RandomFlip { p: 1.5 }.into()), "p "),
        (new(8, RandomFlip { p: -0.1 }.into()), "p "),
        (new(8, RandomFlip { p: f32::NAN }.into()), "p "),
        (new(8, RandomRotate { deg: 10.0, p: 2.0 }.into()), "p "),
        (new(8, RandomRotate { deg: 10.0, p: f32::NAN }.into()), "p "),
        (new(8, RandomRotate { deg: -3.0, p: 0.5 }.into()), "deg"),
        (new(8, RandomRotate { deg: f32::NAN, p: 0.5 }.into()), "deg"),
        (new(8, RandomRotate { deg: f32::INFINITY, p: 0.5 }.into()), "deg"),
        (new(8, RandomLighting { b: -0.1, c: 0.1 }.into()), "b "),
        (new(8, RandomLighting { b: f32::NAN, c: 0.1 }.into()), "b "),
        (new(8, RandomLighting { b: 0.1, c: f32::NAN }.into()), "c "),
        (new(8, RandomLighting { b: 0.1, c: -0.2 }.into()), "c "),
    ];
    for (i, (r, name)) in cases.into_iter().enumerate() {
        let msg = err_of(r);
        assert!(msg.contains(name), "case {i}: message {msg:?} does not name `{}`", name.trim());
    }
    // NaN and bad values are echoed back.
    assert!(err_of(new(8, RandomFlip { p: f32::NAN }.into())).contains("NaN"));
    assert!(err_of(new(8, RandomRotate { deg: -3.0, p: 0.5 }.into())).contains("-3"));
}

/// Edge values that make sense are accepted, and drawing plans with them does not panic.
#[test]
fn edge_configs_work() {
    let augs: Vec<Aug> = vec![
        RandomFlip { p: 0.0 }.into(),
        RandomFlip { p: 1.0 }.into(),
        RandomRotate { deg: 0.0, p: 1.0 }.into(),
        RandomRotate { deg: 180.0, p: 0.0 }.into(),
        RandomLighting { b: 0.0, c: 0.0 }.into(),
    ];
    for crop in [CropType::No, CropType::Center, CropType::Random] {
        let t = Tfms::new(1, augs.clone(), crop, TfmY::Coord).unwrap();
        let img = random_image(3, 2, 1);
        let out = t.apply(&img, &[BBox::new(0., 0., 1., 2.)], 9).unwrap();
        assert_eq!(out.sz, 1);
        assert_eq!(out.image.len(), 3);
        assert_eq!(out.boxes, vec![BBox::new(0., 0., 0., 0.)], "{crop:?}");
        let p = t.plan(&mut ChaCha8Rng::seed_from_u64(3), 3, 2);
        assert_eq!(p.steps.iter().filter(|s| **s == Step::Flip).count(), 1);
        assert!(p.steps.contains(&Step::Rotate(0.0)));
        assert!(p.steps.contains(&Step::Lighting { b: 0.0, c: 1.0 }));
    }
    // The validation pipeline of tfms_from_model: no augmentation, random crop -> centre crop.
    let (trn, val) = tfms_from_model(32, augs.clone(), CropType::Random, TfmY::Coord).unwrap();
    assert_eq!((trn.crop, trn.augs.len()), (CropType::Random, 5));
    assert_eq!((val.crop, val.augs.len(), val.sz, val.tfm_y), (CropType::Center, 0, 32, TfmY::Coord));
    let (_, val) = tfms_from_model(32, augs, CropType::No, TfmY::None).unwrap();
    assert_eq!((val.crop, val.tfm_y), (CropType::No, TfmY::None));
}

/// Scaling an empty image is an error, not a panic.
#[test]
fn empty_image_is_an_error() {
    let t = tfms(8, CropType::No, TfmY::Coord);
    assert!(t.apply(&RgbImage::new(0, 5), &[], 0).is_err());
    assert!(scale_to(&RgbImage::new(5, 0), 8).is_err());
}
