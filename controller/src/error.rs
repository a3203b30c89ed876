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
    /// The node was declared dead or left; it must register again.
    #[error("node '{0}' was declared dead or left: register again")]
    NodeNotMember(String),
    /// Signing the node's certificate failed.
    #[error("certificate: {0}")]
    Certificate(String),
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
        let message = err.to_string();
        match err {
            ControllerError::Unauthenticated => Self::unauthenticated(message),
            ControllerError::InvalidArgument { .. } => Self::invalid_argument(message),
            ControllerError::UnknownJob(_) | ControllerError::UnknownNode(_) => {
                Self::not_found(message)
            }
            ControllerError::NodeNotMember(_) => Self::failed_precondition(message),
            ControllerError::Certificate(_) | ControllerError::State { .. } => {
                Self::internal(message)
            }
            ControllerError::ShuttingDown => Self::unavailable(message),
        }
    }
}
