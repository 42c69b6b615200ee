//! The workspace's own shape, checked on its source: no module of a crate
//! imports, through any chain, a module that imports it back, and storage
//! stays clear of the WeChat client's HTTP stack.
//!
//! An edge from module A to module B is any `crate::`, `super::` or
//! `self::` path in A that resolves to B, and any use of a child module of
//! A by name (`arrival::arrival`). The crate root (`lib.rs`, `main.rs`) is
//! the crate's face: it declares and re-exports, so edges into and out of it
//! are not counted. Test modules (`#[cfg(test)] mod tests`) are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every crate root directory of the workspace: each crate's `src`, and each
/// multi-file test target (`tests/<name>/main.rs`).
fn source_trees() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut packages: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    packages.push(root.join("tests"));
    let mut trees = Vec::new();
    for package in packages {
        if package.join("src").is_dir() {
            trees.push(package.join("src"));
        }
        if let Ok(targets) = std::fs::read_dir(package.join("tests")) {
            for target in targets {
                let target = target.unwrap().path();
                if target.join("main.rs").is_file() {
                    trees.push(target);
                }
            }
        }
    }
    trees.sort();
    trees
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// `routes/mod.rs` is `routes`, `routes/arrival.rs` is `routes::arrival`,
/// `lib.rs`/`main.rs` the root (empty path). `bin/` targets are roots too.
fn module_of(tree: &Path, file: &Path) -> Option<Module> {
    let relative = file.strip_prefix(tree).unwrap().with_extension("");
    let mut parts: Module = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        parts.clear();
    }
    Some(parts)
}

/// The code of a file without comments and without its unit-test module.
fn code_of(text: &str) -> String {
    let text = text
        .find("#[cfg(test)]\nmod tests")
        .map_or(text, |at| &text[..at]);
    text.lines()
        .map(|line| line.find("//").map_or(line, |at| &line[..at]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifiers of a path starting right after `at` (`a::b::C` → a, b, C).
fn path_after(code: &str, at: usize) -> Vec<String> {
    let mut segments = Vec::new();
    let mut rest = &code[at..];
    loop {
        let end = rest.find(|c| !is_ident(c)).unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        segments.push(rest[..end].to_owned());
        match rest[end..].strip_prefix("::") {
            Some(next) => rest = next,
            None => break,
        }
    }
    segments
}

/// Where each `head::` (not preceded by an identifier or `:`) starts its path.
fn occurrences(code: &str, head: &str) -> Vec<usize> {
    let pattern = format!("{head}::");
    code.match_indices(&pattern)
        .map(|(at, _)| at)
        .filter(|&at| {
            !code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| is_ident(c) || c == ':')
        })
        .map(|at| at + pattern.len())
        .collect()
}

/// Follows `segments` from `base` down through known modules; the deepest
/// module reached is what the path depends on.
fn resolve(modules: &BTreeSet<Module>, mut base: Module, segments: &[String]) -> Module {
    for segment in segments {
        if segment == "super" {
            base.pop();
            continue;
        }
        let mut deeper = base.clone();
        deeper.push(segment.clone());
        if modules.contains(&deeper) {
            base = deeper;
        } else {
            break;
        }
    }
    base
}

/// The paths a `head::{a, b::C}` group names, each as its own segments.
fn group_after(code: &str, at: usize) -> Vec<Vec<String>> {
    let Some(body) = code[at..].strip_prefix('{') else {
        return Vec::new();
    };
    let body = &body[..body.find('}').unwrap_or(body.len())];
    body.split(',')
        .map(|item| path_after(item.trim(), 0))
        .filter(|segments| !segments.is_empty())
        .collect()
}

fn import_graph(tree: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    rust_files(tree, &mut files);
    let sources: BTreeMap<Module, String> = files
        .iter()
        .filter_map(|file| {
            let module = module_of(tree, file)?;
            Some((module, code_of(&std::fs::read_to_string(file).unwrap())))
        })
        .collect();
    let modules: BTreeSet<Module> = sources.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (module, code) in &sources {
        let mut edges = BTreeSet::new();
        let parent = module[..module.len().saturating_sub(1)].to_vec();
        for (head, base) in [
            ("crate", Vec::new()),
            ("super", parent),
            ("self", module.clone()),
        ] {
            for at in occurrences(code, head) {
                edges.insert(resolve(&modules, base.clone(), &path_after(code, at)));
                for segments in group_after(code, at) {
                    edges.insert(resolve(&modules, base.clone(), &segments));
                }
            }
        }
        for child in modules
            .iter()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
        {
            if !occurrences(code, child.last().unwrap()).is_empty() {
                edges.insert(child.clone());
            }
        }
        edges.remove(module);
        edges.remove(&Vec::new());
        graph.insert(module.clone(), edges);
    }
    graph
}

/// One cycle of the graph, as the modules along it, if there is any.
fn find_cycle(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        node: &Module,
        marks: &mut BTreeMap<Module, Mark>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let from = stack.iter().position(|m| m == next).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = visit(graph, next, marks, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node)
            && let Some(cycle) = visit(graph, node, &mut marks, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

fn show(cycle: &[Module]) -> String {
    cycle
        .iter()
        .map(|m| m.join("::"))
        .collect::<Vec<_>>()
        .join(" -> ")
}

#[test]
fn no_module_imports_itself_through_a_circle() {
    let mut circles = Vec::new();
    for tree in source_trees() {
        if let Some(cycle) = find_cycle(&import_graph(&tree)) {
            circles.push(format!("{}: {}", tree.display(), show(&cycle)));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles (move what both sides need into a module of its own):\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_circle_check_sees_a_circle_through_a_parent_and_a_sibling() {
    // The shape the simulator had: a child using its parent's helper, the
    // parent routing to the child, and a sibling in between.
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "mod routes;\nmod server;\n");
    write(
        "routes/mod.rs",
        "mod arrival;\npub(crate) fn router() { arrival::arrival(); }\npub(crate) struct Params;\n",
    );
    write(
        "routes/arrival.rs",
        "use crate::routes::Params;\n// crate::server is only mentioned here\n",
    );
    write("server.rs", "use crate::routes::router;\n");
    let graph = import_graph(dir.path());
    let cycle = find_cycle(&graph).expect("routes <-> routes::arrival");
    assert_eq!(show(&cycle), "routes -> routes::arrival -> routes");

    write("routes/arrival.rs", "use super::params::Params;\n");
    write("routes/params.rs", "pub(crate) struct Params;\n");
    write(
        "routes/mod.rs",
        "mod arrival;\nmod params;\npub(crate) fn router() { arrival::arrival(); }\n",
    );
    assert_eq!(find_cycle(&import_graph(dir.path())), None);
}

#[test]
fn storage_does_not_depend_on_the_wechat_client() {
    let manifest =
        std::fs::read_to_string(workspace_root().join("crates/storage/Cargo.toml")).unwrap();
    let manifest: toml::Table = manifest.parse().unwrap();
    for section in ["dependencies", "build-dependencies"] {
        let names: Vec<&String> = manifest
            .get(section)
            .and_then(toml::Value::as_table)
            .map(|table| table.keys().collect())
            .unwrap_or_default();
        for forbidden in ["wechat-client", "reqwest", "hyper", "tonic", "axum"] {
            assert!(
                !names.iter().any(|name| *name == forbidden),
                "storage's [{section}] lists {forbidden}: shared types belong in wechat-types"
            );
        }
    }
}
