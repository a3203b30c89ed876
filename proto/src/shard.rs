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

/// Piece `index` of `parts` of a `len`-element vector, as indices into it: [`shard_of`] in
/// `usize`. The sharded training strategy's parameter shard and the collectives'
/// reduce-scatter result span (the node's `shard_span`) are both this range, so the shard the
/// plan hands a rank is the one its reduce-scatter leaves the sum in.
pub fn shard_of_len(len: usize, parts: usize, index: usize) -> Range<usize> {
    let r = shard_of(len as u64, parts, index);
    // Both ends are at most `len`, a usize.
    r.start as usize..r.end as usize
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
        for (len, parts) in [(10_001usize, 8usize), (3, 5), (0, 2)] {
            for index in 0..=parts {
                let wide = shard_of(len as u64, parts, index);
                let r = shard_of_len(len, parts, index);
                assert_eq!((r.start as u64, r.end as u64), (wide.start, wide.end));
            }
        }
        assert_eq!(shard_of(10, 3, 7), 10..10);
    }
}
