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
