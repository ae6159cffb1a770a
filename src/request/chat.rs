//! A chat request in the pipeline's own terms.

use serde_json::{Map, Value};

use super::Sampling;

/// One chat request, validated: the conversation, the tools and how to use them, the
/// answer's format, sampling, stops, limits and extension fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    /// The conversation so far (at least one message once validated).
    pub messages: Vec<Message>,
    /// Tools the model may call; empty when the request offers none.
    pub tools: Vec<Tool>,
    /// How the model must use the tools.
    pub tool_choice: ToolChoice,
    /// The client used OpenAI's legacy `functions`: the answer's call must be written as a
    /// legacy `function_call` (at most one call).
    pub legacy_function_call: bool,
    /// What the answer must be: free text or JSON.
    pub response_format: ResponseFormat,
    /// Sampling settings.
    pub sampling: Sampling,
    /// Strings that end the answer (none empty).
    pub stop: Vec<String>,
    /// Token, choice and call limits.
    pub limits: Limits,
    /// Extra chat-template variables (`chat_template_kwargs`), e.g. `date_string`.
    pub template_kwargs: Map<String, Value>,
    /// Thinking on or off and the effort level: the template layer sets the variables the
    /// model's template reads for them, where `template_kwargs` does not set them itself.
    pub reasoning: super::ReasoningControl,
    /// How the prompt ends: a new assistant turn, the conversation as it is, or the final
    /// assistant message left open for the answer to continue.
    pub prompt_end: PromptEnd,
}

/// How the rendered prompt ends (transformers' `add_generation_prompt` and
/// `continue_final_message`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PromptEnd {
    /// The template opens a new assistant turn (`add_generation_prompt`), the usual case.
    #[default]
    GenerationPrompt,
    /// The conversation as it is, without a new assistant turn (`add_generation_prompt: false`).
    Conversation,
    /// The final message is an assistant message whose text the answer continues (a prefill):
    /// rendered without the generation prompt and cut right after that text, as transformers'
    /// `continue_final_message` does. The answer holds only the continuation.
    ContinueFinal,
}

impl ChatRequest {
    /// Whether the answer may hold at most one call: a named tool choice, disabled
    /// parallel calls, or a legacy `function_call` answer.
    pub fn single_call(&self) -> bool {
        matches!(self.tool_choice, ToolChoice::Named(_))
            || !self.limits.parallel_tool_calls
            || self.legacy_function_call
    }

    /// Whether `messages` end with an assistant message the answer can continue: text
    /// content and no calls.
    pub fn ends_with_prefill(messages: &[Message]) -> bool {
        messages.last().is_some_and(|m| {
            m.role == Role::Assistant
                && m.tool_calls.is_empty()
                && m.content.as_deref().is_some_and(|c| !c.trim().is_empty())
        })
    }

    /// Checks that a continued final message goes with a free answer: a forced call opening
    /// or a JSON grammar would start a new answer, not continue the text (`param` names the
    /// field that asked for the continuation).
    pub fn check_prompt_end(&self, param: &str) -> Result<(), super::RequestError> {
        let constrained = matches!(
            self.tool_choice,
            ToolChoice::Required | ToolChoice::Named(_)
        ) || self.response_format != ResponseFormat::Text;
        if self.prompt_end == PromptEnd::ContinueFinal && constrained {
            return Err(super::RequestError::new(
                param,
                "Continuing a final assistant message cannot be combined with a forced tool \
                 call or a JSON response format.",
            ));
        }
        Ok(())
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Role {
    /// Instructions (OpenAI's `system` and `developer`).
    System,
    /// The user.
    #[default]
    User,
    /// The model.
    Assistant,
    /// A tool's result (OpenAI's `tool` and legacy `function`).
    Tool,
}

impl Role {
    /// The role's name in chat templates (transformers' conversation format).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One message of the conversation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text (content parts joined); `None` when the client sent none.
    pub content: Option<String>,
    /// The participant's name; for a legacy `function` result, the function's name.
    pub name: Option<String>,
    /// Calls an assistant message made (empty otherwise).
    pub tool_calls: Vec<ToolCall>,
    /// For a tool result: the id of the call it answers (always set for [`Role::Tool`]).
    pub tool_call_id: Option<String>,
    /// The assistant's reasoning text, for templates that render it.
    pub reasoning_content: Option<String>,
}

impl Message {
    /// A message of `role` with text `content`.
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: Some(content.into()),
            ..Default::default()
        }
    }
}

/// A call an assistant message made, as the conversation history holds it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCall {
    /// The call id (assigned at the edge when the client sent none).
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments: the parsed JSON value (an empty text is `{}`; text that is not JSON
    /// stays a string).
    pub arguments: Value,
}

/// A tool (function) the model may call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tool {
    /// The function's name (1 to 64 letters, digits, `_`, `.` or `-`).
    pub name: String,
    /// What the function does.
    pub description: Option<String>,
    /// JSON Schema object of the arguments.
    pub parameters: Option<Value>,
    /// Strict schema adherence, when the client said (templates show it as given).
    pub strict: Option<bool>,
}

/// How the model must use the tools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ToolChoice {
    /// No call: the tools are hidden from the prompt.
    None,
    /// The model decides.
    #[default]
    Auto,
    /// One or more calls, nothing else.
    Required,
    /// Exactly one call of this function (one of the request's tools).
    Named(String),
}

/// What the answer must be.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ResponseFormat {
    /// Free text.
    #[default]
    Text,
    /// Any JSON object.
    JsonObject,
    /// A JSON document valid against `schema`.
    JsonSchema {
        /// The JSON Schema (an object or a boolean).
        schema: Value,
        /// Unknown schema keywords are errors rather than ignored.
        strict: bool,
    },
}

/// Limits of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most generated tokens per choice (at least 1); `None`: until the context is full.
    pub max_tokens: Option<u32>,
    /// Choices to generate (1 to [`Limits::MAX_N`]).
    pub n: u32,
    /// Log-probabilities per token with this many alternatives (0 to 20); `None`: none.
    pub logprobs: Option<u8>,
    /// Several calls may come in one answer.
    pub parallel_tool_calls: bool,
    /// Most characters of a thinking model's reasoning block before a required call or a
    /// JSON answer (callm's `max_reasoning_chars`); `None`: the pipeline's default.
    pub max_reasoning_chars: Option<u32>,
    /// Most generated tokens in a thinking model's reasoning block: then the block is closed
    /// and the answer follows (Anthropic's `thinking.budget_tokens`, callm's
    /// `max_reasoning_tokens`); `None`: no cap.
    pub max_reasoning_tokens: Option<u32>,
}

impl Limits {
    /// Most choices per request.
    pub const MAX_N: u32 = 128;
    /// Most alternatives per token in log-probabilities.
    pub const MAX_TOP_LOGPROBS: u32 = 20;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tokens: None,
            n: 1,
            logprobs: None,
            parallel_tool_calls: true,
            max_reasoning_chars: None,
            max_reasoning_tokens: None,
        }
    }
}
