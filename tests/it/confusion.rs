//! The detection confusion matrix and per-detection outcomes on hand-made detections whose
//! answer is known, and against the voc_eval.py port's true positives on the golden data.

use crate::common;
use fastdet::boxes::BBox;
use fastdet::data::{sample_root, Dataset, ImageRecord, Object, Pascal};
use fastdet::metrics::{confusion, evaluate, ApMetric, Detection, Outcome};

fn obj(t: f32, l: f32, b: f32, r: f32, class: usize, difficult: bool) -> Object {
    Object { bbox: BBox::new(t, l, b, r), class, difficult }
}

fn det(image_id: u64, class: usize, t: f32, l: f32, b: f32, r: f32, score: f32) -> Detection {
    Detection { image_id, class, bbox: BBox::new(t, l, b, r), score }
}

fn hand_made() -> Dataset {
    Dataset {
        source: "hand.json".into(),
        image_dir: ".".into(),
        classes: vec!["a".into(), "b".into(), "c".into()],
        category_ids: vec![],
        images: vec![
            ImageRecord {
                id: 1,
                file_name: "1.jpg".into(),
                width: 100,
                height: 100,
                objects: vec![
                    obj(0., 0., 49., 49., 0, false),   // A0
                    obj(50., 50., 99., 99., 1, false), // B1
                    obj(0., 60., 30., 99., 2, false),  // C2: nobody finds it
                    obj(60., 0., 90., 30., 0, true),   // A3: difficult
                ],
            },
            ImageRecord {
                id: 2,
                file_name: "2.jpg".into(),
                width: 100,
                height: 100,
                objects: vec![obj(0., 0., 49., 49., 1, false)],
            },
            ImageRecord { id: 3, file_name: "3.jpg".into(), width: 100, height: 100, objects: vec![] },
        ],
        warnings: vec![],
    }
}

fn hand_dets() -> Vec<Detection> {
    vec![
        det(1, 0, 0., 0., 49., 49., 0.9),   // A0: true positive
        det(1, 0, 2., 2., 51., 51., 0.8),   // A0 again: duplicate
        det(1, 0, 52., 52., 99., 99., 0.7), // on B1 as "a": wrong class
        det(1, 2, 70., 40., 99., 55., 0.6), // on nothing: background
        det(1, 0, 60., 0., 90., 30., 0.5),  // A3 is difficult: ignored
        det(2, 1, 0., 0., 49., 49., 0.05),  // below the threshold: left out
        det(2, 2, 0., 0., 49., 49., 0.5),   // image 2's b as "c": wrong class
    ]
}

#[test]
fn the_matrix_of_known_detections() {
    let ds = hand_made();
    let cm = confusion(&ds, &hand_dets(), 0.1).unwrap();
    // rows: true a, b, c, background; columns: predicted a, b, c, background
    assert_eq!(cm.matrix, vec![vec![1, 0, 0, 0], vec![1, 0, 1, 0], vec![0, 0, 0, 1], vec![1, 0, 1, 0]]);
    let outcomes: Vec<Outcome> = cm.images[0].dets.iter().map(|(_, o)| *o).collect();
    assert_eq!(
        outcomes,
        vec![
            Outcome::TruePositive { gt: 0 },
            Outcome::Duplicate { gt: 0 },
            Outcome::WrongClass { gt: 1 },
            Outcome::Background,
            Outcome::Ignored { gt: 3 }
        ]
    );
    assert_eq!(cm.images[0].missed, vec![2]);
    assert_eq!(cm.images[1].dets.len(), 1, "the 0.05 detection is under the threshold");
    assert!(cm.images[1].missed.is_empty(), "image 2's object was found, with the wrong class");
    assert_eq!(
        (cm.true_positives(), cm.wrong_class(), cm.missed(), cm.false_detections(), cm.duplicates()),
        (1, 2, 1, 2, 1)
    );
    let mc: Vec<(String, String, usize)> =
        cm.most_confused(10).into_iter().map(|c| (c.actual, c.predicted, c.count)).collect();
    let s = |a: &str, p: &str| (a.to_string(), p.to_string(), 1);
    assert_eq!(mc, vec![s("b", "a"), s("b", "c"), s("c", "background"), s("background", "a"), s("background", "c")]);
    assert_eq!(cm.most_confused(2).len(), 2);
    // worst images: image 1 has 3 false detections and 1 miss, image 2 one wrong class, image 3 none
    let worst: Vec<(usize, usize)> = cm.worst_images(3).iter().map(|e| (e.image, e.n_errors())).collect();
    assert_eq!(worst, vec![(0, 4), (1, 1), (2, 0)]);
    // By size (sqrt of the box area over the image's) and position: A0, B1 and image 2's b are
    // half the side (A0 found), C2 a third (missed); all four touch a border.
    assert_eq!(
        cm.found_by_size(&ds),
        vec![("size < 0.1", 0, 0), ("size 0.1-0.2", 0, 0), ("size 0.2-0.4", 0, 1), ("size >= 0.4", 1, 3)]
    );
    assert_eq!(cm.found_by_position(&ds), vec![("touching the border", 1, 4), ("inside", 0, 0)]);
    let text = cm.to_string();
    assert!(
        text.contains("1 objects found, 2 with the wrong class, 1 missed; 2 false detections (1 duplicates)"),
        "{text}"
    );
}

#[test]
fn the_right_class_wins_over_a_higher_scored_wrong_one() {
    let ds = hand_made();
    // "b" on A0 scores higher than "a" on A0: A0 is a true positive, the "b" is background.
    let dets = [det(1, 1, 0., 0., 49., 49., 0.9), det(1, 0, 1., 1., 49., 49., 0.3)];
    let cm = confusion(&ds, &dets, 0.0).unwrap();
    assert_eq!(
        cm.images[0].dets.iter().map(|(_, o)| *o).collect::<Vec<_>>(),
        vec![Outcome::Background, Outcome::TruePositive { gt: 0 }]
    );
    assert_eq!(cm.matrix[0][0], 1);
    assert_eq!(cm.matrix[3][1], 1);
    // Two wrong-class detections on one object: the first takes it, the second is background.
    let dets = [det(1, 2, 50., 50., 99., 99., 0.9), det(1, 0, 50., 50., 99., 99., 0.8)];
    let cm = confusion(&ds, &dets, 0.0).unwrap();
    assert_eq!(cm.matrix[1][2], 1);
    assert_eq!(cm.matrix[3][0], 1);
}

#[test]
fn rows_count_the_objects_and_the_diagonal_is_voc_evals_true_positives() {
    let pascal = Pascal::open(sample_root()).unwrap();
    let ds = pascal.json("val").unwrap();
    let dets = common::detections_from_truth(&ds);
    let cm = confusion(&ds, &dets, f32::NEG_INFINITY).unwrap();
    let voc = evaluate(&ds, &dets, ApMetric::Voc).unwrap();
    let nc = ds.classes.len();
    let mut checked = 0;
    for (c, ca) in voc.classes.iter().enumerate() {
        let n_objects = ds.images.iter().flat_map(|r| &r.objects).filter(|o| o.class == c && !o.difficult).count();
        assert_eq!(cm.matrix[c].iter().sum::<usize>(), n_objects, "row {} sums to its objects", ds.classes[c]);
        if let Some(&rec) = ca.recall.last() {
            let tp = (rec * ca.n_gt as f64).round() as usize;
            assert_eq!(cm.matrix[c][c], tp, "class {}: the diagonal is voc_eval's true positives", ds.classes[c]);
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} classes had detections");
    assert!(cm.wrong_class() > 0 && cm.duplicates() > 0 && cm.missed() > 0);
    // Every detection is counted once: in the matrix (or ignored).
    let counted: usize = (0..=nc).flat_map(|a| (0..nc).map(move |p| (a, p))).map(|(a, p)| cm.matrix[a][p]).sum();
    let ignored: usize = cm.images.iter().map(|e| e.count(|o| matches!(o, Outcome::Ignored { .. }))).sum();
    assert_eq!(counted + ignored, dets.len());
}

#[test]
fn bad_detections_are_named_and_empty_ones_miss_everything() {
    let ds = hand_made();
    let e = confusion(&ds, &[det(9, 0, 0., 0., 5., 5., 1.0)], 0.0).unwrap_err().to_string();
    assert!(e.contains("image_id 9") && e.contains("hand.json"), "{e}");
    let e = confusion(&ds, &[det(1, 3, 0., 0., 5., 5., 1.0)], 0.0).unwrap_err().to_string();
    assert!(e.contains("class 3"), "{e}");
    let cm = confusion(&ds, &[], 0.5).unwrap();
    assert_eq!(cm.missed(), 4, "every non-difficult object is missed");
    assert_eq!(cm.false_detections(), 0);
    assert!(cm.most_confused(5).iter().all(|c| c.predicted == "background"));
}
