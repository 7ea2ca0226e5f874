//! Anchors fitted to a dataset's boxes, as YOLO's autoanchor does (Ultralytics'
//! `kmean_anchors`): k-means over the boxes' shapes with `1 - IoU` as the distance (YOLOv2,
//! section "Dimension Clusters"), then a genetic refinement that mutates the shapes and keeps a
//! mutation when the mean best IoU improves.
//!
//! An SSD's anchors are not free shapes: every grid has the same `k` shapes per cell, each a
//! zoom times a ratio of the cell (`AnchorConfig { grids, zooms, ratios }`, which the head's
//! `k` outputs per cell and the loss rely on). [`fit_anchors`] therefore ends in zooms and
//! ratios: the k-means shapes are put on the grid whose cell they are nearest in size, their
//! sizes relative to that cell clustered into the zooms and their aspects into the ratios; a
//! second genetic refinement then tunes those zooms and ratios on the real anchors (centred on
//! their cells), starting from the better of that and the config given, so the result is never
//! worse than what it started from by the mean best IoU of the objects it was fitted on.
//!
//! Shapes are `(h, w)` in image units. Every random choice comes from [`FitOpts::seed`].

use super::coverage::{anchor_corners, best_anchors, Coverage, UnitBox};
use super::AnchorConfig;
use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How to fit (Ultralytics' `kmean_anchors` defaults where they apply).
#[derive(Debug, Clone, PartialEq)]
pub struct FitOpts {
    pub seed: u64,
    /// Generations of each genetic refinement (Ultralytics: 1000).
    pub generations: usize,
    /// Each value mutates with this probability (Ultralytics: 0.9) ...
    pub mutation_prob: f64,
    /// ... by a factor `1 + U(0,1) * N(0,1) * sigma`, kept within 0.3..3 (Ultralytics: 0.1).
    pub sigma: f64,
    /// At most this many objects (a seeded sample) drive the refinement of the zooms and ratios
    /// (each generation computes every object's IoU with every anchor).
    pub max_objects: usize,
}

impl Default for FitOpts {
    fn default() -> Self {
        Self { seed: 0, generations: 1000, mutation_prob: 0.9, sigma: 0.1, max_objects: 2000 }
    }
}

/// IoU of two shapes `(h, w)` with the same centre.
pub fn shape_iou(a: (f64, f64), b: (f64, f64)) -> f64 {
    let inter = a.0.min(b.0) * a.1.min(b.1);
    let union = a.0 * a.1 + b.0 * b.1 - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// The mean over `shapes` of the best [`shape_iou`] with any of `centroids`: the fitness of the
/// shape refinement.
pub fn mean_best_shape_iou(shapes: &[(f64, f64)], centroids: &[(f64, f64)]) -> f64 {
    let best = |s: &(f64, f64)| centroids.iter().map(|c| shape_iou(*s, *c)).fold(0.0, f64::max);
    shapes.iter().map(best).sum::<f64>() / shapes.len().max(1) as f64
}

/// A standard normal draw (Box-Muller) from `rng`.
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// k-means of `shapes` into `k` shapes with `1 - IoU` as the distance (YOLOv2): seeded
/// k-means++ starts (each next centre drawn with probability proportional to its distance to the
/// nearest centre), then assign-and-average until no shape changes cluster (at most 300 rounds).
/// Sorted by area. Errors: no shapes, `k` 0, a shape that is not positive.
pub fn kmeans_shapes(shapes: &[(f64, f64)], k: usize, seed: u64) -> Result<Vec<(f64, f64)>> {
    if shapes.is_empty() || k == 0 {
        return Err(Error::Invalid(format!("k-means of {} box shapes into {k} clusters", shapes.len())));
    }
    if let Some(s) = shapes.iter().find(|s| !(s.0 > 0.0 && s.1 > 0.0 && s.0.is_finite() && s.1.is_finite())) {
        return Err(Error::Invalid(format!("k-means of box shapes: a shape of (h, w) = {s:?}")));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dist = |s: &(f64, f64), c: &[(f64, f64)]| c.iter().map(|c| 1.0 - shape_iou(*s, *c)).fold(1.0, f64::min);
    let mut centres = vec![shapes[rng.random_range(0..shapes.len())]];
    while centres.len() < k {
        let d: Vec<f64> = shapes.iter().map(|s| dist(s, &centres)).collect();
        let total: f64 = d.iter().sum();
        if total <= 0.0 {
            break; // every shape is a centre already: fewer distinct shapes than k
        }
        let mut r = rng.random::<f64>() * total;
        let pick = d.iter().position(|&x| {
            r -= x;
            r < 0.0
        });
        centres.push(shapes[pick.unwrap_or(shapes.len() - 1)]);
    }
    let nearest = |s: &(f64, f64), c: &[(f64, f64)]| {
        (0..c.len()).fold(0, |b, i| if shape_iou(*s, c[i]) > shape_iou(*s, c[b]) { i } else { b })
    };
    let mut assign: Vec<usize> = vec![usize::MAX; shapes.len()];
    for _ in 0..300 {
        let next: Vec<usize> = shapes.iter().map(|s| nearest(s, &centres)).collect();
        if next == assign {
            break;
        }
        assign = next;
        for (i, c) in centres.iter_mut().enumerate() {
            let members: Vec<&(f64, f64)> = shapes.iter().zip(&assign).filter(|(_, &a)| a == i).map(|p| p.0).collect();
            if !members.is_empty() {
                let n = members.len() as f64;
                *c = (members.iter().map(|m| m.0).sum::<f64>() / n, members.iter().map(|m| m.1).sum::<f64>() / n);
            }
        }
    }
    while centres.len() < k {
        centres.push(centres[centres.len() - 1]); // fewer distinct shapes than k: repeat the last
    }
    centres.sort_by(|a, b| (a.0 * a.1).total_cmp(&(b.0 * b.1)));
    Ok(centres)
}

/// The genetic refinement of `params` (all positive): `generations` times, mutate every value
/// with probability `mutation_prob` by a factor `1 + U(0,1) * N(0,1) * sigma` (clipped to
/// 0.3..3; redrawn until something changes), and keep the mutation when `fitness` improves
/// (Ultralytics' `kmean_anchors`). Returns the best params and their fitness.
pub fn evolve(
    params: &[f64],
    fitness: &dyn Fn(&[f64]) -> f64,
    opts: &FitOpts,
    rng: &mut ChaCha8Rng,
) -> (Vec<f64>, f64) {
    let mut best = params.to_vec();
    let mut best_fit = fitness(&best);
    for _ in 0..opts.generations {
        let mut factors = vec![1.0; best.len()];
        while factors.iter().all(|&f| f == 1.0) {
            for f in factors.iter_mut() {
                *f = if rng.random::<f64>() < opts.mutation_prob {
                    (1.0 + rng.random::<f64>() * normal(rng) * opts.sigma).clamp(0.3, 3.0)
                } else {
                    1.0
                };
            }
        }
        let child: Vec<f64> = best.iter().zip(&factors).map(|(p, f)| p * f).collect();
        let fit = fitness(&child);
        if fit > best_fit {
            (best, best_fit) = (child, fit);
        }
    }
    (best, best_fit)
}

/// [`kmeans_shapes`] then [`evolve`] on the shapes' sides, fitness [`mean_best_shape_iou`]:
/// Ultralytics' `kmean_anchors` with IoU as the metric. Sorted by area.
pub fn fit_shapes(shapes: &[(f64, f64)], k: usize, opts: &FitOpts) -> Result<Vec<(f64, f64)>> {
    let start = kmeans_shapes(shapes, k, opts.seed)?;
    let flat: Vec<f64> = start.iter().flat_map(|&(h, w)| [h, w]).collect();
    let pairs = |p: &[f64]| -> Vec<(f64, f64)> { p.chunks_exact(2).map(|c| (c[0], c[1])).collect() };
    let fitness = |p: &[f64]| mean_best_shape_iou(shapes, &pairs(p));
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed.wrapping_add(1));
    let (best, _) = evolve(&flat, &fitness, opts, &mut rng);
    let mut out = pairs(&best);
    out.sort_by(|a, b| (a.0 * a.1).total_cmp(&(b.0 * b.1)));
    Ok(out)
}

/// 1-D k-means of `values` into `k` centres, started at evenly spaced quantiles (deterministic).
fn kmeans_1d(values: &[f64], k: usize) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mut centres: Vec<f64> = (0..k).map(|i| v[((2 * i + 1) * v.len() / (2 * k)).min(v.len() - 1)]).collect();
    for _ in 0..100 {
        let mut sums = vec![(0.0, 0usize); k];
        for &x in &v {
            let c = (0..k).fold(0, |b, i| if (x - centres[i]).abs() < (x - centres[b]).abs() { i } else { b });
            sums[c].0 += x;
            sums[c].1 += 1;
        }
        let next: Vec<f64> =
            sums.iter().zip(&centres).map(|(&(s, n), &c)| if n > 0 { s / n as f64 } else { c }).collect();
        if next == centres {
            break;
        }
        centres = next;
    }
    centres.sort_by(f64::total_cmp);
    centres
}

/// Shapes `(h, w)` in image units as the zooms and ratios of `grids` (`n_zooms x n_ratios` per
/// cell): each shape goes to the grid whose cell side is nearest its size `sqrt(h w)` (on a log
/// scale), its size relative to that cell is clustered into the zooms and its aspect `h / w`
/// into the ratios `(sqrt(a), 1 / sqrt(a))` (a ratio keeps the area of its zoom's square).
pub fn shapes_to_config(
    shapes: &[(f64, f64)],
    grids: &[usize],
    n_zooms: usize,
    n_ratios: usize,
) -> Result<AnchorConfig> {
    if shapes.is_empty() || grids.is_empty() || n_zooms == 0 || n_ratios == 0 {
        return Err(Error::Invalid(format!(
            "anchor config from {} shapes on grids {grids:?} with {n_zooms} zooms and {n_ratios} ratios",
            shapes.len()
        )));
    }
    let (mut log_zoom, mut log_aspect) = (vec![], vec![]);
    for &(h, w) in shapes {
        let size = (h * w).sqrt();
        let g = grids
            .iter()
            .copied()
            .min_by(|a, b| (size * *a as f64).ln().abs().total_cmp(&(size * *b as f64).ln().abs()));
        let g = g.unwrap_or(1) as f64;
        log_zoom.push((size * g).ln());
        log_aspect.push((h / w).ln());
    }
    let zooms = kmeans_1d(&log_zoom, n_zooms).into_iter().map(|z| z.exp() as f32).collect();
    let ratios = kmeans_1d(&log_aspect, n_ratios)
        .into_iter()
        .map(|a| ((a / 2.0).exp() as f32, (-a / 2.0).exp() as f32))
        .collect();
    Ok(AnchorConfig { grids: grids.to_vec(), zooms, ratios })
}

/// Anchors fitted to a set of boxes, with the coverage before and after.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorFit {
    /// The k-means shapes (after their refinement), `(h, w)` in image units, by area.
    pub shapes: Vec<(f64, f64)>,
    /// The fitted zooms and ratios on the grids of the config given.
    pub config: AnchorConfig,
    pub before: Coverage,
    pub after: Coverage,
}

/// Zooms and ratios for the grids of `cfg`, as many of each as `cfg` has (so the SSD head keeps
/// its `k` outputs per cell), fitted to `boxes` (see the module docs). Errors: no boxes, a
/// config without anchors, a box that is not positive.
pub fn fit_anchors(cfg: &AnchorConfig, boxes: &[UnitBox], opts: &FitOpts) -> Result<AnchorFit> {
    if boxes.is_empty() {
        return Err(Error::Invalid("fitting anchors: no boxes".into()));
    }
    let before = Coverage::new(cfg, boxes)?;
    let shapes: Vec<(f64, f64)> = boxes.iter().map(UnitBox::shape).collect();
    let k = cfg.grids.len() * cfg.k();
    let fitted = fit_shapes(&shapes, k, opts)?;
    let start = shapes_to_config(&fitted, &cfg.grids, cfg.zooms.len(), cfg.ratios.len())?;

    // The refinement on real anchors: params are the zooms, then each ratio's (h, w) factors.
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed.wrapping_add(2));
    let sample: Vec<[f32; 4]> = if boxes.len() > opts.max_objects {
        rand::seq::index::sample(&mut rng, boxes.len(), opts.max_objects)
            .into_iter()
            .map(|i| boxes[i].corners)
            .collect()
    } else {
        boxes.iter().map(|b| b.corners).collect()
    };
    let (nz, grids) = (cfg.zooms.len(), cfg.grids.clone());
    let to_cfg = |p: &[f64]| AnchorConfig {
        grids: grids.clone(),
        zooms: p[..nz].iter().map(|&z| z as f32).collect(),
        ratios: p[nz..].chunks_exact(2).map(|r| (r[0] as f32, r[1] as f32)).collect(),
    };
    let to_params = |c: &AnchorConfig| -> Vec<f64> {
        c.zooms.iter().map(|&z| z as f64).chain(c.ratios.iter().flat_map(|&(i, j)| [i as f64, j as f64])).collect()
    };
    let fitness = |p: &[f64]| {
        let best = best_anchors(&anchor_corners(&to_cfg(p)), &sample);
        best.iter().map(|b| b.0 as f64).sum::<f64>() / best.len() as f64
    };
    let (p_start, p_given) = (to_params(&start), to_params(cfg));
    let first = if fitness(&p_start) >= fitness(&p_given) { p_start } else { p_given };
    let (best, _) = evolve(&first, &fitness, opts, &mut rng);
    let config = to_cfg(&best);
    let after = Coverage::new(&config, boxes)?;
    Ok(AnchorFit { shapes: fitted, config, before, after })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_iou_of_nested_and_crossed_shapes() {
        assert_eq!(shape_iou((0.2, 0.4), (0.2, 0.4)), 1.0);
        assert!((shape_iou((0.1, 0.1), (0.2, 0.2)) - 0.25).abs() < 1e-12);
        // A 0.1 x 0.4 and a 0.4 x 0.1 cross in a 0.1 x 0.1 square: 0.01 / (0.04 + 0.04 - 0.01).
        assert!((shape_iou((0.1, 0.4), (0.4, 0.1)) - 0.01 / 0.07).abs() < 1e-12);
    }

    #[test]
    fn kmeans_1d_finds_two_groups() {
        let c = kmeans_1d(&[1.0, 1.1, 0.9, 5.0, 5.2, 4.8], 2);
        assert!((c[0] - 1.0).abs() < 1e-9 && (c[1] - 5.0).abs() < 1e-9, "{c:?}");
    }

    #[test]
    fn shapes_go_to_the_grid_of_their_size() {
        // A quarter-image square is a 4x4 cell at zoom 1; a tall half-image box is a 2x2 cell
        // (size sqrt(0.5 * 0.125) = 0.25: nearest the 4x4 cell, zoom 1) of aspect 4.
        let cfg = shapes_to_config(&[(0.25, 0.25), (0.5, 0.125)], &[4, 2, 1], 1, 2).unwrap();
        assert!((cfg.zooms[0] - 1.0).abs() < 1e-6, "{cfg:?}");
        let (a, b) = (cfg.ratios[0], cfg.ratios[1]);
        assert!((a.0 - 1.0).abs() < 1e-6 && (a.1 - 1.0).abs() < 1e-6, "{cfg:?}");
        assert!((b.0 - 2.0).abs() < 1e-6 && (b.1 - 0.5).abs() < 1e-6, "{cfg:?}");
    }
}
