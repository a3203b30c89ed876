//! Shard arithmetic that the controller's plan and the nodes share: how `0..total` is cut into
//! `parts` contiguous pieces. Said once, here, so that the range the controller ships and the
//! range a node's collective or optimiser works on cannot disagree.
//!
//! Pieces differ in size by at most one; the first `total % parts` are the longer ones.

use std::ops::Range;

/// Piece `index` of `parts` balanced contiguous pieces of `0..total`. `parts == 0` is taken as
/// one piece; an `index` past the last piece gives an empty range at `total`.
pub fn shard_of(total: u64, parts: usize, index: usize) -> Range<u64> {
    let parts = u64::try_from(parts.max(1)).unwrap_or(u64::MAX);
    let Ok(index) = u64::try_from(index) else {
        return total..total;
    };
    if index >= parts {
        return total..total;
    }
    let base = total / parts;
    let extra = total % parts;
    // index < parts, so index * base ≤ total and neither sum overflows.
    let start = index * base + index.min(extra);
    let len = base + u64::from(index < extra);
    start..start + len
}

/// All `parts` pieces of `0..total`, in order: they cover every index exactly once.
/// `parts == 0` gives no pieces.
pub fn even_split(total: u64, parts: usize) -> Vec<Range<u64>> {
    (0..parts).map(|i| shard_of(total, parts, i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_tile_the_range_and_differ_by_at_most_one() {
        for total in [0u64, 1, 7, 64, 1000, 1001] {
            for parts in 1..=9 {
                let pieces = even_split(total, parts);
                assert_eq!(pieces.len(), parts);
                let mut next = 0;
                for p in &pieces {
                    assert_eq!(p.start, next, "total {total} parts {parts}");
                    next = p.end;
                }
                assert_eq!(next, total);
                let lens: Vec<u64> = pieces.iter().map(|p| p.end - p.start).collect();
                let (min, max) = (lens.iter().min(), lens.iter().max());
                assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{lens:?}");
            }
        }
        assert!(even_split(10, 0).is_empty());
        assert_eq!(shard_of(10, 3, 7), 10..10);
    }
}
