//! The defaults of an all-reduce job (nccl-tests' all_reduce_perf flags), in the one place
//! both sides read them: the bench's `-b -e -f -n -w -c --algo -d -o` defaults and the job it
//! submits, and the nodes that run it. An empty `datatypes` or `ops` in a job means the
//! defaults of [`crate::reduction`] (float, sum); the numeric fields have no "zero means
//! default" (the controller refuses 0 iterations, naming the field).

/// The default value of each all-reduce flag.
pub mod defaults {
    /// Smallest size, bytes per rank (`-b`, nccl-tests' default is 32 M; ours fits a light
    /// delay of a second per iteration).
    pub const MIN_BYTES: u64 = 1024;
    /// Largest size, bytes per rank (`-e`).
    pub const MAX_BYTES: u64 = 1 << 20;
    /// Multiplication factor between sizes (`-f`).
    pub const FACTOR: u32 = 4;
    /// Timed iterations per size (`-n`).
    pub const ITERATIONS: u32 = 5;
    /// Warm-up iterations per size (`-w`).
    pub const WARMUP: u32 = 1;
    /// Algorithms, comma-separated (`--algo`).
    pub const ALGORITHMS: &str = "ring,hd,tree,hier,auto";
    /// Check the results (`-c 1`).
    pub const CHECK: bool = true;
    /// Element type (`-d`): [`crate::reduction::DataTypeName::DEFAULT`]'s name.
    pub const DATATYPE: &str = "float";
    /// Reduction op (`-o`): [`crate::reduction::ReduceOpName::DEFAULT`]'s name.
    pub const OP: &str = "sum";

    // The default sweep steps from MIN_BYTES up to MAX_BYTES (checked when compiling).
    const _: () = assert!(MIN_BYTES <= MAX_BYTES && FACTOR >= 2);
}

#[cfg(test)]
mod tests {
    use super::defaults;
    use crate::algorithm::AlgorithmName;
    use crate::reduction::{DataTypeName, ReduceOpName};

    #[test]
    fn the_defaults_are_valid_names_and_agree_with_the_vocabularies() {
        assert_eq!(
            DataTypeName::parse(defaults::DATATYPE),
            Ok(DataTypeName::DEFAULT)
        );
        assert_eq!(ReduceOpName::parse(defaults::OP), Ok(ReduceOpName::DEFAULT));
        let all: Vec<&str> = AlgorithmName::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(defaults::ALGORITHMS, all.join(","));
    }
}
