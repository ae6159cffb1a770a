//! Chat templates rendered in the render worker (`callm::template::sandbox`, what the `callm`
//! binary does): the same prompts and errors as in-process, and the hostile templates that
//! minijinja's fuel does not stop (long-string comparisons, lazily huge lists turned into text)
//! end at the worker's time or memory limit with a clear error while this process carries on.

use callm::openai::ChatCompletionRequest;
use callm::request::ChatRequest;
use callm::template::sandbox::{install, installed, SandboxConfig};
use callm::template::{ChatTemplate, ModelTemplateInfo, PromptRenderer, TemplateError};
use serde_json::{json, Map, Value as Json};
use std::sync::Once;

#[path = "template_support/mod.rs"]
mod template_support;
use std::time::{Duration, Instant};

/// Held by the tests that stop a worker at a limit, one at a time: with two workers, two
/// such renders would make the third wait for a worker, and its timing mean nothing.
static AT_A_LIMIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

const TIME_LIMIT: Duration = Duration::from_secs(3);
const MEMORY_BYTES: u64 = 256 << 20;

/// Installs this binary's sandbox once: the `callm` built for these tests as the worker.
fn sandboxed() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut config = SandboxConfig::new(env!("CARGO_BIN_EXE_callm"));
        config.time_limit = TIME_LIMIT;
        config.memory_bytes = MEMORY_BYTES;
        // Fewer workers than the concurrent test's threads: renders wait for a free one.
        config.max_workers = 2;
        assert!(install(config));
    });
    assert!(installed().is_some());
}

fn request(content: &str) -> ChatRequest {
    let body: ChatCompletionRequest = serde_json::from_value(json!({
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "Looks up.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": content}]
    }))
    .unwrap();
    ChatRequest::try_from(body).unwrap()
}

/// A template that prints every message, the tools as JSON and a date, as real ones do.
const PLAIN: &str =
    "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim }}\n{% endfor %}\
{% if tools %}{{ tools | tojson(indent=2) }}{% endif %}{{ strftime_now('%d %b %Y') }}\
{% if add_generation_prompt %}<|assistant|>{% endif %}";

fn renderer(template: &str) -> PromptRenderer {
    let info = ModelTemplateInfo::from_template(template, Some("<s>".into()), Some("</s>".into()));
    PromptRenderer::new(info, None).unwrap()
}

fn context(content: &str) -> Map<String, Json> {
    json!({"messages": [{"role": "user", "content": content}], "tools": null,
           "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"})
    .as_object()
    .unwrap()
    .clone()
}

/// The worker's prompt for `template` and `ctx`, and the one this process renders itself.
fn both_ways(
    template: &str,
    ctx: &Map<String, Json>,
) -> (Result<String, String>, Result<String, String>) {
    let t = ChatTemplate::compile(template).unwrap();
    let worker = t.render_json(ctx).map_err(|e| e.to_string());
    let here = t
        .render(&callm::template::env::to_value(ctx))
        .map_err(|e| e.to_string());
    (worker, here)
}

#[test]
fn the_worker_renders_what_this_process_renders() {
    sandboxed();
    for content in [
        "hi",
        "line one\nline two",
        "é ü 字 🙂 \u{0}",
        &"long ".repeat(20_000),
    ] {
        let (worker, here) = both_ways(PLAIN, &context(content));
        assert!(here.is_ok(), "{here:?}");
        assert_eq!(worker, here);
    }
    // Whole requests through the renderer (protected control tokens included).
    let r = renderer(PLAIN);
    let p = r.render(&request("What is <|assistant|>?")).unwrap();
    assert!(
        p.text
            .starts_with("<s><|system|>Be brief.\n<|user|>What is "),
        "{}",
        p.text
    );
    assert!(p.text.contains("\"name\": \"lookup\""), "{}", p.text);
}

/// Every golden case (transformers' prompts and errors for the upstream templates, the
/// reference builders' for the bundled ones) rendered in the worker, byte for byte.
#[test]
fn golden_prompts_from_the_worker_match_transformers() {
    sandboxed();
    let n = template_support::golden::run_cases(|_| true);
    assert!(n >= 236, "only {n} cases");
}

#[test]
fn template_errors_come_back_as_they_are() {
    sandboxed();
    let ctx = context("hi");
    for template in [
        "{{ raise_exception('Conversation roles must alternate') }}",
        "{{ messages[0].content.nope() }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    ] {
        let (worker, here) = both_ways(template, &ctx);
        assert!(here.is_err(), "{template}");
        assert_eq!(worker, here, "{template}");
    }
    let r = renderer("{{ raise_exception('no tools here') }}");
    match r.render(&request("hi")) {
        Err(TemplateError::Raised(m)) => assert_eq!(m, "no tools here"),
        other => panic!("{other:?}"),
    }
}

/// Ends with a client error (HTTP 400) that says `needle`, then the next render works.
fn stopped(template: &str, needle: &str) {
    let _one = AT_A_LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    match renderer(template).render(&request("hi")) {
        Ok(p) => panic!("rendered {} bytes from {template:.80}", p.text.len()),
        Err(e) => {
            assert!(e.is_client_error(), "{e}");
            assert!(e.to_string().contains(needle), "{template:.80}: {e}");
        }
    }
    // A hang detector, far above the limits (the renderer's probes render it too).
    assert!(
        started.elapsed() < 20 * TIME_LIMIT,
        "{:?}",
        started.elapsed()
    );
    let (worker, here) = both_ways(PLAIN, &context("after"));
    assert_eq!(worker, here);
}

#[test]
fn comparing_long_strings_in_a_loop_stops_at_the_time_limit() {
    sandboxed();
    // 100,000 comparisons of two 30 MB strings: minutes of CPU, and no fuel for them. (Only
    // for this request, not for the probes the renderer renders when it is built.)
    stopped(
        "{% if messages[1].content == 'hi' %}{% set s = 'x' * 30000000 %}{% set t = 'x' * 30000000 %}\
         {% for i in range(100000) %}{% if s == t %}{% endif %}{% endfor %}{% endif %}",
        "time limit of 3 s",
    );
}

#[test]
fn a_template_stopped_while_loading_is_not_rendered_again_for_the_load() {
    sandboxed();
    // Stops every render at the time limit, the renderer's load-time probes included: the
    // first probe stops, the second is not rendered (it took two time limits before).
    let _one = AT_A_LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let r = renderer(
        "{% set s = 'x' * 30000000 %}{% set t = 'x' * 30000000 %}\
         {% for i in range(100000) %}{% if s == t %}{% endif %}{% endfor %}",
    );
    let took = started.elapsed();
    assert!(
        took >= TIME_LIMIT && took < 2 * TIME_LIMIT,
        "loading took {took:?}, time limit {TIME_LIMIT:?}"
    );
    // The load went on, and the decision is the default one: arguments as mappings.
    assert!(!r.options().text_arguments);
}

#[test]
fn lazily_huge_lists_turned_into_text_stop_at_the_memory_limit() {
    sandboxed();
    // `~` writes a 100,000-fold repeated 1 MB string out before charging anything.
    stopped(
        "{{ '' ~ ([('x' * 1000000)] * 100000) }}",
        "memory limit of 256 MiB",
    );
}

#[test]
fn concurrent_renders_each_get_their_own_answer() {
    sandboxed();
    let handles: Vec<_> = (0..6)
        .map(|i| {
            std::thread::spawn(move || {
                for j in 0..20 {
                    let content = format!("thread {i} render {j}");
                    let (worker, here) = both_ways(PLAIN, &context(&content));
                    assert_eq!(worker, here);
                    assert!(worker.unwrap().contains(&content));
                }
            })
        })
        .collect();
    // Never more workers than the limit, however many renders wait.
    let mut most = 0;
    while !handles.iter().all(|h| h.is_finished()) {
        most = most.max(installed().unwrap().workers());
        std::thread::sleep(Duration::from_micros(200));
    }
    for h in handles {
        h.join().unwrap();
    }
    assert!((1..=2).contains(&most), "{most} workers at once");
}

/// Runs `callm render` on a model directory holding `template`, with `args` and `envs`:
/// whether it succeeded, its stdout and its stderr.
fn callm_render(template: &str, args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("callm-sandbox-cli-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        json!({"chat_template": template, "eos_token": "</s>", "bos_token": "<s>"}).to_string(),
    )
    .unwrap();
    let body = dir.join("request.json");
    std::fs::write(&body, r#"{"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callm"))
        .args(["render", "-m"])
        .arg(&dir)
        .arg("--request")
        .arg(&body)
        .args(args)
        .env_remove("CALLM_TEMPLATE_TIME_LIMIT")
        .env_remove("CALLM_TEMPLATE_MEMORY_MB")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A template that allocates gigabytes before the fuel sees it.
const MEMORY_ATTACK: &str = "{{ '' ~ ([('x' * 1000000)] * 100000) }}";
/// A template that compares 30 MB strings for minutes, without fuel.
const TIME_ATTACK: &str = "{% set s = 'x' * 30000000 %}{% set t = 'x' * 30000000 %}\
    {% for i in range(100000) %}{% if s == t %}{% endif %}{% endfor %}";

#[test]
fn the_callm_binary_renders_in_its_worker() {
    // `callm render` installs the sandbox itself (default limits: 1 GiB, 10 s).
    let (ok, stdout, stderr) = callm_render(
        "{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}",
        &[],
        &[],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim_end(), "[user] hi");
    let (ok, _, stderr) = callm_render(MEMORY_ATTACK, &[], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("chat template stopped at a render limit: the render needed more than its memory limit of 1024 MiB"),
        "{stderr}"
    );
}

#[test]
fn the_limits_are_set_by_flags_or_environment() {
    // A memory limit from the flag, then from the environment.
    for (args, envs) in [
        (&["--template-memory-mb", "200"][..], &[][..]),
        (&[][..], &[("CALLM_TEMPLATE_MEMORY_MB", "200")][..]),
    ] {
        let (ok, _, stderr) = callm_render(MEMORY_ATTACK, args, envs);
        assert!(!ok);
        assert!(
            stderr.contains("the render needed more than its memory limit of 200 MiB"),
            "{args:?} {envs:?}: {stderr}"
        );
    }
    // A time limit of half a second: the attack stops there, long before the default 10 s.
    let started = Instant::now();
    let (ok, _, stderr) = callm_render(TIME_ATTACK, &["--template-time-limit", "0.5"], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("the render took longer than its time limit of 0.5 s"),
        "{stderr}"
    );
    // Far below the default limit (the renderer renders it once while loading too).
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // A limit that would stop nothing useful is refused before anything runs.
    let (ok, _, stderr) = callm_render("x", &["--template-time-limit", "0"], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("the time limit must be above 0"),
        "{stderr}"
    );
    let (ok, _, stderr) = callm_render("x", &["--template-memory-mb", "8"], &[]);
    assert!(!ok);
    assert!(stderr.contains("8 is not in 32..="), "{stderr}");
}

mod random_contexts {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z <>|{}%\\\\\"'\n\t]{0,24}",
            any::<String>(),
            Just("\u{FFFF}\u{10FFFF}\u{0}\u{7F}".to_string()),
        ]
    }

    fn number() -> impl Strategy<Value = Json> {
        prop_oneof![
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|u| json!(u)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
        ]
    }

    fn any_json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            number(),
            text().prop_map(Json::String),
        ];
        leaf.prop_recursive(4, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
                prop::collection::btree_map(text(), inner, 0..6)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Prints every value several ways (Python `str()`, `tojson`, sorted keys, iteration,
    /// arithmetic on numbers), so any change in a value's trip through the worker shows.
    const DUMP: &str =
        "{% for m in messages %}{{ m.role }}|{{ m.content }}|{{ m.content | tojson }}|\
{{ m.extra | tojson(sort_keys=true) }}|{{ m.extra }}|\
{% if m.extra is mapping %}{% for k, v in m.extra | items %}{{ k }}={{ v }};{% endfor %}{% endif %}\
{% if m.extra is number %}{{ m.extra * 2 }} {{ m.extra | string }}{% endif %}\n{% endfor %}\
{{ tools | tojson(indent=2) }}";

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        /// Any JSON context renders to the same text (or the same error) in the worker as here.
        #[test]
        fn any_context_renders_the_same_in_the_worker(
            contents in prop::collection::vec((text(), any_json()), 1..4),
            tools in any_json(),
        ) {
            sandboxed();
            let messages: Vec<Json> = contents
                .into_iter()
                .map(|(c, extra)| json!({"role": "user", "content": c, "extra": extra}))
                .collect();
            let ctx = json!({"messages": messages, "tools": tools, "add_generation_prompt": true})
                .as_object()
                .unwrap()
                .clone();
            let (worker, here) = both_ways(DUMP, &ctx);
            prop_assert_eq!(worker, here);
        }
    }
}
