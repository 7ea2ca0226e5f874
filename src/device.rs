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
            return cuda_device(n);
        }
        _ => {}
    }
    load_cuda_backend();
    if tch::Cuda::is_available() {
        cuda_device(0)
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

/// CUDA device `n`, with cuDNN's benchmark mode on: the lesson's fixed input size lets cuDNN
/// time its convolution algorithms once and keep the fastest (PyTorch's
/// `torch.backends.cudnn.benchmark = True`, which fastai sets).
fn cuda_device(n: usize) -> Device {
    tch::Cuda::cudnn_set_benchmark(true);
    Device::Cuda(n)
}

/// A host tensor on `device`: on CUDA through pinned (page-locked) memory with a non-blocking
/// copy, so the loader's threads hand batches over without waiting for the GPU; elsewhere a
/// plain move.
pub fn to_device_async(t: tch::Tensor, device: Device) -> tch::Tensor {
    if device.is_cuda() && t.device() == Device::Cpu {
        let kind = t.kind();
        t.pin_memory(device).to_device_(device, kind, true, false)
    } else {
        t.to_device(device)
    }
}

/// The GPU memory this process holds, as `nvidia-smi` reports it (`"2114 MiB of 143771 MiB
/// on NVIDIA H200"`); `None` without a GPU or without `nvidia-smi`.
pub fn gpu_memory_used() -> Option<String> {
    let run = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("nvidia-smi").args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let pid = std::process::id().to_string();
    let apps = run(&["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])?;
    let used: u64 = apps
        .lines()
        .filter_map(|l| l.split_once(','))
        .filter(|(p, _)| p.trim() == pid)
        .filter_map(|(_, m)| m.trim().parse::<u64>().ok())
        .sum();
    let gpu = run(&["--query-gpu=name,memory.total", "--format=csv,noheader,nounits"])?;
    let (name, total) = gpu.lines().next()?.split_once(',')?;
    Some(format!("{used} MiB of {} MiB on {}", total.trim(), name.trim()))
}
