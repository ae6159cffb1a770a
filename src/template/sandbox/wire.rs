//! What the server and a render worker send each other: one frame each way per render, an
//! 8-byte little-endian length and that many bytes of JSON.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use std::io::{self, Read, Write};

use crate::template::env::Clock;
use crate::template::TemplateError;

/// Largest frame either side accepts: a 64 MiB prompt with every byte escaped, and room.
pub const MAX_FRAME: u64 = 512 << 20;

const CLOCK_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.f";

/// A render as the server sends it.
#[derive(Serialize)]
pub struct JobRef<'a> {
    /// The template text (the worker keeps each text it has compiled).
    pub source: &'a str,
    /// A pinned `strftime_now` instant, or `None` for the local clock.
    pub clock: Option<String>,
    /// The render's context: messages, tools, add_generation_prompt, tokens, kwargs.
    pub ctx: &'a Map<String, Json>,
}

/// A render as the worker reads it.
#[derive(Deserialize)]
pub struct Job {
    /// See [`JobRef::source`].
    pub source: String,
    /// See [`JobRef::clock`].
    pub clock: Option<String>,
    /// See [`JobRef::ctx`].
    pub ctx: Map<String, Json>,
}

/// The clock as a frame carries it.
pub fn clock_text(clock: Clock) -> Option<String> {
    match clock {
        Clock::Local => None,
        Clock::Fixed(t) => Some(t.format(CLOCK_FORMAT).to_string()),
    }
}

/// The clock a frame names.
pub fn parse_clock(text: Option<&str>) -> Result<Clock, String> {
    match text {
        None => Ok(Clock::Local),
        Some(t) => chrono::NaiveDateTime::parse_from_str(t, CLOCK_FORMAT)
            .map(Clock::Fixed)
            .map_err(|e| format!("bad clock {t:?}: {e}")),
    }
}

/// The worker's answer.
#[derive(Serialize, Deserialize)]
pub enum Reply {
    /// The prompt, and the fuel its render used.
    Rendered {
        /// The rendered prompt.
        text: String,
        /// Fuel used (of [`crate::template::limits::RENDER_FUEL`]).
        fuel: u64,
    },
    /// The render failed; `kind` says how, as [`TemplateError`]'s variant does.
    Failed {
        /// Which kind of failure.
        kind: FailureKind,
        /// The error's own message (without the variant's prefix).
        message: String,
    },
}

/// The [`TemplateError`] variants a render can end with.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// [`TemplateError::Raised`].
    Raised,
    /// [`TemplateError::Render`].
    Render,
    /// [`TemplateError::Limit`].
    Limit,
    /// [`TemplateError::Syntax`].
    Syntax,
}

impl Reply {
    /// The reply for a render's result.
    pub fn from_result(r: Result<(String, u64), TemplateError>) -> Reply {
        let (kind, message) = match r {
            Ok((text, fuel)) => return Reply::Rendered { text, fuel },
            Err(TemplateError::Raised(m)) => (FailureKind::Raised, m),
            Err(TemplateError::Limit(m)) => (FailureKind::Limit, m),
            Err(TemplateError::Syntax(m)) => (FailureKind::Syntax, m),
            Err(TemplateError::Render(m)) => (FailureKind::Render, m),
            Err(e) => (FailureKind::Render, e.to_string()),
        };
        Reply::Failed { kind, message }
    }

    /// The render's result again.
    pub fn into_result(self) -> Result<(String, u64), TemplateError> {
        match self {
            Reply::Rendered { text, fuel } => Ok((text, fuel)),
            Reply::Failed { kind, message } => Err(match kind {
                FailureKind::Raised => TemplateError::Raised(message),
                FailureKind::Render => TemplateError::Render(message),
                FailureKind::Limit => TemplateError::Limit(message),
                FailureKind::Syntax => TemplateError::Syntax(message),
            }),
        }
    }
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    w.write_all(&(body.len() as u64).to_le_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// Checks a frame length read from the other side.
pub fn frame_len(header: [u8; 8]) -> io::Result<usize> {
    let len = u64::from_le_bytes(header);
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes, over the limit of {MAX_FRAME}"),
        ));
    }
    usize::try_from(len).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads one frame; `None` at the end of the stream before a frame starts.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 8];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let mut body = vec![0u8; frame_len(header)?];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_replies_survive_the_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"{\"a\":1}").unwrap();
        write_frame(&mut buf, b"").unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), b"");
        assert!(read_frame(&mut r).unwrap().is_none());
        // A cut frame and an oversized one are errors, not allocations.
        assert!(read_frame(&mut &buf[..5]).is_err());
        let huge = (MAX_FRAME + 1).to_le_bytes();
        assert!(read_frame(&mut &huge[..]).is_err());

        for r in [
            Err(TemplateError::Raised("no".into())),
            Err(TemplateError::Limit("fuel".into())),
            Err(TemplateError::Syntax("bad".into())),
            Err(TemplateError::Render("undefined".into())),
            Ok(("text".to_string(), 7)),
        ] {
            let want = format!("{r:?}");
            let json = serde_json::to_vec(&Reply::from_result(r)).unwrap();
            let back: Reply = serde_json::from_slice(&json).unwrap();
            assert_eq!(format!("{:?}", back.into_result()), want);
        }
        let t = chrono::NaiveDate::from_ymd_opt(2024, 7, 26)
            .unwrap()
            .and_hms_milli_opt(9, 30, 5, 250)
            .unwrap();
        for c in [Clock::Local, Clock::Fixed(t)] {
            assert_eq!(parse_clock(clock_text(c).as_deref()).unwrap(), c);
        }
    }
}
