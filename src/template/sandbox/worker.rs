//! The render worker: a `callm` process started by [`super::Sandbox`] that renders the frames
//! it reads from standard input and writes each reply to standard output, under its own
//! address-space limit. It ends at the end of its input, or soon after its parent.

use std::io::{self, Write};
use std::process::ExitCode;

use super::wire::{parse_clock, read_frame, write_frame, Job, Reply};
use crate::template::env::to_value;
use crate::template::{ChatTemplate, TemplateError};

/// Runs the worker loop; `args` are the arguments after [`super::WORKER_ARG`] (the address
/// space, in bytes, that renders may add to what the worker has at start).
pub fn run(args: &[String]) -> ExitCode {
    let extra = args.first().and_then(|a| a.parse::<u64>().ok());
    limit_this_process(extra);
    let mut input = io::stdin().lock();
    let mut output = io::stdout().lock();
    loop {
        let frame = match read_frame(&mut input) {
            Ok(Some(f)) => f,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                let _ = writeln!(io::stderr(), "render worker: bad input: {e}");
                return ExitCode::FAILURE;
            }
        };
        let reply = match serde_json::from_slice::<Job>(&frame) {
            Ok(job) => Reply::from_result(render(job)),
            Err(e) => Reply::from_result(Err(TemplateError::Render(format!(
                "the render worker could not read its job: {e}"
            )))),
        };
        drop(frame);
        let sent = serde_json::to_vec(&reply)
            .map_err(io::Error::other)
            .and_then(|body| write_frame(&mut output, &body));
        if sent.is_err() {
            return ExitCode::FAILURE;
        }
    }
}

fn render(job: Job) -> Result<(String, u64), TemplateError> {
    let clock = parse_clock(job.clock.as_deref()).map_err(TemplateError::Render)?;
    let template = ChatTemplate::compile_with(&job.source, clock)?;
    template.render_counted(&to_value(&job.ctx))
}

/// No core files (a render stopped by its memory limit aborts), the address-space limit, and
/// an end soon after the parent's.
#[cfg(unix)]
fn limit_this_process(extra_address_space: Option<u64>) {
    let set = |resource, value: u64| {
        let lim = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: setrlimit only reads the rlimit struct it is given.
        unsafe { libc::setrlimit(resource, &lim) };
    };
    // A parent that ends closes this worker's input, which ends an idle worker; one that is
    // rendering is ended by this watch. (Not PR_SET_PDEATHSIG: it fires when the thread that
    // started the worker ends, and the server's blocking threads come and go.)
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    let _ = std::thread::Builder::new()
        .name("parent-watch".into())
        .stack_size(64 << 10)
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            // SAFETY: as above.
            if unsafe { libc::getppid() } != parent {
                std::process::exit(0);
            }
        });
    set(libc::RLIMIT_CORE, 0);
    if let (Some(extra), Some(now)) = (extra_address_space, address_space_now()) {
        set(libc::RLIMIT_AS, now.saturating_add(extra));
    }
}

#[cfg(not(unix))]
fn limit_this_process(_: Option<u64>) {}

/// The process's virtual size in bytes, where `/proc` tells it.
#[cfg(unix)]
fn address_space_now() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}
