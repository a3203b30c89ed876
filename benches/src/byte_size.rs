//! Byte sizes on the command line (`-b 1K`, `--size 256M`): one parser for every bench, so
//! that `allreduce` and `transfer` accept the same spellings and report the same errors.

/// Parses `1024`, `1K`, `16M`, `1G` (binary multiples; `KB`/`KiB`, `MB`/`MiB`, `GB`/`GiB`
/// and a trailing `B` are accepted too, in any case) into bytes, with checked arithmetic.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, mult) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let mult = match t[i..].to_ascii_uppercase().as_str() {
                "K" | "KB" | "KIB" => 1u64 << 10,
                "M" | "MB" | "MIB" => 1 << 20,
                "G" | "GB" | "GIB" => 1 << 30,
                "B" => 1,
                other => {
                    return Err(format!(
                        "size '{s}': unknown suffix {other:?} (expected e.g. 1024, 1K, 16M, 1G)"
                    ));
                }
            };
            (&t[..i], mult)
        }
        None => (t, 1),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size (expected e.g. 1024, 1K, 16M, 1G)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size '{s}' is too large (at most 2^64 − 1 bytes)"))
}

/// [`parse_size`], refusing 0.
pub(crate) fn parse_nonzero_size(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err(format!("size '{s}' must be at least 1 byte")),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_multiples_and_refuse_junk() {
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("16KiB"), Ok(16 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size(" 2mb "), Ok(2 << 20));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("-1K").is_err());
        assert!(parse_size("99999999999999G").is_err());
        assert!(parse_nonzero_size("0").is_err());
        assert_eq!(parse_nonzero_size("256M"), Ok(256 << 20));
    }
}
