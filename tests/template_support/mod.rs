//! Shared helpers for the template robustness tests: fixtures, and running a test's body in a
//! child process under an address-space and a CPU-time limit.
//!
//! Included by `templates_hostile` and `templates_fuzz` with `#[path]`.
#![allow(dead_code)]

pub mod golden;

use std::path::{Path, PathBuf};
use std::process::Command;

const CHILD_ENV: &str = "CALLM_BOUNDED_CHILD";
/// Address space the child may add to what it has at start (code, test harness, arenas).
const CHILD_EXTRA_ADDRESS_SPACE: u64 = 768 << 20;
/// CPU seconds the child may use: a hang detector, far above any expected run time.
const CHILD_CPU_SECONDS: u64 = 120;
/// The stack of tokio's worker and blocking threads.
const RENDER_STACK: usize = 2 << 20;

/// Fixture root: `$CALLM_FIXTURES`, else `<manifest>/../shared/fixtures`.
pub fn fixtures() -> PathBuf {
    if let Some(p) = std::env::var_os("CALLM_FIXTURES") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let near = root.join("../shared/fixtures");
    if near.is_dir() {
        near
    } else {
        root.join("../../shared/fixtures")
    }
}

/// Runs `body` on a 2 MiB thread in a child process (this test binary, re-executed for test
/// `name` alone) under the limits above; fails if the child fails. A render that tried to
/// allocate gigabytes, overflowed its stack or looped for ever kills the child, not the machine.
pub fn bounded(name: &str, body: fn()) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        limit_this_process();
        let worker = std::thread::Builder::new()
            .stack_size(RENDER_STACK)
            .spawn(body)
            .unwrap();
        if let Err(e) = worker.join() {
            std::panic::resume_unwind(e);
        }
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} failed in its bounded child ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn limit_this_process() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let vm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let set = |resource, value: u64| {
        let lim = libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: setrlimit only reads the rlimit struct it is given.
        assert_eq!(unsafe { libc::setrlimit(resource, &lim) }, 0);
    };
    set(libc::RLIMIT_AS, vm_kb * 1024 + CHILD_EXTRA_ADDRESS_SPACE);
    set(libc::RLIMIT_CPU, CHILD_CPU_SECONDS);
}
