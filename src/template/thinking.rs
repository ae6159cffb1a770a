//! A request's [`ReasoningControl`] as the variables the model's template reads: thinking on
//! or off as `enable_thinking` (Qwen3, SmolLM3) or `thinking` (Granite 3.3), the effort level as
//! `reasoning_effort` (gpt-oss, which knows `low`, `medium` and `high`). A variable is set only
//! where the template reads it and the request's `chat_template_kwargs` did not set it: an
//! explicit template variable wins. A template that reads none of them has no switch, and the
//! request's reasoning settings change nothing there.

use serde_json::{Map, Value as Json};

use crate::request::{Effort, ReasoningControl};

/// The variables that turn a template's thinking on or off.
const SWITCHES: [&str; 2] = ["enable_thinking", "thinking"];

/// The variable of templates that take an effort level.
const EFFORT: &str = "reasoning_effort";

/// `kwargs` with the variables `control` sets, for a template that reads what `reads` says.
pub(crate) fn with_reasoning(
    kwargs: &Map<String, Json>,
    control: ReasoningControl,
    reads: impl Fn(&str) -> bool,
) -> Map<String, Json> {
    let mut out = kwargs.clone();
    let mut set = |name: &str, value: Json| {
        if reads(name) && !out.contains_key(name) {
            out.insert(name.to_string(), value);
        }
    };
    if let Some(on) = control.thinking {
        for name in SWITCHES {
            set(name, Json::Bool(on));
        }
    }
    // Thinking off without a level: the least a level-only template offers.
    let effort = control
        .effort
        .or((control.thinking == Some(false)).then_some(Effort::None));
    if let Some(e) = effort {
        set(EFFORT, Json::from(three_levels(e)));
    }
    out
}

/// `e` on the three levels gpt-oss was trained with.
fn three_levels(e: Effort) -> &'static str {
    match e {
        Effort::None | Effort::Minimal | Effort::Low => "low",
        Effort::Medium => "medium",
        Effort::High | Effort::XHigh => "high",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(control: ReasoningControl, kwargs: Json, reads: &[&str]) -> Json {
        let kwargs = kwargs.as_object().cloned().unwrap_or_default();
        Json::Object(with_reasoning(&kwargs, control, |n| reads.contains(&n)))
    }

    #[test]
    fn only_what_the_template_reads_and_the_request_did_not_set() {
        let off = ReasoningControl::effort(Effort::None);
        let all = ["enable_thinking", "thinking", "reasoning_effort"];
        assert_eq!(
            vars(off, json!({}), &all),
            json!({"enable_thinking": false, "thinking": false, "reasoning_effort": "low"})
        );
        assert_eq!(
            vars(off, json!({}), &["enable_thinking"]),
            json!({"enable_thinking": false})
        );
        assert_eq!(
            vars(off, json!({"enable_thinking": true}), &all)["enable_thinking"],
            json!(true)
        );
        assert_eq!(vars(off, json!({"x": 1}), &[]), json!({"x": 1}));
        assert_eq!(
            vars(ReasoningControl::default(), json!({}), &all),
            json!({})
        );
    }

    #[test]
    fn levels_map_onto_three_and_a_bare_switch_sets_no_level() {
        for (e, want) in [
            (Effort::Minimal, "low"),
            (Effort::Medium, "medium"),
            (Effort::XHigh, "high"),
        ] {
            let v = vars(
                ReasoningControl::effort(e),
                json!({}),
                &["reasoning_effort"],
            );
            assert_eq!(v, json!({"reasoning_effort": want}));
        }
        let on = ReasoningControl {
            thinking: Some(true),
            effort: None,
        };
        assert_eq!(
            vars(on, json!({}), &["thinking", "reasoning_effort"]),
            json!({"thinking": true})
        );
    }
}
