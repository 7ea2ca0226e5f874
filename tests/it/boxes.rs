//! Box conversions: exhaustive round trips over integer boxes and the lesson's known values.

use fastdet::boxes::{bb_hw, hw_bb, BBox};

/// Integer `[x, y, w, h]` boxes with w, h >= 1, over a grid that includes 0, small values,
/// typical VOC sizes and values near 2^20 (still exactly representable in f32 arithmetic).
fn xywh_grid() -> Vec<[f32; 4]> {
    let pos: Vec<f32> =
        (0..12).map(|v| v as f32).chain([99., 155., 374., 499., 639., 1023., 65_535., 1_000_000.]).collect();
    let sizes: Vec<f32> = (1..8).map(|v| v as f32).chain([174., 196., 500., 640., 4096., 1_000_000.]).collect();
    let mut out = vec![];
    for &x in &pos {
        for &y in &pos {
            for &w in &sizes {
                for &h in &sizes {
                    out.push([x, y, w, h]);
                }
            }
        }
    }
    out
}

#[test]
fn hw_bb_then_bb_hw_is_identity() {
    let grid = xywh_grid();
    assert!(grid.len() > 10_000);
    for xywh in grid {
        let a = hw_bb(xywh);
        let [x, y, w, h] = xywh;
        // hw_bb is [y, x, y+h-1, x+w-1], computed independently here.
        assert_eq!(a, [y, x, y + h - 1.0, x + w - 1.0], "hw_bb({xywh:?})");
        assert_eq!(bb_hw(a), xywh, "bb_hw(hw_bb({xywh:?}))");
        let b = BBox::from_xywh(xywh);
        assert_eq!(b.to_xywh(), xywh);
        assert_eq!(b.to_array(), a);
        assert_eq!(BBox::from_array(a), b);
        assert_eq!((b.width(), b.height()), (w, h));
        assert!(!b.is_empty());
    }
}

#[test]
fn bb_hw_then_hw_bb_is_identity() {
    // Every integer (top, left, bottom, right) with bottom >= top, right >= left in a small cube.
    for top in 0..12 {
        for left in 0..12 {
            for bottom in top..14 {
                for right in left..14 {
                    let a = [top as f32, left as f32, bottom as f32, right as f32];
                    let xywh = bb_hw(a);
                    assert_eq!(xywh, [left as f32, top as f32, (right - left + 1) as f32, (bottom - top + 1) as f32]);
                    assert_eq!(hw_bb(xywh), a, "{a:?}");
                }
            }
        }
    }
}

#[test]
fn voc_round_trips_exactly() {
    let vals: Vec<f32> = (1..=20).map(|v| v as f32).chain([205., 206., 459., 460., 500., 640., 65_536.]).collect();
    let mut n = 0;
    for &xmin in &vals {
        for &ymin in &vals {
            for &xmax in &vals {
                for &ymax in &vals {
                    let b = BBox::from_voc(xmin, ymin, xmax, ymax);
                    // One-based inclusive corners -> zero-based inclusive (top, left, bottom, right).
                    assert_eq!(b, BBox::new(ymin - 1.0, xmin - 1.0, ymax - 1.0, xmax - 1.0));
                    assert_eq!(b.to_voc(), [xmin, ymin, xmax, ymax]);
                    assert_eq!(BBox::from_voc(b.to_voc()[0], b.to_voc()[1], b.to_voc()[2], b.to_voc()[3]), b);
                    // A VOC box and its COCO bbox [xmin-1, ymin-1, xmax-xmin+1, ymax-ymin+1]
                    // (the converter of the bundled sample) are the same box.
                    if xmax >= xmin && ymax >= ymin {
                        let coco = [xmin - 1.0, ymin - 1.0, xmax - xmin + 1.0, ymax - ymin + 1.0];
                        assert_eq!(BBox::from_xywh(coco), b, "voc {xmin} {ymin} {xmax} {ymax}");
                        assert_eq!(b.to_xywh(), coco);
                    }
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, vals.len().pow(4));
}

#[test]
fn known_values() {
    // lesson 8: trn_anno[12] bbox [155, 96, 196, 174] -> [96 155 269 350]
    let b = BBox::from_xywh([155., 96., 196., 174.]);
    assert_eq!(b, BBox::new(96., 155., 269., 350.));
    assert_eq!(b.to_string(), "[96 155 269 350]");
    assert_eq!(b.to_voc(), [156., 97., 351., 270.]);
    // lesson 8 "largest" key: (y2-y1)*(x2-x1), no +1
    assert_eq!(b.area(), 173. * 195.);
    assert_eq!(b.pixel_area(), 174. * 196.);
    // VOC 000012 car: xmin 156 ymin 97 xmax 351 ymax 270
    assert_eq!(BBox::from_voc(156., 97., 351., 270.), b);
    // A 1x1 box at the origin.
    let p = BBox::from_voc(1., 1., 1., 1.);
    assert_eq!(p, BBox::new(0., 0., 0., 0.));
    assert_eq!((p.width(), p.height(), p.pixel_area()), (1., 1., 1.));
    assert!(p.is_inside(1, 1));
    assert!(!BBox::new(0., 0., 0., 1.).is_inside(1, 1));
    assert!(!BBox::new(-1., 0., 0., 0.).is_inside(5, 5));
    // zero and negative sizes are empty
    assert!(BBox::from_xywh([3., 3., 0., 5.]).is_empty());
    assert!(BBox::from_xywh([3., 3., 5., -1.]).is_empty());
    assert_eq!(BBox::from_xywh([3., 3., 0., 5.]).pixel_area(), 0.);
    // fractional boxes print with one decimal
    assert_eq!(BBox::new(1.25, 2., 3., 4.).to_string(), "[1.2 2.0 3.0 4.0]");
}

#[test]
fn is_inside_matches_pixel_bounds_exhaustively() {
    let (w, h) = (7u32, 5u32);
    for top in -2..8 {
        for left in -2..10 {
            for bottom in top..8 {
                for right in left..10 {
                    let b = BBox::new(top as f32, left as f32, bottom as f32, right as f32);
                    let expect = top >= 0 && left >= 0 && bottom < h as i32 && right < w as i32;
                    assert_eq!(b.is_inside(w, h), expect, "{b:?}");
                }
            }
        }
    }
}
