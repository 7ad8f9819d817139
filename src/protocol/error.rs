//! AMQP reply codes and protocol errors. A channel error closes the channel; a connection
//! error closes the connection. Codes and their scope follow the 0-9-1 spec as RabbitMQ
//! applies it.

/// Reply codes used in channel.close and connection.close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ReplyCode {
    Success = 200,
    ContentTooLarge = 311,
    NoRoute = 312,
    NoConsumers = 313,
    ConnectionForced = 320,
    InvalidPath = 402,
    AccessRefused = 403,
    NotFound = 404,
    ResourceLocked = 405,
    PreconditionFailed = 406,
    FrameError = 501,
    SyntaxError = 502,
    CommandInvalid = 503,
    ChannelError = 504,
    UnexpectedFrame = 505,
    ResourceError = 506,
    NotAllowed = 530,
    NotImplemented = 540,
    InternalError = 541,
}

impl ReplyCode {
    pub fn code(self) -> u16 {
        self as u16
    }

    /// A hard error closes the connection, a soft one only the channel. The split is the
    /// spec's, as RabbitMQ applies it: the 3xx and 4xx codes are soft except 320 and 402.
    pub fn is_hard(self) -> bool {
        !matches!(
            self,
            Self::Success
                | Self::ContentTooLarge
                | Self::NoRoute
                | Self::NoConsumers
                | Self::AccessRefused
                | Self::NotFound
                | Self::ResourceLocked
                | Self::PreconditionFailed
        )
    }

    /// The spec's name for the code, used as the prefix of reply texts (as RabbitMQ does).
    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "OK",
            Self::ContentTooLarge => "CONTENT_TOO_LARGE",
            Self::NoRoute => "NO_ROUTE",
            Self::NoConsumers => "NO_CONSUMERS",
            Self::ConnectionForced => "CONNECTION_FORCED",
            Self::InvalidPath => "INVALID_PATH",
            Self::AccessRefused => "ACCESS_REFUSED",
            Self::NotFound => "NOT_FOUND",
            Self::ResourceLocked => "RESOURCE_LOCKED",
            Self::PreconditionFailed => "PRECONDITION_FAILED",
            Self::FrameError => "FRAME_ERROR",
            Self::SyntaxError => "SYNTAX_ERROR",
            Self::CommandInvalid => "COMMAND_INVALID",
            Self::ChannelError => "CHANNEL_ERROR",
            Self::UnexpectedFrame => "UNEXPECTED_FRAME",
            Self::ResourceError => "RESOURCE_ERROR",
            Self::NotAllowed => "NOT_ALLOWED",
            Self::NotImplemented => "NOT_IMPLEMENTED",
            Self::InternalError => "INTERNAL_ERROR",
        }
    }
}

/// A protocol error: the reply to send. Its code decides whether it ends the channel or
/// the connection (`ReplyCode::is_hard`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpError {
    pub code: ReplyCode,
    pub text: String,
    /// The method that caused it (class id, method id): None until named; `Some((0, 0))`
    /// when no method is to blame (as RabbitMQ says for some errors).
    pub method: Option<(u16, u16)>,
    /// Input RabbitMQ's parser cannot even fail on politely (an unknown method id, a field
    /// table it cannot parse): its connection process crashes and the socket closes
    /// without a frame. We answer such input the same way, on purpose.
    pub unanswerable: bool,
}

impl AmqpError {
    pub fn new(code: ReplyCode, text: impl Into<String>) -> Self {
        AmqpError {
            code,
            text: text.into(),
            method: None,
            unanswerable: false,
        }
    }

    /// Input answered by dropping the connection without a frame (see `unanswerable`).
    pub fn unanswerable(text: impl Into<String>) -> Self {
        AmqpError {
            unanswerable: true,
            ..AmqpError::new(ReplyCode::InternalError, text)
        }
    }

    /// Names the method that failed, unless one is named already.
    pub fn with_method(mut self, id: (u16, u16)) -> Self {
        if self.method.is_none() {
            self.method = Some(id);
        }
        self
    }

    /// Blames no method (class and method ids 0/0 in the close), whatever `with_method`
    /// is later asked to name.
    pub fn naming_no_method(mut self) -> Self {
        self.method = Some((0, 0));
        self
    }

    /// The (class id, method id) sent in channel.close / connection.close.
    pub fn culprit(&self) -> (u16, u16) {
        self.method.unwrap_or((0, 0))
    }

    /// The reply text as sent: "CODE_NAME - detail", or the bare name without a detail
    /// (as RabbitMQ's 541 after an internal failure).
    pub fn reply_text(&self) -> String {
        if self.text.is_empty() {
            return self.code.name().to_owned();
        }
        let mut t = format!("{} - {}", self.code.name(), self.text);
        t.truncate(255);
        t
    }
}

impl std::fmt::Display for AmqpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code.code(), self.reply_text())
    }
}

impl std::error::Error for AmqpError {}
