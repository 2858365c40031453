//! The parser: tokens to the syntax tree, by recursive descent with precedence climbing for the
//! binary operators (jaq's shape).
//!
//! The grammar is that of <https://learn.microsoft.com/azure/cosmos-db/nosql/query/select> and its
//! sibling clause pages; operator precedence follows the T-SQL order the Cosmos DB operator page
//! describes (<https://learn.microsoft.com/azure/cosmos-db/nosql/query/operators>): unary, then
//! multiplicative, additive and `||`, shifts, bitwise and/xor/or, comparisons (with IN, BETWEEN,
//! LIKE), NOT, AND, OR, then `??` and the ternary `? :`.

use serde_json::Value;

use crate::ast::{BinaryOp, Count, Expr, ExprKind, Projection, Select, Source, Span, UnaryOp};
use crate::error::{Position, QueryError};
use crate::lex::{lex, Spanned, Token};

/// Words that end an implicit alias or an expression; they can never be a bare alias.
const RESERVED: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "ORDER",
    "BY",
    "OFFSET",
    "LIMIT",
    "JOIN",
    "AS",
    "IN",
    "ASC",
    "DESC",
    "AND",
    "OR",
    "NOT",
    "BETWEEN",
    "LIKE",
    "ESCAPE",
    "TOP",
    "VALUE",
    "DISTINCT",
    "TRUE",
    "FALSE",
    "NULL",
    "UNDEFINED",
    "EXISTS",
    "ARRAY",
    "UDF",
    "HAVING",
];

pub(crate) fn parse(text: &str) -> Result<Select, QueryError> {
    let tokens = lex(text)?;
    let mut parser = Parser {
        text,
        tokens,
        index: 0,
        depth: 0,
    };
    let select = parser.select()?;
    if parser.peek() != &Token::Eof {
        return Err(parser.unexpected("end of query"));
    }
    Ok(select)
}

/// How deeply expressions may nest; deeper text is refused instead of exhausting the stack
/// (the service has its own limits on query size, 256 KB of text).
const MOST_NESTING: usize = 128;

struct Parser<'t> {
    text: &'t str,
    tokens: Vec<Spanned>,
    index: usize,
    /// Current nesting of expressions, bounded by `MOST_NESTING`.
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        let index = (self.index + ahead).min(self.tokens.len() - 1);
        &self.tokens[index].token
    }

    fn start(&self) -> usize {
        self.tokens[self.index.min(self.tokens.len() - 1)].start
    }

    /// The end of the last consumed token.
    fn last_end(&self) -> usize {
        if self.index == 0 {
            0
        } else {
            self.tokens[(self.index - 1).min(self.tokens.len() - 1)].end
        }
    }

    fn advance(&mut self) -> Token {
        // The index may pass the end: `peek` keeps answering Eof, and stepping back stays exact.
        let token = self.peek().clone();
        self.index += 1;
        token
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        self.is_keyword_at(0, keyword)
    }

    fn is_keyword_at(&self, ahead: usize, keyword: &str) -> bool {
        matches!(self.peek_at(ahead), Token::Ident(word) if word.eq_ignore_ascii_case(keyword))
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        if self.is_keyword(keyword) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, keyword: &str) -> Result<(), QueryError> {
        if self.eat_keyword(keyword) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{keyword}'")))
        }
    }

    fn eat_punct(&mut self, punct: &str) -> bool {
        if matches!(self.peek(), Token::Punct(found) if *found == punct) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, punct: &str) -> Result<(), QueryError> {
        if self.eat_punct(punct) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{punct}'")))
        }
    }

    fn unexpected(&self, expected: &str) -> QueryError {
        let found = match self.peek() {
            Token::Ident(word) => format!("'{word}'"),
            Token::Number(number) => format!("'{number}'"),
            Token::Str(_) => "a string".to_string(),
            Token::Param(name) => format!("'{name}'"),
            Token::Punct(punct) => format!("'{punct}'"),
            Token::Eof => "the end of the query".to_string(),
        };
        QueryError::Syntax {
            message: format!("expected {expected}, found {found}"),
            position: Position::of(self.text, self.start()),
        }
    }

    fn select(&mut self) -> Result<Select, QueryError> {
        let start = self.start();
        self.expect_keyword("SELECT")?;
        let distinct = self.eat_keyword("DISTINCT");
        let top = if self.eat_keyword("TOP") {
            Some(self.count("TOP")?)
        } else {
            None
        };
        let projection = if self.eat_keyword("VALUE") {
            let value = self.expr()?;
            // The grammar allows `VALUE <expr> [AS alias]`; the alias names nothing in the result.
            self.alias()?;
            Projection::Value(value)
        } else if matches!(self.peek(), Token::Punct("*")) {
            let star = Span {
                start: self.start(),
                end: self.start() + 1,
            };
            self.advance();
            Projection::Star(star)
        } else {
            let mut items = Vec::new();
            loop {
                let expr = self.expr()?;
                let alias = self.alias()?;
                items.push((expr, alias));
                if !self.eat_punct(",") {
                    break;
                }
            }
            Projection::Items(items)
        };
        let tail_start = self.start();
        let from = if self.eat_keyword("FROM") {
            Some(self.source()?)
        } else {
            None
        };
        let mut joins = Vec::new();
        while self.eat_keyword("JOIN") {
            joins.push(self.source()?);
        }
        let filter = if self.eat_keyword("WHERE") {
            Some(self.expr()?)
        } else {
            None
        };
        let mut group_by = Vec::new();
        if self.eat_keyword("GROUP") {
            self.expect_keyword("BY")?;
            loop {
                group_by.push(self.expr()?);
                if !self.eat_punct(",") {
                    break;
                }
            }
        }
        if self.is_keyword("HAVING") {
            return Err(QueryError::Unsupported {
                construct: "HAVING (Cosmos DB has no HAVING clause)".to_string(),
                position: Position::of(self.text, self.start()),
            });
        }
        let mut order_by = Vec::new();
        if self.eat_keyword("ORDER") {
            self.expect_keyword("BY")?;
            loop {
                let expr = self.expr()?;
                let descending = if self.eat_keyword("DESC") {
                    true
                } else {
                    self.eat_keyword("ASC");
                    false
                };
                order_by.push((expr, descending));
                if !self.eat_punct(",") {
                    break;
                }
            }
        }
        let tail = Span {
            start: tail_start,
            end: self.last_end().max(tail_start),
        };
        let offset_limit = if self.eat_keyword("OFFSET") {
            let offset = self.count("OFFSET")?;
            self.expect_keyword("LIMIT")?;
            let limit = self.count("LIMIT")?;
            Some((offset, limit))
        } else {
            None
        };
        Ok(Select {
            distinct,
            top,
            projection,
            from,
            joins,
            filter,
            group_by,
            order_by,
            offset_limit,
            span: Span {
                start,
                end: self.last_end(),
            },
            tail,
        })
    }

    fn count(&mut self, clause: &str) -> Result<Count, QueryError> {
        let start = self.start();
        match self.advance() {
            Token::Number(Value::Number(number)) if number.as_u64().is_some() => {
                Ok(Count::Literal(number.as_u64().unwrap_or(0)))
            }
            Token::Param(name) => Ok(Count::Param(
                name,
                Span {
                    start,
                    end: self.last_end(),
                },
            )),
            _ => {
                self.index -= 1;
                Err(self.unexpected(&format!(
                    "a non-negative integer or a parameter after {clause}"
                )))
            }
        }
    }

    /// `AS name` or a bare name that is not a keyword.
    fn alias(&mut self) -> Result<Option<String>, QueryError> {
        if self.eat_keyword("AS") {
            return match self.advance() {
                Token::Ident(name) => Ok(Some(name)),
                _ => {
                    self.index -= 1;
                    Err(self.unexpected("an alias after AS"))
                }
            };
        }
        if let Token::Ident(name) = self.peek() {
            if !RESERVED.iter().any(|word| word.eq_ignore_ascii_case(name)) {
                let name = name.clone();
                self.advance();
                return Ok(Some(name));
            }
        }
        Ok(None)
    }

    /// A FROM or JOIN source: `alias IN expr` or `expr [[AS] alias]`.
    fn source(&mut self) -> Result<Source, QueryError> {
        if matches!(self.peek(), Token::Ident(_)) && self.is_keyword_at(1, "IN") {
            let Token::Ident(alias) = self.advance() else {
                return Err(self.unexpected("an alias"));
            };
            self.advance();
            let expr = self.postfix()?;
            return Ok(Source {
                alias: Some(alias),
                iterate: true,
                expr,
            });
        }
        let expr = self.postfix()?;
        let alias = self.alias()?;
        Ok(Source {
            alias,
            iterate: false,
            expr,
        })
    }

    /// Enters one level of nesting, refusing to go deeper than `MOST_NESTING`.
    fn nested<T>(
        &mut self,
        parse: impl FnOnce(&mut Self) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        if self.depth >= MOST_NESTING {
            return Err(QueryError::Unsupported {
                construct: format!("expressions nested more than {MOST_NESTING} deep"),
                position: Position::of(self.text, self.start()),
            });
        }
        self.depth += 1;
        let result = parse(self);
        self.depth -= 1;
        result
    }

    pub(crate) fn expr(&mut self) -> Result<Expr, QueryError> {
        self.nested(Self::expr_at_depth)
    }

    fn expr_at_depth(&mut self) -> Result<Expr, QueryError> {
        let start = self.start();
        let condition = self.coalesce()?;
        if self.eat_punct("?") {
            let then = self.expr()?;
            self.expect_punct(":")?;
            let otherwise = self.expr()?;
            let span = Span {
                start,
                end: self.last_end(),
            };
            return Ok(Expr {
                kind: ExprKind::Conditional(
                    Box::new(condition),
                    Box::new(then),
                    Box::new(otherwise),
                ),
                span,
            });
        }
        Ok(condition)
    }

    fn coalesce(&mut self) -> Result<Expr, QueryError> {
        let start = self.start();
        let mut left = self.binary(0)?;
        while self.eat_punct("??") {
            let right = self.binary(0)?;
            left = Expr {
                kind: ExprKind::Coalesce(Box::new(left), Box::new(right)),
                span: Span {
                    start,
                    end: self.last_end(),
                },
            };
        }
        Ok(left)
    }

    /// The binary operator at the current token with its precedence level, if it is one of
    /// `level`'s or a tighter level's.
    fn binary_operator(&self) -> Option<(BinaryOp, u8)> {
        let operator = match self.peek() {
            Token::Ident(word) if word.eq_ignore_ascii_case("OR") => (BinaryOp::Or, 0),
            Token::Ident(word) if word.eq_ignore_ascii_case("AND") => (BinaryOp::And, 1),
            Token::Punct(punct) => match *punct {
                "=" => (BinaryOp::Equal, 3),
                "!=" | "<>" => (BinaryOp::NotEqual, 3),
                "<" => (BinaryOp::Less, 3),
                "<=" => (BinaryOp::LessEqual, 3),
                ">" => (BinaryOp::Greater, 3),
                ">=" => (BinaryOp::GreaterEqual, 3),
                "|" => (BinaryOp::BitOr, 4),
                "^" => (BinaryOp::BitXor, 5),
                "&" => (BinaryOp::BitAnd, 6),
                "<<" => (BinaryOp::ShiftLeft, 7),
                ">>" => (BinaryOp::ShiftRight, 7),
                ">>>" => (BinaryOp::ShiftRightZeroFill, 7),
                "+" => (BinaryOp::Add, 8),
                "-" => (BinaryOp::Subtract, 8),
                "||" => (BinaryOp::Concat, 8),
                "*" => (BinaryOp::Multiply, 9),
                "/" => (BinaryOp::Divide, 9),
                "%" => (BinaryOp::Modulo, 9),
                _ => return None,
            },
            _ => return None,
        };
        Some(operator)
    }

    /// Precedence climbing: parses operators of level `min_level` and tighter. Levels: 0 OR,
    /// 1 AND, 2 NOT (prefix), 3 comparisons, 4 `|`, 5 `^`, 6 `&`, 7 shifts, 8 additive and `||`,
    /// 9 multiplicative; unary operators bind tighter still. One call per operand, not per
    /// level, keeps the recursion shallow.
    fn binary(&mut self, min_level: u8) -> Result<Expr, QueryError> {
        let start = self.start();
        let mut left = if min_level <= 2 && self.is_keyword("NOT") {
            self.advance();
            let operand = self.nested(|parser| parser.binary(2))?;
            Expr {
                kind: ExprKind::Unary(UnaryOp::Not, Box::new(operand)),
                span: Span {
                    start,
                    end: self.last_end(),
                },
            }
        } else {
            self.unary()?
        };
        loop {
            if min_level <= 3 {
                if let Some(expr) = self.comparison_suffix(&left, start)? {
                    left = expr;
                    continue;
                }
            }
            match self.binary_operator() {
                Some((operator, level)) if level >= min_level => {
                    self.advance();
                    let right = self.binary(level + 1)?;
                    left = Expr {
                        kind: ExprKind::Binary(operator, Box::new(left), Box::new(right)),
                        span: Span {
                            start,
                            end: self.last_end(),
                        },
                    };
                }
                _ => return Ok(left),
            }
        }
    }

    /// `[NOT] IN (...)`, `[NOT] BETWEEN a AND b`, `[NOT] LIKE p [ESCAPE e]` after `left`.
    fn comparison_suffix(&mut self, left: &Expr, start: usize) -> Result<Option<Expr>, QueryError> {
        let negated = self.is_keyword("NOT")
            && (self.is_keyword_at(1, "IN")
                || self.is_keyword_at(1, "BETWEEN")
                || self.is_keyword_at(1, "LIKE"));
        let keyword_at = usize::from(negated);
        let kind = if self.is_keyword_at(keyword_at, "IN") {
            self.index += keyword_at + 1;
            self.expect_punct("(")?;
            let mut list = Vec::new();
            if !self.eat_punct(")") {
                loop {
                    list.push(self.expr()?);
                    if !self.eat_punct(",") {
                        break;
                    }
                }
                self.expect_punct(")")?;
            }
            ExprKind::In {
                value: Box::new(left.clone()),
                list,
                negated,
            }
        } else if self.is_keyword_at(keyword_at, "BETWEEN") {
            self.index += keyword_at + 1;
            let low = self.binary(4)?;
            self.expect_keyword("AND")?;
            let high = self.binary(4)?;
            ExprKind::Between {
                value: Box::new(left.clone()),
                low: Box::new(low),
                high: Box::new(high),
                negated,
            }
        } else if self.is_keyword_at(keyword_at, "LIKE") {
            self.index += keyword_at + 1;
            let pattern = self.binary(4)?;
            let escape = if self.eat_keyword("ESCAPE") {
                Some(Box::new(self.binary(4)?))
            } else {
                None
            };
            ExprKind::Like {
                value: Box::new(left.clone()),
                pattern: Box::new(pattern),
                escape,
                negated,
            }
        } else {
            return Ok(None);
        };
        Ok(Some(Expr {
            kind,
            span: Span {
                start,
                end: self.last_end(),
            },
        }))
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        let start = self.start();
        let operator = match self.peek() {
            Token::Punct("-") => Some(UnaryOp::Negate),
            Token::Punct("+") => Some(UnaryOp::Plus),
            Token::Punct("~") => Some(UnaryOp::BitNot),
            _ => None,
        };
        if let Some(operator) = operator {
            self.advance();
            let operand = self.nested(Self::unary)?;
            // A negative literal stays a literal, so that `-1` prints and compares as a number.
            if operator == UnaryOp::Negate {
                if let ExprKind::Literal(Value::Number(number)) = &operand.kind {
                    let negated = if let Some(integer) = number.as_i64() {
                        integer.checked_neg().map(Value::from)
                    } else {
                        number
                            .as_f64()
                            .and_then(|float| serde_json::Number::from_f64(-float))
                            .map(Value::Number)
                    };
                    if let Some(negated) = negated {
                        return Ok(Expr {
                            kind: ExprKind::Literal(negated),
                            span: Span {
                                start,
                                end: self.last_end(),
                            },
                        });
                    }
                }
            }
            return Ok(Expr {
                kind: ExprKind::Unary(operator, Box::new(operand)),
                span: Span {
                    start,
                    end: self.last_end(),
                },
            });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, QueryError> {
        let start = self.start();
        let mut expr = self.primary()?;
        loop {
            if self.eat_punct(".") {
                match self.advance() {
                    Token::Ident(name) => {
                        expr = Expr {
                            kind: ExprKind::Member(Box::new(expr), name),
                            span: Span {
                                start,
                                end: self.last_end(),
                            },
                        };
                    }
                    _ => {
                        self.index -= 1;
                        return Err(self.unexpected("a property name after '.'"));
                    }
                }
            } else if self.eat_punct("[") {
                let index = self.expr()?;
                self.expect_punct("]")?;
                expr = Expr {
                    kind: ExprKind::Index(Box::new(expr), Box::new(index)),
                    span: Span {
                        start,
                        end: self.last_end(),
                    },
                };
            } else {
                return Ok(expr);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        let start = self.start();
        let kind = match self.advance() {
            Token::Number(number) => ExprKind::Literal(number),
            Token::Str(string) => ExprKind::Literal(Value::String(string)),
            Token::Param(name) => ExprKind::Param(name),
            Token::Punct("(") => {
                if self.is_keyword("SELECT") {
                    let select = self.select()?;
                    self.expect_punct(")")?;
                    ExprKind::ScalarSubquery(Box::new(select))
                } else {
                    let inner = self.expr()?;
                    self.expect_punct(")")?;
                    return Ok(Expr {
                        kind: inner.kind,
                        span: Span {
                            start,
                            end: self.last_end(),
                        },
                    });
                }
            }
            Token::Punct("[") => {
                let mut elements = Vec::new();
                if !self.eat_punct("]") {
                    loop {
                        elements.push(self.expr()?);
                        if !self.eat_punct(",") {
                            break;
                        }
                    }
                    self.expect_punct("]")?;
                }
                ExprKind::Array(elements)
            }
            Token::Punct("{") => {
                let mut members = Vec::new();
                if !self.eat_punct("}") {
                    loop {
                        let key = match self.advance() {
                            Token::Ident(name) => name,
                            Token::Str(name) => name,
                            _ => {
                                self.index -= 1;
                                return Err(self.unexpected("a property name in the object"));
                            }
                        };
                        self.expect_punct(":")?;
                        members.push((key, self.expr()?));
                        if !self.eat_punct(",") {
                            break;
                        }
                    }
                    self.expect_punct("}")?;
                }
                ExprKind::Object(members)
            }
            Token::Ident(word) => return self.word(word, start),
            _ => {
                self.index -= 1;
                return Err(self.unexpected("an expression"));
            }
        };
        Ok(Expr {
            kind,
            span: Span {
                start,
                end: self.last_end(),
            },
        })
    }

    /// An identifier at the start of a primary expression: a literal keyword, a subquery
    /// keyword, a function call or a name.
    fn word(&mut self, word: String, start: usize) -> Result<Expr, QueryError> {
        let upper = word.to_ascii_uppercase();
        let kind = match upper.as_str() {
            "TRUE" => ExprKind::Literal(Value::Bool(true)),
            "FALSE" => ExprKind::Literal(Value::Bool(false)),
            "NULL" => ExprKind::Literal(Value::Null),
            "UNDEFINED" => ExprKind::Undefined,
            "EXISTS" | "ARRAY"
                if matches!(self.peek(), Token::Punct("(")) && self.is_keyword_at(1, "SELECT") =>
            {
                self.advance();
                let select = self.select()?;
                self.expect_punct(")")?;
                if upper == "EXISTS" {
                    ExprKind::Exists(Box::new(select))
                } else {
                    ExprKind::ArraySubquery(Box::new(select))
                }
            }
            "UDF" if matches!(self.peek(), Token::Punct(".")) => {
                self.advance();
                let name = match self.advance() {
                    Token::Ident(name) => name,
                    _ => {
                        self.index -= 1;
                        return Err(self.unexpected("a function name after 'udf.'"));
                    }
                };
                let args = self.arguments()?;
                ExprKind::Call {
                    name,
                    args,
                    udf: true,
                }
            }
            _ if RESERVED.contains(&upper.as_str()) && upper != "ARRAY" => {
                self.index -= 1;
                return Err(self.unexpected("an expression"));
            }
            _ if matches!(self.peek(), Token::Punct("(")) => {
                let args = self.arguments()?;
                ExprKind::Call {
                    name: word,
                    args,
                    udf: false,
                }
            }
            _ => ExprKind::Ident(word),
        };
        Ok(Expr {
            kind,
            span: Span {
                start,
                end: self.last_end(),
            },
        })
    }

    fn arguments(&mut self) -> Result<Vec<Expr>, QueryError> {
        self.expect_punct("(")?;
        let mut args = Vec::new();
        if self.eat_punct(")") {
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            if !self.eat_punct(",") {
                break;
            }
        }
        self.expect_punct(")")?;
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses and prints the tree in a compact form that shows the grouping.
    fn check(text: &str, expected: &str) {
        let select = parse(text).unwrap();
        let Projection::Value(expr) = &select.projection else {
            panic!("use SELECT VALUE")
        };
        assert_eq!(show(expr), expected, "{text}");
    }

    fn show(expr: &Expr) -> String {
        match &expr.kind {
            ExprKind::Literal(value) => value.to_string(),
            ExprKind::Undefined => "undefined".into(),
            ExprKind::Param(name) | ExprKind::Ident(name) => name.clone(),
            ExprKind::Member(target, name) => format!("{}.{name}", show(target)),
            ExprKind::Index(target, index) => format!("{}[{}]", show(target), show(index)),
            ExprKind::Unary(operator, operand) => format!("({operator:?} {})", show(operand)),
            ExprKind::Binary(operator, left, right) => {
                format!("({} {} {})", show(left), operator.symbol(), show(right))
            }
            ExprKind::Between {
                value,
                low,
                high,
                negated,
            } => {
                format!(
                    "({} {}BETWEEN {} {})",
                    show(value),
                    if *negated { "NOT " } else { "" },
                    show(low),
                    show(high)
                )
            }
            ExprKind::In {
                value,
                list,
                negated,
            } => format!(
                "({} {}IN {})",
                show(value),
                if *negated { "NOT " } else { "" },
                list.iter().map(show).collect::<Vec<_>>().join(",")
            ),
            ExprKind::Like { value, pattern, .. } => {
                format!("({} LIKE {})", show(value), show(pattern))
            }
            ExprKind::Conditional(condition, then, otherwise) => {
                format!(
                    "({} ? {} : {})",
                    show(condition),
                    show(then),
                    show(otherwise)
                )
            }
            ExprKind::Coalesce(left, right) => format!("({} ?? {})", show(left), show(right)),
            ExprKind::Call { name, args, .. } => {
                format!(
                    "{name}({})",
                    args.iter().map(show).collect::<Vec<_>>().join(",")
                )
            }
            ExprKind::Array(elements) => format!(
                "[{}]",
                elements.iter().map(show).collect::<Vec<_>>().join(",")
            ),
            ExprKind::Object(members) => format!(
                "{{{}}}",
                members
                    .iter()
                    .map(|(key, value)| format!("{key}:{}", show(value)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            ExprKind::Exists(_) => "EXISTS(...)".into(),
            ExprKind::ArraySubquery(_) => "ARRAY(...)".into(),
            ExprKind::ScalarSubquery(_) => "(SELECT ...)".into(),
        }
    }

    #[test]
    fn precedence() {
        check("SELECT VALUE 1 + 2 * 3", "(1 + (2 * 3))");
        check(
            "SELECT VALUE a OR b AND NOT c = 1",
            "(a OR (b AND (Not (c = 1))))",
        );
        check(
            "SELECT VALUE a.b[0]['c'] || 'x' = 'y'",
            "((a.b[0][\"c\"] || \"x\") = \"y\")",
        );
        check(
            "SELECT VALUE x BETWEEN 1 AND 2 AND y NOT IN (1, 2)",
            "((x BETWEEN 1 2) AND (y NOT IN 1,2))",
        );
        check("SELECT VALUE a ?? b ? 1 : 2", "((a ?? b) ? 1 : 2)");
        check("SELECT VALUE -1 - -x", "(-1 - (Negate x))");
        check(
            "select value {a: [1, 'b'], \"c d\": null}",
            "{a:[1,\"b\"],c d:null}",
        );
        check(
            "SELECT VALUE ARRAY_CONTAINS(c.tags, 'x', true)",
            "ARRAY_CONTAINS(c.tags,\"x\",true)",
        );
    }

    #[test]
    fn clauses() {
        let select = parse(
            "SELECT DISTINCT TOP 5 c.id, c.name AS n, c.x y FROM root c JOIN t IN c.tags \
             WHERE c.a = @a GROUP BY c.id ORDER BY c.id DESC, c.name OFFSET 1 LIMIT @n",
        )
        .unwrap();
        assert!(select.distinct);
        assert_eq!(select.top, Some(Count::Literal(5)));
        let Projection::Items(items) = &select.projection else {
            panic!("items")
        };
        let aliases: Vec<_> = items.iter().map(|(_, alias)| alias.clone()).collect();
        assert_eq!(
            aliases,
            vec![None, Some("n".to_string()), Some("y".to_string())]
        );
        assert_eq!(select.from.as_ref().unwrap().alias.as_deref(), Some("c"));
        assert!(select.joins[0].iterate);
        assert_eq!(select.order_by.len(), 2);
        assert!(select.order_by[0].1);
        assert!(matches!(
            select.offset_limit,
            Some((Count::Literal(1), Count::Param(_, _)))
        ));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let text = format!("SELECT VALUE {}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(matches!(parse(&text), Err(QueryError::Unsupported { .. })));
        let text = format!("SELECT VALUE {}1", "- ".repeat(5000));
        assert!(matches!(parse(&text), Err(QueryError::Unsupported { .. })));
        let text = format!("SELECT VALUE {}true", "NOT ".repeat(5000));
        assert!(matches!(parse(&text), Err(QueryError::Unsupported { .. })));
    }

    #[test]
    fn errors_name_line_and_column() {
        let cases = [
            (
                "SELECT * FROM c WHERE",
                1,
                22,
                "expected an expression, found the end of the query",
            ),
            (
                "SELECT *\nFROM c\nWHERE c.a = = 1",
                3,
                13,
                "expected an expression, found '='",
            ),
            (
                "SELECT c.a FROM c ORDER c.a",
                1,
                25,
                "expected 'BY', found 'c'",
            ),
            (
                "SELECT TOP -1 * FROM c",
                1,
                12,
                "expected a non-negative integer or a parameter after TOP, found '-'",
            ),
            ("SELECT (1 FROM c", 1, 11, "expected ')', found 'FROM'"),
            (
                "SELECT VALUE @",
                1,
                14,
                "expected a parameter name after '@'",
            ),
        ];
        for (text, line, column, message) in cases {
            match parse(text) {
                Err(QueryError::Syntax {
                    message: found,
                    position,
                }) => {
                    assert_eq!(found, message, "{text}");
                    assert_eq!((position.line, position.column), (line, column), "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
