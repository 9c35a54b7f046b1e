//! Kubernetes resource quantities, as far as the namespace quota needs them:
//! CPU in millicores, memory in bytes, and back.
//!
//! | written | CPU (millicores) | memory (bytes) |
//! |---|---|---|
//! | `250m` | 250 | — (a milli-byte is no size) |
//! | `1`, `0.5` | 1000, 500 | 1, — |
//! | `128Mi`, `1Gi`, `64Ki`, `1Ti` | — | powers of 1024 |
//! | `128M`, `1G`, `64k`, `1T` | — | powers of 1000 |

/// CPU millicores of `text`, or `None` when it is not a CPU quantity.
pub fn cpu_millis(text: &str) -> Option<u64> {
    if let Some(m) = text.strip_suffix('m') {
        return m.parse().ok();
    }
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let frac: u64 = if frac.is_empty() { 0 } else { format!("{frac:0<3}").parse().ok()? };
    whole.checked_mul(1000)?.checked_add(frac)
}

/// Bytes of `text`, or `None` when it is not a memory quantity.
pub fn memory_bytes(text: &str) -> Option<u64> {
    const SUFFIXES: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (number, factor) =
        SUFFIXES.iter().find_map(|(s, f)| text.strip_suffix(s).map(|n| (n, *f))).unwrap_or((text, 1));
    number.parse::<u64>().ok()?.checked_mul(factor)
}

/// `1500` → `1500m`; whole cores are written as millicores too, so sums
/// stay exact and comparable.
pub fn format_cpu(millis: u64) -> String {
    format!("{millis}m")
}

/// Bytes as `Mi` when they divide evenly, else plain bytes.
pub fn format_memory(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) { format!("{}Mi", bytes >> 20) } else { bytes.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_forms() {
        assert_eq!(cpu_millis("250m"), Some(250));
        assert_eq!(cpu_millis("1"), Some(1000));
        assert_eq!(cpu_millis("0.5"), Some(500));
        assert_eq!(cpu_millis("1.25"), Some(1250));
        assert_eq!(cpu_millis("1.2345"), None);
        assert_eq!(cpu_millis("one"), None);
        assert_eq!(cpu_millis("128Mi"), None);
    }

    #[test]
    fn memory_forms() {
        assert_eq!(memory_bytes("128Mi"), Some(128 << 20));
        assert_eq!(memory_bytes("1Gi"), Some(1 << 30));
        assert_eq!(memory_bytes("1G"), Some(1_000_000_000));
        assert_eq!(memory_bytes("512"), Some(512));
        assert_eq!(memory_bytes("250m"), None);
        assert_eq!(memory_bytes("lots"), None);
        assert_eq!(format_memory(384 << 20), "384Mi");
        assert_eq!(format_memory(1_000_000_000), "1000000000");
        assert_eq!(format_cpu(1250), "1250m");
    }
}
