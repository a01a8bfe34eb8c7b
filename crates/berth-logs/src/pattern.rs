//! CloudWatch Logs filter patterns for unstructured events: the subset Berth supports.
//!
//! - `ERROR` — the event contains the term (case-sensitive); several bare terms must all
//!   appear (`ERROR timeout`).
//! - `"Out of memory"` — a quoted phrase, matched as one string.
//! - `?ERROR ?WARN` — alternatives: at least one must appear.
//! - `-DEBUG` / `-"health check"` — the term must not appear.
//! - `%regex%` — a regular expression (CloudWatch's regex terms).
//!
//! An empty pattern matches every event. JSON (`{ $.x = ... }`) and space-delimited
//! (`[a, b]`) patterns are refused with `InvalidParameterException`.

use crate::LogsError;
use regex::Regex;

#[derive(Debug, Clone)]
enum Term {
    Text(String),
    Regex(Regex),
}

impl Term {
    fn matches(&self, message: &str) -> bool {
        match self {
            Term::Text(t) => message.contains(t.as_str()),
            Term::Regex(r) => r.is_match(message),
        }
    }
}

/// A parsed filter pattern.
#[derive(Debug, Clone, Default)]
pub struct FilterPattern {
    required: Vec<Term>,
    any_of: Vec<Term>,
    excluded: Vec<Term>,
}

fn invalid(pattern: &str, why: &str) -> LogsError {
    LogsError::invalid(format!("Invalid filter pattern '{pattern}': {why}"))
}

impl FilterPattern {
    /// Parse `pattern`.
    pub fn parse(pattern: &str) -> Result<FilterPattern, LogsError> {
        let trimmed = pattern.trim();
        if trimmed.starts_with('{') || trimmed.starts_with('[') {
            return Err(invalid(
                pattern,
                "JSON and space-delimited filter patterns are not supported by Berth; use terms, \"quoted phrases\", ?alternatives, -exclusions or %regex%",
            ));
        }
        let mut out = FilterPattern::default();
        let mut chars = trimmed.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let Some(&first) = chars.peek() else { break };
            let kind = match first {
                '?' | '-' => {
                    chars.next();
                    first
                }
                _ => ' ',
            };
            let term = match chars.peek() {
                Some('"') => {
                    chars.next();
                    let mut text = String::new();
                    let mut closed = false;
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => {
                                if let Some(n) = chars.next() {
                                    text.push(n);
                                }
                            }
                            '"' => {
                                closed = true;
                                break;
                            }
                            c => text.push(c),
                        }
                    }
                    if !closed {
                        return Err(invalid(pattern, "unterminated quoted phrase"));
                    }
                    Term::Text(text)
                }
                Some('%') => {
                    chars.next();
                    let mut text = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '%' {
                            closed = true;
                            break;
                        }
                        text.push(c);
                    }
                    if !closed {
                        return Err(invalid(pattern, "unterminated %regex%"));
                    }
                    let re = Regex::new(&text)
                        .map_err(|e| invalid(pattern, &format!("bad regular expression: {e}")))?;
                    Term::Regex(re)
                }
                _ => {
                    let mut text = String::new();
                    while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                        text.push(c);
                    }
                    if text.is_empty() {
                        return Err(invalid(pattern, "an operator must be followed by a term"));
                    }
                    Term::Text(text)
                }
            };
            match kind {
                '?' => out.any_of.push(term),
                '-' => out.excluded.push(term),
                _ => out.required.push(term),
            }
        }
        Ok(out)
    }

    /// Whether every event matches (no pattern).
    pub fn is_empty(&self) -> bool {
        self.required.is_empty() && self.any_of.is_empty() && self.excluded.is_empty()
    }

    /// Whether `message` matches.
    pub fn matches(&self, message: &str) -> bool {
        self.required.iter().all(|t| t.matches(message))
            && (self.any_of.is_empty() || self.any_of.iter().any(|t| t.matches(message)))
            && !self.excluded.iter().any(|t| t.matches(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, msg: &str) -> bool {
        FilterPattern::parse(p).unwrap().matches(msg)
    }

    #[test]
    fn terms_phrases_alternatives_exclusions_regexes() {
        assert!(m("", "anything"));
        assert!(m("   ", "anything"));
        assert!(m("ERROR", "an ERROR here"));
        assert!(!m("ERROR", "an error here"), "case-sensitive");
        assert!(m("ERROR timeout", "ERROR: timeout after 5s"));
        assert!(!m("ERROR timeout", "ERROR: refused"));
        assert!(m("\"Out of memory\"", "fatal: Out of memory"));
        assert!(!m("\"Out of memory\"", "Out of the memory"));
        assert!(m("?ERROR ?WARN", "WARN disk"));
        assert!(m("?ERROR ?WARN", "ERROR disk"));
        assert!(!m("?ERROR ?WARN", "INFO disk"));
        assert!(m("ERROR -retry", "ERROR fatal"));
        assert!(!m("ERROR -retry", "ERROR will retry"));
        assert!(!m("-\"health check\"", "GET /health check ok"));
        assert!(m("%line [0-9]+%", "line 42"));
        assert!(!m("%^line%", "a line"));
        assert!(m("\"say \\\"hi\\\"\"", "they say \"hi\""));
    }

    #[test]
    fn unsupported_and_malformed_patterns_are_refused() {
        for bad in [
            "{ $.level = \"x\" }",
            "[ip, user]",
            "\"open",
            "%open",
            "? ",
            "-",
        ] {
            let e = FilterPattern::parse(bad).unwrap_err();
            assert_eq!(e.code(), "InvalidParameterException", "{bad}");
        }
    }
}
