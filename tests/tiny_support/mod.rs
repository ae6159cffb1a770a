//! The tiny random-weight fixture models (`tiny-models/ARCH` under the fixtures directory):
//! the list the per-architecture tests loop over, checked against the directory so a new
//! fixture is never silently left out.

/// Every architecture with a tiny fixture model.
pub const ARCHS: &[&str] = &[
    "llama3",
    "mistral",
    "qwen2",
    "deepseek-llama",
    "codellama",
    "chatglm3",
    "mpt",
    "qwen3",
    "qwen3_moe",
    "gemma3",
    "phi3",
    "granite",
    "smollm3",
];

/// Fails unless [`ARCHS`] names exactly the fixture directories.
#[allow(dead_code)] // called by tiny_models.rs only; the other tests take the list
pub fn check_archs_cover_the_fixtures() {
    let dir = callm::paths::fixtures_dir().join("tiny-models");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut listed: Vec<String> = ARCHS.iter().map(|a| a.to_string()).collect();
    listed.sort();
    assert_eq!(
        listed,
        found,
        "tests/tiny_support ARCHS against {}",
        dir.display()
    );
}
