//! When row-wise elementwise work (activation quantization, norms, SwiGLU, rotary) is worth
//! handing to rayon's pool. In decode the pool's other workers are awake between a forward
//! pass's parallel calls (callm's `device::with_team`), so a few rows already pay: done on the
//! calling thread, this work left the other core waiting at every step of a batch. Each row is
//! computed on its own, by the same code, so how rows are split never changes a result.

/// Values below which a call stays on the calling thread.
const PAR_VALUES: usize = 2048;
/// Rows per task at most (prefill: the task's rows stay in L1/L2).
const MAX_ROWS_PER_TASK: usize = 16;

/// Rows per task for `rows` rows of `width` values, or `None` to run them on this thread.
pub(crate) fn rows_per_task(rows: usize, width: usize) -> Option<usize> {
    let threads = rayon::current_num_threads();
    if threads <= 1 || rows < 2 || rows.saturating_mul(width) < PAR_VALUES {
        return None;
    }
    Some(rows.div_ceil(2 * threads).clamp(1, MAX_ROWS_PER_TASK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_calls_stay_serial_and_tasks_cover_the_rows() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        pool.install(|| {
            assert_eq!(rows_per_task(1, 1 << 20), None);
            assert_eq!(rows_per_task(3, 100), None);
            assert_eq!(rows_per_task(8, 576), Some(2));
            assert_eq!(rows_per_task(512, 576), Some(MAX_ROWS_PER_TASK));
        });
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        one.install(|| assert_eq!(rows_per_task(64, 4096), None));
    }
}
