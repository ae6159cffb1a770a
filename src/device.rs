//! Device selection (`--device cpu|cuda[:N]|metal`) and thread settings.

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
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    let mut out = None;
    rayon::scope(|_| out = Some(f()));
    // `rayon::scope` returns only after its closure ran.
    out.expect("rayon::scope ran the closure")
}

#[cfg(test)]
mod tests {
    use super::*;

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
