//! Which CPU this is: the label every benchmark figure carries.
//!
//! A GEMM figure means little without the core it ran on: the same build runs at different
//! fractions of peak on a Zen 2, a Zen 3 and a Zen 5 with the same AVX2 tier. [`Cpu::detect`]
//! reads the processor's own description with `cpuid` (vendor, brand string, family, model
//! and stepping, and the data-cache sizes), so `resflow info` and every `resflow bench`
//! report print it beside their figures. Nothing here chooses a kernel: dispatch stays in
//! [`Tier`](super::Tier), on the features the CPU reports.
//!
//! Cache sizes come from the deterministic cache parameters leaf (leaf 4 on Intel,
//! `0x8000_001D` on AMD, same layout): per cache, `ways x partitions x line size x sets`.
//! Under a hypervisor these are what the guest is shown, which is what it runs with.

use std::fmt;

/// One level of data (or unified) cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Cache {
    /// 1, 2 or 3.
    pub level: u32,
    /// Size in bytes of one instance (one core's L1d and L2; the L3 its core shares).
    pub bytes: u64,
}

/// What the processor says it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Cpu {
    /// `GenuineIntel`, `AuthenticAMD`, ... (empty off x86-64).
    pub vendor: String,
    /// The brand string, as `/proc/cpuinfo`'s "model name" (the architecture name off x86-64).
    pub brand: String,
    /// Display family (base family plus extended family), as Linux prints it.
    pub family: u32,
    /// Display model (extended model in the high nibble where the vendor uses it).
    pub model: u32,
    /// Stepping.
    pub stepping: u32,
    /// Data and unified caches, innermost first.
    pub caches: Vec<Cache>,
}

impl Cpu {
    /// Reads this CPU's description (on x86-64 with `cpuid`; elsewhere only the
    /// architecture's name).
    pub fn detect() -> Cpu {
        #[cfg(target_arch = "x86_64")]
        {
            detect_x86()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Cpu {
                vendor: String::new(),
                brand: std::env::consts::ARCH.to_string(),
                family: 0,
                model: 0,
                stepping: 0,
                caches: Vec::new(),
            }
        }
    }
}

impl fmt::Display for Cpu {
    /// `AMD EPYC (family 23, model 49, stepping 0; L1d 32 KiB, L2 512 KiB, L3 16 MiB)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.brand)?;
        if self.vendor.is_empty() {
            return Ok(());
        }
        write!(
            f,
            " (family {}, model {}, stepping {}",
            self.family, self.model, self.stepping
        )?;
        let mut sep = "; ";
        for c in &self.caches {
            let d = if c.level == 1 { "d" } else { "" };
            write!(f, "{sep}L{}{d} {}", c.level, size(c.bytes))?;
            sep = ", ";
        }
        write!(f, ")")
    }
}

/// `32 KiB`, `16 MiB`.
fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// Display family and model from leaf 1's EAX, as the vendors' manuals define them.
fn family_model(eax: u32) -> (u32, u32, u32) {
    let stepping = eax & 0xf;
    let base_model = (eax >> 4) & 0xf;
    let base_family = (eax >> 8) & 0xf;
    let ext_model = (eax >> 16) & 0xf;
    let ext_family = (eax >> 20) & 0xff;
    let family = if base_family == 0xf {
        base_family + ext_family
    } else {
        base_family
    };
    let model = if base_family == 0xf || base_family == 0x6 {
        (ext_model << 4) | base_model
    } else {
        base_model
    };
    (family, model, stepping)
}

/// One cache from a deterministic-cache-parameters subleaf, `None` for an instruction
/// cache or the end of the list (type 0).
fn cache_from(eax: u32, ebx: u32, ecx: u32) -> Option<Cache> {
    let kind = eax & 0x1f;
    if kind != 1 && kind != 3 {
        return None;
    }
    let ways = u64::from((ebx >> 22) & 0x3ff) + 1;
    let partitions = u64::from((ebx >> 12) & 0x3ff) + 1;
    let line = u64::from(ebx & 0xfff) + 1;
    let sets = u64::from(ecx) + 1;
    Some(Cache {
        level: (eax >> 5) & 0x7,
        bytes: ways * partitions * line * sets,
    })
}

#[cfg(target_arch = "x86_64")]
fn detect_x86() -> Cpu {
    use std::arch::x86_64::{__cpuid, __cpuid_count};

    let leaf0 = __cpuid(0);
    let vendor: Vec<u8> = [leaf0.ebx, leaf0.edx, leaf0.ecx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    let vendor = String::from_utf8_lossy(&vendor).trim().to_string();
    let (family, model, stepping) = if leaf0.eax >= 1 {
        family_model(__cpuid(1).eax)
    } else {
        (0, 0, 0)
    };
    let max_ext = __cpuid(0x8000_0000).eax;
    let brand = if max_ext >= 0x8000_0004 {
        let bytes: Vec<u8> = (0x8000_0002..=0x8000_0004u32)
            .flat_map(|leaf| {
                let r = __cpuid(leaf);
                [r.eax, r.ebx, r.ecx, r.edx]
            })
            .flat_map(|r| r.to_le_bytes())
            .take_while(|&b| b != 0)
            .collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    } else {
        vendor.clone()
    };
    // AMD describes its caches in 0x8000_001D (with topology extensions), Intel in leaf 4.
    let cache_leaf = if vendor == "AuthenticAMD" {
        (max_ext >= 0x8000_001D).then_some(0x8000_001D)
    } else {
        (leaf0.eax >= 4).then_some(4)
    };
    let mut caches = Vec::new();
    if let Some(leaf) = cache_leaf {
        // A real list ends with a type-0 entry after a handful; 16 bounds a broken one.
        for sub in 0..16 {
            let r = __cpuid_count(leaf, sub);
            if r.eax & 0x1f == 0 {
                break;
            }
            caches.extend(cache_from(r.eax, r.ebx, r.ecx));
        }
    }
    caches.sort_by_key(|c| c.level);
    Cpu {
        vendor,
        brand,
        family,
        model,
        stepping,
        caches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_and_model_as_linux_prints_them() {
        // AMD EPYC 7B12 (Zen 2): family 23, model 49, stepping 0.
        assert_eq!(family_model(0x0083_0F10), (23, 49, 0));
        // AMD EPYC Milan (Zen 3): family 25, model 1, stepping 1.
        assert_eq!(family_model(0x00A0_0F11), (25, 1, 1));
        // Intel Skylake-SP: family 6, model 85, stepping 4.
        assert_eq!(family_model(0x0005_0654), (6, 85, 4));
        // An old family-5 part: no extended fields.
        assert_eq!(family_model(0x0000_0543), (5, 4, 3));
    }

    #[test]
    fn cache_sizes_from_the_parameters() {
        // A 32 KiB, 8-way L1d with 64-byte lines: 64 sets.
        let l1d = cache_from(1 | (1 << 5), (7 << 22) | 63, 63).unwrap();
        assert_eq!(
            l1d,
            Cache {
                level: 1,
                bytes: 32 << 10
            }
        );
        // A 16 MiB, 16-way unified L3: 16384 sets.
        let l3 = cache_from(3 | (3 << 5), (15 << 22) | 63, 16383).unwrap();
        assert_eq!(
            l3,
            Cache {
                level: 3,
                bytes: 16 << 20
            }
        );
        // The instruction cache is not a data cache.
        assert_eq!(cache_from(2 | (1 << 5), (7 << 22) | 63, 63), None);
    }

    #[test]
    fn the_label_names_family_model_and_caches() {
        let cpu = Cpu {
            vendor: "AuthenticAMD".into(),
            brand: "AMD EPYC".into(),
            family: 23,
            model: 49,
            stepping: 0,
            caches: vec![
                Cache {
                    level: 1,
                    bytes: 32 << 10,
                },
                Cache {
                    level: 2,
                    bytes: 512 << 10,
                },
                Cache {
                    level: 3,
                    bytes: 16 << 20,
                },
            ],
        };
        assert_eq!(
            cpu.to_string(),
            "AMD EPYC (family 23, model 49, stepping 0; L1d 32 KiB, L2 512 KiB, L3 16 MiB)"
        );
        // Whatever this machine is, its label is not empty and names a first-level cache
        // when the CPU lists its caches.
        let here = Cpu::detect();
        assert!(!here.brand.is_empty());
        if !here.caches.is_empty() {
            assert_eq!(here.caches[0].level, 1);
            assert!(here.caches[0].bytes >= 4 << 10);
        }
    }
}
