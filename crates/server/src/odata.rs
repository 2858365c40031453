//! The OData `$filter` subset the audit APIs take: comparisons joined by `and`
//! (`eventTimestamp ge 2026-12-03T06:49:30 and resourceGroupName eq 'g'`), `startswith(field,
//! 'text')`, and a collection lambda whose body is comparisons joined by `or`
//! (`signInEventTypes/any(t: t eq 'managedIdentity' or t eq 'servicePrincipal')`). Literals are
//! quoted strings (`''` escapes a quote) or bare words (numbers, timestamps, as the az CLI
//! sends them unquoted). A hand-written lexer and recursive-descent parser; every error names
//! the byte offset it stopped at.

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Ge,
    Gt,
    Le,
    Lt,
}

/// One condition of a filter (all of a filter's conditions must hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `field op value`; `field` as written (`status/errorCode`).
    Compare {
        field: String,
        op: Op,
        value: String,
        at: usize,
    },
    /// `startswith(field, 'value')`.
    StartsWith {
        field: String,
        value: String,
        at: usize,
    },
    /// `field/any(x: x eq 'a' or x eq 'b')`: the collection holds one of `values`.
    AnyOf {
        field: String,
        values: Vec<String>,
        at: usize,
    },
}

/// Why a filter was refused, with the byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub at: usize,
    pub message: String,
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at position {})", self.message, self.at)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word: a name, a keyword, a number or an unquoted timestamp.
    Word(String),
    Quoted(String),
    Open,
    Close,
    Comma,
    Colon,
}

fn lex(text: &str) -> Result<Vec<(Token, usize)>, FilterError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' | ':' => {
                chars.next();
                tokens.push((
                    match c {
                        '(' => Token::Open,
                        ')' => Token::Close,
                        ',' => Token::Comma,
                        _ => Token::Colon,
                    },
                    at,
                ));
            }
            '\'' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\'')) => {
                            if chars.peek().is_some_and(|&(_, next)| next == '\'') {
                                chars.next();
                                value.push('\'');
                            } else {
                                break;
                            }
                        }
                        Some((_, other)) => value.push(other),
                        None => {
                            return Err(FilterError {
                                at,
                                message: "unterminated string literal".to_string(),
                            })
                        }
                    }
                }
                tokens.push((Token::Quoted(value), at));
            }
            _ => {
                let mut word = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    // A colon inside a timestamp (`12:49:30`) belongs to the word; a lambda's
                    // `t:` is followed by a space.
                    let timestamp_colon = c == ':'
                        && word
                            .chars()
                            .next()
                            .is_some_and(|first| first.is_ascii_digit());
                    if c.is_whitespace() || "(),'".contains(c) || (c == ':' && !timestamp_colon) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push((Token::Word(word), at));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    position: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position).map(|(token, _)| token)
    }

    fn at(&self) -> usize {
        self.tokens
            .get(self.position)
            .map(|(_, at)| *at)
            .unwrap_or(self.end)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self
            .tokens
            .get(self.position)
            .map(|(token, _)| token.clone());
        self.position += 1;
        token
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, FilterError> {
        Err(FilterError {
            at: self.at(),
            message: message.into(),
        })
    }

    fn expect(&mut self, expected: Token, what: &str) -> Result<(), FilterError> {
        if self.peek() == Some(&expected) {
            self.next();
            Ok(())
        } else {
            self.error(format!("expected {what}"))
        }
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(found)) if found.eq_ignore_ascii_case(word))
    }

    fn word(&mut self, what: &str) -> Result<String, FilterError> {
        match self.next() {
            Some(Token::Word(word)) => Ok(word),
            _ => {
                self.position -= 1;
                self.error(format!("expected {what}"))
            }
        }
    }

    fn literal(&mut self) -> Result<String, FilterError> {
        match self.next() {
            Some(Token::Word(word)) | Some(Token::Quoted(word)) => Ok(word),
            _ => {
                self.position -= 1;
                self.error("expected a value")
            }
        }
    }

    fn op(&mut self) -> Result<Op, FilterError> {
        let at = self.at();
        let word = self.word("an operator (eq, ne, ge, gt, le, lt)")?;
        Ok(match word.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "ge" => Op::Ge,
            "gt" => Op::Gt,
            "le" => Op::Le,
            "lt" => Op::Lt,
            other => {
                return Err(FilterError {
                    at,
                    message: format!("unsupported operator '{other}'"),
                })
            }
        })
    }

    /// `conjunction := term ('and' term)*`
    fn conjunction(&mut self, into: &mut Vec<Condition>) -> Result<(), FilterError> {
        self.term(into)?;
        while self.keyword("and") {
            self.next();
            self.term(into)?;
        }
        Ok(())
    }

    fn term(&mut self, into: &mut Vec<Condition>) -> Result<(), FilterError> {
        if self.peek() == Some(&Token::Open) {
            self.next();
            self.conjunction(into)?;
            return self.expect(Token::Close, "')'");
        }
        let at = self.at();
        let name = self.word("a property name")?;
        if name.eq_ignore_ascii_case("startswith") && self.peek() == Some(&Token::Open) {
            self.next();
            let field = self.word("a property name")?;
            self.expect(Token::Comma, "','")?;
            let value = self.literal()?;
            self.expect(Token::Close, "')'")?;
            into.push(Condition::StartsWith { field, value, at });
            return Ok(());
        }
        if let Some(field) = name
            .strip_suffix("/any")
            .or_else(|| name.strip_suffix("/Any"))
        {
            self.expect(Token::Open, "'('")?;
            let variable = self.word("a lambda variable")?;
            self.expect(Token::Colon, "':'")?;
            let mut values = Vec::new();
            loop {
                let subject_at = self.at();
                let subject = self.word("the lambda variable")?;
                if subject != variable {
                    return Err(FilterError {
                        at: subject_at,
                        message: format!("expected the lambda variable '{variable}'"),
                    });
                }
                let op_at = self.at();
                if self.op()? != Op::Eq {
                    return Err(FilterError {
                        at: op_at,
                        message: "only eq is supported inside any()".to_string(),
                    });
                }
                values.push(self.literal()?);
                if self.keyword("or") {
                    self.next();
                } else {
                    break;
                }
            }
            self.expect(Token::Close, "')'")?;
            into.push(Condition::AnyOf {
                field: field.to_string(),
                values,
                at,
            });
            return Ok(());
        }
        let op = self.op()?;
        let value = self.literal()?;
        into.push(Condition::Compare {
            field: name,
            op,
            value,
            at,
        });
        Ok(())
    }
}

/// Parses a filter into the conditions that must all hold.
pub fn parse(text: &str) -> Result<Vec<Condition>, FilterError> {
    let mut parser = Parser {
        tokens: lex(text)?,
        position: 0,
        end: text.len(),
    };
    let mut conditions = Vec::new();
    if parser.peek().is_none() {
        return Ok(conditions);
    }
    parser.conjunction(&mut conditions)?;
    if parser.peek().is_some() {
        return parser.error("expected 'and' or the end of the filter");
    }
    Ok(conditions)
}

/// Reads an OData or ISO 8601 timestamp as microseconds since the epoch: `2026-12-03T06:49:30Z`,
/// with an offset, with up to 7 fraction digits, without a zone (UTC, as the az CLI sends
/// `datetime.utcnow().isoformat()`), or a bare date.
pub fn timestamp_micros(text: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};
    let text = text.trim();
    if let Ok(parsed) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some((parsed.unix_timestamp_nanos() / 1000) as i64);
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    let (date_part, time_part) = match text.split_once(['T', 't', ' ']) {
        Some((date, rest)) => (date, Some(rest)),
        None => (text, None),
    };
    let date = Date::parse(date_part, &date_format).ok()?;
    let time = match time_part {
        None => Time::MIDNIGHT,
        Some(rest) => {
            // Without a zone, or with one RFC 3339 did not take (`+00:00` after 7 digits).
            let (clock, zone) = split_zone(rest);
            let (hms, fraction) = match clock.split_once('.') {
                Some((hms, fraction)) => (hms, Some(fraction)),
                None => (clock, None),
            };
            let mut parts = hms.split(':');
            let hour: u8 = parts.next()?.parse().ok()?;
            let minute: u8 = parts.next().unwrap_or("0").parse().ok()?;
            let second: u8 = parts.next().unwrap_or("0").parse().ok()?;
            if parts.next().is_some() {
                return None;
            }
            let nanos = match fraction {
                Some(digits)
                    if !digits.is_empty()
                        && digits.len() <= 9
                        && digits.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    format!("{digits:0<9}").parse().ok()?
                }
                Some(_) => return None,
                None => 0,
            };
            let time = Time::from_hms_nano(hour, minute, second, nanos).ok()?;
            let base = PrimitiveDateTime::new(date, time).assume_utc();
            let offset_seconds = zone?;
            return Some(
                ((base.unix_timestamp_nanos() / 1000) as i64) - offset_seconds * 1_000_000,
            );
        }
    };
    Some(
        (PrimitiveDateTime::new(date, time)
            .assume_utc()
            .unix_timestamp_nanos()
            / 1000) as i64,
    )
}

/// Splits `12:00:00.1234567+02:00` into the clock and the zone's offset in seconds (`Some(0)`
/// for `Z` or no zone; `None` for a malformed zone).
fn split_zone(rest: &str) -> (&str, Option<i64>) {
    if let Some(clock) = rest.strip_suffix(['Z', 'z']) {
        return (clock, Some(0));
    }
    if let Some(index) = rest.rfind(['+', '-']) {
        let (clock, zone) = rest.split_at(index);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let mut parts = zone[1..].split(':');
        let hours: Option<i64> = parts.next().and_then(|hours| hours.parse().ok());
        let minutes: Option<i64> = parts.next().map_or(Some(0), |minutes| minutes.parse().ok());
        return match (hours, minutes) {
            (Some(hours), Some(minutes)) if hours < 24 && minutes < 60 => {
                (clock, Some(sign * (hours * 3600 + minutes * 60)))
            }
            _ => (clock, None),
        };
    }
    (rest, Some(0))
}

/// A timestamp as OData writes it: `2026-12-03T12:49:30.5308790Z` (seven fraction digits, as
/// Azure's logs do).
pub fn format_micros(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let stamp = time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|moment| moment.format(&format).ok())
        .unwrap_or_default();
    format!("{stamp}.{fraction:06}0Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_what_the_az_cli_sends() {
        let conditions = parse("eventTimestamp ge 2026-12-03T06:49:30.530879 and eventTimestamp le 2026-12-03T12:49:30+00:00 and resourceGroupName eq 'g'").unwrap();
        assert_eq!(conditions.len(), 3);
        assert_eq!(
            conditions[0],
            Condition::Compare {
                field: "eventTimestamp".into(),
                op: Op::Ge,
                value: "2026-12-03T06:49:30.530879".into(),
                at: 0
            }
        );
        assert_eq!(
            timestamp_micros("2026-12-03T06:49:30.530879"),
            Some(1_796_280_570_530_879)
        );
        assert_eq!(
            timestamp_micros("2026-12-03T12:49:30+00:00"),
            timestamp_micros("2026-12-03T12:49:30Z")
        );
        assert_eq!(
            timestamp_micros("2026-12-03T14:49:30.1234567+02:00"),
            timestamp_micros("2026-12-03T12:49:30.123456Z")
        );
        assert_eq!(
            timestamp_micros("2026-12-03"),
            timestamp_micros("2026-12-03T00:00:00Z")
        );
        assert_eq!(timestamp_micros("yesterday"), None);
        assert_eq!(
            format_micros(1_796_280_570_530_879),
            "2026-12-03T06:49:30.5308790Z"
        );
    }

    #[test]
    fn reads_graph_lambdas_and_functions() {
        let conditions = parse("signInEventTypes/any(t: t eq 'managedIdentity' or t eq 'servicePrincipal') and startswith(appDisplayName,'Gr''aph') and status/errorCode eq 0").unwrap();
        assert_eq!(
            conditions[0],
            Condition::AnyOf {
                field: "signInEventTypes".into(),
                values: vec!["managedIdentity".into(), "servicePrincipal".into()],
                at: 0
            }
        );
        assert!(matches!(&conditions[1], Condition::StartsWith { value, .. } if value == "Gr'aph"));
        assert!(
            matches!(&conditions[2], Condition::Compare { field, value, .. } if field == "status/errorCode" && value == "0")
        );
    }

    #[test]
    fn refusals_name_their_position() {
        let error = parse("caller eq 'a' or status eq 'b'").unwrap_err();
        assert_eq!(error.at, 14);
        assert!(parse("caller eq 'open").is_err());
        assert!(parse("caller like 'x'")
            .unwrap_err()
            .message
            .contains("like"));
        assert!(parse("(caller eq 'x'").is_err());
        assert_eq!(parse("").unwrap(), Vec::new());
    }

    proptest! {
        // Any text is parsed or refused with a position inside it, never a panic.
        #[test]
        fn never_panics(text in "\\PC{0,80}") {
            if let Err(error) = parse(&text) {
                prop_assert!(error.at <= text.len());
            }
            let _ = timestamp_micros(&text);
        }
    }
}
