//! `Dataset::save_json` on the sample's VOC XML writes the lesson's JSON files that ship with it
//! (written by an independent Python converter, see data/coco128-voc/README.md).

use fastdet::data::{sample_root, Dataset, Pascal};
use serde_json::Value;

#[test]
fn xml_to_lesson_json_reproduces_the_shipped_files() {
    let pascal = Pascal::open(sample_root()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for split in ["train", "val"] {
        let out = dir.path().join(format!("pascal_{split}2007.json"));
        pascal.voc(split).unwrap().save_json(&out).unwrap();
        let ours: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let theirs: Value = serde_json::from_str(&std::fs::read_to_string(pascal.json_path(split)).unwrap()).unwrap();
        for key in ["images", "categories", "type"] {
            assert_eq!(ours[key], theirs[key], "{split}: {key}");
        }
        // Annotation ids may be numbered differently; everything else must agree.
        let strip = |v: &Value| -> Vec<Value> {
            v["annotations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    let mut a = a.clone();
                    a.as_object_mut().unwrap().remove("id");
                    a
                })
                .collect()
        };
        assert_eq!(strip(&ours), strip(&theirs), "{split}: annotations");
        // And it reads back into the same dataset.
        let back = Dataset::from_json(&out, pascal.image_dir()).unwrap();
        assert_eq!(back.images, pascal.json(split).unwrap().images);
    }
}
