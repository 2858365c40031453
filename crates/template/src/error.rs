//! The one error type of the crate, shaped like ARM's error envelope so the engine can answer
//! `{"error":{"code","message"}}` without rewording, and the internal evaluation error that
//! becomes one once the evaluator knows which template element failed.
//!
//! Messages copy ARM's wording where it is known; the texts come from ARM responses quoted in
//! the Azure docs (`error-invalid-template.md`) and in public issue reports.

use std::fmt;

/// A template that cannot be parsed, planned or evaluated.
///
/// `code` is ARM's error code (`InvalidTemplate`, `DeploymentOutputEvaluationFailed`), `message`
/// ARM's full text, which already names the line and column where ARM would; `line` and
/// `column` (1-based) repeat that position for the envelope's `additionalInfo`, or are 0 when
/// ARM reports none (an unknown `dependsOn` target).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct TemplateError {
    pub code: String,
    pub message: String,
    pub line: u32,
    pub column: u32,
}

/// A position in the template text, 1-based, counted in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at line '{}' and column '{}'", self.line, self.column)
    }
}

impl TemplateError {
    pub(crate) fn new(code: &str, message: String, pos: Pos) -> TemplateError {
        TemplateError {
            code: code.to_string(),
            message,
            line: pos.line,
            column: pos.column,
        }
    }

    /// ARM prefixes every failure found before any resource is deployed with this sentence
    /// and quotes the cause.
    pub(crate) fn validation(inner: &str, pos: Pos) -> TemplateError {
        TemplateError::new(
            "InvalidTemplate",
            format!("Deployment template validation failed: '{inner}'."),
            pos,
        )
    }
}

/// An evaluation failure before it is placed in its template element: the message is ARM's
/// inner sentence (for example "The template parameter 'x' is not found. ...").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EvalError {
    pub message: String,
}

impl EvalError {
    pub(crate) fn new(message: impl Into<String>) -> EvalError {
        EvalError {
            message: message.into(),
        }
    }
}

pub(crate) type EvalResult<T> = Result<T, EvalError>;

/// The link ARM appends to expression errors.
pub(crate) const EXPRESSIONS_LINK: &str =
    "Please see https://aka.ms/arm-template-expressions for usage details.";
