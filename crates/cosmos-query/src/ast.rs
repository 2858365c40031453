//! The syntax tree as parsed: names are still names, and every node keeps its byte range in the
//! query text, so that the checking step (`plan.rs`) can point at the construct it refuses.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expr {
    pub(crate) kind: ExprKind,
    pub(crate) span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnaryOp {
    Not,
    Negate,
    Plus,
    BitNot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Or,
    And,
    Equal,
    NotEqual,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    BitOr,
    BitXor,
    BitAnd,
    ShiftLeft,
    ShiftRight,
    ShiftRightZeroFill,
    Add,
    Subtract,
    Concat,
    Multiply,
    Divide,
    Modulo,
}

impl BinaryOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "OR",
            BinaryOp::And => "AND",
            BinaryOp::Equal => "=",
            BinaryOp::NotEqual => "!=",
            BinaryOp::Less => "<",
            BinaryOp::LessEqual => "<=",
            BinaryOp::Greater => ">",
            BinaryOp::GreaterEqual => ">=",
            BinaryOp::BitOr => "|",
            BinaryOp::BitXor => "^",
            BinaryOp::BitAnd => "&",
            BinaryOp::ShiftLeft => "<<",
            BinaryOp::ShiftRight => ">>",
            BinaryOp::ShiftRightZeroFill => ">>>",
            BinaryOp::Add => "+",
            BinaryOp::Subtract => "-",
            BinaryOp::Concat => "||",
            BinaryOp::Multiply => "*",
            BinaryOp::Divide => "/",
            BinaryOp::Modulo => "%",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ExprKind {
    Literal(Value),
    Undefined,
    Param(String),
    Ident(String),
    Member(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Between {
        value: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    In {
        value: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Like {
        value: Box<Expr>,
        pattern: Box<Expr>,
        escape: Option<Box<Expr>>,
        negated: bool,
    },
    Conditional(Box<Expr>, Box<Expr>, Box<Expr>),
    Coalesce(Box<Expr>, Box<Expr>),
    /// `name(args)`; `udf` is set for `udf.name(args)`.
    Call {
        name: String,
        args: Vec<Expr>,
        udf: bool,
    },
    Array(Vec<Expr>),
    Object(Vec<(String, Expr)>),
    Exists(Box<Select>),
    ArraySubquery(Box<Select>),
    ScalarSubquery(Box<Select>),
}

/// A count in TOP, OFFSET or LIMIT: a literal or a parameter bound later.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Count {
    Literal(u64),
    Param(String, Span),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Projection {
    Star(Span),
    Value(Expr),
    Items(Vec<(Expr, Option<String>)>),
}

/// One FROM or JOIN source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Source {
    pub(crate) alias: Option<String>,
    /// `alias IN expr` iterates the array; otherwise the value itself is bound.
    pub(crate) iterate: bool,
    pub(crate) expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Select {
    pub(crate) distinct: bool,
    pub(crate) top: Option<Count>,
    pub(crate) projection: Projection,
    pub(crate) from: Option<Source>,
    pub(crate) joins: Vec<Source>,
    pub(crate) filter: Option<Expr>,
    pub(crate) group_by: Vec<Expr>,
    pub(crate) order_by: Vec<(Expr, bool)>,
    pub(crate) offset_limit: Option<(Count, Count)>,
    pub(crate) span: Span,
    /// From the FROM keyword to the end of ORDER BY (before OFFSET), for rewritten queries.
    pub(crate) tail: Span,
}
