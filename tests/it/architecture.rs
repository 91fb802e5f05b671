//! The Architecture Invariants of docs/ARCHITECTURE.md, checked against
//! `cargo metadata`: which crate may depend on which.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// Each workspace crate and the workspace crates it may depend on
/// (normal and build dependencies; dev-dependencies are free).
const LAYERS: &[(&str, &[&str])] = &[
    ("ses-export-model", &[]),
    ("ses-export-core", &["ses-export-model"]),
    ("ses-export-server", &["ses-export-core", "ses-export-model"]),
    ("ses-export-client", &["ses-export-model"]),
    (
        "ses-export-cli",
        &["ses-export-client", "ses-export-core", "ses-export-model"],
    ),
    ("xtask", &[]),
];

/// External crates only one workspace crate may name directly.
const OWNERS: &[(&str, &str)] = &[("axum", "ses-export-server"), ("reqwest", "ses-export-client")];

/// Crates that must not appear anywhere below `model`: it is serde only,
/// with no I/O and no async runtime.
const MODEL_FORBIDDEN: &[&str] = &[
    "tokio",
    "hyper",
    "axum",
    "reqwest",
    "rusqlite",
    "sqlx",
    "object_store",
    "mio",
];

/// `cargo metadata` for this platform (the others' crates need not be on
/// disk), read once per test binary.
fn metadata() -> &'static Value {
    static METADATA: OnceLock<Value> = OnceLock::new();
    METADATA.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--offline",
                "--filter-platform",
                &host(),
            ])
            .arg("--manifest-path")
            .arg(root.join("Cargo.toml"))
            .output()
            .expect("run cargo metadata");
        assert!(
            output.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("cargo metadata JSON")
    })
}

fn host() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = Command::new(rustc).arg("-vV").output().expect("run rustc -vV");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_owned()
}

/// The dependency graph, by package name, without dev-dependencies.
struct Graph {
    workspace: BTreeSet<String>,
    deps: BTreeMap<String, BTreeSet<String>>,
}

fn graph(metadata: &Value) -> Graph {
    let name_of: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().expect("id"), p["name"].as_str().expect("name")))
        .collect();
    let workspace = metadata["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .map(|id| name_of[id.as_str().expect("id")].to_owned())
        .collect();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for node in metadata["resolve"]["nodes"].as_array().expect("resolve nodes") {
        let from = name_of[node["id"].as_str().expect("id")].to_owned();
        let entry = deps.entry(from).or_default();
        for dep in node["deps"].as_array().expect("deps") {
            let not_dev_only = dep["dep_kinds"]
                .as_array()
                .expect("dep_kinds")
                .iter()
                .any(|k| k["kind"].as_str() != Some("dev"));
            if not_dev_only {
                entry.insert(name_of[dep["pkg"].as_str().expect("pkg")].to_owned());
            }
        }
    }
    Graph { workspace, deps }
}

impl Graph {
    fn direct(&self, name: &str) -> &BTreeSet<String> {
        &self.deps[name]
    }

    fn transitive(&self, name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![name.to_owned()];
        while let Some(next) = stack.pop() {
            for dep in self.deps.get(&next).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    stack.push(dep.clone());
                }
            }
        }
        seen
    }
}

/// Every broken invariant, as one line each.
fn violations(graph: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    for (krate, allowed) in LAYERS {
        for dep in graph.direct(krate) {
            if graph.workspace.contains(dep) && !allowed.contains(&dep.as_str()) {
                out.push(format!("{krate} must not depend on {dep} (allowed: {allowed:?})"));
            }
        }
    }
    for (external, owner) in OWNERS {
        for krate in &graph.workspace {
            if krate != owner && krate != "ses-export-tests" && graph.direct(krate).contains(*external) {
                out.push(format!("only {owner} may depend on {external}, but {krate} does"));
            }
        }
    }
    let below_model = graph.transitive("ses-export-model");
    for forbidden in MODEL_FORBIDDEN {
        if below_model.contains(*forbidden) {
            out.push(format!(
                "ses-export-model must stay serde-only, but {forbidden} is below it"
            ));
        }
    }
    out
}

#[test]
fn every_workspace_crate_has_a_layer() {
    let graph = graph(metadata());
    for krate in &graph.workspace {
        let known = LAYERS.iter().any(|(name, _)| name == krate) || krate == "ses-export-tests";
        assert!(
            known,
            "{krate} is not in LAYERS: give it a place in docs/ARCHITECTURE.md and here"
        );
    }
}

#[test]
fn dependencies_point_down() {
    let broken = violations(&graph(metadata()));
    assert!(
        broken.is_empty(),
        "Architecture Invariants broken:\n  {}",
        broken.join("\n  ")
    );
}

/// The check itself can fail: a graph with forbidden edges is caught.
#[test]
fn forbidden_edges_are_reported() {
    let mut graph = graph(metadata());
    let edit = |graph: &mut Graph, from: &str, to: &str| {
        graph.deps.entry(from.to_owned()).or_default().insert(to.to_owned());
    };
    edit(&mut graph, "ses-export-client", "ses-export-core");
    edit(&mut graph, "ses-export-core", "axum");
    edit(&mut graph, "ses-export-model", "tokio");
    let broken = violations(&graph);
    for expected in [
        "ses-export-client must not depend on ses-export-core (allowed: [\"ses-export-model\"])",
        "only ses-export-server may depend on axum, but ses-export-core does",
        "ses-export-model must stay serde-only, but tokio is below it",
    ] {
        assert!(broken.iter().any(|b| b == expected), "{expected:?} not in {broken:#?}");
    }
}

#[test]
fn every_package_is_dual_licensed() {
    let metadata = metadata();
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for package in metadata["packages"].as_array().expect("packages") {
        if members.contains(package["id"].as_str().expect("id")) {
            assert_eq!(package["license"], "MIT OR Apache-2.0", "{}", package["name"]);
        }
    }
}

/// Storage backends the CLI never needs: it reads and writes files and
/// talks HTTP, so it builds none of them (core's backends are features).
const CLI_FORBIDDEN: &[&str] = &[
    "rusqlite",
    "libsqlite3-sys",
    "tokio-postgres",
    "deadpool-postgres",
    "object_store",
];

/// The crates `cargo tree -p PACKAGE -e normal` lists, by name: what that
/// package alone builds, with the features it alone asks for.
fn tree(package: &str) -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--target",
            &host(),
            "-p",
            package,
        ])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    crate_names(&String::from_utf8_lossy(&output.stdout))
}

fn crate_names(tree: &str) -> BTreeSet<String> {
    tree.lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn forbidden_in(names: &BTreeSet<String>, forbidden: &[&str]) -> Vec<String> {
    forbidden
        .iter()
        .filter(|name| names.contains(**name))
        .map(|name| (*name).to_owned())
        .collect()
}

/// **Architecture Invariant:** `ses-export-cli` builds no storage backend.
#[test]
fn the_cli_builds_no_storage_backend() {
    let names = tree("ses-export-cli");
    assert!(names.contains("ses-export-core"), "{names:?}");
    assert_eq!(forbidden_in(&names, CLI_FORBIDDEN), Vec::<String>::new());
    // The check can fail: a tree with SQLite in it is caught.
    let with_sqlite = crate_names("ses-export-cli v0.1.0\nses-export-core v0.1.0\nrusqlite v0.43.0\n");
    assert_eq!(forbidden_in(&with_sqlite, CLI_FORBIDDEN), ["rusqlite"]);
}
