//! Choosing where tensors live: CUDA when a GPU is usable, else the CPU.
//!
//! With libtorch from the PyTorch pip wheel, the linker may drop `libtorch_cuda.so` (no symbol
//! of it is referenced directly), and then `tch::Cuda::is_available()` is false even on a GPU
//! machine. [`default_device`] therefore loads `libtorch_cuda.so` explicitly first: its static
//! initialisers register the CUDA backend with libtorch.

use std::sync::OnceLock;
use tch::Device;

/// Load `libtorch_cuda.so` once (from the loader's search path: `LD_LIBRARY_PATH`, rpath).
/// Returns whether it is loaded; harmless on machines without a GPU.
pub fn load_cuda_backend() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        let name = c"libtorch_cuda.so";
        // SAFETY: dlopen with a valid C string; the handle is deliberately never closed so the
        // backend stays registered for the life of the process.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        !handle.is_null()
    })
}

/// CUDA device 0 when a GPU is usable, else the CPU. `FASTDET_DEVICE=cpu` (or `cuda`, `cuda:N`)
/// overrides the choice.
pub fn default_device() -> Device {
    match std::env::var("FASTDET_DEVICE").ok().as_deref().map(str::trim) {
        Some("cpu") => return Device::Cpu,
        Some(s) if s.starts_with("cuda") => {
            load_cuda_backend();
            let n = s.strip_prefix("cuda:").and_then(|n| n.parse().ok()).unwrap_or(0);
            return Device::Cuda(n);
        }
        _ => {}
    }
    load_cuda_backend();
    if tch::Cuda::is_available() {
        Device::Cuda(0)
    } else {
        Device::Cpu
    }
}

/// A one-line description: `"cuda:0 (NVIDIA H200, 1 device)"` or `"cpu (4 threads)"`.
pub fn describe(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n} ({} CUDA device(s) visible)", tch::Cuda::device_count()),
        _ => format!("cpu ({} threads)", tch::get_num_threads()),
    }
}
