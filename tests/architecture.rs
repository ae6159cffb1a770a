//! The architecture invariants of ARCHITECTURE.md, kept by reading `src/`: only `server/`
//! knows HTTP; the engine knows nothing of APIs, templates or families; the OpenAI request
//! types are read only at the edge; the layers only point down.
//!
//! Comment lines and the `#[cfg(test)]` part at the end of a file are not looked at (docs may
//! name any module; unit tests may build wire bodies).

use std::path::{Path, PathBuf};

/// `(path relative to src/, code)` of every Rust file under `src/`.
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![root.clone()];
    let mut out = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path: PathBuf = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let code: Vec<&str> = text
                    .lines()
                    .take_while(|l| l.trim() != "#[cfg(test)]")
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect();
                let rel = path.strip_prefix(&root).unwrap().to_string_lossy();
                out.push((rel.replace('\\', "/"), code.join("\n")));
            }
        }
    }
    assert!(out.len() > 50, "src/ not found");
    out
}

/// Files (relative to src/) outside `allowed` prefixes whose code contains one of `needles`.
fn offenders(needles: &[&str], allowed: &[&str]) -> Vec<String> {
    sources()
        .into_iter()
        .filter(|(path, _)| !allowed.iter().any(|a| path.starts_with(a)))
        .filter_map(|(path, code)| {
            let hits: Vec<&str> = needles
                .iter()
                .copied()
                .filter(|n| code.contains(n))
                .collect();
            (!hits.is_empty()).then(|| format!("{path}: {}", hits.join(", ")))
        })
        .collect()
}

#[test]
fn only_the_server_knows_http() {
    let found = offenders(
        &["axum", "StatusCode", "http::", "Sse", "fn status("],
        &["server/"],
    );
    assert!(found.is_empty(), "HTTP outside src/server/: {found:#?}");
}

#[test]
fn the_engine_knows_nothing_of_apis_templates_or_families() {
    let found: Vec<String> = offenders(
        &[
            "crate::openai",
            "crate::request",
            "crate::template",
            "crate::registry",
            "crate::parsers",
            "crate::chat",
            "crate::runtime",
            "crate::server",
        ],
        &[],
    )
    .into_iter()
    .filter(|f| f.starts_with("engine/"))
    .collect();
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn openai_request_types_are_read_only_at_the_edge() {
    // The wire bodies are converted to `request::ChatRequest` / `TextRequest` in
    // `request/openai/`; the server and the CLI build or receive bodies, nothing else reads them.
    let found = offenders(
        &[
            "ChatCompletionRequest",
            "CompletionRequest",
            "ChatMessage",
            "MessageContent",
            "StopSpec",
            "NamedToolChoice",
        ],
        &["openai/", "request/openai/", "server/", "cli/"],
    );
    assert!(
        found.is_empty(),
        "wire request types past the edge: {found:#?}"
    );
}

#[test]
fn anthropic_and_responses_wire_types_are_read_only_at_their_edges() {
    // Each API's body becomes a `request::ChatRequest` in its own `TryFrom`
    // (`request/anthropic/`, `request/responses/`); only the server (which receives them,
    // and for Responses stores their items) and the CLI see them besides.
    let found = offenders(
        &["MessagesRequest", "ContentBlock", "crate::anthropic"],
        &["anthropic/", "request/anthropic/", "server/", "cli/"],
    );
    assert!(
        found.is_empty(),
        "Anthropic wire types past the edge: {found:#?}"
    );
    let found = offenders(
        &[
            "ResponsesRequest",
            "InputItem",
            "ResponseInput",
            "openai::responses",
        ],
        &["openai/", "request/responses/", "server/", "cli/"],
    );
    assert!(
        found.is_empty(),
        "Responses wire types past the edge: {found:#?}"
    );
}

#[test]
fn layers_only_point_down() {
    // module → what it must not import (the layers above it).
    let rules: &[(&str, &[&str])] = &[
        (
            "openai/",
            &["crate::request", "crate::chat", "crate::server"],
        ),
        (
            "anthropic/",
            &["crate::request", "crate::chat", "crate::server"],
        ),
        (
            "request/",
            &[
                "crate::chat",
                "crate::runtime",
                "crate::engine",
                "crate::template",
                "crate::server",
                "crate::cli",
            ],
        ),
        (
            "template/",
            &[
                "crate::chat",
                "crate::runtime",
                "crate::engine",
                "crate::server",
            ],
        ),
        (
            "constrain/",
            &[
                "crate::engine",
                "crate::runtime",
                "crate::chat",
                "crate::server",
            ],
        ),
        (
            "runtime/",
            &[
                "crate::chat",
                "crate::request",
                "crate::server",
                "crate::cli",
            ],
        ),
        ("chat/", &["crate::server", "crate::cli"]),
        ("server/", &["crate::cli"]),
    ];
    let mut found = Vec::new();
    for (path, code) in sources() {
        for (module, above) in rules {
            if path.starts_with(module) {
                for a in *above {
                    if code.contains(&format!("{a}::")) || code.contains(&format!("{a};")) {
                        found.push(format!("{path} imports {a}"));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "imports that point up: {found:#?}");
}
