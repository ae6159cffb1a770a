//! Well-known locations: the shared test fixtures and the cache of fetched models.

use std::path::PathBuf;

/// The shared fixtures directory: `$CALLM_FIXTURES`, else `../shared/fixtures` next to the crate.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("CALLM_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
    }
}

/// Where `scripts/fetch-models.sh` puts real models: `$CALLM_MODELS_DIR`, else `~/.cache/callm/models`.
pub fn models_dir() -> PathBuf {
    match std::env::var_os("CALLM_MODELS_DIR") {
        Some(p) => PathBuf::from(p),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/callm/models")
        }
    }
}
