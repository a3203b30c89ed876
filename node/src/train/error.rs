//! What can go wrong in training, typed: [`TrainError`] and its two families of refusals,
//! [`ConfigError`] (a configuration value that cannot work: which value, what it was, what it
//! must be) and [`ShapeError`] (vectors of the wrong length met: which vector, its length, the
//! length expected). Each variant carries the values, so a caller can match on what is wrong
//! and the text names it.

use std::ops::Range;

use super::checkpoint::CheckpointError;
use crate::collective::CollectiveError;
use crate::collective::cost::CostError;

/// Everything that can go wrong in training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration value is impossible (names the value).
    #[error("training configuration: {0}")]
    Config(#[from] ConfigError),
    /// Vectors of the wrong length met (names which).
    #[error("shape mismatch: {0}")]
    Shape(#[from] ShapeError),
    /// A collective operation failed.
    #[error("collective {op} failed: {detail}")]
    Collective {
        /// all_reduce, reduce_scatter, all_gather or broadcast.
        op: &'static str,
        /// What the collective layer said.
        detail: String,
    },
    /// candle refused a transformer operation.
    #[error("transformer: {0}")]
    Transformer(#[source] candle_core::Error),
    /// The streaming strategy waited for a synchronisation that was not started, or whose
    /// result was already taken (a bug in the strategy loop, not in the job).
    #[error("streaming: {0}")]
    Sync(SyncMissing),
    /// A checkpoint could not be decoded, stored or used to resume.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// Reading or writing a checkpoint file failed.
    #[error("checkpoint file {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The compute task on the blocking pool died.
    #[error("compute task failed: {0}")]
    Join(tokio::task::JoinError),
}

/// Which synchronisation of the streaming strategy was missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SyncMissing {
    /// None was in flight when the loop waited for one.
    #[error("no synchronisation in flight")]
    NotInFlight,
    /// One was in flight but had neither a result nor a future.
    #[error("synchronisation lost")]
    Lost,
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `CompressionConfig::density` outside (0, 1].
    #[error("compression density {density} must be in (0, 1]")]
    CompressionDensity {
        /// The density given.
        density: f32,
    },
    /// `CompressionConfig::bits` not one of the widths the codec packs.
    #[error("compression bits {bits} must be 2, 4, 8 or 32")]
    CompressionBits {
        /// The width given.
        bits: u32,
    },
    /// A model name that is neither `mlp` nor a transformer preset.
    #[error("unknown model {name:?}: expected mlp or one of {}", .presets.join(", "))]
    UnknownModel {
        /// The name given.
        name: String,
        /// The transformer presets known.
        presets: Vec<&'static str>,
    },
    /// A data shard with no sample in it.
    #[error("empty data shard {shard:?}")]
    EmptyDataShard {
        /// The shard (sample indices).
        shard: Range<u64>,
    },
    /// A rank whose share of the job's samples is empty.
    #[error("rank {rank}: empty data shard ({samples} samples over {world} ranks)")]
    EmptyRankShard {
        /// The rank.
        rank: usize,
        /// Samples in the job's data set.
        samples: u64,
        /// Ranks in the job.
        world: usize,
    },
    /// A data range longer than this machine can index.
    #[error("data range {range:?} too large")]
    DataRangeTooLarge {
        /// The range (sample indices).
        range: Range<u64>,
    },
    /// A training shard overlapping the held-out evaluation samples.
    #[error("data shard {shard:?} reaches into the held-out range (≥ {eval_base})")]
    ShardInHeldOut {
        /// The shard (sample indices).
        shard: Range<u64>,
        /// The first held-out index.
        eval_base: u64,
    },
    /// The transformer's vocabulary is not the corpus tokenizer's.
    #[error("model vocabulary {model} but the corpus has {corpus} characters")]
    VocabMismatch {
        /// `TransformerSpec::vocab`.
        model: usize,
        /// Distinct characters in the corpus.
        corpus: usize,
    },
    /// An MLP with a zero-sized input, output or hidden layer.
    #[error("model: input ({input}), output ({output}) and width ({width}) must be positive")]
    MlpSize {
        /// `MlpSpec::input`.
        input: usize,
        /// `MlpSpec::output`.
        output: usize,
        /// `MlpSpec::width`.
        width: usize,
    },
    /// The MLP's parameter count does not fit a `usize`.
    #[error("model: parameter count overflows (layer {layer}: {fan_in} × {fan_out})")]
    MlpTooLarge {
        /// The layer whose parameters overflowed the count.
        layer: usize,
        /// Its inputs.
        fan_in: usize,
        /// Its outputs.
        fan_out: usize,
    },
    /// A transformer with a zero dimension.
    #[error(
        "transformer: vocab ({vocab}), ctx ({ctx}), layers ({layers}), heads ({heads}) \
         and embd ({embd}) must be positive"
    )]
    TransformerSize {
        /// Tokens in the vocabulary.
        vocab: usize,
        /// Context length.
        ctx: usize,
        /// Blocks.
        layers: usize,
        /// Attention heads.
        heads: usize,
        /// Embedding width.
        embd: usize,
    },
    /// Attention heads that do not divide the embedding width.
    #[error("transformer: heads ({heads}) must divide embd ({embd})")]
    TransformerHeads {
        /// Attention heads.
        heads: usize,
        /// Embedding width.
        embd: usize,
    },
    /// A transformer past this trainer's limits.
    #[error(
        "transformer: shape too large for this trainer (vocab {vocab} ≤ 2^24, ctx {ctx} ≤ 2^20, \
         layers {layers} ≤ 2^10, embd {embd} ≤ 2^16)"
    )]
    TransformerTooLarge {
        /// Tokens in the vocabulary.
        vocab: usize,
        /// Context length.
        ctx: usize,
        /// Blocks.
        layers: usize,
        /// Embedding width.
        embd: usize,
    },
    /// A corpus byte outside ASCII.
    #[error("corpus: non-ASCII byte 0x{byte:02x} at offset {offset}")]
    CorpusNotAscii {
        /// The byte.
        byte: u8,
        /// Its offset in the corpus.
        offset: usize,
    },
    /// Text to encode with a byte the tokenizer does not know.
    #[error("text: byte 0x{byte:02x} at offset {offset} is not in the vocabulary")]
    NotInVocabulary {
        /// The byte.
        byte: u8,
        /// Its offset in the text.
        offset: usize,
    },
    /// A data shard outside the corpus's training text.
    #[error("data shard {shard:?} is outside the training text (0..{train_len})")]
    ShardOutsideText {
        /// The shard (character offsets).
        shard: Range<u64>,
        /// Characters of training text.
        train_len: usize,
    },
    /// A data shard shorter than one training window.
    #[error(
        "data shard {shard:?} holds {chars} characters, fewer than one window of {window} \
         (context + 1): use fewer ranks or a smaller context"
    )]
    ShardShorterThanWindow {
        /// The shard (character offsets).
        shard: Range<u64>,
        /// Characters in it.
        chars: usize,
        /// Characters in one window.
        window: usize,
    },
    /// Validation windows that the held-out text cannot give.
    #[error("validation text of {chars} characters cannot give {windows} windows of {window}")]
    ValidationWindows {
        /// Characters of validation text.
        chars: usize,
        /// Windows asked for.
        windows: usize,
        /// Characters in one window.
        window: usize,
    },
    /// `batch` zero, or `inner_steps` zero for a strategy with an outer step.
    #[error("batch ({batch}) and inner_steps ({inner_steps}) must be positive")]
    StepSizes {
        /// `TrainConfig::batch`.
        batch: usize,
        /// `StrategyConfig::inner_steps`.
        inner_steps: u64,
    },
    /// The hierarchical strategy without a site group.
    #[error("hierarchical strategy needs a site group")]
    NoSiteGroup,
    /// Streaming fragments more than the steps or parameters they divide.
    #[error(
        "fragments {fragments}: at most inner_steps ({inner_steps}) and the parameter count ({params})"
    )]
    Fragments {
        /// `StrategyConfig::fragments`.
        fragments: usize,
        /// `StrategyConfig::inner_steps`.
        inner_steps: u64,
        /// Parameters of the model.
        params: usize,
    },
    /// Streaming overlap not below the steps between two fragments' synchronisations.
    #[error("overlap {overlap} must be below inner_steps / fragments = {stride}")]
    Overlap {
        /// `StrategyConfig::overlap`.
        overlap: u64,
        /// `inner_steps / fragments`.
        stride: u64,
    },
    /// A sharded strategy's parameter shard outside the parameter vector.
    #[error("rank {rank}: parameter shard {shard:?} is outside the model's {params} parameters")]
    ParamShard {
        /// The rank.
        rank: usize,
        /// The shard it was handed.
        shard: Range<usize>,
        /// Parameters of the model.
        params: usize,
    },
    /// A sub-group that does not contain the rank building it.
    #[error("sub-group {group_id}: rank {rank} is not a member of {members:?}")]
    NotAMember {
        /// The group's tag byte.
        group_id: u8,
        /// The rank building it.
        rank: usize,
        /// The group's members.
        members: Vec<usize>,
    },
    /// A sub-group member outside the exchange it is cut from.
    #[error("sub-group {group_id}: member {member} outside the world of {world}")]
    MemberOutsideWorld {
        /// The group's tag byte.
        group_id: u8,
        /// The member.
        member: usize,
        /// Ranks in the exchange.
        world: usize,
    },
    /// A site list whose length is not the world's.
    #[error("{user}: {sites} site assignments for a world of {world}")]
    SiteCount {
        /// Who was handed the list (`groups`, `recovery`).
        user: &'static str,
        /// Entries in the list.
        sites: usize,
        /// Ranks in the world.
        world: usize,
    },
    /// The profile could not give a group's cost model.
    #[error("cost model: {0}")]
    CostModel(#[source] CostError),
    /// The communicator refused the group's cost model.
    #[error("collective group: {0}")]
    CollectiveGroup(#[source] CollectiveError),
}

/// Vectors of the wrong length met.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// A restored optimiser state of the wrong size.
    #[error(
        "optimizer state: buffers of {first} / {second} values, expected {want_first} / {want_second}"
    )]
    OptimizerState {
        /// First-moment (or momentum) values restored.
        first: usize,
        /// Second-moment values restored.
        second: usize,
        /// First-moment values the optimiser holds.
        want_first: usize,
        /// Second-moment values the optimiser holds.
        want_second: usize,
    },
    /// An optimiser step with parameters or gradients of the wrong length.
    #[error(
        "optimizer step: {params} parameters and {grads} gradients, optimizer sized for {sized_for}"
    )]
    OptimizerStep {
        /// Parameters given.
        params: usize,
        /// Gradients given.
        grads: usize,
        /// Values the optimiser was made for.
        sized_for: usize,
    },
    /// A vector for a compressor of another length.
    #[error("compressor: {got} values for a compressor of {len}")]
    Compressor {
        /// Values given.
        got: usize,
        /// The compressor's length.
        len: usize,
    },
    /// A compressed payload that does not decode.
    #[error("compressed payload: {0}")]
    Payload(PayloadFault),
    /// An exchange of compressed payloads whose slots do not add up.
    #[error("compressed exchange: {words_total} words for {ranks} slots of {words}")]
    CompressedExchange {
        /// Words received in all.
        words_total: usize,
        /// Ranks (slots).
        ranks: usize,
        /// Words per slot.
        words: usize,
    },
    /// This rank's compressed slot or payload is not one payload long.
    #[error("compressed slot of {slot} words, payload {payload}, expected {words}")]
    CompressedSlot {
        /// Words in this rank's slot.
        slot: usize,
        /// Words in its payload.
        payload: usize,
        /// Words a payload has.
        words: usize,
    },
    /// A parameter or gradient vector not of the model's size.
    #[error("{vector}: {got} values, {model} has {want}")]
    ParamVector {
        /// `parameters` or `gradient`.
        vector: &'static str,
        /// `model` (the MLP) or `transformer`.
        model: &'static str,
        /// Values given.
        got: usize,
        /// The model's parameter count.
        want: usize,
    },
    /// MLP inputs not `batch × input` long.
    #[error("inputs: {got} values for batch {batch} × {features} features")]
    Inputs {
        /// Values given.
        got: usize,
        /// Rows in the batch.
        batch: usize,
        /// `MlpSpec::input`.
        features: usize,
    },
    /// MLP targets not `batch × output` long.
    #[error("targets: {got} values for batch {batch} × {outputs} outputs")]
    Targets {
        /// Values given.
        got: usize,
        /// Rows in the batch.
        batch: usize,
        /// `MlpSpec::output`.
        outputs: usize,
    },
    /// Transformer inputs or targets not `batch × ctx` tokens (or an empty batch).
    #[error("tokens: {inputs} inputs and {targets} targets for batch {batch} × ctx {ctx}")]
    Tokens {
        /// Input tokens given.
        inputs: usize,
        /// Target tokens given.
        targets: usize,
        /// Windows in the batch.
        batch: usize,
        /// The transformer's context length.
        ctx: usize,
    },
    /// A token id past the vocabulary.
    #[error("token {token} outside the vocabulary of {vocab}")]
    TokenOutsideVocab {
        /// The token id.
        token: u32,
        /// Tokens in the vocabulary.
        vocab: usize,
    },
    /// A commit whose parameter vector is not the model's.
    #[error("resume: checkpoint has {checkpoint} parameters, model {model}")]
    ResumeParams {
        /// Parameters in the commit.
        checkpoint: usize,
        /// Parameters of the model.
        model: usize,
    },
    /// A sharded optimiser state not of its range's length.
    #[error("optimizer shard of {shard} values for a range of {range}")]
    OptimizerShard {
        /// Values in the shard.
        shard: usize,
        /// Length of the range it belongs to.
        range: usize,
    },
}

impl ShapeError {
    /// Refuses `model`'s `vector` (`parameters` or `gradient`) of `got` values when the model
    /// has `want` parameters.
    pub fn check_param_vector(
        vector: &'static str,
        model: &'static str,
        got: usize,
        want: usize,
    ) -> Result<(), Self> {
        if got == want {
            return Ok(());
        }
        Err(Self::ParamVector {
            vector,
            model,
            got,
            want,
        })
    }
}

impl ConfigError {
    /// Refuses a list of `sites` site assignments handed to `user` for a world of `world`.
    pub fn check_site_count(user: &'static str, sites: usize, world: usize) -> Result<(), Self> {
        if sites == world {
            return Ok(());
        }
        Err(Self::SiteCount { user, sites, world })
    }
}

/// What is wrong with a compressed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadFault {
    /// The output vector is not the payload's length.
    #[error("output length differs")]
    OutputLength,
    /// Fewer than the two header words.
    #[error("shorter than its header")]
    NoHeader,
    /// A count of entries past the vector's length.
    #[error("more entries than the vector")]
    TooManyEntries,
    /// Fewer index words than entries.
    #[error("indices cut short")]
    IndicesShort,
    /// Fewer value words than the entries need.
    #[error("values cut short")]
    ValuesShort,
    /// An index past the vector's end.
    #[error("index outside the vector")]
    IndexOutside,
}
