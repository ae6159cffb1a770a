//! Server-sent-events plumbing: turns a job's message channel into an SSE body through
//! an [`Assembler`] that knows the endpoint's chunk shapes.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use tokio::sync::mpsc::UnboundedReceiver;

use super::run::CancelGuard;

/// One server-sent event: an optional `event:` name and its `data:` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The `event:` line (Anthropic's and the Responses API's streams name every event).
    pub event: Option<&'static str>,
    /// The `data:` payload.
    pub data: String,
}

impl Payload {
    /// An event named `event` carrying `data`.
    pub fn named(event: &'static str, data: String) -> Self {
        Payload {
            event: Some(event),
            data,
        }
    }
}

impl From<String> for Payload {
    /// A `data:`-only event.
    fn from(data: String) -> Self {
        Payload { event: None, data }
    }
}

/// What an assembler wants sent after a message.
#[derive(Debug, Default, PartialEq)]
pub struct Emit {
    /// Events to send, in order.
    pub data: Vec<Payload>,
    /// Whether the stream ends after them.
    pub end: bool,
}

/// Turns job messages into the events of an endpoint's stream.
pub trait Assembler: Send + 'static {
    /// The job's message type.
    type Msg: Send + 'static;
    /// Events for one message.
    fn on_msg(&mut self, msg: Self::Msg) -> Emit;
    /// Events once the job's channel has closed (usage chunk, `[DONE]`, or an error).
    fn on_close(&mut self) -> Vec<Payload>;
}

struct State<A: Assembler> {
    first: Option<A::Msg>,
    rx: UnboundedReceiver<A::Msg>,
    asm: A,
    queue: VecDeque<Payload>,
    finished: bool,
    _guard: CancelGuard,
}

/// The SSE stream of a job: `first` (already received) and then the rest of `rx`.
/// Dropping the stream (client gone) drops `guard`, which cancels the job.
pub fn sse_stream<A: Assembler>(
    first: A::Msg,
    rx: UnboundedReceiver<A::Msg>,
    asm: A,
    guard: CancelGuard,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let state = State {
        first: Some(first),
        rx,
        asm,
        queue: VecDeque::new(),
        finished: false,
        _guard: guard,
    };
    stream::unfold(state, |mut st| async move {
        loop {
            if let Some(p) = st.queue.pop_front() {
                let event = match p.event {
                    Some(name) => Event::default().event(name).data(p.data),
                    None => Event::default().data(p.data),
                };
                return Some((Ok(event), st));
            }
            if st.finished {
                return None;
            }
            let msg = match st.first.take() {
                Some(m) => Some(m),
                None => st.rx.recv().await,
            };
            match msg {
                Some(m) => {
                    let emit = st.asm.on_msg(m);
                    st.queue.extend(emit.data);
                    st.finished = emit.end;
                }
                None => {
                    st.queue.extend(st.asm.on_close());
                    st.finished = true;
                }
            }
        }
    })
}

/// The SSE response for a job (with keep-alive comments, so that a vanished client is
/// noticed even while nothing is generated).
pub fn sse_response<A: Assembler>(
    first: A::Msg,
    rx: UnboundedReceiver<A::Msg>,
    asm: A,
    guard: CancelGuard,
) -> Response {
    Sse::new(sse_stream(first, rx, asm, guard))
        .keep_alive(KeepAlive::default())
        .into_response()
}
