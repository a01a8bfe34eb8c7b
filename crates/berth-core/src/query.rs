//! ECS's cluster query language, used by `memberOf` placement constraints and
//! ListContainerInstances `filter`: `subject operator [argument]` terms joined with
//! `and`/`&&`, `or`/`||`, `not`/`!` and parentheses.
//!
//! Subjects: `attribute:<name>`, `agentConnected`, `agentVersion`, `ec2InstanceId`,
//! `registeredAt`, `runningTasksCount`, `task:group`. Operators: `==`/`equals`,
//! `!=`/`not_equals`, `>`, `>=`, `<`, `<=`, `exists`, `!exists`/`not_exists`, `in`,
//! `!in`/`not_in`, `=~`/`matches`, `!~`/`not_matches`.

use regex::Regex;

/// A parsed expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// Both hold.
    And(Box<Expr>, Box<Expr>),
    /// Either holds.
    Or(Box<Expr>, Box<Expr>),
    /// Does not hold.
    Not(Box<Expr>),
    /// `subject op argument`.
    Term {
        /// Left-hand side.
        subject: String,
        /// Operator.
        op: Op,
        /// Right-hand side values (one, or a list for `in`).
        values: Vec<String>,
    },
}

/// A comparison operator.
#[derive(Debug, Clone)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `exists`
    Exists,
    /// `!exists`
    NotExists,
    /// `in [..]`
    In,
    /// `!in [..]`
    NotIn,
    /// `=~ regex`
    Matches(Box<Regex>),
    /// `!~ regex`
    NotMatches(Box<Regex>),
}

/// What an expression is evaluated against: looks a subject up.
pub trait Subject {
    /// The subject's values (`None` if absent; several for `task:group`).
    fn values(&self, subject: &str) -> Option<Vec<String>>;

    /// The value of `attribute:<name>` without allocating: `Some(None)` when absent, `None`
    /// when this subject only answers through [`Subject::values`] (the default).
    fn attribute(&self, _name: &str) -> Option<Option<&str>> {
        None
    }
}

/// `op values` against the subject's values `have` (`None`: the subject is absent).
fn term<S: AsRef<str>>(op: &Op, values: &[String], have: Option<&[S]>) -> bool {
    let any = |f: &dyn Fn(&str) -> bool| have.is_some_and(|h| h.iter().any(|v| f(v.as_ref())));
    let first = values.first().map(String::as_str).unwrap_or_default();
    match op {
        Op::Exists => have.is_some(),
        Op::NotExists => have.is_none(),
        Op::Eq => any(&|v| v == first),
        Op::Ne => !any(&|v| v == first),
        Op::Gt => any(&|v| compare(v, first).is_gt()),
        Op::Ge => any(&|v| compare(v, first).is_ge()),
        Op::Lt => any(&|v| compare(v, first).is_lt()),
        Op::Le => any(&|v| compare(v, first).is_le()),
        Op::In => any(&|v| values.iter().any(|x| x == v)),
        Op::NotIn => !any(&|v| values.iter().any(|x| x == v)),
        Op::Matches(re) => any(&|v| re.is_match(v)),
        Op::NotMatches(re) => !any(&|v| re.is_match(v)),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            '[' => {
                out.push(Tok::LBracket);
                i += 1;
            }
            ']' => {
                out.push(Tok::RBracket);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '"' | '\'' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&x| x == c)
                    .ok_or_else(|| "unterminated quoted string".to_string())?;
                out.push(Tok::Word(chars[start..start + end].iter().collect()));
                i = start + end + 1;
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !matches!(chars[i], ' ' | '\t' | '\n' | '(' | ')' | '[' | ']' | ',')
                {
                    i += 1;
                }
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek_word(&self) -> Option<&str> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) => Some(w),
            _ => None,
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while matches!(self.peek_word(), Some("or" | "||")) {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while matches!(self.peek_word(), Some("and" | "&&")) {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if matches!(self.peek_word(), Some("not" | "!")) {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.toks.get(self.pos) == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.or()?;
            if self.toks.get(self.pos) != Some(&Tok::RParen) {
                return Err("missing ')'".into());
            }
            self.pos += 1;
            return Ok(e);
        }
        self.term()
    }

    fn word(&mut self, what: &str) -> Result<String, String> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) => {
                self.pos += 1;
                Ok(w.clone())
            }
            _ => Err(format!("expected {what}")),
        }
    }

    fn list(&mut self) -> Result<Vec<String>, String> {
        if self.toks.get(self.pos) != Some(&Tok::LBracket) {
            return Ok(vec![self.word("a value")?]);
        }
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            out.push(self.word("a list item")?);
            match self.toks.get(self.pos) {
                Some(Tok::Comma) => self.pos += 1,
                Some(Tok::RBracket) => {
                    self.pos += 1;
                    return Ok(out);
                }
                _ => return Err("expected ',' or ']'".into()),
            }
        }
    }

    fn term(&mut self) -> Result<Expr, String> {
        let subject = self.word("a subject")?;
        let op_word = self.word("an operator")?;
        let regex = |p: &str| {
            Regex::new(&format!("^(?:{p})$"))
                .map(Box::new)
                .map_err(|e| e.to_string())
        };
        let (op, values) = match op_word.as_str() {
            "exists" => (Op::Exists, vec![]),
            "!exists" | "not_exists" => (Op::NotExists, vec![]),
            "in" => (Op::In, self.list()?),
            "!in" | "not_in" => (Op::NotIn, self.list()?),
            "==" | "equals" => (Op::Eq, vec![self.word("a value")?]),
            "!=" | "not_equals" => (Op::Ne, vec![self.word("a value")?]),
            ">" => (Op::Gt, vec![self.word("a value")?]),
            ">=" => (Op::Ge, vec![self.word("a value")?]),
            "<" => (Op::Lt, vec![self.word("a value")?]),
            "<=" => (Op::Le, vec![self.word("a value")?]),
            "=~" | "matches" => {
                let v = self.word("a pattern")?;
                (Op::Matches(regex(&v)?), vec![v])
            }
            "!~" | "not_matches" => {
                let v = self.word("a pattern")?;
                (Op::NotMatches(regex(&v)?), vec![v])
            }
            other => return Err(format!("unknown operator '{other}'")),
        };
        Ok(Expr::Term {
            subject,
            op,
            values,
        })
    }
}

/// Parse an expression (at most 2000 characters, as ECS allows).
pub fn parse(s: &str) -> Result<Expr, String> {
    if s.len() > 2000 {
        return Err("expression is longer than 2000 characters".into());
    }
    let mut p = Parser {
        toks: tokenize(s)?,
        pos: 0,
    };
    let e = p.or()?;
    if p.pos != p.toks.len() {
        return Err("unexpected input after the expression".into());
    }
    Ok(e)
}

fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    }
}

impl Expr {
    /// Evaluate against `s`.
    pub fn eval(&self, s: &dyn Subject) -> bool {
        match self {
            Expr::And(a, b) => a.eval(s) && b.eval(s),
            Expr::Or(a, b) => a.eval(s) || b.eval(s),
            Expr::Not(a) => !a.eval(s),
            Expr::Term {
                subject,
                op,
                values,
            } => {
                if let Some(name) = subject.strip_prefix("attribute:")
                    && let Some(v) = s.attribute(name)
                {
                    return term(op, values, v.as_ref().map(std::slice::from_ref));
                }
                term(op, values, s.values(subject).as_deref())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct M(BTreeMap<&'static str, Vec<String>>);
    impl Subject for M {
        fn values(&self, s: &str) -> Option<Vec<String>> {
            self.0.get(s).cloned()
        }
    }

    /// The same subject answering `attribute:` through [`Subject::attribute`].
    struct Fast(M);
    impl Subject for Fast {
        fn values(&self, s: &str) -> Option<Vec<String>> {
            assert!(!s.starts_with("attribute:"), "{s} looked up by values");
            self.0.values(s)
        }
        fn attribute(&self, name: &str) -> Option<Option<&str>> {
            Some(
                self.0
                    .0
                    .get(format!("attribute:{name}").as_str())
                    .and_then(|v| v.first())
                    .map(String::as_str),
            )
        }
    }

    fn m() -> M {
        let mut x = BTreeMap::new();
        x.insert("attribute:ecs.os-type", vec!["linux".to_string()]);
        x.insert("attribute:tier", vec!["gpu".to_string()]);
        x.insert("runningTasksCount", vec!["3".to_string()]);
        x.insert(
            "task:group",
            vec!["service:web".to_string(), "family:job".to_string()],
        );
        M(x)
    }

    #[test]
    fn evaluates() {
        let cases = [
            ("attribute:ecs.os-type == linux", true),
            ("attribute:ecs.os-type != linux", false),
            ("attribute:tier exists", true),
            ("attribute:nope exists", false),
            ("attribute:nope !exists", true),
            ("attribute:nope != linux", true),
            ("attribute:nope == linux", false),
            ("attribute:tier in [gpu, cpu]", true),
            ("attribute:tier not_in [cpu]", true),
            ("attribute:tier =~ g.*", true),
            ("runningTasksCount > 2 and runningTasksCount <= 3", true),
            ("runningTasksCount > 10 || attribute:tier == gpu", true),
            ("not(task:group == service:web)", false),
            ("task:group == family:job", true),
            (
                "(attribute:tier == cpu or attribute:tier == gpu) && attribute:ecs.os-type equals linux",
                true,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(parse(e).unwrap().eval(&m()), want, "{e}");
            assert_eq!(parse(e).unwrap().eval(&Fast(m())), want, "{e}");
        }
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "attribute:x",
            "attribute:x ~~ y",
            "(a == b",
            "a == b c",
            "a in [b,",
            "a =~ (",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
