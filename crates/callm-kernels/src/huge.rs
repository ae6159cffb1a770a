//! Transparent huge pages for the large buffers the kernels stream.
//!
//! A decode step reads every weight once: with 4 KiB pages that is a TLB miss and a page walk
//! every 4 KiB of the stream (tens of thousands per step), which the prefetchers do not hide.
//! Linux backs a range with 2 MiB pages when it is advised so (`MADV_HUGEPAGE`) before it is
//! first touched, which is what most distributions' default (`madvise` mode) requires. A hint
//! only: where the kernel refuses or has THP off, nothing changes.

/// Ranges shorter than this are not advised: a huge page needs a whole aligned 2 MiB inside.
const MIN_BYTES: usize = 2 << 20;

/// Allocates `n` copies of `zero` in a vector whose memory Linux is asked to back with huge
/// pages (when the buffer is large enough for that to matter), before the values are written.
pub(crate) fn zeroed_vec<T: Copy>(n: usize, zero: T) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    advise(
        v.as_mut_ptr() as *mut u8,
        n.saturating_mul(std::mem::size_of::<T>()),
    );
    v.resize(n, zero);
    v
}

/// Advises the whole 4 KiB pages inside `[ptr, ptr + len)` for huge pages (Linux; elsewhere,
/// or for short ranges, nothing).
fn advise(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        if len < MIN_BYTES {
            return;
        }
        const PAGE: usize = 4096;
        let start = (ptr as usize).next_multiple_of(PAGE);
        let end = (ptr as usize + len) / PAGE * PAGE;
        if end <= start {
            return;
        }
        // SAFETY: the range lies inside one live allocation the caller owns (its capacity);
        // `MADV_HUGEPAGE` changes how pages are backed, never their contents or validity.
        let rc =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        // A refusal (THP off, an old kernel) only means 4 KiB pages, as without the call.
        let _ = rc;
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (ptr, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advised_vectors_hold_what_plain_ones_do() {
        for n in [0, 1, 1000, (8 << 20) / 64 + 3] {
            let v = zeroed_vec(n, [7u8; 64]);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|x| x == &[7u8; 64]));
        }
    }
}
