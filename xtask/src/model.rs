//! `cargo xtask model`: trims AWS's full SES v2 service model down to the
//! shapes the export-jobs operations reach, without documentation strings.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::{MODEL_FILE, model_dir, read_json};

/// The operations this project implements; everything they reach is kept.
pub const OPERATIONS: &[&str] = &[
    "CreateExportJob",
    "GetExportJob",
    "ListExportJobs",
    "CancelExportJob",
    "GetMessageInsights",
    "BatchGetMetricData",
];

pub fn trim(source: &Path) -> Result<(), String> {
    let bytes = std::fs::read(source).map_err(|e| format!("reading {}: {e}", source.display()))?;
    let full = read_json(source)?;
    let trimmed = trimmed_model(&full)?;

    let dir = model_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    write_json(&dir.join(MODEL_FILE), &trimmed)?;

    let metadata = &full["metadata"];
    let provenance = json!({
        "source_file": source.file_name().map(|n| n.to_string_lossy().into_owned()),
        "source_sha256": hex(&Sha256::digest(&bytes)),
        "source_origin": "botocore, botocore/data/sesv2/2019-09-27/service-2.json (Apache-2.0)",
        "api_version": metadata["apiVersion"],
        "uid": metadata["uid"],
        "operations": OPERATIONS,
        "shapes": trimmed["shapes"].as_object().map_or(0, Map::len),
    });
    write_json(&dir.join("source.json"), &provenance)?;
    println!(
        "wrote {} ({} shapes) from {}",
        dir.join(MODEL_FILE).display(),
        provenance["shapes"],
        source.display()
    );
    println!("now run `cargo xtask codegen`");
    Ok(())
}

fn trimmed_model(full: &Value) -> Result<Value, String> {
    let operations = full["operations"]
        .as_object()
        .ok_or("the model has no `operations` object")?;
    let shapes = full["shapes"].as_object().ok_or("the model has no `shapes` object")?;

    let mut kept_operations = Map::new();
    let mut reached = BTreeSet::new();
    for name in OPERATIONS {
        let operation = operations
            .get(*name)
            .ok_or_else(|| format!("operation {name} is not in the model"))?;
        let refs = ["input", "output"]
            .iter()
            .filter_map(|k| operation.get(*k))
            .chain(operation["errors"].as_array().into_iter().flatten());
        for shape_ref in refs {
            reach(shape_ref, shapes, &mut reached)?;
        }
        kept_operations.insert((*name).to_owned(), without_docs(operation));
    }

    let kept_shapes: Map<String, Value> = reached
        .iter()
        .map(|name| (name.clone(), without_docs(&shapes[name.as_str()])))
        .collect();
    Ok(json!({
        "version": full["version"],
        "metadata": without_docs(&full["metadata"]),
        "operations": kept_operations,
        "shapes": kept_shapes,
    }))
}

fn reach(shape_ref: &Value, shapes: &Map<String, Value>, reached: &mut BTreeSet<String>) -> Result<(), String> {
    let name = shape_ref["shape"]
        .as_str()
        .ok_or_else(|| format!("a shape reference without `shape`: {shape_ref}"))?;
    if !reached.insert(name.to_owned()) {
        return Ok(());
    }
    let shape = shapes
        .get(name)
        .ok_or_else(|| format!("shape {name} is referenced but not defined"))?;
    for key in ["member", "key", "value"] {
        if let Some(inner) = shape.get(key) {
            reach(inner, shapes, reached)?;
        }
    }
    for member in shape["members"].as_object().into_iter().flat_map(Map::values) {
        reach(member, shapes, reached)?;
    }
    Ok(())
}

/// A copy of `value` with every `documentation` string removed, at any depth.
fn without_docs(value: &Value) -> Value {
    match value {
        Value::Object(entries) => Value::Object(
            entries
                .iter()
                .filter(|(k, _)| *k != "documentation")
                .map(|(k, v)| (k.clone(), without_docs(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_docs).collect()),
        other => other.clone(),
    }
}

fn write_json(path: &Path, value: &Value) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
