//! Stopping a fit gently. `fit` and `lr_find` check, after every batch, whether a stop was
//! asked for, and end there with the learner intact (weights, recorder, epoch count):
//!
//! - **SIGINT**: the notebook's stop button (the kernel's launcher, `scripts/kernel.py`, passes
//!   Jupyter's interrupt on to the process that runs the cells) or Ctrl-C on a terminal. While a
//!   fit runs, fastdet holds the SIGINT handler ([`SigintGuard`]); before and after, SIGINT does
//!   what it did before (in evcxr: the cells' process ends, as with evcxr's own interrupt);
//! - a [`StopFlag`] set from another thread: [`crate::learner::FitHandle::stop`] for a fit
//!   running in the background.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Set by the SIGINT handler; taken by the loops that hold a [`SigintGuard`].
static SIGINT_SEEN: AtomicBool = AtomicBool::new(false);

/// A stop request shared between a learner and whoever may stop it (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Ask the fit to stop after its current batch.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for (by this flag or by SIGINT), clearing the request.
    pub fn take(&self) -> bool {
        let mine = self.0.swap(false, Ordering::SeqCst);
        SIGINT_SEEN.swap(false, Ordering::SeqCst) || mine
    }

    /// Forget a request made before the fit began.
    pub fn clear(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

extern "C" fn on_sigint(_: libc::c_int) {
    SIGINT_SEEN.store(true, Ordering::SeqCst);
}

/// Guards nest (a background fit and a foreground `lr_find`): the outermost installs the
/// handler, the last one dropped puts the previous one back.
static DEPTH: AtomicUsize = AtomicUsize::new(0);
static PREVIOUS: Mutex<Option<libc::sigaction>> = Mutex::new(None);

/// While alive, SIGINT sets the stop request instead of ending the process.
pub struct SigintGuard(());

impl SigintGuard {
    pub fn install() -> Self {
        let mut prev = PREVIOUS.lock().unwrap_or_else(|e| e.into_inner());
        if DEPTH.fetch_add(1, Ordering::SeqCst) == 0 {
            SIGINT_SEEN.store(false, Ordering::SeqCst);
            // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic, which
            // is async-signal-safe; `old` receives the handler to restore.
            unsafe {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_sigint as *const () as libc::sighandler_t;
                libc::sigemptyset(&mut new.sa_mask);
                new.sa_flags = libc::SA_RESTART;
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(libc::SIGINT, &new, &mut old) == 0 {
                    *prev = Some(old);
                }
            }
        }
        SigintGuard(())
    }
}

impl Drop for SigintGuard {
    fn drop(&mut self) {
        let mut prev = PREVIOUS.lock().unwrap_or_else(|e| e.into_inner());
        if DEPTH.fetch_sub(1, Ordering::SeqCst) == 1 {
            if let Some(old) = prev.take() {
                // SAFETY: restoring the handler saved by `install`.
                unsafe {
                    libc::sigaction(libc::SIGINT, &old, std::ptr::null_mut());
                }
            }
        }
    }
}

/// Where a fit stopped when asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stopped {
    /// Epoch of this fit (0-based) and the batches of it that were trained.
    pub epoch: usize,
    pub batches: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigint_sets_the_flag_while_guarded_and_the_old_handler_comes_back() {
        let flag = StopFlag::default();
        // SIGINT ignored outside the guard, so this test process survives either way.
        unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
        {
            let _g = SigintGuard::install();
            let _inner = SigintGuard::install();
            assert!(!flag.take());
            unsafe { libc::raise(libc::SIGINT) };
            assert!(flag.take(), "SIGINT inside the guard is a stop request");
            assert!(!flag.take(), "a request is taken once");
        }
        let now = unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
        assert_eq!(now, libc::SIG_IGN, "the previous handler is back");
        flag.request();
        assert!(flag.take());
    }
}
