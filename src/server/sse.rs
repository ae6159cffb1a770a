//! Server-sent-events plumbing: turns a job's message channel into an SSE body through
//! an [`Assembler`] that knows the endpoint's chunk shapes.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use tokio::sync::mpsc::UnboundedReceiver;

use super::run::CancelGuard;

/// What an assembler wants sent after a message.
#[derive(Debug, Default, PartialEq)]
pub struct Emit {
    /// `data:` payloads to send, in order.
    pub data: Vec<String>,
    /// Whether the stream ends after them.
    pub end: bool,
}

/// Turns job messages into the `data:` payloads of an endpoint's stream.
pub trait Assembler: Send + 'static {
    /// The job's message type.
    type Msg: Send + 'static;
    /// Payloads for one message.
    fn on_msg(&mut self, msg: Self::Msg) -> Emit;
    /// Payloads once the job's channel has closed (usage chunk, `[DONE]`, or an error).
    fn on_close(&mut self) -> Vec<String>;
}

struct State<A: Assembler> {
    first: Option<A::Msg>,
    rx: UnboundedReceiver<A::Msg>,
    asm: A,
    queue: VecDeque<String>,
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
            if let Some(data) = st.queue.pop_front() {
                return Some((Ok(Event::default().data(data)), st));
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
