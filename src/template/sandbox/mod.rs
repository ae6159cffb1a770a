//! Renders chat templates in separate worker processes, under a memory limit and a time limit.
//!
//! minijinja's fuel ([`super::limits`]) bounds almost everything a template can do, but not
//! all: comparing or hashing long strings costs no fuel, and a lazily repeated list turned
//! into text by `~` is built before anything is charged. A hostile template can use those
//! to hold a CPU for minutes or to allocate until the process aborts. So the binary installs
//! a [`Sandbox`] at start: each render then runs in a `callm` worker process (the same
//! executable, started with [`WORKER_ARG`]) that limits its own address space, and the server
//! waits for its answer at most [`SandboxConfig::time_limit`]. A worker past either limit is
//! killed and the request gets [`TemplateError::Limit`] (HTTP 400); the next render starts a
//! fresh worker. Workers are kept between renders, so a render costs one pipe round trip and
//! its context written as JSON, not a process start.
//!
//! Without an installed sandbox (library use, tests, platforms other than Unix), or when a
//! worker cannot be started, templates render in-process under the fuel alone.

pub mod wire;
pub mod worker;

#[cfg(unix)]
mod pool;

use serde_json::{Map, Value as Json};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use super::env::Clock;
use super::TemplateError;

/// The first argument that makes `callm` a render worker (see [`worker::run`]).
pub const WORKER_ARG: &str = "__callm-render-worker";

/// Address space a render may add to what its worker has at start: well above the ~128 MB
/// of template data the fuel pays for, a 64 MiB prompt and a 16 MiB request's context.
pub const DEFAULT_MEMORY_BYTES: u64 = 1 << 30;

/// Longest a render may take. Real templates render a 0.8 MB prompt in under a second on a
/// slow core; a hostile one that the fuel misses is stopped here.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(10);

/// Most workers at once, when the machine does not say how many threads it runs: renders are
/// CPU-bound, so more than one per core gains nothing, and each may use
/// [`DEFAULT_MEMORY_BYTES`].
pub const DEFAULT_MAX_WORKERS: usize = 4;

/// How the workers are started and limited.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The `callm` executable to start as a worker.
    pub program: PathBuf,
    /// Address space a render may add to the worker's own (Linux; other systems ignore it).
    pub memory_bytes: u64,
    /// Longest a render may take, from sending the job to reading the prompt.
    pub time_limit: Duration,
    /// Most workers at once (idle or rendering); a render waits for one beyond that. Bounds
    /// the memory hostile renders can take together to `max_workers * memory_bytes`.
    pub max_workers: usize,
}

impl SandboxConfig {
    /// The defaults above (one worker per hardware thread at most), with `program` as the
    /// worker.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        SandboxConfig {
            program: program.into(),
            memory_bytes: DEFAULT_MEMORY_BYTES,
            time_limit: DEFAULT_TIME_LIMIT,
            max_workers: std::thread::available_parallelism()
                .map_or(DEFAULT_MAX_WORKERS, |n| n.get()),
        }
    }
}

/// Worker processes that render chat templates.
pub struct Sandbox {
    #[cfg(unix)]
    pool: pool::Pool,
    config: SandboxConfig,
}

static INSTALLED: OnceLock<Sandbox> = OnceLock::new();

/// Makes every later render in this process run in a worker started from `config`. Returns
/// false when a sandbox was installed already (the first one stays) or the platform has none.
pub fn install(config: SandboxConfig) -> bool {
    if !cfg!(unix) {
        return false;
    }
    let mut fresh = false;
    INSTALLED.get_or_init(|| {
        fresh = true;
        Sandbox::new(config)
    });
    fresh
}

/// The installed sandbox, if any.
pub fn installed() -> Option<&'static Sandbox> {
    INSTALLED.get()
}

impl Sandbox {
    fn new(config: SandboxConfig) -> Self {
        Sandbox {
            #[cfg(unix)]
            pool: pool::Pool::new(config.clone()),
            config,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Worker processes that exist now, idle or rendering (at most
    /// [`SandboxConfig::max_workers`]).
    pub fn workers(&self) -> usize {
        #[cfg(unix)]
        {
            self.pool.live()
        }
        #[cfg(not(unix))]
        {
            0
        }
    }

    /// Renders `source` with `ctx` in a worker: the prompt and the fuel used, or the render's
    /// error. `None` when no worker could be started (the caller renders in-process).
    pub fn render(
        &self,
        source: &str,
        clock: Clock,
        ctx: &Map<String, Json>,
    ) -> Option<Result<(String, u64), TemplateError>> {
        #[cfg(unix)]
        {
            let job = wire::JobRef {
                source,
                clock: wire::clock_text(clock),
                ctx,
            };
            self.pool.render(&job)
        }
        #[cfg(not(unix))]
        {
            let _ = (source, clock, ctx);
            None
        }
    }
}
