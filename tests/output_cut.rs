//! Answers the token limit cut, in every tool-call format: what a noise walker writes under
//! each format's `required` grammar (several calls where the format allows them) is cut
//! after every token and finished as a cut output. Whatever the cut, no call markup becomes
//! content, no half-written call is returned, and the calls that are returned are the
//! first calls of the whole answer (read by the same parser), in order: complete calls in
//! front of the cut, also inside one call list, are kept.

use std::sync::Arc;

use callm::constrain::testing::{byte_tokenizer, random_walk};
use callm::constrain::{ConstraintEngine, GrammarSpec, ToolMode};
use callm::openai::{FunctionDefinition, Tool};
use callm::parsers::{collect_events, Format, ParseOptions, ParserChain};
use serde_json::{json, Value};

const VOCAB: usize = 512;
const EOS: u32 = 500;

fn tool(name: &str, params: Value) -> Tool {
    Tool::function(FunctionDefinition {
        name: name.into(),
        description: None,
        parameters: Some(params),
        strict: None,
    })
}

/// Small bounded arguments (strings with quotes and brackets inside are the hard part for
/// finding where a call ends).
fn tools() -> Vec<Tool> {
    vec![
        tool(
            "note",
            json!({"type": "object", "properties": {
                "text": {"type": "string", "maxLength": 6},
                "n": {"type": "integer", "minimum": 0, "maximum": 99}
            }, "required": ["text"]}),
        ),
        tool(
            "ping",
            json!({"type": "object", "properties": {"loud": {"type": "boolean"}}}),
        ),
    ]
}

/// (name, arguments) of the calls of finished (or cut) output events.
fn calls_of(events: &[callm::parsers::StreamEvent]) -> (Option<String>, Vec<(String, Value)>) {
    let out = collect_events(events);
    let calls = out
        .tool_calls
        .iter()
        .map(|c| {
            let args: Value = serde_json::from_str(&c.function.arguments)
                .unwrap_or_else(|e| panic!("half-written arguments ({e}): {c:?}"));
            (c.function.name.clone(), args)
        })
        .collect();
    (out.content, calls)
}

#[test]
fn a_cut_answer_keeps_its_complete_calls_and_nothing_else() {
    let tok = Arc::new(byte_tokenizer().expect("tokenizer"));
    let engine = ConstraintEngine::new(tok.clone(), VOCAB, &[EOS]).expect("engine");
    let opts = ParseOptions {
        tools: Some(tools()),
        ..Default::default()
    };
    for &format in Format::ALL {
        let spec = GrammarSpec::Tools {
            format,
            tools: tools(),
            mode: ToolMode::Required,
            parallel: true,
        };
        let constraint = engine
            .compile(&spec, "")
            .unwrap_or_else(|e| panic!("{format}: {e}"));
        let chain = ParserChain::new(vec![format]).expect("chain");
        let mut kept_before_a_cut_call = false;
        let mut multi = false;
        for seed in 0..12 {
            let (ids, ended) = random_walk(&constraint, VOCAB, &[EOS], seed, 2000).expect("walk");
            assert!(ended, "{format} seed {seed}: the walk did not end");
            let text = tok.decode(&ids, false).expect("decode");
            let mut whole = chain.stream(opts.clone());
            let mut events = whole.push(&text);
            events.extend(whole.finish());
            let (_, all) = calls_of(&events);
            assert!(!all.is_empty(), "{format}: no call in {text:?}");
            multi |= all.len() > 1;
            // The text each token adds, as generation streams it: whole characters only.
            let mut pieces = Vec::with_capacity(ids.len());
            let mut sent = String::new();
            for k in 1..=ids.len() {
                let d = tok.decode(&ids[..k], false).expect("decode");
                if d.starts_with(sent.as_str()) && !d.ends_with('\u{FFFD}') {
                    pieces.push(d[sent.len()..].to_string());
                    sent = d;
                } else {
                    pieces.push(String::new());
                }
            }
            let mut previous = 0;
            for j in 0..=ids.len() {
                let prefix: String = pieces[..j].concat();
                let mut p = chain.stream(opts.clone());
                let mut events = Vec::new();
                for piece in &pieces[..j] {
                    events.extend(p.push(piece));
                }
                events.extend(p.finish_cut());
                let (content, calls) = calls_of(&events);
                assert!(
                    content.as_deref().unwrap_or("").trim().is_empty(),
                    "{format} seed {seed}: content {content:?} from the cut {prefix:?}"
                );
                assert!(
                    calls.len() <= all.len() && calls[..] == all[..calls.len()],
                    "{format} seed {seed}: cut {prefix:?} gave {calls:?}, the whole answer {all:?}"
                );
                assert!(
                    calls.len() >= previous,
                    "{format} seed {seed}: a longer cut {prefix:?} lost calls"
                );
                previous = calls.len();
                if all.len() > 1 && calls.len() == all.len() - 1 {
                    kept_before_a_cut_call = true;
                }
            }
            assert_eq!(previous, all.len(), "{format}: the uncut answer lost calls");
        }
        if multi {
            assert!(
                kept_before_a_cut_call,
                "{format}: no cut kept the calls in front of the one it interrupted"
            );
        }
    }
}
