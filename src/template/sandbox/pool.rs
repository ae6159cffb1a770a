//! The worker processes of a [`super::Sandbox`]: started on demand, kept idle between renders,
//! killed when a render passes a limit.

use std::io::{self, Read};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::wire::{frame_len, write_frame, FailureKind, JobRef, Reply};
use super::{SandboxConfig, WORKER_ARG};
use crate::template::TemplateError;

/// What a worker wrote to standard error that the error message quotes, at most.
const STDERR_QUOTE: usize = 2048;

pub struct Pool {
    config: SandboxConfig,
    workers: Mutex<Workers>,
    /// Signalled when a worker goes back idle or a worker's place frees up.
    freed: Condvar,
    warned: AtomicBool,
}

#[derive(Default)]
struct Workers {
    idle: Vec<Worker>,
    /// Workers that exist, idle or rendering (at most `config.max_workers`).
    live: usize,
}

/// A worker taken from the pool: goes back idle with [`Pool::keep`], or ends and frees its
/// place when dropped.
struct Lease<'a> {
    pool: &'a Pool,
    worker: Option<Worker>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            drop(w);
            self.pool.lock().live -= 1;
            self.pool.freed.notify_one();
        }
    }
}

impl Pool {
    pub fn new(config: SandboxConfig) -> Self {
        Pool {
            config,
            workers: Mutex::new(Workers::default()),
            freed: Condvar::new(),
            warned: AtomicBool::new(false),
        }
    }

    /// Workers that exist now, idle or rendering.
    pub fn live(&self) -> usize {
        self.lock().live
    }

    fn lock(&self) -> MutexGuard<'_, Workers> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle worker that still runs, else a new one when there is room, else waits for one.
    /// `Err` when a worker cannot be started.
    fn take(&self) -> Result<Lease<'_>, io::Error> {
        let mut workers = self.lock();
        loop {
            while let Some(mut w) = workers.idle.pop() {
                if matches!(w.child.try_wait(), Ok(None)) {
                    return Ok(Lease {
                        pool: self,
                        worker: Some(w),
                    });
                }
                // Ended while it waited (killed from outside): its place is free again.
                workers.live -= 1;
            }
            if workers.live < self.config.max_workers.max(1) {
                workers.live += 1;
                drop(workers);
                return match Worker::spawn(&self.config) {
                    Ok(w) => Ok(Lease {
                        pool: self,
                        worker: Some(w),
                    }),
                    Err(e) => {
                        self.lock().live -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            workers = self.freed.wait(workers).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Puts a worker that finished its render cleanly back idle.
    fn keep(&self, mut lease: Lease<'_>) {
        if let Some(w) = lease.worker.take() {
            self.lock().idle.push(w);
            self.freed.notify_one();
        }
    }

    pub fn render(&self, job: &JobRef<'_>) -> Option<Result<(String, u64), TemplateError>> {
        let body = match serde_json::to_vec(job) {
            Ok(b) => b,
            Err(e) => return Some(Err(TemplateError::Render(e.to_string()))),
        };
        let mut lease = match self.take() {
            Ok(l) => l,
            Err(e) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "cannot start the chat-template render worker {}: {e}; rendering \
                         in-process, without the worker's memory and time limits",
                        self.config.program.display()
                    );
                }
                return None;
            }
        };
        let worker = lease.worker.as_mut()?;
        let deadline = Instant::now() + self.config.time_limit;
        match worker.exchange(&body, deadline) {
            Ok(reply) => {
                let reply = serde_json::from_slice::<Reply>(&reply);
                // A render stopped by the fuel may have left the worker's heap large: it ends
                // (when the lease drops) rather than going back idle.
                let healthy = matches!(
                    reply,
                    Ok(Reply::Rendered { .. })
                        | Ok(Reply::Failed {
                            kind: FailureKind::Raised | FailureKind::Render,
                            ..
                        })
                );
                if healthy {
                    self.keep(lease);
                }
                Some(match reply {
                    Ok(r) => r.into_result(),
                    Err(e) => Err(TemplateError::Render(format!(
                        "unreadable reply from the render worker: {e}"
                    ))),
                })
            }
            Err(Broken::TimedOut) => {
                // Dropping the lease kills the worker and frees its place.
                drop(lease);
                tracing::warn!(
                    "a chat-template render passed its time limit of {} s; its worker was \
                     killed (a hostile or pathological template? --template-time-limit sets \
                     the limit)",
                    self.config.time_limit.as_secs_f64()
                );
                Some(Err(TemplateError::Limit(format!(
                    "the render took longer than its time limit of {} s (a template that \
                     loops over long strings or values the fuel does not count)",
                    self.config.time_limit.as_secs_f64()
                ))))
            }
            Err(Broken::Ended(e)) => {
                let (status, stderr) = lease.worker.take().map(Worker::end)?;
                drop(lease);
                self.lock().live -= 1;
                self.freed.notify_one();
                let err = ended_error(&self.config, e, status, &stderr);
                if matches!(err, TemplateError::Limit(_)) {
                    tracing::warn!("a chat-template render stopped: {err} (--template-memory-mb sets the limit)");
                } else {
                    tracing::warn!("a chat-template render worker ended: {err}");
                }
                Some(Err(err))
            }
        }
    }
}

/// The error for a worker that ended during a render.
fn ended_error(
    config: &SandboxConfig,
    e: io::Error,
    status: Option<ExitStatus>,
    stderr: &str,
) -> TemplateError {
    let status = status.map_or_else(|| "unknown".to_string(), describe);
    if stderr.contains("memory allocation") {
        return TemplateError::Limit(format!(
            "the render needed more than its memory limit of {} MiB (the render worker \
             ended: {status})",
            config.memory_bytes >> 20
        ));
    }
    let said = stderr.trim();
    TemplateError::Render(format!(
        "the render worker ended during the render ({status}; {e}){}{said}",
        if said.is_empty() { "" } else { ": " }
    ))
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => status.to_string(),
    }
}

enum Broken {
    TimedOut,
    Ended(io::Error),
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    stderr: ChildStderr,
}

impl Worker {
    fn spawn(config: &SandboxConfig) -> io::Result<Worker> {
        let mut child = Command::new(&config.program)
            .arg(WORKER_ARG)
            .arg(config.memory_bytes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C meant for the server does not end the renders
            // of requests the server is still finishing.
            .process_group(0)
            .spawn()?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("the worker's pipes were not set up"));
        };
        Ok(Worker {
            child,
            stdin,
            stdout,
            stderr,
        })
    }

    /// Sends a job and reads the reply, giving up at `deadline`.
    fn exchange(&mut self, job: &[u8], deadline: Instant) -> Result<Vec<u8>, Broken> {
        write_frame(&mut self.stdin, job).map_err(Broken::Ended)?;
        let mut header = [0u8; 8];
        read_until(&mut self.stdout, &mut header, deadline)?;
        let mut body = vec![0u8; frame_len(header).map_err(Broken::Ended)?];
        read_until(&mut self.stdout, &mut body, deadline)?;
        Ok(body)
    }

    /// Kills the worker (if it still runs) and returns how it ended and what it wrote to
    /// standard error.
    fn end(mut self) -> (Option<ExitStatus>, String) {
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        let mut said = Vec::new();
        let _ = (&mut self.stderr)
            .take(STDERR_QUOTE as u64)
            .read_to_end(&mut said);
        (status, String::from_utf8_lossy(&said).into_owned())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // An idle worker ends at the end of its input; kill and reap it so no zombie stays.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fills `buf` from `r`, waiting for data at most until `deadline`.
fn read_until(r: &mut ChildStdout, buf: &mut [u8], deadline: Instant) -> Result<(), Broken> {
    let mut done = 0;
    while done < buf.len() {
        wait_readable(r.as_raw_fd(), deadline)?;
        match r.read(&mut buf[done..]) {
            Ok(0) => return Err(Broken::Ended(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Broken::Ended(e)),
        }
    }
    Ok(())
}

/// Waits until `fd` has data (or its writer is gone), at most until `deadline`.
fn wait_readable(fd: std::os::unix::io::RawFd, deadline: Instant) -> Result<(), Broken> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Broken::TimedOut);
        }
        let ms = libc::c_int::try_from(left.as_millis().saturating_add(1)).unwrap_or(i32::MAX);
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes the one pollfd it is given.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        if n > 0 {
            return Ok(());
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Broken::Ended(e));
            }
        }
    }
}
