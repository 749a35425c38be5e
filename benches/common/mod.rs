//! What the bench binaries share.

use std::collections::BTreeMap;

/// Adds `figures` to the flat JSON object in the file named by
/// `RWS_BENCH_JSON`, keeping what other benches wrote there; does nothing
/// when the variable is unset.
pub fn write_json(figures: &BTreeMap<String, f64>) {
    let Some(path) = std::env::var_os("RWS_BENCH_JSON") else {
        return;
    };
    let mut all: BTreeMap<String, serde_json::Value> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    for (k, v) in figures {
        all.insert(k.clone(), serde_json::json!(v));
    }
    let text = serde_json::to_string_pretty(&all).expect("json");
    std::fs::write(&path, text + "\n").expect("write RWS_BENCH_JSON");
    eprintln!("wrote {}", path.to_string_lossy());
}
