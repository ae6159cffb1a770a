//! Device selection (`--device cpu|cuda[:N]|metal`) and thread settings.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Device;

/// Errors choosing a device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The name is not one callm knows.
    #[error("unknown device '{0}': use cpu, cuda, cuda:N or metal")]
    Unknown(String),
    /// The backend was not compiled in.
    #[error("device '{0}' needs a callm built with `--features {1}`")]
    NotCompiled(String, &'static str),
    /// The backend failed to start.
    #[error("cannot open device '{0}': {1}")]
    Open(String, candle_core::Error),
}

/// Opens the named device; `None` or `"auto"` picks the best one compiled in
/// (CUDA, then Metal, then CPU).
pub fn select(name: Option<&str>) -> Result<Device, DeviceError> {
    let name = name.unwrap_or("auto").trim().to_ascii_lowercase();
    match name.as_str() {
        "auto" => {
            if cfg!(feature = "cuda") {
                if let Ok(d) = Device::new_cuda(0) {
                    return Ok(d);
                }
            }
            if cfg!(feature = "metal") {
                if let Ok(d) = Device::new_metal(0) {
                    return Ok(d);
                }
            }
            Ok(Device::Cpu)
        }
        "cpu" => Ok(Device::Cpu),
        "metal" => {
            if !cfg!(feature = "metal") {
                return Err(DeviceError::NotCompiled(name, "metal"));
            }
            Device::new_metal(0).map_err(|e| DeviceError::Open(name.clone(), e))
        }
        _ => {
            let idx = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| DeviceError::Unknown(name.clone()))?,
                None => return Err(DeviceError::Unknown(name)),
            };
            if !cfg!(feature = "cuda") {
                return Err(DeviceError::NotCompiled(name, "cuda"));
            }
            Device::new_cuda(idx).map_err(|e| DeviceError::Open(name.clone(), e))
        }
    }
}

/// Sets the number of CPU threads for every pool callm's compute uses: rayon's (dense
/// matmuls and elementwise ops) and candle's quantized-matmul workers (`CANDLE_NUM_THREADS`).
///
/// Must run before the first tensor operation. `None` keeps the defaults (physical cores),
/// unless `CALLM_THREADS` is set.
pub fn set_threads(n: Option<usize>) {
    let n = n
        .or_else(|| {
            std::env::var("CALLM_THREADS")
                .ok()
                .and_then(|s| s.parse().ok())
        })
        .filter(|&n| n > 0);
    if let Some(n) = n {
        // SAFETY (edition 2021: safe fn): called at startup before other threads read the environment.
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
        {
            tracing::debug!("rayon pool already set up: {e}");
        }
    }
}

/// Runs `f` on a worker of rayon's pool (the calling thread waits), so that the parallel
/// kernels inside it split their work with the other workers directly, instead of each one
/// waking the pool from outside and sleeping until it finishes. A model's forward pass runs
/// here: it holds hundreds of parallel matmuls per token.
///
/// While `f` runs, the pool's other workers stay awake ([`with_team`]), so each of those
/// parallel kernels starts at once instead of first waking a sleeping worker.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    let mut out = None;
    rayon::scope(|_| out = Some(with_team(f)));
    // `rayon::scope` returns only after its closure ran.
    out.expect("rayon::scope ran the closure")
}

/// Runs `f` on this worker while every other worker of the pool polls for the jobs `f`'s
/// parallel kernels create, until `f` returns (or unwinds).
///
/// Rayon puts an idle worker to sleep after a few dozen rounds without work, and waking it
/// takes a system call on each side: a forward pass has short serial stretches (norms, rope,
/// the cache writes) between its parallel matmuls, long enough for the other workers to fall
/// asleep, so without this most matmuls began by waking one (measured: 5-7% of a decode
/// step's CPU time in `futex` and the scheduler, more with more sequences per step). This is
/// what llama.cpp's thread pool does too: its threads spin between the operations of a graph.
/// The pollers only run jobs; which job runs where never changes a result (every kernel's
/// outputs are computed the same way whichever thread takes them).
fn with_team<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let helpers = rayon::current_num_threads().saturating_sub(1);
    if helpers == 0 {
        return f();
    }
    let done = AtomicBool::new(false);
    /// Sets the flag when `f` returns or unwinds: the pollers must never outlive it.
    struct Finish<'a>(&'a AtomicBool);
    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let mut out = None;
    rayon::scope(|s| {
        for _ in 0..helpers {
            s.spawn(|_| poll_until(&done));
        }
        let _finish = Finish(&done);
        out = Some(f());
    });
    out.expect("rayon::scope ran the closure")
}

/// Polls without giving up the CPU for this many rounds without work (about 100 µs), then
/// yields it to the OS between polls: where the cores are shared (other processes, more
/// threads than cores) a spinning thread must not keep a working one waiting for a time slice.
const SPIN_ROUNDS: u32 = 1024;

/// Runs the pool's pending jobs as they appear until `done` is set.
fn poll_until(done: &AtomicBool) {
    let mut idle = 0u32;
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle = 0;
        } else if idle < SPIN_ROUNDS {
            idle += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_pool_returns_the_value_and_unwinds_without_hanging() {
        use rayon::prelude::*;
        // The parallel work inside runs (on whichever worker) and gives the same answer.
        let sum = on_pool(|| (0..10_000u64).into_par_iter().sum::<u64>());
        assert_eq!(sum, 49_995_000);
        // A panic inside still releases the polling workers, and reaches the caller.
        let r = std::panic::catch_unwind(|| on_pool(|| -> u32 { panic!("inside") }));
        assert!(r.is_err());
        assert_eq!(on_pool(|| 7), 7);
    }

    #[test]
    fn parses_device_names() {
        assert!(select(Some("cpu")).unwrap().is_cpu());
        assert!(select(None).is_ok());
        assert!(matches!(select(Some("tpu")), Err(DeviceError::Unknown(_))));
        assert!(matches!(
            select(Some("cuda:x")),
            Err(DeviceError::Unknown(_))
        ));
        if !cfg!(feature = "cuda") {
            assert!(matches!(
                select(Some("cuda:1")),
                Err(DeviceError::NotCompiled(_, "cuda"))
            ));
        }
        if !cfg!(feature = "metal") {
            assert!(matches!(
                select(Some("metal")),
                Err(DeviceError::NotCompiled(_, "metal"))
            ));
        }
    }
}
