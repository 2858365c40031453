//! The one error type of the crate: what went wrong, and where in the query text.
//!
//! The data plane answers a query error with 400 BadRequest and the message, so every error that
//! comes from the text carries the line and column (both 1-based) of the construct at fault.

use std::fmt;

/// A position in the query text: line and column (1-based) for people, and the 0-based character
/// offset that the service's error `location` (`{"start": ..}`) counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The line, from 1.
    pub line: u32,
    /// The character in the line, from 1.
    pub column: u32,
    /// Characters before the position in the whole text, from 0.
    pub offset: u32,
}

impl Position {
    /// The position of byte `offset` in `text`.
    pub(crate) fn of(text: &str, offset: usize) -> Position {
        let mut line = 1;
        let mut column = 1;
        let mut characters = 0;
        for (index, character) in text.char_indices() {
            if index >= offset {
                break;
            }
            characters += 1;
            if character == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        Position {
            line,
            column,
            offset: characters,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "line {}, column {}", self.line, self.column)
    }
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The text is not a query of the grammar (a stray token, an unterminated string).
    #[error("syntax error at {position}: {message}")]
    Syntax { message: String, position: Position },
    /// The text parses but means nothing: an unknown identifier or function, a wrong argument
    /// count, an aggregate where none may stand.
    #[error("{message} (at {position})")]
    Invalid { message: String, position: Position },
    /// A construct of the Cosmos DB language that this crate does not evaluate; refused rather
    /// than answered wrongly.
    #[error("unsupported construct at {position}: {construct}")]
    Unsupported {
        construct: String,
        position: Position,
    },
    /// The query names a parameter that the request did not supply.
    #[error("parameter {name} is referenced in the query but was not supplied (at {position})")]
    MissingParameter { name: String, position: Position },
    /// A supplied parameter is malformed (its name must start with `@`), or a parameter used as
    /// TOP, OFFSET or LIMIT is not a non-negative integer.
    #[error("invalid parameter {name}: {message}")]
    InvalidParameter { name: String, message: String },
}

impl QueryError {
    /// The position in the query text the error points at, if it has one.
    pub fn position(&self) -> Option<Position> {
        match self {
            QueryError::Syntax { position, .. }
            | QueryError::Invalid { position, .. }
            | QueryError::Unsupported { position, .. }
            | QueryError::MissingParameter { position, .. } => Some(*position),
            QueryError::InvalidParameter { .. } => None,
        }
    }
}
