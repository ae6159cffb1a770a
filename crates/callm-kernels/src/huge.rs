//! Memory for packed weight lines, on transparent huge pages.
//!
//! A decode step reads every weight once: with 4 KiB pages that is a TLB miss and a page walk
//! every 4 KiB of the stream (tens of thousands per step), which the prefetchers do not hide.
//! Linux backs a range with 2 MiB pages when it is advised so (`MADV_HUGEPAGE`) before it is
//! first touched, which is what most distributions' default THP mode (`madvise`) requires.
//! Small models' matrices are far below 2 MiB (SmolLM2's are 0.2-0.6 MB), so the lines of many
//! matrices are carved out of shared 32 MiB chunks ([`Lines::zeroed`]), each one mapping
//! aligned to 2 MiB and advised before any write; a matrix of half a chunk or more gets a
//! mapping of its own. A chunk is unmapped when its last matrix is dropped; the chunk being
//! filled is reused from its start once no matrix holds any of it. Where mapping or advising
//! fails, or off Linux, the lines live in a plain vector: the hint is only a hint.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use crate::pack::Line;

/// Bytes of a shared chunk.
const CHUNK_BYTES: usize = 32 << 20;
/// A huge page.
#[cfg(target_os = "linux")]
const HUGE: usize = 2 << 20;

/// `len` zeroed lines of one matrix, in a chunk (shared or its own).
pub(crate) struct Lines {
    chunk: Arc<Chunk>,
    start: usize,
    len: usize,
}

impl Lines {
    /// `n` lines, all zero.
    pub(crate) fn zeroed(n: usize) -> Lines {
        let bytes = n.saturating_mul(size_of::<Line>());
        if n == 0 || bytes >= CHUNK_BYTES / 2 {
            return Lines {
                chunk: Arc::new(Chunk::new(n)),
                start: 0,
                len: n,
            };
        }
        // A poisoned lock only means another thread panicked while holding it; the state
        // (a chunk and how much of it is handed out) is valid at every point.
        let mut cur = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        let per_chunk = CHUNK_BYTES / size_of::<Line>();
        if let Some(Current {
            chunk,
            used,
            written,
        }) = cur.as_mut()
        {
            if Arc::strong_count(chunk) == 1 {
                // No matrix holds any of it: start over (the lines written before are zeroed
                // below).
                *used = 0;
            }
            if *used + n <= chunk.lines {
                let mut l = Lines {
                    chunk: chunk.clone(),
                    start: *used,
                    len: n,
                };
                // Only lines handed out before can hold anything: the rest of the mapping is
                // still untouched zero pages, whose first write belongs to the packing (which
                // runs in parallel).
                let dirty = written.saturating_sub(*used).min(n);
                l[..dirty].fill(Line([0; 64]));
                *used += n;
                *written = (*written).max(*used);
                return l;
            }
        }
        let chunk = Arc::new(Chunk::new(per_chunk));
        *cur = Some(Current {
            chunk: chunk.clone(),
            used: n,
            written: n,
        });
        Lines {
            chunk,
            start: 0,
            len: n,
        }
    }
}

/// The shared chunk being filled.
struct Current {
    chunk: Arc<Chunk>,
    /// Lines handed out since the chunk was last started over.
    used: usize,
    /// Lines ever handed out: the ones past it were never written.
    written: usize,
}

static CURRENT: Mutex<Option<Current>> = Mutex::new(None);

impl Deref for Lines {
    type Target = [Line];
    fn deref(&self) -> &[Line] {
        // SAFETY: `start + len <= chunk.lines` (every `Lines` is made so), the chunk's lines
        // are initialized (zeroed memory or a zeroed vector; any bytes are a valid `Line`) and
        // live as long as the `Arc` this holds.
        unsafe { std::slice::from_raw_parts(self.chunk.base.add(self.start), self.len) }
    }
}

impl DerefMut for Lines {
    fn deref_mut(&mut self) -> &mut [Line] {
        // SAFETY: as for `deref`; and no two `Lines` share a line (the arena hands each range
        // out once, and reuses a chunk only when no `Lines` holds it), so `&mut self` is the
        // only access to these.
        unsafe { std::slice::from_raw_parts_mut(self.chunk.base.add(self.start), self.len) }
    }
}

impl std::fmt::Debug for Lines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lines({})", self.len)
    }
}

/// Zeroed memory for `lines` lines: an advised anonymous mapping, or a vector.
struct Chunk {
    base: *mut Line,
    lines: usize,
    /// The mapping to unmap (its address and length), when it is one.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    map: Option<(usize, usize)>,
    /// The vector, when it is one.
    _vec: Vec<Line>,
}

// SAFETY: a chunk is plain memory; who may write which lines is decided by `Lines`, each
// range owned by one `Lines` (see `deref_mut`).
unsafe impl Send for Chunk {}
// SAFETY: as above.
unsafe impl Sync for Chunk {}

impl Chunk {
    fn new(lines: usize) -> Chunk {
        #[cfg(target_os = "linux")]
        if let Some(c) = Chunk::mapped(lines) {
            return c;
        }
        let mut v = vec![Line([0; 64]); lines];
        Chunk {
            base: v.as_mut_ptr(),
            lines,
            map: None,
            _vec: v,
        }
    }

    /// An anonymous mapping with room for `lines` lines from a 2 MiB boundary, advised for
    /// huge pages before anything touches it (its pages read as zero).
    #[cfg(target_os = "linux")]
    fn mapped(lines: usize) -> Option<Chunk> {
        let bytes = lines.checked_mul(size_of::<Line>())?.next_multiple_of(4096);
        if bytes < HUGE {
            return None;
        }
        let len = bytes.checked_add(HUGE)?;
        // SAFETY: a new private anonymous mapping; no existing memory is affected.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return None;
        }
        let base = (addr as usize).next_multiple_of(HUGE);
        // SAFETY: `[base, base + bytes)` lies inside the mapping just made (`len` has a huge
        // page of slack for the alignment). A refusal only leaves 4 KiB pages.
        let _ = unsafe { libc::madvise(base as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE) };
        Some(Chunk {
            base: base as *mut Line,
            lines,
            map: Some((addr as usize, len)),
            _vec: Vec::new(),
        })
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some((addr, len)) = self.map {
            // SAFETY: the mapping this chunk made, unmapped once (no `Lines` is left: each
            // holds the `Arc`).
            unsafe { libc::munmap(addr as *mut libc::c_void, len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_zeroed_disjoint_and_reused_once_free() {
        // Several matrices share a chunk; each sees only its own lines.
        let mut a = Lines::zeroed(1000);
        let mut b = Lines::zeroed(3);
        assert!(a.iter().chain(b.iter()).all(|l| l.0 == [0; 64]));
        a.fill(Line([1; 64]));
        b.fill(Line([2; 64]));
        assert!(a.iter().all(|l| l.0 == [1; 64]));
        assert!(b.iter().all(|l| l.0 == [2; 64]));
        // Lines from a reused or new chunk read as zero, whatever was there before.
        drop((a, b));
        let c = Lines::zeroed(1003);
        assert!(c.iter().all(|l| l.0 == [0; 64]));
        // Written, freed, and handed out again with lines never written after them (only the
        // written ones are cleared).
        let mut d = Lines::zeroed(500);
        d.fill(Line([3; 64]));
        drop(d);
        let e = Lines::zeroed(2000);
        assert!(e.iter().all(|l| l.0 == [0; 64]));
        drop(e);
        // A large matrix gets its own, zeroed too; an empty one is fine.
        let big = Lines::zeroed(CHUNK_BYTES / 64 + 5);
        assert_eq!(big.len(), CHUNK_BYTES / 64 + 5);
        assert!(big.iter().step_by(997).all(|l| l.0 == [0; 64]));
        assert!(Lines::zeroed(0).is_empty());
        // Alignment: the kernels load lines with aligned loads.
        assert_eq!(c.as_ptr() as usize % 64, 0);
        assert_eq!(big.as_ptr() as usize % 64, 0);
    }
}
