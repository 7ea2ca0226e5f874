//! Lesson 9's single-shot detector (`pascal-multi.ipynb`) in one place: every lesson name and
//! where it lives. The pieces sit in the layer of their idea — anchors and decoding in
//! [`crate::anchors`], the heads and their config in [`crate::model::ssd`], matching and the
//! loss in [`crate::loss::ssd`], IoU in [`crate::boxes`], NMS in [`crate::nms`], the pictures in
//! [`crate::show`] — and this module re-exports them, so `use fastdet::ssd::*` brings the whole
//! SSD but its pictures (the display layer stays above the domain). Nothing inside the crate
//! imports from here.
//!
//! | lesson                         | here                                   |
//! |--------------------------------|----------------------------------------|
//! | `anc_grids`, `anc_zooms`, `anc_ratios` | [`AnchorConfig`]               |
//! | `anchors`, `anchor_cnr`, `grid_sizes`  | [`Anchors`]                    |
//! | `StdConv`, `OutConv`           | [`StdConv`], [`OutConv`]               |
//! | `flatten_conv`                 | [`flatten_conv`]                       |
//! | `SSD_Head(k, -3.)`             | [`SsdHead`]                            |
//! | `SSD_MultiHead(k, -4.)`        | [`SsdMultiHead`]                       |
//! | `[class_logits, box_actns]`    | [`SsdOutput`] (packed for the learner) |
//! | `intersect`, `box_sz`, `jaccard` | [`intersect`], [`box_sz`], [`iou`]   |
//! | `actn_to_bb`, `hw2corners`     | [`actn_to_bb`], [`hw2corners`]         |
//! | `map_to_ground_truth`          | [`map_to_ground_truth`] + [`Matching`]; a batch on the device: [`match_batch`] |
//! | `get_y`                        | [`get_y`] (or the batch's `n_objects`) |
//! | `BCE_Loss`, `FocalLoss`        | [`class_loss`] + [`ClassLoss`]         |
//! | `ssd_1_loss`, `ssd_loss`       | [`ssd_1_loss`], [`ssd_loss`] -> [`LossParts`] |
//! | `ssd_loss(batch, y, True)`     | [`print_ssd_loss`]; on a learner, [`crate::detect::print_batch_loss`] |
//! | the "Testing" cells            | [`trace_ssd_1_loss`] -> [`SsdTrace`]   |
//! | `nms`                          | [`nms_lesson`]                         |
//! | `plot_results`, `torch_gt` grids | [`SsdOutput::decode`], [`crate::show::show_results`] |
//! | `show_nmf`                     | [`nms_detections`], [`crate::show::show_nmf`] |

pub use crate::anchors::{actn_to_bb, AnchorConfig, Anchors, Decoded};
pub use crate::boxes::{box_sz, hw2corners, intersect, jaccard as iou};
pub use crate::loss::ssd::{
    class_loss, count_lost, get_y, lost_objects, map_to_ground_truth, match_anchors, match_batch, print_ssd_loss,
    ssd_1_loss, ssd_loss, trace_ssd_1_loss, LossParts, SsdTrace, FORCED_OVERLAP,
};
pub use crate::model::ssd::{
    flatten_conv, ClassLoss, Matching, OutConv, SsdConfig, SsdHead, SsdHeadNet, SsdMultiHead, SsdOutput, StdConv,
};
pub use crate::nms::{nms_detections, nms_lesson, NmfOpts};
