//! The validation layer every AWS JSON service puts in front of its handlers: required
//! members, enum values, lengths, ranges and patterns from the service model, reported in
//! the words AWS uses ("1 validation error detected: Value 'x' at 'a.1.member.b' failed to
//! satisfy constraint: Member must not be null").

use regex::Regex;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// Limits a model attaches to a shape.
#[derive(Debug, Clone, Copy)]
pub struct Constraint {
    /// Minimum length (strings, lists, maps) or value (numbers).
    pub min: Option<f64>,
    /// Maximum length or value.
    pub max: Option<f64>,
    /// Regular expression the whole string must match.
    pub pattern: Option<&'static LazyLock<Option<Regex>>>,
}

impl Constraint {
    /// No constraint at all.
    pub const NONE: Constraint = Constraint {
        min: None,
        max: None,
        pattern: None,
    };
}

/// One broken constraint.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// Where, in AWS's path notation (`containerDefinitions.1.member.name`).
    pub path: String,
    /// The offending value as AWS prints it (`'abc'`, `12`, `null`).
    pub value: String,
    /// The constraint, e.g. `Member must not be null`.
    pub constraint: String,
}

/// Collects violations while walking a request.
#[derive(Debug, Default)]
pub struct Violations {
    path: Vec<String>,
    /// Everything found so far.
    pub found: Vec<Violation>,
}

/// A shape that can check itself against its model constraints.
pub trait Validate {
    /// Push every violation in `self` (and nested shapes) into `v`.
    fn validate(&self, v: &mut Violations);
}

/// What the generic checks need to know about a member's value.
pub trait Checked {
    /// Length for length constraints (characters for strings, items for collections).
    fn length(&self) -> Option<usize> {
        None
    }
    /// Numeric value for range constraints.
    fn number(&self) -> Option<f64> {
        None
    }
    /// The string to match patterns against.
    fn text(&self) -> Option<&str> {
        None
    }
    /// The value as AWS prints it in a validation message.
    fn describe(&self) -> String;
    /// Check nested members; `element` applies to list items and map values.
    fn check_inner(&self, _v: &mut Violations, _element: &Constraint) {}
}

impl Checked for String {
    fn length(&self) -> Option<usize> {
        Some(self.chars().count())
    }
    fn text(&self) -> Option<&str> {
        Some(self)
    }
    fn describe(&self) -> String {
        let shown: String = self.chars().take(256).collect();
        format!("'{shown}'")
    }
}

macro_rules! checked_number {
    ($($t:ty),*) => {$(
        impl Checked for $t {
            #[allow(clippy::cast_precision_loss)]
            fn number(&self) -> Option<f64> {
                Some(*self as f64)
            }
            fn describe(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
checked_number!(i32, i64, f64);

impl Checked for bool {
    fn describe(&self) -> String {
        self.to_string()
    }
}

impl Checked for serde_json::Value {
    fn describe(&self) -> String {
        "Document".into()
    }
}

impl<T: Checked> Checked for Box<T> {
    fn length(&self) -> Option<usize> {
        (**self).length()
    }
    fn number(&self) -> Option<f64> {
        (**self).number()
    }
    fn text(&self) -> Option<&str> {
        (**self).text()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn check_inner(&self, v: &mut Violations, element: &Constraint) {
        (**self).check_inner(v, element);
    }
}

impl<T: Checked> Checked for Vec<T> {
    fn length(&self) -> Option<usize> {
        Some(self.len())
    }
    fn describe(&self) -> String {
        format!(
            "[{}]",
            self.iter()
                .map(Checked::describe)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
    fn check_inner(&self, v: &mut Violations, element: &Constraint) {
        for (i, item) in self.iter().enumerate() {
            v.path.push(format!("{}.member", i + 1));
            v.check_value(item, element);
            // Structures and enums inside lists check their own members too.
            item.check_inner(v, &Constraint::NONE);
            v.path.pop();
        }
    }
}

impl<T: Checked> Checked for BTreeMap<String, T> {
    fn length(&self) -> Option<usize> {
        Some(self.len())
    }
    fn describe(&self) -> String {
        "Map".into()
    }
    fn check_inner(&self, v: &mut Violations, element: &Constraint) {
        for (k, item) in self {
            v.path.push(k.clone());
            v.check_value(item, element);
            item.check_inner(v, &Constraint::NONE);
            v.path.pop();
        }
    }
}

impl Violations {
    fn here(&self) -> String {
        self.path.join(".")
    }

    fn push(&mut self, value: String, constraint: String) {
        self.found.push(Violation {
            path: self.here(),
            value,
            constraint,
        });
    }

    /// Check one structure member.
    pub fn member<T: Checked>(
        &mut self,
        name: &str,
        value: &Option<T>,
        required: bool,
        constraint: &Constraint,
        element: &Constraint,
    ) {
        self.path.push(name.to_string());
        match value {
            None if required => self.push("null".into(), "Member must not be null".into()),
            None => {}
            Some(value) => {
                self.check_value(value, constraint);
                value.check_inner(self, element);
            }
        }
        self.path.pop();
    }

    fn check_value<T: Checked>(&mut self, value: &T, c: &Constraint) {
        if let Some(len) = value.length() {
            #[allow(clippy::cast_precision_loss)]
            let len_f = len as f64;
            if let Some(min) = c.min.filter(|m| len_f < *m) {
                self.push(
                    value.describe(),
                    format!("Member must have length greater than or equal to {min}"),
                );
            }
            if let Some(max) = c.max.filter(|m| len_f > *m) {
                self.push(
                    value.describe(),
                    format!("Member must have length less than or equal to {max}"),
                );
            }
        }
        if let Some(n) = value.number() {
            if let Some(min) = c.min.filter(|m| n < *m) {
                self.push(
                    value.describe(),
                    format!("Member must have value greater than or equal to {min}"),
                );
            }
            if let Some(max) = c.max.filter(|m| n > *m) {
                self.push(
                    value.describe(),
                    format!("Member must have value less than or equal to {max}"),
                );
            }
        }
        if let (Some(text), Some(pattern)) = (value.text(), c.pattern)
            && let Some(re) = pattern.as_ref()
            && !re.is_match(text)
        {
            let shown = re
                .as_str()
                .trim_start_matches("^(?:")
                .trim_end_matches(")$");
            self.push(
                value.describe(),
                format!("Member must satisfy regular expression pattern: {shown}"),
            );
        }
    }

    /// Record an enum value outside the model's set (called by `string_enum!` types).
    pub fn unknown_enum(&mut self, value: &str, allowed: &[&str]) {
        self.push(
            format!("'{value}'"),
            format!(
                "Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            ),
        );
    }

    /// AWS's rendering: "2 validation errors detected: Value ... ; Value ...".
    pub fn message(&self) -> Option<String> {
        if self.found.is_empty() {
            return None;
        }
        let n = self.found.len();
        let items: Vec<String> = self
            .found
            .iter()
            .map(|f| {
                format!(
                    "Value {} at '{}' failed to satisfy constraint: {}",
                    f.value, f.path, f.constraint
                )
            })
            .collect();
        Some(format!(
            "{n} validation error{} detected: {}",
            if n == 1 { "" } else { "s" },
            items.join("; ")
        ))
    }
}

/// Validate a whole request and render AWS's message if anything is wrong.
pub fn validate<T: Validate>(value: &T) -> Result<(), String> {
    let mut v = Violations::default();
    value.validate(&mut v);
    match v.message() {
        Some(m) => Err(m),
        None => Ok(()),
    }
}

/// Defines a model enum: known values as variants, anything else kept as `Unknown` so the
/// validator (not the JSON parser) reports it, with the value set AWS lists.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $value:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $(
                #[doc = concat!("`", $value, "`")]
                $variant,
            )*
            /// A value outside the model's set; refused by validation.
            Unknown(String),
        }

        impl $name {
            /// Every value the model allows, in model order.
            pub const VALUES: &'static [&'static str] = &[$($value),*];

            /// The wire string.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $value,)*
                    Self::Unknown(s) => s.as_str(),
                }
            }

            /// Parse a wire string (never fails: unknown values become `Unknown`).
            pub fn parse(s: &str) -> Self {
                match s {
                    $($value => Self::$variant,)*
                    other => Self::Unknown(other.to_string()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                Ok(Self::parse(&s))
            }
        }

        impl $crate::shape::Checked for $name {
            fn text(&self) -> Option<&str> {
                Some(self.as_str())
            }
            fn describe(&self) -> String {
                format!("'{}'", self.as_str())
            }
            fn check_inner(&self, v: &mut $crate::shape::Violations, _e: &$crate::shape::Constraint) {
                if let Self::Unknown(s) = self {
                    v.unknown_enum(s, Self::VALUES);
                }
            }
        }
    };
}
pub(crate) use string_enum;

/// Implements `Checked` for a generated structure: it checks its own members.
/// What a generated structure needs besides its fields: validation (`Checked`), and
/// serde impls that read a structure from a JSON object only. The structure derives serde
/// with `#[serde(remote = "Self")]`, which turns the derived code into inherent
/// `serialize`/`deserialize` functions; the impls here forward to them, and refuse a JSON
/// array where a structure belongs (serde's derive would read its members by position,
/// which no AWS JSON protocol allows) with an ordinary serde type error, so it becomes a
/// `SerializationException` with the member's path.
macro_rules! checked_struct {
    ($name:ident) => {
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                $name::serialize(self, serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct ObjectOnly;
                impl<'de> serde::de::Visitor<'de> for ObjectOnly {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!(
                            "a ",
                            stringify!($name),
                            " structure (a JSON object)"
                        ))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        map: A,
                    ) -> Result<$name, A::Error> {
                        $name::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    }
                }
                deserializer.deserialize_map(ObjectOnly)
            }
        }

        impl $crate::shape::Checked for $name {
            fn describe(&self) -> String {
                "Structure".into()
            }
            fn check_inner(
                &self,
                v: &mut $crate::shape::Violations,
                _e: &$crate::shape::Constraint,
            ) {
                $crate::shape::Validate::validate(self, v);
            }
        }
    };
}
pub(crate) use checked_struct;
