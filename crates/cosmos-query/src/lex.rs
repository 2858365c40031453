//! The lexer: query text to tokens, each with the byte range it came from.
//!
//! Hand-written (jaq's shape) so that every token keeps its source range and an error can name
//! the line and column. Keywords are not told apart here: the parser compares identifiers
//! case-insensitively, because Cosmos DB keywords are case-insensitive
//! (<https://learn.microsoft.com/azure/cosmos-db/nosql/query/keywords>).

use serde_json::Value;

use crate::error::{Position, QueryError};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    Ident(String),
    /// A number literal, already converted: integers stay integers so that they print as such.
    Number(Value),
    Str(String),
    /// `@name`, kept with its `@`.
    Param(String),
    Punct(&'static str),
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spanned {
    pub(crate) token: Token,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Longest punctuation first, so that `<=` is not read as `<` then `=`.
const PUNCTUATION: &[&str] = &[
    ">>>", "??", "||", "<=", ">=", "<>", "!=", "<<", ">>", "(", ")", "[", "]", "{", "}", ",", ".",
    ":", "?", "+", "-", "*", "/", "%", "|", "&", "^", "~", "=", "<", ">",
];

pub(crate) fn lex(text: &str) -> Result<Vec<Spanned>, QueryError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte.is_ascii_whitespace() {
            index += 1;
            continue;
        }
        // Line comments, as in T-SQL; the Cosmos DB query editor accepts them.
        if text[index..].starts_with("--") {
            while index < bytes.len() && bytes[index] != b'\n' {
                index += 1;
            }
            continue;
        }
        let start = index;
        if byte.is_ascii_alphabetic() || byte == b'_' {
            while index < bytes.len()
                && (bytes[index].is_ascii_alphanumeric() || bytes[index] == b'_')
            {
                index += 1;
            }
            tokens.push(Spanned {
                token: Token::Ident(text[start..index].to_string()),
                start,
                end: index,
            });
            continue;
        }
        if byte == b'@' {
            index += 1;
            while index < bytes.len()
                && (bytes[index].is_ascii_alphanumeric() || bytes[index] == b'_')
            {
                index += 1;
            }
            if index == start + 1 {
                return Err(syntax(text, start, "expected a parameter name after '@'"));
            }
            tokens.push(Spanned {
                token: Token::Param(text[start..index].to_string()),
                start,
                end: index,
            });
            continue;
        }
        if byte.is_ascii_digit()
            || (byte == b'.' && bytes.get(index + 1).is_some_and(u8::is_ascii_digit))
        {
            let (value, end) = number(text, start)?;
            index = end;
            tokens.push(Spanned {
                token: Token::Number(value),
                start,
                end,
            });
            continue;
        }
        if byte == b'"' || byte == b'\'' {
            let (value, end) = string(text, start)?;
            index = end;
            tokens.push(Spanned {
                token: Token::Str(value),
                start,
                end,
            });
            continue;
        }
        match PUNCTUATION
            .iter()
            .find(|punct| text[index..].starts_with(**punct))
        {
            Some(punct) => {
                index += punct.len();
                tokens.push(Spanned {
                    token: Token::Punct(punct),
                    start,
                    end: index,
                });
            }
            None => {
                let character = text[index..].chars().next().unwrap_or('?');
                return Err(syntax(
                    text,
                    start,
                    &format!("unexpected character '{character}'"),
                ));
            }
        }
    }
    tokens.push(Spanned {
        token: Token::Eof,
        start: text.len(),
        end: text.len(),
    });
    Ok(tokens)
}

fn number(text: &str, start: usize) -> Result<(Value, usize), QueryError> {
    let bytes = text.as_bytes();
    let mut index = start;
    // Hexadecimal integers are part of the grammar (0x1F).
    if text[start..].starts_with("0x") || text[start..].starts_with("0X") {
        index += 2;
        while index < bytes.len() && bytes[index].is_ascii_hexdigit() {
            index += 1;
        }
        return match i64::from_str_radix(&text[start + 2..index], 16) {
            Ok(integer) => Ok((Value::from(integer), index)),
            Err(_) => Err(syntax(text, start, "invalid hexadecimal number")),
        };
    }
    let mut is_float = false;
    while index < bytes.len() && bytes[index].is_ascii_digit() {
        index += 1;
    }
    if index < bytes.len()
        && bytes[index] == b'.'
        && bytes.get(index + 1).is_some_and(u8::is_ascii_digit)
    {
        is_float = true;
        index += 1;
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            index += 1;
        }
    }
    if index < bytes.len() && (bytes[index] == b'e' || bytes[index] == b'E') {
        let mut exponent = index + 1;
        if exponent < bytes.len() && (bytes[exponent] == b'+' || bytes[exponent] == b'-') {
            exponent += 1;
        }
        if exponent < bytes.len() && bytes[exponent].is_ascii_digit() {
            is_float = true;
            index = exponent;
            while index < bytes.len() && bytes[index].is_ascii_digit() {
                index += 1;
            }
        }
    }
    let literal = &text[start..index];
    if !is_float {
        if let Ok(integer) = literal.parse::<i64>() {
            return Ok((Value::from(integer), index));
        }
    }
    // A literal is a double to the service, so `1.0` is the number 1 and prints as such.
    match literal.parse::<f64>().ok().and_then(crate::value::number) {
        Some(number) => Ok((number, index)),
        None => Err(syntax(text, start, "invalid number")),
    }
}

/// A string literal in single or double quotes, with JSON's escapes plus `\'`.
fn string(text: &str, start: usize) -> Result<(String, usize), QueryError> {
    let quote = text.as_bytes()[start] as char;
    let mut value = String::new();
    let mut characters = text[start + 1..].char_indices();
    while let Some((offset, character)) = characters.next() {
        let at = start + 1 + offset;
        if character == quote {
            return Ok((value, at + 1));
        }
        if character != '\\' {
            value.push(character);
            continue;
        }
        let Some((_, escaped)) = characters.next() else {
            break;
        };
        match escaped {
            '\'' | '"' | '\\' | '/' => value.push(escaped),
            'b' => value.push('\u{8}'),
            'f' => value.push('\u{c}'),
            'n' => value.push('\n'),
            'r' => value.push('\r'),
            't' => value.push('\t'),
            'u' => {
                let mut code = 0u32;
                for _ in 0..4 {
                    let digit = characters.next().and_then(|(_, hex)| hex.to_digit(16));
                    match digit {
                        Some(digit) => code = code * 16 + digit,
                        None => return Err(syntax(text, at, "invalid \\u escape")),
                    }
                }
                // A surrogate pair spells one character in two escapes.
                if (0xD800..0xDC00).contains(&code) {
                    let rest = characters.as_str();
                    if rest.starts_with("\\u") && rest.len() >= 6 {
                        if let Ok(low) = u32::from_str_radix(&rest[2..6], 16) {
                            if (0xDC00..0xE000).contains(&low) {
                                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                                for _ in 0..6 {
                                    characters.next();
                                }
                            }
                        }
                    }
                }
                match char::from_u32(code) {
                    Some(decoded) => value.push(decoded),
                    None => return Err(syntax(text, at, "invalid \\u escape")),
                }
            }
            other => return Err(syntax(text, at, &format!("invalid escape '\\{other}'"))),
        }
    }
    Err(syntax(text, start, "unterminated string literal"))
}

fn syntax(text: &str, offset: usize, message: &str) -> QueryError {
    QueryError::Syntax {
        message: message.to_string(),
        position: Position::of(text, offset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: &[Token]) {
        let tokens: Vec<Token> = lex(text)
            .unwrap()
            .into_iter()
            .map(|spanned| spanned.token)
            .collect();
        assert_eq!(&tokens[..tokens.len() - 1], expected, "{text}");
    }

    #[test]
    fn tokens() {
        check(
            "SELECT c.a",
            &[
                Token::Ident("SELECT".into()),
                Token::Ident("c".into()),
                Token::Punct("."),
                Token::Ident("a".into()),
            ],
        );
        check(
            "1 2.5 1e3 0x1F",
            &[
                Token::Number(1.into()),
                Token::Number(2.5.into()),
                Token::Number(1000.into()),
                Token::Number(31.into()),
            ],
        );
        check(
            r#"'it\'s' "a\"b" '\u00e9'"#,
            &[
                Token::Str("it's".into()),
                Token::Str("a\"b".into()),
                Token::Str("é".into()),
            ],
        );
        check(
            "a<=b<>c>>>d??e",
            &[
                Token::Ident("a".into()),
                Token::Punct("<="),
                Token::Ident("b".into()),
                Token::Punct("<>"),
                Token::Ident("c".into()),
                Token::Punct(">>>"),
                Token::Ident("d".into()),
                Token::Punct("??"),
                Token::Ident("e".into()),
            ],
        );
        check(
            "@p -- comment\n@q",
            &[Token::Param("@p".into()), Token::Param("@q".into())],
        );
    }

    #[test]
    fn errors_name_their_position() {
        let error = lex("SELECT *\nFROM c WHERE c.a = 'x").unwrap_err();
        assert_eq!(
            error.position(),
            Some(Position {
                line: 2,
                column: 20,
                offset: 28
            })
        );
        let error = lex("SELECT # FROM c").unwrap_err();
        assert_eq!(
            error.position(),
            Some(Position {
                line: 1,
                column: 8,
                offset: 7
            })
        );
    }
}
