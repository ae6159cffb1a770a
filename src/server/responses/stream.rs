//! The Responses API's event stream: `response.created`, `response.in_progress`, then per
//! output item `response.output_item.added`, for a message `response.content_part.added`,
//! `response.output_text.delta`… `.done`, `response.content_part.done`, for a call
//! `response.function_call_arguments.delta`… `.done`, then `response.output_item.done`,
//! and last `response.completed` (or `response.incomplete`), every event with its `event:`
//! line and a `sequence_number` counting from 0. A failure mid-stream is an `error` event
//! and `response.failed`. The final response holds the streamed items (same ids, same text
//! and arguments).

use serde_json::{json, Value};

use super::super::chat_shape::ChatMsg;
use super::super::error::ApiError;
use super::super::run::new_id;
use super::super::sse::{Assembler, Emit, Payload};
use super::shape::{
    call_item, message_item, reasoning_item, response_json, text_part, ResponseMeta, Status,
};
use super::Saver;
use crate::chat::{ChatEvent, ChatOutcome};

/// The output item being streamed.
#[derive(Debug)]
enum Open {
    Reasoning {
        id: String,
        text: String,
    },
    Message {
        id: String,
        text: String,
    },
    Call {
        index: usize,
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Assembles the Responses API's event stream from chat job messages.
#[derive(Debug)]
pub struct ResponseStream {
    meta: ResponseMeta,
    saver: Option<Saver>,
    sequence: u64,
    started: bool,
    open: Option<Open>,
    /// Finished output items.
    output: Vec<Value>,
    done: bool,
}

impl ResponseStream {
    /// A stream for one response; `saver` keeps it when the request asked to store it.
    pub fn new(meta: ResponseMeta, saver: Option<Saver>) -> Self {
        ResponseStream {
            meta,
            saver,
            sequence: 0,
            started: false,
            open: None,
            output: Vec::new(),
            done: false,
        }
    }

    fn emit(&mut self, name: &'static str, mut v: Value, out: &mut Vec<Payload>) {
        v["type"] = json!(name);
        v["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.push(Payload::named(name, v.to_string()));
    }

    fn start(&mut self, out: &mut Vec<Payload>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = response_json(&self.meta, &Status::InProgress, vec![], None);
        self.emit("response.created", json!({"response": response}), out);
        self.emit("response.in_progress", json!({"response": response}), out);
    }

    fn index(&self) -> usize {
        self.output.len()
    }

    fn open_message(&mut self, out: &mut Vec<Payload>) {
        let id = new_id("msg_");
        let index = self.index();
        let item = message_item(&id, "in_progress", vec![]);
        self.emit(
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
            out,
        );
        self.emit(
            "response.content_part.added",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": text_part("")}),
            out,
        );
        self.open = Some(Open::Message {
            id,
            text: String::new(),
        });
    }

    /// Ends the open item with its `.done` events (`status` is the item's final status).
    fn close(&mut self, status: &str, out: &mut Vec<Payload>) {
        let index = self.index();
        let item = match self.open.take() {
            None => return,
            Some(Open::Reasoning { id, text }) => {
                self.emit(
                    "response.reasoning_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                        "text": text}),
                    out,
                );
                reasoning_item(&id, status, &text)
            }
            Some(Open::Message { id, text }) => {
                self.emit(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                        "text": text, "logprobs": []}),
                    out,
                );
                self.emit(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                        "part": text_part(&text)}),
                    out,
                );
                message_item(&id, status, vec![text_part(&text)])
            }
            Some(Open::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            }) => {
                self.emit(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "name": name,
                        "arguments": arguments}),
                    out,
                );
                call_item(&id, status, &call_id, &name, &arguments)
            }
        };
        self.emit(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
            out,
        );
        self.output.push(item);
    }

    fn on_event(&mut self, ev: ChatEvent, out: &mut Vec<Payload>) {
        match ev {
            ChatEvent::Content(delta) => {
                if delta.is_empty() {
                    return;
                }
                if !matches!(self.open, Some(Open::Message { .. })) {
                    self.close("completed", out);
                    self.open_message(out);
                }
                let index = self.index();
                let Some(Open::Message { id, text }) = self.open.as_mut() else {
                    return;
                };
                text.push_str(&delta);
                let id = id.clone();
                self.emit(
                    "response.output_text.delta",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                        "delta": delta, "logprobs": []}),
                    out,
                );
            }
            ChatEvent::ToolCallStart {
                index: call,
                id: call_id,
                name,
            } => {
                self.close("completed", out);
                let id = new_id("fc_");
                let item = call_item(&id, "in_progress", &call_id, &name, "");
                let index = self.index();
                self.emit(
                    "response.output_item.added",
                    json!({"output_index": index, "item": item}),
                    out,
                );
                self.open = Some(Open::Call {
                    index: call,
                    id,
                    call_id,
                    name,
                    arguments: String::new(),
                });
            }
            ChatEvent::ToolCallArguments { index: call, delta } => {
                let index = self.index();
                let Some(Open::Call {
                    index: open,
                    id,
                    arguments,
                    ..
                }) = self.open.as_mut()
                else {
                    return;
                };
                if *open != call || delta.is_empty() {
                    return;
                }
                arguments.push_str(&delta);
                let id = id.clone();
                self.emit(
                    "response.function_call_arguments.delta",
                    json!({"item_id": id, "output_index": index, "delta": delta}),
                    out,
                );
            }
            ChatEvent::Reasoning(delta) => {
                if delta.is_empty() {
                    return;
                }
                if !matches!(self.open, Some(Open::Reasoning { .. })) {
                    self.close("completed", out);
                    let id = new_id("rs_");
                    let item = json!({"id": id, "type": "reasoning", "status": "in_progress",
                        "summary": [], "content": []});
                    let index = self.index();
                    self.emit(
                        "response.output_item.added",
                        json!({"output_index": index, "item": item}),
                        out,
                    );
                    self.open = Some(Open::Reasoning {
                        id,
                        text: String::new(),
                    });
                }
                let index = self.index();
                let Some(Open::Reasoning { id, text }) = self.open.as_mut() else {
                    return;
                };
                text.push_str(&delta);
                let id = id.clone();
                self.emit(
                    "response.reasoning_text.delta",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                        "delta": delta}),
                    out,
                );
            }
            ChatEvent::Logprob(_) => {}
        }
    }

    fn finish(&mut self, o: &ChatOutcome, out: &mut Vec<Payload>) {
        let status = Status::of(o.finish);
        let said = self.output.iter().any(|i| i["type"] != "reasoning")
            || matches!(self.open, Some(Open::Message { .. } | Open::Call { .. }));
        if !said {
            self.close("completed", out);
            // A response always says something: an empty message.
            self.open_message(out);
        }
        self.close(status.item(), out);
        let response = response_json(&self.meta, &status, self.output.clone(), Some(&o.usage));
        if let Some(saver) = self.saver.take() {
            saver.save(&self.meta.id, &response, &self.output);
        }
        let name = match status {
            Status::Incomplete => "response.incomplete",
            _ => "response.completed",
        };
        self.emit(name, json!({"response": response}), out);
        self.done = true;
    }

    fn fail(&mut self, e: &ApiError, out: &mut Vec<Payload>) {
        let message = e.client_message(None);
        self.emit(
            "error",
            json!({"code": e.code.unwrap_or("server_error"), "message": message, "param": e.param}),
            out,
        );
        let response = response_json(
            &self.meta,
            &Status::Failed(message),
            self.output.clone(),
            None,
        );
        self.emit("response.failed", json!({"response": response}), out);
    }
}

impl Assembler for ResponseStream {
    type Msg = ChatMsg;

    fn on_msg(&mut self, msg: ChatMsg) -> Emit {
        let mut out = Vec::new();
        match msg {
            ChatMsg::Event(_, ev) => {
                self.start(&mut out);
                self.on_event(ev, &mut out);
            }
            ChatMsg::Done(_, o) if o.cancelled => {
                return Emit {
                    data: out,
                    end: true,
                }
            }
            ChatMsg::Done(_, o) => {
                self.start(&mut out);
                self.finish(&o, &mut out);
            }
            ChatMsg::Failed(e) => {
                self.start(&mut out);
                self.fail(&ApiError::from(e), &mut out);
                return Emit {
                    data: out,
                    end: true,
                };
            }
        }
        Emit {
            data: out,
            end: self.done,
        }
    }

    fn on_close(&mut self) -> Vec<Payload> {
        if self.done {
            return Vec::new();
        }
        let mut out = Vec::new();
        self.fail(
            &ApiError::internal("the generation ended unexpectedly"),
            &mut out,
        );
        out
    }
}
