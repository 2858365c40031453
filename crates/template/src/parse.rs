//! The recursive-descent parser of ARM expressions: tokens become an `Expr` tree that keeps
//! each node's character offset, and each function name is resolved once to its entry in
//! the function table, so an unknown function or a wrong argument count is found when the
//! template is parsed, not when a resource happens to be deployed.
//!
//! Grammar (learn.microsoft.com "Syntax and expressions in ARM templates"):
//! `expr := primary ( '.' identifier | '[' expr ']' )*`,
//! `primary := identifier '(' (expr (',' expr)*)? ')' | literal | integer`.

use crate::{
    error::{EvalError, EvalResult, EXPRESSIONS_LINK},
    functions::{self, Func},
    lex::{self, Spanned, Token},
};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expr {
    pub kind: ExprKind,
    /// Character offset of the node in the expression text.
    pub offset: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ExprKind {
    String(String),
    Int(i64),
    /// Bare `true` and `false`, which ARM accepts beside `true()` and `false()`.
    Bool(bool),
    Call {
        func: Func,
        /// The name as written, for error messages.
        name: String,
        args: Vec<Expr>,
    },
    Property {
        target: Box<Expr>,
        name: String,
    },
    Index {
        target: Box<Expr>,
        index: Box<Expr>,
    },
}

/// Parses the text between the outer brackets of a template string.
pub(crate) fn parse(expression: &str) -> EvalResult<Expr> {
    let tokens = lex::lex(expression)?;
    let mut parser = Parser {
        tokens,
        next: 0,
        expression,
    };
    let expr = parser.expr(0)?;
    parser.expect(&Token::EndOfData)?;
    Ok(expr)
}

// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: u32 = 128;

struct Parser<'e> {
    tokens: Vec<Spanned>,
    next: usize,
    expression: &'e str,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        match self.tokens.get(self.next) {
            Some(spanned) => &spanned.token,
            None => &Token::EndOfData,
        }
    }

    fn offset(&self) -> u32 {
        self.tokens
            .get(self.next)
            .map_or(0, |spanned| spanned.offset)
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.next < self.tokens.len() {
            self.next += 1;
        }
        token
    }

    fn unexpected(&self, expected: &str) -> EvalError {
        EvalError::new(format!(
            "Unable to parse language expression '{}': expected token '{}' and actual '{}'.",
            self.expression,
            expected,
            self.peek().name()
        ))
    }

    fn expect(&mut self, token: &Token) -> EvalResult<()> {
        if self.peek() == token {
            self.advance();
            Ok(())
        } else {
            Err(self.unexpected(token.name()))
        }
    }

    fn expr(&mut self, depth: u32) -> EvalResult<Expr> {
        if depth > MAX_DEPTH {
            return Err(EvalError::new(format!(
                "Unable to parse language expression '{}': the expression is nested too deeply.",
                self.expression
            )));
        }
        let mut expr = self.primary(depth)?;
        loop {
            let offset = self.offset();
            match self.peek() {
                Token::Dot => {
                    self.advance();
                    match self.advance() {
                        Token::Identifier(name) => {
                            expr = Expr {
                                kind: ExprKind::Property {
                                    target: Box::new(expr),
                                    name,
                                },
                                offset,
                            }
                        }
                        _ => {
                            self.next -= 1;
                            return Err(self.unexpected("Identifier"));
                        }
                    }
                }
                Token::LeftSquareBracket => {
                    self.advance();
                    let index = self.expr(depth + 1)?;
                    self.expect(&Token::RightSquareBracket)?;
                    expr = Expr {
                        kind: ExprKind::Index {
                            target: Box::new(expr),
                            index: Box::new(index),
                        },
                        offset,
                    };
                }
                _ => return Ok(expr),
            }
        }
    }

    fn primary(&mut self, depth: u32) -> EvalResult<Expr> {
        let offset = self.offset();
        match self.advance() {
            Token::Literal(text) => Ok(Expr {
                kind: ExprKind::String(text),
                offset,
            }),
            Token::Integer(value) => Ok(Expr {
                kind: ExprKind::Int(value),
                offset,
            }),
            Token::Identifier(name) => {
                if self.peek() != &Token::LeftParenthesis {
                    if name.eq_ignore_ascii_case("true") || name.eq_ignore_ascii_case("false") {
                        return Ok(Expr {
                            kind: ExprKind::Bool(name.eq_ignore_ascii_case("true")),
                            offset,
                        });
                    }
                    if self.peek() == &Token::Dot {
                        // `namespace.function(...)` calls a user-defined function.
                        return Err(EvalError::new(format!(
                            "The template function '{name}.{}' is not valid: user-defined functions (the 'functions' element) are not supported. {EXPRESSIONS_LINK}",
                            match self.tokens.get(self.next + 1).map(|t| &t.token) {
                                Some(Token::Identifier(member)) => member.as_str(),
                                _ => "",
                            }
                        )));
                    }
                    return Err(self.unexpected("LeftParenthesis"));
                }
                self.advance();
                let mut args = Vec::new();
                if self.peek() != &Token::RightParenthesis {
                    loop {
                        args.push(self.expr(depth + 1)?);
                        match self.peek() {
                            Token::Comma => {
                                self.advance();
                            }
                            Token::RightParenthesis => break,
                            _ => return Err(self.unexpected("RightParenthesis")),
                        }
                    }
                }
                self.expect(&Token::RightParenthesis)?;
                let func = functions::lookup(&name).ok_or_else(|| {
                    EvalError::new(format!(
                        "The template function '{name}' is not valid. {EXPRESSIONS_LINK}"
                    ))
                })?;
                functions::check_arity(func, &name, args.len())?;
                Ok(Expr {
                    kind: ExprKind::Call { func, name, args },
                    offset,
                })
            }
            _ => {
                self.next -= 1;
                Err(self.unexpected("Identifier"))
            }
        }
    }
}

/// Calls every function in `expr` and its arguments with `visit`, outermost first.
pub(crate) fn visit_calls<'e>(expr: &'e Expr, visit: &mut dyn FnMut(Func, &'e str, &'e [Expr])) {
    match &expr.kind {
        ExprKind::String(_) | ExprKind::Int(_) | ExprKind::Bool(_) => {}
        ExprKind::Call { func, name, args } => {
            visit(*func, name, args);
            for arg in args {
                visit_calls(arg, visit);
            }
        }
        ExprKind::Property { target, .. } => visit_calls(target, visit),
        ExprKind::Index { target, index } => {
            visit_calls(target, visit);
            visit_calls(index, visit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders a tree compactly: calls as `name(args)`, accessors as `.x` and `[i]`.
    fn show(expr: &Expr) -> String {
        match &expr.kind {
            ExprKind::String(text) => format!("'{text}'"),
            ExprKind::Int(value) => value.to_string(),
            ExprKind::Bool(flag) => flag.to_string(),
            ExprKind::Call { name, args, .. } => format!(
                "{name}({})",
                args.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
            ExprKind::Property { target, name } => format!("{}.{name}", show(target)),
            ExprKind::Index { target, index } => format!("{}[{}]", show(target), show(index)),
        }
    }

    fn check(expression: &str, expected: &str) {
        assert_eq!(show(&parse(expression).unwrap()), expected);
    }

    fn check_error(expression: &str, expected: &str) {
        let error = parse(expression).unwrap_err();
        assert_eq!(error.message, expected);
    }

    #[test]
    fn trees() {
        check(
            "reference(resourceId('Microsoft.Compute/virtualMachines', 'vm'), '2019-12-01', 'Full').identity.principalId",
            "reference(resourceId('Microsoft.Compute/virtualMachines', 'vm'), '2019-12-01', 'Full').identity.principalId",
        );
        check("parameters('a')['b'][0]", "parameters('a')['b'][0]");
        check("CONCAT( 'a' , 'b' )", "CONCAT('a', 'b')");
        check("if(true, 1, -2)", "if(true, 1, -2)");
    }

    #[test]
    fn offsets() {
        let expr = parse("concat('a', parameters('b'))").unwrap();
        let ExprKind::Call { args, .. } = &expr.kind else {
            panic!("not a call")
        };
        assert_eq!(args[1].offset, 12);
    }

    #[test]
    fn errors() {
        check_error(
            "concat('a'))",
            "Unable to parse language expression 'concat('a'))': expected token 'EndOfData' and actual 'RightParenthesis'.",
        );
        check_error(
            "concat('a'",
            "Unable to parse language expression 'concat('a'': expected token 'RightParenthesis' and actual 'EndOfData'.",
        );
        check_error(
            "frobnicate(1)",
            "The template function 'frobnicate' is not valid. Please see https://aka.ms/arm-template-expressions for usage details.",
        );
        check_error(
            "add(1)",
            "Unable to evaluate template language function 'add': function requires 2 argument(s) while 1 were provided. Please see https://aka.ms/arm-template-expressions/#add for usage details.",
        );
        assert!(parse("ns.fn(1)")
            .unwrap_err()
            .message
            .contains("user-defined functions"));
    }
}
