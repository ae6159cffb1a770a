//! What a request asks of a thinking model's reasoning: on or off, and how much effort. The
//! front ends read it from their wire fields (`reasoning_effort`, Responses' `reasoning.effort`,
//! Anthropic's `thinking.type`); the template layer turns it into the variables the model's
//! template reads (`template::thinking`).

use super::RequestError;

/// OpenAI's reasoning effort levels, least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effort {
    /// No reasoning.
    None,
    /// As little as the model allows.
    Minimal,
    /// Little.
    Low,
    /// The usual amount.
    Medium,
    /// Much.
    High,
    /// The most.
    XHigh,
}

impl Effort {
    /// Every level, as the wire spells it.
    pub const NAMES: [&'static str; 6] = ["none", "minimal", "low", "medium", "high", "xhigh"];

    /// The level named `value`, or an error about `param` listing the levels.
    pub fn parse(param: &str, value: &str) -> Result<Self, RequestError> {
        Ok(match value {
            "none" => Effort::None,
            "minimal" => Effort::Minimal,
            "low" => Effort::Low,
            "medium" => Effort::Medium,
            "high" => Effort::High,
            "xhigh" => Effort::XHigh,
            other => {
                return Err(RequestError::new(
                    param,
                    format!(
                        "Invalid value '{other}' for {param}: expected one of {}.",
                        Self::NAMES.join(", ")
                    ),
                ))
            }
        })
    }

    /// The level as the wire spells it.
    pub fn name(self) -> &'static str {
        match self {
            Effort::None => "none",
            Effort::Minimal => "minimal",
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
            Effort::XHigh => "xhigh",
        }
    }
}

/// What a request asks of the reasoning; the default asks nothing (the template decides).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReasoningControl {
    /// Thinking on or off; `None`: as the template defaults.
    pub thinking: Option<bool>,
    /// How much to reason, for templates that take a level; `None`: the template's default.
    pub effort: Option<Effort>,
}

impl ReasoningControl {
    /// An effort level: thinking off at `none`, on otherwise.
    pub fn effort(effort: Effort) -> Self {
        ReasoningControl {
            thinking: Some(effort != Effort::None),
            effort: Some(effort),
        }
    }

    /// The effort named by `value` at `param` (absent: nothing asked).
    pub fn from_effort(param: &str, value: Option<&str>) -> Result<Self, RequestError> {
        match value {
            Some(v) => Ok(Self::effort(Effort::parse(param, v)?)),
            None => Ok(Self::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_reads_back_and_others_name_the_levels() {
        for name in Effort::NAMES {
            let e = Effort::parse("reasoning_effort", name).unwrap();
            assert_eq!(e.name(), name);
            let c = ReasoningControl::effort(e);
            assert_eq!(c.thinking, Some(name != "none"));
        }
        let err = Effort::parse("reasoning.effort", "max").unwrap_err();
        assert_eq!(err.param, "reasoning.effort");
        assert!(err.message.contains("'max'") && err.message.contains("minimal, low"));
        assert_eq!(
            ReasoningControl::from_effort("x", None).unwrap(),
            ReasoningControl::default()
        );
    }
}
