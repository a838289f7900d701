//! Process-wide libtorch setup: the device to train on (loading the CUDA backend when
//! asked) and the allocator settings a training process wants.

use tch::Device;

use crate::error::TrainError;

/// Resolves `cpu`, `cuda` or `cuda:N`. For CUDA, libtorch's CUDA library is loaded first:
/// the binary links only `libtorch_cpu`, so without this libtorch would not see the GPU.
pub fn device(name: &str) -> Result<Device, TrainError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let idx: usize = match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map_err(|_| {
                    TrainError::Invalid(format!("--device {s}: expected cuda or cuda:N"))
                })?,
                None => 0,
            };
            load_torch_cuda();
            if !tch::Cuda::is_available() {
                return Err(TrainError::Invalid(
                    "--device cuda: libtorch sees no CUDA device (is libtorch_cuda.so next to libtorch_cpu.so, with its CUDA libraries on LD_LIBRARY_PATH?)".into(),
                ));
            }
            // Fixed input shapes: let cuDNN pick the fastest convolution algorithms.
            tch::Cuda::cudnn_set_benchmark(true);
            Ok(Device::Cuda(idx))
        }
        other => Err(TrainError::Invalid(format!(
            "--device {other}: expected cpu, cuda or cuda:N"
        ))),
    }
}

/// Loads `libtorch_cuda.so` into the process so libtorch registers its CUDA backend.
#[allow(unsafe_code)]
fn load_torch_cuda() {
    let name = c"libtorch_cuda.so";
    // SAFETY: dlopen with a valid NUL-terminated name and standard flags; the handle is
    // intentionally never closed (the library must stay loaded for the process lifetime).
    unsafe {
        libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
    }
}

/// Keeps the memory a training step frees inside the process for the next step.
///
/// libtorch allocates CPU tensors with glibc's malloc. With glibc's defaults the freed
/// activations at the top of the heap exceed the (dynamic) trim threshold at the end of
/// every step, so the heap is shrunk with `brk` and regrown in the next step: in
/// snl-train's ResNet-20 step (batch 128) that was about 26 `brk` calls and 42,000 page
/// faults (165 MB of pages zeroed by the kernel) per step, several percent of the step.
/// A Python process running the same step keeps its heap at its peak (no `brk` calls
/// between steps, presumably because long-lived Python objects sit at its top), so this
/// was most of snl-train's gap to PyTorch (docs/training.md).
///
/// This raises the trim threshold to 1 GiB and fixes the mmap threshold at glibc's
/// largest, 32 MiB (setting either turns glibc's dynamic adjustment off, which would
/// otherwise leave the mmap threshold at 128 KiB and map every tensor afresh). Tensors of
/// 32 MiB and more are still mapped and unmapped each time, as in PyTorch. The cost is
/// that up to 1 GiB of freed memory stays in the process between steps, which a training
/// run reuses in its next step anyway. If `MALLOC_TRIM_THRESHOLD_` or
/// `MALLOC_MMAP_THRESHOLD_` is set, the environment's choice is kept. Call it once, at the
/// start of the process, before libtorch allocates. Does nothing on non-glibc targets.
#[allow(unsafe_code)]
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
            || std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
        {
            return;
        }
        // SAFETY: mallopt only changes glibc malloc's tuning parameters; both values are
        // in the ranges glibc accepts (the mmap threshold at most 32 MiB on 64-bit).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}
