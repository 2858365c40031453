//! The lexer of ARM's expression language: the text between the outer `[` and `]` of a
//! template string becomes tokens with their character offsets.
//!
//! The language has function names, `'single-quoted'` strings (a quote is doubled to escape
//! it), integers, and the punctuation `( ) [ ] , .`; the token names in error messages are
//! the ones ARM prints ("expected token 'EndOfData' and actual 'RightParenthesis'").
//! Source: learn.microsoft.com "Syntax and expressions in ARM templates".

use crate::error::{EvalError, EvalResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    LeftParenthesis,
    RightParenthesis,
    LeftSquareBracket,
    RightSquareBracket,
    Comma,
    Dot,
    Identifier(String),
    Literal(String),
    Integer(i64),
    EndOfData,
}

impl Token {
    /// The name ARM uses for this kind of token in parse errors.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Token::LeftParenthesis => "LeftParenthesis",
            Token::RightParenthesis => "RightParenthesis",
            Token::LeftSquareBracket => "LeftSquareBracket",
            Token::RightSquareBracket => "RightSquareBracket",
            Token::Comma => "Comma",
            Token::Dot => "Dot",
            Token::Identifier(_) => "Identifier",
            Token::Literal(_) => "Literal",
            Token::Integer(_) => "Integer",
            Token::EndOfData => "EndOfData",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spanned {
    pub token: Token,
    /// Character offset in the expression text.
    pub offset: u32,
}

/// Splits `expression` (the text inside the brackets) into tokens, ending with `EndOfData`.
pub(crate) fn lex(expression: &str) -> EvalResult<Vec<Spanned>> {
    let characters: Vec<char> = expression.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    let fail = |what: String| {
        EvalError::new(format!(
            "Unable to parse language expression '{expression}': {what}"
        ))
    };
    while index < characters.len() {
        let character = characters[index];
        let offset = index as u32;
        let simple = match character {
            '(' => Some(Token::LeftParenthesis),
            ')' => Some(Token::RightParenthesis),
            '[' => Some(Token::LeftSquareBracket),
            ']' => Some(Token::RightSquareBracket),
            ',' => Some(Token::Comma),
            '.' => Some(Token::Dot),
            _ => None,
        };
        if let Some(token) = simple {
            tokens.push(Spanned { token, offset });
            index += 1;
            continue;
        }
        if character.is_whitespace() {
            index += 1;
            continue;
        }
        if character == '\'' {
            let mut text = String::new();
            index += 1;
            loop {
                match characters.get(index) {
                    Some('\'') if characters.get(index + 1) == Some(&'\'') => {
                        text.push('\'');
                        index += 2;
                    }
                    Some('\'') => {
                        index += 1;
                        break;
                    }
                    Some(other) => {
                        text.push(*other);
                        index += 1;
                    }
                    None => {
                        return Err(fail(format!(
                            "the string literal starting at position '{offset}' is not terminated."
                        )))
                    }
                }
            }
            tokens.push(Spanned {
                token: Token::Literal(text),
                offset,
            });
            continue;
        }
        if character.is_ascii_digit()
            || (matches!(character, '-' | '+')
                && characters.get(index + 1).is_some_and(char::is_ascii_digit))
        {
            let start = index;
            index += 1;
            while characters.get(index).is_some_and(char::is_ascii_digit) {
                index += 1;
            }
            // ARM has no floating-point literals: `1.5` is refused rather than read as
            // the integer 1 followed by a property access.
            if characters.get(index) == Some(&'.')
                && characters.get(index + 1).is_some_and(char::is_ascii_digit)
            {
                return Err(fail(format!(
                    "the number at position '{offset}' is not an integer; floating-point literals are not supported."
                )));
            }
            let literal: String = characters[start..index].iter().collect();
            let value = literal.parse::<i64>().map_err(|_| {
                fail(format!(
                    "the integer '{literal}' at position '{offset}' is out of range."
                ))
            })?;
            tokens.push(Spanned {
                token: Token::Integer(value),
                offset,
            });
            continue;
        }
        if character.is_alphabetic() || character == '_' || character == '$' {
            let start = index;
            while characters
                .get(index)
                .is_some_and(|next| next.is_alphanumeric() || matches!(next, '_' | '$'))
            {
                index += 1;
            }
            tokens.push(Spanned {
                token: Token::Identifier(characters[start..index].iter().collect()),
                offset,
            });
            continue;
        }
        return Err(fail(format!(
            "the character '{character}' at position '{offset}' is not expected."
        )));
    }
    tokens.push(Spanned {
        token: Token::EndOfData,
        offset: characters.len() as u32,
    });
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(expression: &str, expected: &[Token]) {
        let tokens: Vec<Token> = lex(expression)
            .unwrap()
            .into_iter()
            .map(|spanned| spanned.token)
            .collect();
        assert_eq!(tokens, expected);
    }

    #[test]
    fn tokens() {
        use Token::*;
        check(
            "concat('it''s', -1)[0].x",
            &[
                Identifier("concat".into()),
                LeftParenthesis,
                Literal("it's".into()),
                Comma,
                Integer(-1),
                RightParenthesis,
                LeftSquareBracket,
                Integer(0),
                RightSquareBracket,
                Dot,
                Identifier("x".into()),
                EndOfData,
            ],
        );
    }

    #[test]
    fn errors() {
        assert!(lex("concat('a")
            .unwrap_err()
            .message
            .contains("not terminated"));
        assert!(lex("add(1.5, 2)")
            .unwrap_err()
            .message
            .contains("floating-point"));
        assert!(lex("a & b").unwrap_err().message.contains("'&'"));
    }
}
