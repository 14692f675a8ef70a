//! CUDA, loaded at run time through cudarc (`dynamic-loading`), so agentcast builds and runs where
//! there is no libcuda. All of the crate's CUDA `unsafe` lives under this module.
#![allow(unsafe_code)]

pub mod frames;
pub mod gst;
pub mod interop;
pub mod layout;

use crate::device::{CudaIds, PciAddress};

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

/// The CUDA device frames go to: the one `--gpu` names, else device 0 where there is CUDA; `None`
/// where there is no CUDA and none was asked for. The error names `--gpu`.
pub fn select(gpu: Option<u32>) -> Result<Option<CudaIds>, String> {
    let n = match (probe(), gpu) {
        (Cuda::Devices(n), _) => n,
        (Cuda::Absent, None) => return Ok(None),
        (Cuda::Broken(why), None) => {
            log::warn!("CUDA: libcuda is installed but does not initialise ({why}); rendering without CUDA");
            return Ok(None);
        }
        (Cuda::Absent, Some(g)) => {
            return Err(format!("--gpu {g}: there is no CUDA here (libcuda.so.1 is not installed)"));
        }
        (Cuda::Broken(why), Some(g)) => return Err(format!("--gpu {g}: CUDA does not initialise: {why}")),
    };
    let ordinal = gpu.unwrap_or(0);
    if ordinal as usize >= n {
        return Err(format!("--gpu {ordinal}: there are {n} CUDA device(s), numbered from 0"));
    }
    let pci = pci_bus_id(ordinal);
    log::info!(
        "CUDA: device {ordinal} of {n}{}{}",
        pci.map(|p| format!(", PCI {p}")).unwrap_or_default(),
        if gpu.is_none() { " (the default; --gpu picks another)" } else { "" }
    );
    Ok(Some(CudaIds { ordinal, pci }))
}

/// `cuDeviceGetPCIBusId` for an ordinal (CUDA initialised).
fn pci_bus_id(ordinal: u32) -> Option<PciAddress> {
    let device = cudarc::driver::result::device::get(ordinal as i32).ok()?;
    let mut buf = [0 as std::ffi::c_char; 32];
    // SAFETY: `buf` has room for the 13-byte id and its NUL (the length is passed), and `device` is a
    // valid handle from cuDeviceGet.
    let r = unsafe { cudarc::driver::sys::cuDeviceGetPCIBusId(buf.as_mut_ptr(), buf.len() as i32, device) };
    if r != cudarc::driver::sys::CUresult::CUDA_SUCCESS {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated string (and was zeroed beforehand).
    let id = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    PciAddress::parse(&id.to_string_lossy())
}

/// Whether GStreamer's CUDA library loads and finds libcuda (the zero-copy path's buffers).
pub fn gst_cuda_ready() -> Result<(), String> {
    let lib = gst::GstCuda::get()?;
    if lib.cuda_loads() { Ok(()) } else { Err(format!("{} cannot load libcuda", gst::LIBRARY)) }
}

/// Whether libcuda has the GL interop entry point the zero-copy path registers textures with.
pub fn gl_interop_ready() -> Result<(), String> {
    frames::gl_entry_points().map(|_| ())
}
