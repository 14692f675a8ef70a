//! Which EGL device is the CUDA device `--gpu N` (pure; no EGL or CUDA needed).
//!
//! Rendering on one GPU and encoding on another would move every frame across PCIe twice, and the
//! zero-copy path cannot register a texture from another GPU at all. So on NVIDIA's EGL device
//! platform the renderer picks the device that *is* the chosen CUDA device, matched by:
//! 1. the PCI bus id (sysfs, through `EGL_EXT_device_drm`'s device file, against
//!    `cuDeviceGetPCIBusId`): stable whatever `CUDA_VISIBLE_DEVICES` says;
//! 2. else `EGL_CUDA_DEVICE_NV` (`EGL_NV_device_cuda`) against the CUDA ordinal.

use std::fmt;

/// A PCI address, `domain:bus:device.function`, parsed so that `0000:3B:00.0` (CUDA),
/// `00000000:3B:00.0` (nvidia-smi) and `0000:3b:00.0` (sysfs) compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciAddress {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl PciAddress {
    pub fn parse(s: &str) -> Option<PciAddress> {
        let s = s.trim();
        let (rest, function) = s.rsplit_once('.')?;
        let mut parts = rest.rsplitn(3, ':');
        let device = parts.next()?;
        let bus = parts.next()?;
        let domain = parts.next().unwrap_or("0");
        Some(PciAddress {
            domain: u32::from_str_radix(domain, 16).ok()?,
            bus: u8::from_str_radix(bus, 16).ok()?,
            device: u8::from_str_radix(device, 16).ok()?,
            function: u8::from_str_radix(function, 16).ok()?,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{:x}", self.domain, self.bus, self.device, self.function)
    }
}

/// What an EGL device says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EglIds {
    /// `EGL_CUDA_DEVICE_NV`, on NVIDIA devices.
    pub cuda: Option<i64>,
    /// From the device's DRM file, where it has one and sysfs knows it.
    pub pci: Option<PciAddress>,
}

/// The CUDA device to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudaIds {
    pub ordinal: u32,
    pub pci: Option<PciAddress>,
}

/// The index of the EGL device that is `cuda`, with how it was matched (for the log), or why none is.
pub fn match_device(devices: &[EglIds], cuda: &CudaIds) -> Result<(usize, String), String> {
    if let Some(pci) = cuda.pci {
        let hits: Vec<usize> = (0..devices.len()).filter(|&i| devices[i].pci == Some(pci)).collect();
        if let [i] = hits[..] {
            return Ok((i, format!("PCI bus id {pci}")));
        }
    }
    let hits: Vec<usize> = (0..devices.len()).filter(|&i| devices[i].cuda == Some(i64::from(cuda.ordinal))).collect();
    match hits[..] {
        [i] => Ok((i, format!("EGL_CUDA_DEVICE_NV {}", cuda.ordinal))),
        [] => {
            let listed: Vec<String> = devices
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let cuda = d.cuda.map_or("-".to_string(), |c| c.to_string());
                    let pci = d.pci.map_or("-".to_string(), |p| p.to_string());
                    format!("{i}: CUDA {cuda}, PCI {pci}")
                })
                .collect();
            Err(format!(
                "no EGL device is CUDA device {}{} (EGL devices: {})",
                cuda.ordinal,
                cuda.pci.map(|p| format!(" at PCI {p}")).unwrap_or_default(),
                if listed.is_empty() { "none".to_string() } else { listed.join("; ") }
            ))
        }
        _ => Err(format!("EGL devices {hits:?} all say they are CUDA device {}", cuda.ordinal)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pci(s: &str) -> Option<PciAddress> {
        Some(PciAddress::parse(s).unwrap())
    }

    #[test]
    fn pci_addresses_from_cuda_nvidia_smi_and_sysfs_compare_equal() {
        assert_eq!(pci("0000:3B:00.0"), pci("00000000:3b:00.0"));
        assert_eq!(pci("3b:00.0"), pci("0000:3B:00.0"), "no domain = domain 0");
        assert_eq!(PciAddress::parse("0001:af:1f.7").unwrap().to_string(), "0001:af:1f.7");
        assert_ne!(pci("0000:3b:00.0"), pci("0000:3c:00.0"));
        for bad in ["", "3b", "zz:00.0", "0000:3b:00", "0000:3b:100.0"] {
            assert_eq!(PciAddress::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn matches_by_pci_even_when_cuda_ordinals_are_renumbered() {
        // CUDA_VISIBLE_DEVICES=1: CUDA device 0 is the second GPU, which EGL may still call CUDA 1.
        let devices = [
            EglIds { cuda: Some(0), pci: pci("0000:17:00.0") },
            EglIds { cuda: Some(1), pci: pci("0000:65:00.0") },
            EglIds::default(), // Mesa's software device
        ];
        let (i, how) = match_device(&devices, &CudaIds { ordinal: 0, pci: pci("0000:65:00.0") }).unwrap();
        assert_eq!(i, 1);
        assert!(how.contains("PCI bus id 0000:65:00.0"), "{how}");
    }

    #[test]
    fn falls_back_to_the_cuda_attribute_without_pci_ids() {
        // In containers the NVIDIA EGL device often has no DRM file.
        let devices = [EglIds { cuda: Some(0), pci: None }, EglIds { cuda: Some(1), pci: None }];
        let (i, how) = match_device(&devices, &CudaIds { ordinal: 1, pci: pci("0000:65:00.0") }).unwrap();
        assert_eq!(i, 1);
        assert_eq!(how, "EGL_CUDA_DEVICE_NV 1");
    }

    #[test]
    fn no_match_is_an_error_that_lists_the_devices() {
        let devices = [EglIds { cuda: Some(0), pci: pci("0000:17:00.0") }, EglIds::default()];
        let e = match_device(&devices, &CudaIds { ordinal: 3, pci: None }).unwrap_err();
        assert!(e.starts_with("no EGL device is CUDA device 3"), "{e}");
        assert!(e.contains("0: CUDA 0, PCI 0000:17:00.0; 1: CUDA -, PCI -"), "{e}");
        assert!(match_device(&[], &CudaIds { ordinal: 0, pci: None }).unwrap_err().contains("none"));
        let twins = [EglIds { cuda: Some(0), pci: None }, EglIds { cuda: Some(0), pci: None }];
        assert!(match_device(&twins, &CudaIds { ordinal: 0, pci: None }).unwrap_err().contains("all say"));
    }
}
