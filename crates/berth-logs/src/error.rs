//! CloudWatch Logs' exceptions, each with the text CloudWatch uses where it has a fixed one.

use berth_api::ApiError;

/// Why a Logs operation was refused or failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogsError {
    /// The log group does not exist.
    #[error("The specified log group does not exist.")]
    GroupNotFound,
    /// The log stream does not exist.
    #[error("The specified log stream does not exist.")]
    StreamNotFound,
    /// Another resource (named by ARN) does not exist.
    #[error("{0}")]
    ResourceNotFound(String),
    /// CreateLogGroup of an existing group.
    #[error("The specified log group already exists")]
    GroupExists,
    /// CreateLogStream of an existing stream.
    #[error("The specified log stream already exists")]
    StreamExists,
    /// A parameter is invalid (`InvalidParameterException`).
    #[error("{0}")]
    InvalidParameter(String),
    /// More than 50 tags on a log group (`TooManyTagsException`).
    #[error("A resource can have no more than 50 tags.")]
    TooManyTags,
    /// A limit was hit (`LimitExceededException`).
    #[error("{0}")]
    LimitExceeded(String),
    /// The storage failed or is shutting down (`ServiceUnavailableException`).
    #[error("{0}")]
    Unavailable(String),
}

impl LogsError {
    /// The CloudWatch Logs exception name.
    pub fn code(&self) -> &'static str {
        match self {
            LogsError::GroupNotFound
            | LogsError::StreamNotFound
            | LogsError::ResourceNotFound(_) => "ResourceNotFoundException",
            LogsError::GroupExists | LogsError::StreamExists => "ResourceAlreadyExistsException",
            LogsError::InvalidParameter(_) => "InvalidParameterException",
            LogsError::TooManyTags => "TooManyTagsException",
            LogsError::LimitExceeded(_) => "LimitExceededException",
            LogsError::Unavailable(_) => "ServiceUnavailableException",
        }
    }

    /// Shorthand for `InvalidParameter`.
    pub fn invalid(message: impl Into<String>) -> LogsError {
        LogsError::InvalidParameter(message.into())
    }

    /// The error as the agent reports it in a stopped reason: `Code: message`.
    pub fn qualified(&self) -> String {
        format!("{}: {self}", self.code())
    }
}

impl From<rusqlite::Error> for LogsError {
    fn from(e: rusqlite::Error) -> LogsError {
        LogsError::Unavailable(format!("log storage failed: {e}"))
    }
}

impl From<LogsError> for ApiError {
    fn from(e: LogsError) -> ApiError {
        let status = if matches!(e, LogsError::Unavailable(_)) {
            503
        } else {
            400
        };
        ApiError {
            status,
            code: e.code(),
            message: e.to_string(),
            extra: None,
        }
    }
}
