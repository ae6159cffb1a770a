//! The list of tool-call formats: one file per format, one line per format below.
//!
//! Adding a format: write `NAME.rs` with a unit struct implementing [`ToolFormat`] (scanner,
//! grammar description, id style, end markers), declare it (`pub mod NAME;`) and add one line
//! `Struct => NAME,` to the `formats!` list. The line adds the [`Format`] variant (named like
//! the struct) and makes the name known to `models.toml`, `callm parse --format` and the
//! grammar builder. (The `mod` lines stay outside the macro so that rustfmt sees the files.)

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::format::ToolFormat;

pub mod chatglm3;
pub mod functionary_v3_1;
pub mod functionary_v3_2;
pub mod glaive;
pub mod gorilla;
pub mod granite;
pub mod hermes;
pub mod json_fallback;
pub mod llama3_json;
pub mod mistral;
pub mod mistral_args;
pub mod mistral_call_id;
pub mod nexusraven;
pub mod phi4_mini;
pub mod pythonic;
pub mod qwen3_coder;

/// Declares the [`Format`] enum over the format modules.
macro_rules! formats {
    ($($(#[$doc:meta])* $variant:ident => $module:ident,)*) => {
        /// A tool-call format callm knows (see [`ToolFormat`] for what a format is).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Format {
            $($(#[$doc])* $variant,)*
        }

        impl Format {
            /// Every format, in list order.
            pub const ALL: &'static [Format] = &[$(Format::$variant,)*];

            /// The registry name: the name of the format's file.
            pub fn name(self) -> &'static str {
                match self {
                    $(Format::$variant => stringify!($module),)*
                }
            }

            /// The format's definition: scanner, grammar, openings, id style.
            pub fn def(self) -> &'static dyn ToolFormat {
                match self {
                    $(Format::$variant => &$module::$variant,)*
                }
            }
        }
    };
}

formats! {
    /// Llama 3.x JSON calls, `<|python_tag|>` optional (`llama3_json`).
    Llama3Json => llama3_json,
    /// A Python list of calls, Llama 3.2 / 3.3 (`pythonic`).
    Pythonic => pythonic,
    /// `[TOOL_CALLS] [...]`, Mistral 7B Instruct v0.3 (`mistral`).
    Mistral => mistral,
    /// `[TOOL_CALLS]name[ARGS]{...}`, Devstral and Mistral's v11-tokenizer models (`mistral_args`).
    MistralArgs => mistral_args,
    /// `[TOOL_CALLS]name[CALL_ID]id[ARGS]{...}`, Mistral Small 3.2 (`mistral_call_id`).
    MistralCallId => mistral_call_id,
    /// `<tool_call>` JSON blocks, Qwen2.5/Qwen3, Hermes, Granite 4.0, SmolLM3 (`hermes`).
    Hermes => hermes,
    /// `<tool_call>` XML functions with raw parameter values, Qwen3-Coder (`qwen3_coder`).
    Qwen3Coder => qwen3_coder,
    /// `<|tool_call|>[...]`, Granite 3.x (`granite`).
    Granite => granite,
    /// `<|tool_call|>[...]<|/tool_call|>`, Phi-4-mini (`phi4_mini`).
    Phi4Mini => phi4_mini,
    /// `<function=NAME>{...}</function>`, Functionary v3.1 (`functionary_v3_1`).
    FunctionaryV31 => functionary_v3_1,
    /// `>>>NAME\n{...}` and `>>>all\ntext`, Functionary v3.2 (`functionary_v3_2`).
    FunctionaryV32 => functionary_v3_2,
    /// `<functioncall> {...}`, Glaive function-calling v1 (`glaive`).
    Glaive => glaive,
    /// Python calls, Gorilla OpenFunctions v2 (`gorilla`).
    Gorilla => gorilla,
    /// `Call: f(...)`, NexusRaven-V2 (`nexusraven`).
    NexusRaven => nexusraven,
    /// A name line and a `tool_call(...)` fence, ChatGLM3-6B (`chatglm3`).
    ChatGlm3 => chatglm3,
    /// Bare JSON calls anywhere, for models that drift (`json_fallback`).
    JsonFallback => json_fallback,
}

impl Format {
    /// The format called `name` (surrounding whitespace ignored).
    pub fn from_name(name: &str) -> Option<Format> {
        let name = name.trim();
        Format::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// The names of all formats, comma-separated (for error messages).
    pub fn known() -> String {
        Format::ALL
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl AsRef<str> for Format {
    fn as_ref(&self) -> &str {
        self.name()
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Format {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Format::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown tool-call format \"{name}\"; known formats: {}",
                Format::known()
            ))
        })
    }
}
