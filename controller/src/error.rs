//! Domain errors of the controller, and the one place that maps them to gRPC statuses.

/// Everything that can go wrong in the controller's core and service.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The request's join token is missing or wrong.
    #[error("wrong or missing join token")]
    Unauthenticated,
    /// A request field is invalid; `field` is its path in the request (`spec.all_reduce.factor`).
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// Path of the field in the request.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No job with this id.
    #[error("unknown job '{0}'")]
    UnknownJob(String),
    /// No node with this id (register first).
    #[error("unknown node '{0}': register first")]
    UnknownNode(String),
    /// A live node holds this name with another key.
    #[error(
        "node name '{0}' belongs to a live node with another key: a node re-registers with its own key, or after the old one is declared dead"
    )]
    NameTaken(String),
    /// A node reported on a job it does not take part in.
    #[error("node '{node_id}' does not take part in job '{job_id}'")]
    NotParticipant {
        /// The reporting node.
        node_id: String,
        /// The job.
        job_id: String,
    },
    /// The node was declared dead or left; it must register again.
    #[error("node '{0}' was declared dead or left: register again")]
    NodeNotMember(String),
    /// Making, reading or signing a certificate or key failed.
    #[error("certificate: {what}: {source}")]
    Certificate {
        /// Which certificate or file (`CA key`, `ca.pem`, `name 'node-1'`, ...).
        what: String,
        /// What rcgen said.
        source: rcgen::Error,
    },
    /// Reading or writing the state dir failed.
    #[error("state dir {path}: {message}")]
    State {
        /// File concerned.
        path: String,
        /// What failed.
        message: String,
    },
    /// The controller is shutting down.
    #[error("the controller is shutting down")]
    ShuttingDown,
    /// A node was started with another time dilation than the controller's.
    #[error("time_dilation: {0}")]
    TimeDilation(#[from] spacefabric_proto::time_dilation::TimeDilationMismatch),
}

/// Longest piece of client input an error quotes, bytes.
pub const MAX_QUOTED_INPUT: usize = 64;
/// Longest error message the controller sends, bytes.
pub const MAX_ERROR_MESSAGE: usize = 1024;

/// `input` as an error may quote it: at most [`MAX_QUOTED_INPUT`] bytes (cut at a character
/// boundary), with the full length said when it was cut.
pub fn bounded(input: &str) -> String {
    bounded_to(input, MAX_QUOTED_INPUT)
}

fn bounded_to(input: &str, max: usize) -> String {
    if input.len() <= max {
        return input.to_string();
    }
    let mut end = max;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &input[..end], input.len())
}

impl ControllerError {
    /// An [`ControllerError::InvalidArgument`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<ControllerError> for tonic::Status {
    fn from(err: ControllerError) -> Self {
        let message = bounded_to(&err.to_string(), MAX_ERROR_MESSAGE);
        match err {
            ControllerError::Unauthenticated => Self::unauthenticated(message),
            ControllerError::InvalidArgument { .. } => Self::invalid_argument(message),
            ControllerError::UnknownJob(_) | ControllerError::UnknownNode(_) => {
                Self::not_found(message)
            }
            ControllerError::NodeNotMember(_) | ControllerError::TimeDilation(_) => {
                Self::failed_precondition(message)
            }
            ControllerError::NotParticipant { .. } => Self::permission_denied(message),
            ControllerError::NameTaken(_) => Self::already_exists(message),
            ControllerError::Certificate { .. } | ControllerError::State { .. } => {
                Self::internal(message)
            }
            ControllerError::ShuttingDown => Self::unavailable(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_quote_a_bounded_prefix_of_the_input() {
        let id = "x".repeat(100_000);
        let status = tonic::Status::from(ControllerError::UnknownJob(bounded(&id)));
        assert!(status.message().len() < 200, "{}", status.message().len());
        assert!(
            status.message().contains("100000 bytes"),
            "{}",
            status.message()
        );
        let reason = "é".repeat(10_000);
        let status = tonic::Status::from(ControllerError::invalid("spec.name", reason));
        assert!(status.message().len() <= MAX_ERROR_MESSAGE + 32);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
}
