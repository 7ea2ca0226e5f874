//! The crate's layering, read from its source: every `crate::<module>` in the code of `src/`
//! (comments left out) is an edge between top-level modules (`super::` never leaves one: the
//! crate's files use it only from a submodule or an inline `mod tests`). The graph must have no cycle, and no domain module may reach the drawing or display
//! layer (`draw`, `show`). Run `cargo test --test layers -- --nocapture` to print the layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that hold the lessons' ideas: none of them may import `draw` or `show`.
const DOMAIN: [&str; 14] = [
    "anchors",
    "boxes",
    "data",
    "detect",
    "device",
    "error",
    "interpret",
    "learner",
    "metrics",
    "model",
    "nms",
    "task",
    "train",
    "transforms",
];
const DISPLAY: [&str; 2] = ["draw", "show"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for `lib.rs` and `bin/`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    match first.as_str() {
        "lib.rs" | "bin" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// The code of a file without comments (line comments, doc comments, block comments).
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut in_block = false;
    for line in text.lines() {
        let mut l = line;
        if in_block {
            match l.find("*/") {
                Some(k) => {
                    l = &l[k + 2..];
                    in_block = false;
                }
                None => continue,
            }
        }
        if let Some(k) = l.find("/*") {
            in_block = !l[k..].contains("*/");
            l = &l[..k];
        }
        let l = match l.find("//") {
            Some(k) => &l[..k],
            None => l,
        };
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Top-level modules that `code` names as `crate::<name>`.
fn crate_refs(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let mut rest = code;
    while let Some(k) = rest.find("crate::") {
        let after = &rest[k + "crate::".len()..];
        let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        // `use crate::{a, b}` lists several.
        if name.is_empty() && after.starts_with('{') {
            let inner = &after[1..after.find('}').unwrap_or(after.len())];
            for part in inner.split(',') {
                let n: String = part.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if modules.contains(&n) {
                    refs.insert(n);
                }
            }
        } else if modules.contains(&name) {
            refs.insert(name);
        }
        rest = after;
    }
    refs
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for f in &files {
        let Some(m) = module_of(&src, f) else { continue };
        let code = code_of(&std::fs::read_to_string(f).unwrap());
        for r in crate_refs(&code, &modules) {
            if r != m {
                g.get_mut(&m).unwrap().insert(r);
            }
        }
    }
    g
}

/// The modules in dependency order (leaves first), or the modules left on a cycle.
fn layers(g: &BTreeMap<String, BTreeSet<String>>) -> Result<Vec<Vec<String>>, Vec<String>> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = vec![];
    while done.len() < g.len() {
        let layer: Vec<String> = g
            .iter()
            .filter(|(m, deps)| !done.contains(*m) && deps.iter().all(|d| done.contains(d)))
            .map(|(m, _)| m.clone())
            .collect();
        if layer.is_empty() {
            return Err(g.keys().filter(|m| !done.contains(*m)).cloned().collect());
        }
        done.extend(layer.iter().cloned());
        out.push(layer);
    }
    Ok(out)
}

#[test]
fn modules_form_layers_without_cycles() {
    let g = graph();
    assert!(g.len() >= 15, "found only {:?}", g.keys());
    match layers(&g) {
        Ok(ls) => {
            for (i, l) in ls.iter().enumerate() {
                println!("layer {i}: {}", l.join(", "));
            }
        }
        Err(left) => {
            let edges: Vec<String> = left.iter().map(|m| format!("{m} -> {:?}", g[m])).collect();
            panic!("import cycle among {left:?}:\n{}", edges.join("\n"));
        }
    }
}

#[test]
fn no_domain_module_imports_drawing_or_display() {
    let g = graph();
    for m in DOMAIN {
        let deps = g.get(m).unwrap_or_else(|| panic!("no module {m} in src/"));
        for d in DISPLAY {
            assert!(!deps.contains(d), "{m} imports {d}: pictures belong to the display layer (src/show.rs)");
        }
    }
    // `draw` knows boxes and images only.
    let allowed: BTreeSet<String> = ["boxes", "error"].iter().map(|s| s.to_string()).collect();
    assert!(g["draw"].is_subset(&allowed), "draw imports {:?}", g["draw"]);
}

#[test]
fn the_checker_sees_imports_and_ignores_comments() {
    let modules: BTreeSet<String> = ["draw", "loss", "model"].iter().map(|s| s.to_string()).collect();
    let code = code_of("use crate::{draw::Figure, loss};\n/// [`crate::model::X`]\nlet x = crate::model::f(); // crate::show\n/* crate::nms */");
    assert_eq!(crate_refs(&code, &modules), modules);
    let code = code_of("//! crate::draw\n// use crate::loss;\n/* use crate::model;\n crate::draw */ fn f() {}");
    assert!(crate_refs(&code, &modules).is_empty());
    // A cycle is found.
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(layers(&g).is_err());
}
