//! Every way a call fails, as a gRPC status in the richer error model:
//! the code a client branches on, a message a person reads, an
//! `ErrorInfo` whose reason a program matches, and for bad fields a
//! `BadRequest` naming each.

use std::collections::HashMap;

use lb_config::ConfigError;
use lb_proto::{ERROR_DOMAIN, v1::ErrorReason};
use lb_store::StoreError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// A failed call.
#[derive(Debug)]
pub struct ApiError {
    code: Code,
    reason: ErrorReason,
    message: String,
    fields: Vec<FieldViolation>,
    metadata: HashMap<String, String>,
}

impl ApiError {
    pub fn new(code: Code, reason: ErrorReason, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            fields: Vec::new(),
            metadata: HashMap::new(),
        }
    }

    /// One field of the request is wrong.
    pub fn field(field: impl Into<String>, description: impl Into<String>) -> Self {
        let (field, description) = (field.into(), description.into());
        Self::fields(vec![FieldViolation::new(field, description)])
    }

    /// These fields of the request are wrong (at least one).
    pub fn fields(fields: Vec<FieldViolation>) -> Self {
        let message = fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.description))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            fields,
            ..Self::new(Code::InvalidArgument, ErrorReason::InvalidField, message)
        }
    }

    /// A VIP a controller would refuse: each fault named as a field of
    /// the request, under `prefix` (`vip.`, `changes[3].create.`).
    pub fn config(prefix: &str, faults: Vec<ConfigError>) -> Self {
        Self::fields(
            faults
                .into_iter()
                .map(|f| {
                    // A bad name shows as a bad key: the request spells it `name`.
                    let field = if f.field == "(key)" { "name" } else { &f.field };
                    FieldViolation::new(format!("{prefix}{field}"), f.reason)
                })
                .collect(),
        )
    }

    pub fn not_found(name: &str) -> Self {
        Self::new(
            Code::NotFound,
            ErrorReason::VipNotFound,
            format!("no VIP named {name:?}: `lbctl vip list` shows those there are"),
        )
        .with("vip", name)
    }

    pub fn stale_etag(name: &str, sent: &str, current: u64) -> Self {
        Self::new(
            Code::Aborted,
            ErrorReason::EtagMismatch,
            format!(
                "VIP {name:?} is at etag {current}, not {sent}: it changed since it was read; \
                 read it again and redo the change"
            ),
        )
        .with("vip", name)
        .with("etag", &current.to_string())
    }

    /// Adds a key of the `ErrorInfo`'s metadata.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.metadata.insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn code(&self) -> Code {
        self.code
    }

    /// The bad fields it names.
    pub fn into_fields(self) -> Vec<FieldViolation> {
        self.fields
    }

    /// The message, with `before` in front.
    pub fn context(mut self, before: &str) -> Self {
        self.message = format!("{before}{}", self.message);
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TooManyOps { .. } | StoreError::TooLarge { .. } => Self::new(
                Code::FailedPrecondition,
                ErrorReason::TransactionTooLarge,
                format!(
                    "{e}: split the changes, or send them with mode TRANSACT_MODE_CHUNKED \
                     (`lbctl apply --chunked`), which is not atomic"
                ),
            ),
            StoreError::DuplicateKey { key } => Self::field(
                "changes",
                format!("{key} is changed twice: one change per VIP in a transaction"),
            ),
            other => Self::new(
                Code::Unavailable,
                ErrorReason::StoreUnavailable,
                format!("the store: {other}; nothing was changed, retry"),
            ),
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        let mut details =
            ErrorDetails::with_error_info(e.reason.as_str_name(), ERROR_DOMAIN, e.metadata);
        if !e.fields.is_empty() {
            details.set_bad_request(e.fields);
        }
        Status::with_error_details(e.code, e.message, details)
    }
}

/// The calls' result.
pub type ApiResult<T> = Result<T, ApiError>;
