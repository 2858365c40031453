//! A small JSON reader that keeps the line and column of every value, because ARM's messages
//! name them ("at line '1' and column '345'") and serde_json's `Value` forgets them.
//!
//! ARM parses templates with Newtonsoft.Json, which accepts `//` and `/* */` comments and
//! trailing commas (the docs' "template syntax" page allows comments), so this reader does too.
//! The `json()` and `base64ToJson()` functions also accept single-quoted strings, as Newtonsoft
//! does: the docs' base64 example decodes `{'one': 'a', 'two': 'b'}` into an object.

use serde_json::{Map, Number, Value};

use crate::error::Pos;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null(Pos),
    Bool(bool, Pos),
    Number(Number, Pos),
    String(String, Pos),
    Array(Vec<Node>, Pos),
    Object(Vec<Member>, Pos),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Member {
    pub key: String,
    pub value: Node,
}

impl Node {
    pub(crate) fn pos(&self) -> Pos {
        match self {
            Node::Null(pos)
            | Node::Bool(_, pos)
            | Node::Number(_, pos)
            | Node::String(_, pos)
            | Node::Array(_, pos)
            | Node::Object(_, pos) => *pos,
        }
    }

    /// The member `key` of an object, compared case-insensitively as ARM reads template
    /// elements (`apiVersion`, `dependsOn` and `DependsOn` are the same element).
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object(members, _) => members
                .iter()
                .rev()
                .find(|member| member.key.eq_ignore_ascii_case(key))
                .map(|member| &member.value),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(text, _) => Some(text),
            _ => None,
        }
    }

    pub(crate) fn to_value(&self) -> Value {
        match self {
            Node::Null(_) => Value::Null,
            Node::Bool(flag, _) => Value::Bool(*flag),
            Node::Number(number, _) => Value::Number(number.clone()),
            Node::String(text, _) => Value::String(text.clone()),
            Node::Array(items, _) => Value::Array(items.iter().map(Node::to_value).collect()),
            Node::Object(members, _) => {
                let mut map = Map::new();
                for member in members {
                    map.insert(member.key.clone(), member.value.to_value());
                }
                Value::Object(map)
            }
        }
    }
}

/// Why a text is not JSON, in Newtonsoft's words, with where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub message: String,
    pub pos: Pos,
}

pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    parse_with(text, false)
}

/// Parses the argument of `json()`: single-quoted strings are allowed, as in Newtonsoft.
pub(crate) fn parse_lenient(text: &str) -> Result<Node, SyntaxError> {
    parse_with(text, true)
}

fn parse_with(text: &str, lenient: bool) -> Result<Node, SyntaxError> {
    let mut reader = Reader {
        bytes: text.as_bytes(),
        text,
        offset: 0,
        line: 1,
        column: 1,
        lenient,
        depth: 0,
    };
    reader.skip_space()?;
    let node = reader.value()?;
    reader.skip_space()?;
    if reader.offset < reader.bytes.len() {
        return Err(
            reader.error_here("Additional text encountered after finished reading JSON content")
        );
    }
    Ok(node)
}

// Deeply nested input would otherwise exhaust the stack; Newtonsoft's default limit is 64
// for JObject.Parse, templates never come close to this.
const MAX_DEPTH: u32 = 256;

struct Reader<'t> {
    bytes: &'t [u8],
    text: &'t str,
    offset: usize,
    line: u32,
    column: u32,
    lenient: bool,
    depth: u32,
}

impl<'t> Reader<'t> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn error_here(&self, what: &str) -> SyntaxError {
        // The reader moves byte by byte, so an error may fall inside a character: show the
        // character it falls in.
        let mut start = self.offset.min(self.text.len());
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        let shown = self.text.get(start..).and_then(|rest| rest.chars().next());
        let message = match shown {
            Some(character) => format!(
                "{what}: {character}. Path '', line {}, position {}.",
                self.line, self.column
            ),
            None => format!(
                "{what}. Path '', line {}, position {}.",
                self.line, self.column
            ),
        };
        SyntaxError {
            message,
            pos: self.pos(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.offset).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.offset += 1;
        if byte == b'\n' {
            self.line += 1;
            self.column = 1;
        } else if byte & 0xC0 != 0x80 {
            // Columns count characters: UTF-8 continuation bytes do not start one.
            self.column += 1;
        }
        Some(byte)
    }

    fn skip_space(&mut self) -> Result<(), SyntaxError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b'\n') => {
                    self.bump();
                }
                Some(b'/') => match self.bytes.get(self.offset + 1) {
                    Some(b'/') => {
                        while let Some(byte) = self.peek() {
                            if byte == b'\n' {
                                break;
                            }
                            self.bump();
                        }
                    }
                    Some(b'*') => {
                        let start = self.pos();
                        self.bump();
                        self.bump();
                        loop {
                            match self.bump() {
                                Some(b'*') if self.peek() == Some(b'/') => {
                                    self.bump();
                                    break;
                                }
                                Some(_) => {}
                                None => {
                                    return Err(SyntaxError {
                                        message: "Unexpected end while parsing comment."
                                            .to_string(),
                                        pos: start,
                                    })
                                }
                            }
                        }
                    }
                    _ => return Err(self.error_here("Unexpected character encountered")),
                },
                // A byte-order mark at the start is common in files saved by Windows editors.
                Some(0xEF) if self.bytes[self.offset..].starts_with(&[0xEF, 0xBB, 0xBF]) => {
                    self.offset += 3;
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self) -> Result<Node, SyntaxError> {
        let pos = self.pos();
        match self.peek() {
            Some(b'{') => self.object(pos),
            Some(b'[') => self.array(pos),
            Some(b'"') => Ok(Node::String(self.string(b'"')?, pos)),
            Some(b'\'') if self.lenient => Ok(Node::String(self.string(b'\'')?, pos)),
            Some(b't') => self.word("true", Node::Bool(true, pos)),
            Some(b'f') => self.word("false", Node::Bool(false, pos)),
            Some(b'n') => self.word("null", Node::Null(pos)),
            Some(b'-' | b'0'..=b'9') => self.number(pos),
            None => Err(self.error_here("Unexpected end when reading JSON")),
            Some(_) => Err(self.error_here("Unexpected character encountered while parsing value")),
        }
    }

    fn word(&mut self, word: &str, node: Node) -> Result<Node, SyntaxError> {
        if self.bytes[self.offset..].starts_with(word.as_bytes()) {
            for _ in 0..word.len() {
                self.bump();
            }
            Ok(node)
        } else {
            Err(self.error_here("Unexpected character encountered while parsing value"))
        }
    }

    fn number(&mut self, pos: Pos) -> Result<Node, SyntaxError> {
        let start = self.offset;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
            self.bump();
        }
        let literal = &self.text[start..self.offset];
        match literal.parse::<Number>() {
            Ok(number) => Ok(Node::Number(number, pos)),
            Err(_) => Err(SyntaxError {
                message: format!(
                    "Input string '{literal}' is not a valid number. Path '', line {}, position {}.",
                    pos.line, pos.column
                ),
                pos,
            }),
        }
    }

    fn string(&mut self, quote: u8) -> Result<String, SyntaxError> {
        let start = self.pos();
        self.bump();
        let mut out = String::new();
        loop {
            let run_start = self.offset;
            while let Some(byte) = self.peek() {
                if byte == quote || byte == b'\\' || byte == b'\n' {
                    break;
                }
                self.bump();
            }
            out.push_str(&self.text[run_start..self.offset]);
            match self.bump() {
                Some(byte) if byte == quote => return Ok(out),
                Some(b'\\') => {
                    let escaped = self.bump();
                    match escaped {
                        Some(b'"') => out.push('"'),
                        Some(b'\'') => out.push('\''),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => {
                            let first = self.hex4()?;
                            let character = if (0xD800..0xDC00).contains(&first)
                                && self.bytes[self.offset..].starts_with(b"\\u")
                            {
                                self.bump();
                                self.bump();
                                let second = self.hex4()?;
                                let combined = 0x10000
                                    + ((u32::from(first) - 0xD800) << 10)
                                    + (u32::from(second).wrapping_sub(0xDC00) & 0x3FF);
                                char::from_u32(combined)
                            } else {
                                char::from_u32(u32::from(first))
                            };
                            out.push(character.unwrap_or('\u{FFFD}'));
                        }
                        _ => return Err(self.error_here("Bad JSON escape sequence")),
                    }
                }
                // Newtonsoft accepts raw newlines inside strings; so do we.
                Some(b'\n') => out.push('\n'),
                _ => {
                    return Err(SyntaxError {
                        message: format!(
                            "Unterminated string. Expected delimiter: {}. Path '', line {}, position {}.",
                            quote as char, start.line, start.column
                        ),
                        pos: start,
                    })
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u16, SyntaxError> {
        let digits = self.text.get(self.offset..self.offset + 4);
        match digits.and_then(|digits| u16::from_str_radix(digits, 16).ok()) {
            Some(value) => {
                for _ in 0..4 {
                    self.bump();
                }
                Ok(value)
            }
            None => Err(self.error_here("Invalid Unicode escape sequence")),
        }
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_here("The reader's MaxDepth has been exceeded"));
        }
        Ok(())
    }

    fn array(&mut self, pos: Pos) -> Result<Node, SyntaxError> {
        self.enter()?;
        self.bump();
        let mut items = Vec::new();
        loop {
            self.skip_space()?;
            if self.peek() == Some(b']') {
                self.bump();
                break;
            }
            items.push(self.value()?);
            self.skip_space()?;
            match self.peek() {
                Some(b',') => {
                    self.bump();
                }
                Some(b']') => {
                    self.bump();
                    break;
                }
                _ => {
                    return Err(self.error_here(
                        "After parsing a value an unexpected character was encountered",
                    ))
                }
            }
        }
        self.depth -= 1;
        Ok(Node::Array(items, pos))
    }

    fn object(&mut self, pos: Pos) -> Result<Node, SyntaxError> {
        self.enter()?;
        self.bump();
        let mut members = Vec::new();
        loop {
            self.skip_space()?;
            let key = match self.peek() {
                Some(b'}') => {
                    self.bump();
                    break;
                }
                Some(b'"') => self.string(b'"')?,
                Some(b'\'') if self.lenient => self.string(b'\'')?,
                _ => return Err(self.error_here("Invalid property identifier character")),
            };
            self.skip_space()?;
            if self.bump() != Some(b':') {
                return Err(self.error_here("Invalid character after parsing property name"));
            }
            self.skip_space()?;
            let value = self.value()?;
            members.push(Member { key, value });
            self.skip_space()?;
            match self.peek() {
                Some(b',') => {
                    self.bump();
                }
                Some(b'}') => {
                    self.bump();
                    break;
                }
                _ => {
                    return Err(self.error_here(
                        "After parsing a value an unexpected character was encountered",
                    ))
                }
            }
        }
        self.depth -= 1;
        Ok(Node::Object(members, pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(text: &str, expected: Value) {
        let node = parse(text).unwrap();
        assert_eq!(node.to_value(), expected);
    }

    fn check_pos(text: &str, path: &[&str], line: u32, column: u32) {
        let mut node = parse(text).unwrap();
        for key in path {
            node = node.get(key).unwrap().clone();
        }
        assert_eq!(node.pos(), Pos { line, column }, "{path:?}");
    }

    fn check_error(text: &str, expected: &str) {
        let error = parse(text).unwrap_err();
        assert!(error.message.contains(expected), "{}", error.message);
    }

    #[test]
    fn values() {
        check(
            r#"{"a": [1, -2.5, true, false, null, "x\n\u00e9"]}"#,
            json!({"a": [1, -2.5, true, false, null, "x\né"]}),
        );
        check("[1, 2, ]", json!([1, 2]));
        check(
            "{\"a\": 1, // comment\n /* block */ \"b\": 2,}",
            json!({"a": 1, "b": 2}),
        );
        check(r#""\ud83d\ude00""#, json!("😀"));
        assert_eq!(
            parse_lenient("{'one': 'a'}").unwrap().to_value(),
            json!({"one": "a"})
        );
    }

    #[test]
    fn positions() {
        let text = "{\n  \"parameters\": {\n    \"p\": { \"type\": \"string\" }\n  }\n}";
        check_pos(text, &[], 1, 1);
        check_pos(text, &["parameters"], 2, 17);
        check_pos(text, &["parameters", "p"], 3, 10);
        check_pos(text, &["parameters", "p", "type"], 3, 20);
        // Columns count characters, not bytes.
        check_pos("{\"é\": \"ü\", \"b\": 1}", &["b"], 1, 17);
    }

    #[test]
    fn errors() {
        check_error("{\"a\" 1}", "Invalid character after parsing property name");
        check_error(
            "[1 2]",
            "After parsing a value an unexpected character was encountered",
        );
        check_error("\"abc", "Unterminated string");
        check_error("{} x", "Additional text encountered");
        check_error("{'a': 1}", "Invalid property identifier character");
    }
}
