//! CUDA, loaded at run time through cudarc (`dynamic-loading`), so agentcast builds and runs where
//! there is no libcuda. All of the crate's CUDA `unsafe` lives under this module.
#![allow(unsafe_code)]

pub mod layout;

/// What CUDA looks like on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cuda {
    /// libcuda is not installed (no NVIDIA driver).
    Absent,
    /// libcuda loaded but failed to initialise (the reason).
    Broken(String),
    /// The number of CUDA devices.
    Devices(usize),
}

/// Probes CUDA without panicking when libcuda is absent (cudarc panics on first use otherwise).
pub fn probe() -> Cuda {
    // SAFETY: this only tries to dlopen the system's libcuda, which runs its initialisers; it is the
    // NVIDIA driver library made to be loaded so. No CUDA call is made unless it loaded.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Cuda::Absent;
    }
    match cudarc::driver::result::init() {
        Err(e) => Cuda::Broken(format!("{e:?}")),
        Ok(()) => match cudarc::driver::CudaContext::device_count() {
            Ok(n) => Cuda::Devices(usize::try_from(n).unwrap_or(0)),
            Err(e) => Cuda::Broken(format!("{e:?}")),
        },
    }
}
