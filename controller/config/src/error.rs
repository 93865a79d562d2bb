use thiserror::Error;

/// Why a stored value was refused, as a metric label can carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The key is not `<prefix>/lb/v1/vips/<name>` with a valid name.
    Key,
    /// Not UTF-8 JSON of the schema's shape.
    Malformed,
    /// A field this controller does not know: written by a newer one.
    UnknownField,
    /// `schema` is newer than this controller knows.
    NewerSchema,
    /// The document parses but a value is out of bounds or inconsistent.
    Invalid,
}

impl Rejection {
    pub const ALL: [Rejection; 5] = [
        Rejection::Key,
        Rejection::Malformed,
        Rejection::UnknownField,
        Rejection::NewerSchema,
        Rejection::Invalid,
    ];

    /// The label value (`reason="unknown_field"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Rejection::Key => "key",
            Rejection::Malformed => "malformed",
            Rejection::UnknownField => "unknown_field",
            Rejection::NewerSchema => "newer_schema",
            Rejection::Invalid => "invalid",
        }
    }
}

/// A stored value that cannot be programmed: which key, which field, why.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{key}: {field}: {reason}")]
pub struct ConfigError {
    /// The store key, as stored.
    pub key: String,
    /// The field at fault as the JSON document spells it (`backends[2].weight`),
    /// or `(key)` / `(document)` when it is not one field.
    pub field: String,
    /// What is wrong, and where it helps, what to do.
    pub reason: String,
    pub kind: Rejection,
}

impl ConfigError {
    pub(crate) fn new(
        key: &str,
        kind: Rejection,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            key: key.to_owned(),
            field: field.into(),
            reason: reason.into(),
            kind,
        }
    }
}
