//! Weights from files: torchvision's ImageNet backbones (found where a user put them, loaded
//! strictly) and every variable of a checkpoint, converting fp16 to the model's kind.

use super::net::group_of;
use super::resnet::Arch;
use crate::error::{Error, Result};
use std::path::Path;
use tch::nn;
use tch::Tensor;

/// Read a state dict: `.safetensors`, or a `.pth`/`.pt` file that libtorch's C++ loader reads
/// (`torch.save(dict(model.state_dict()))`). torchvision's downloads are pickled `OrderedDict`s,
/// which it cannot read: convert them once with `scripts/convert_weights.py` (the error says so).
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if !path.is_file() {
        return Err(Error::Io {
            path: path.into(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "weights file not found"),
        });
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let read = if ext == "safetensors" { Tensor::read_safetensors(path) } else { Tensor::loadz_multi(path) };
    read.map_err(|e| {
        Error::checkpoint(
            path,
            format!(
                "cannot read weights ({e}); convert them with `python scripts/convert_weights.py {} out.safetensors`",
                path.display()
            ),
        )
    })
}

/// Where ImageNet weights for `arch` are, if a user put them in place: `$FASTDET_WEIGHTS` (a
/// file, or a folder to look in), else this crate's `models/` folder; in a folder the names
/// tried are `<arch>.safetensors`, `<arch>.pth` and torchvision's `<arch>-<hash>.pth`.
pub fn find_weights(arch: Arch) -> Option<std::path::PathBuf> {
    let name = arch.name();
    let dirs: Vec<std::path::PathBuf> = match std::env::var_os("FASTDET_WEIGHTS").filter(|v| !v.is_empty()) {
        Some(p) if Path::new(&p).is_file() => return Some(p.into()),
        Some(p) => vec![p.into()],
        None => vec![crate::util::crate_root().join("models")],
    };
    for dir in dirs {
        for f in [format!("{name}.safetensors"), format!("{name}.pth")] {
            if dir.join(&f).is_file() {
                return Some(dir.join(f));
            }
        }
        let mut hashed: Vec<_> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{name}-")) && n.ends_with(".pth"))
            })
            .collect();
        hashed.sort();
        if let Some(p) = hashed.pop() {
            return Some(p);
        }
    }
    None
}

/// Load a torchvision ResNet `state_dict` into the body variables of `vs` (names as
/// torchvision's; `fc.*` and `num_batches_tracked` are ignored). Every body variable must be
/// found with the right shape: a partial load is an error listing what is missing.
pub fn load_backbone(vs: &mut nn::VarStore, path: &Path) -> Result<usize> {
    let file: std::collections::HashMap<String, Tensor> = read_state_dict(path)?.into_iter().collect();
    let mut missing = vec![];
    let mut loaded = 0;
    let vars = vs.variables();
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in vars {
            if group_of(&name) == 2 {
                continue;
            }
            match file.get(&name) {
                Some(src) if src.size() == var.size() => {
                    var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
                    loaded += 1;
                }
                Some(src) => {
                    return Err(Error::checkpoint(
                        path,
                        format!(
                            "{name} has shape {:?}, the model expects {:?} (another architecture?)",
                            src.size(),
                            var.size()
                        ),
                    ))
                }
                None => missing.push(name),
            }
        }
        Ok(())
    })?;
    if !missing.is_empty() {
        missing.sort();
        return Err(Error::checkpoint(
            path,
            format!(
                "{} backbone weights missing, e.g. {}",
                missing.len(),
                missing.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    Ok(loaded)
}

/// Copy every variable of `vs` from the tensors of a checkpoint (`path` names it in errors),
/// converting their float kind (fastdet ships weights in fp16; libtorch's `VarStore::load` would
/// leave the variables in the file's kind). Strict: a variable missing from the file, or of
/// another shape, is an error naming the file.
pub fn copy_all_converting(
    vs: &mut nn::VarStore,
    file: &std::collections::HashMap<String, Tensor>,
    path: &Path,
) -> Result<()> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in vars {
            let src = file
                .get(&name)
                .ok_or_else(|| Error::checkpoint(path, format!("{name} is missing (weights of another model?)")))?;
            if src.size() != var.size() {
                return Err(Error::checkpoint(
                    path,
                    format!("{name} has shape {:?}, the model expects {:?}", src.size(), var.size()),
                ));
            }
            var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
        }
        Ok(())
    })
}

/// Parameter count of the variables whose names start with `prefix`.
pub fn count_params(vs: &nn::VarStore, prefix: &str) -> i64 {
    vs.variables()
        .iter()
        .filter(|(n, _)| n.starts_with(prefix) && !n.ends_with("running_mean") && !n.ends_with("running_var"))
        .map(|(_, t)| t.numel() as i64)
        .sum()
}
