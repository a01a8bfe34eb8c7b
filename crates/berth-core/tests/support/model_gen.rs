//! Requests generated from botocore's service models (`crates/berth-api/model/*.json`):
//! valid, boundary and invalid values for every member of an operation's input, following
//! the model's types, required members, enums, lengths and ranges. Shared by the fuzz
//! test of the core (`berth-core/tests/fuzz_requests.rs`) and the end-to-end model-driven
//! test (`berth/tests/model_driven.rs`).

#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use rand::Rng;
use rand::seq::IndexedRandom;
use serde_json::{Map, Value, json};

/// How a generated value relates to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Within every constraint (names often of things that exist).
    Valid,
    /// At the edges: minimum and maximum lengths, sizes and values.
    Boundary,
    /// One member broken: wrong type, out of range, unknown enum value, missing required
    /// member, an array for a structure, too deep, too long.
    Invalid,
}

/// A service model.
pub struct Model {
    shapes: Map<String, Value>,
    operations: Map<String, Value>,
    /// Names that exist in the target (clusters, families, services, ...), used for
    /// valid strings half of the time.
    pub names: Vec<String>,
    /// Values for members of a given name (`cluster`, `logGroupName`, ...), used for valid
    /// strings most of the time, so that valid requests find what they name.
    pub hints: std::collections::BTreeMap<String, Vec<String>>,
}

fn num(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(|n| n.as_f64()).map(|f| f as i64)
}

impl Model {
    /// Load `crates/berth-api/model/<file>` given the path of the model directory.
    pub fn load(path: &std::path::Path) -> Model {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        Model {
            shapes: v["shapes"].as_object().unwrap().clone(),
            operations: v["operations"].as_object().unwrap().clone(),
            names: vec!["default".into()],
            hints: Default::default(),
        }
    }

    /// Every operation name.
    pub fn operations(&self) -> Vec<String> {
        self.operations.keys().cloned().collect()
    }

    /// The input shape of `op`.
    pub fn input(&self, op: &str) -> Option<&str> {
        self.operations.get(op)?["input"]["shape"].as_str()
    }

    /// Whether `op`'s input has a member `name`.
    pub fn has_member(&self, op: &str, name: &str) -> bool {
        self.input(op)
            .and_then(|i| self.shapes[i]["members"].get(name))
            .is_some()
    }

    /// A request body for `op`.
    pub fn request(&self, op: &str, rng: &mut impl Rng, mode: Mode) -> Value {
        let Some(input) = self.input(op) else {
            return json!({});
        };
        let valid_mode = if mode == Mode::Invalid {
            Mode::Valid
        } else {
            mode
        };
        let mut v = self.structure(input, rng, valid_mode, 0, true);
        if mode == Mode::Invalid {
            self.break_one(input, &mut v, rng, 0);
        }
        v
    }

    fn structure(
        &self,
        name: &str,
        rng: &mut impl Rng,
        mode: Mode,
        depth: usize,
        top: bool,
    ) -> Value {
        let s = &self.shapes[name];
        let required: Vec<&str> = s["required"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut out = Map::new();
        if let Some(members) = s["members"].as_object() {
            for (m, spec) in members {
                // A made-up paging token is only ever refused: leave it to invalid requests.
                if m == "nextToken" {
                    continue;
                }
                let include = required.contains(&m.as_str())
                    || (depth < 4 && rng.random_bool(if top { 0.3 } else { 0.15 }));
                if include {
                    let shape = spec["shape"].as_str().unwrap();
                    out.insert(m.clone(), self.value(shape, m, rng, mode, depth + 1));
                }
            }
        }
        Value::Object(out)
    }

    fn string(&self, s: &Value, member: &str, rng: &mut impl Rng, mode: Mode) -> Value {
        if let Some(values) = s["enum"].as_array() {
            return values.choose(rng).cloned().unwrap_or(json!(""));
        }
        let min = num(s, "min").unwrap_or(0).max(0) as usize;
        let max = num(s, "max").map_or(64, |m| m.max(0) as usize).min(2048);
        if mode == Mode::Boundary {
            let n = if rng.random_bool(0.5) {
                min.max(1)
            } else {
                max.max(min)
            };
            return json!("b".repeat(n));
        }
        if let Some(pool) = self.hints.get(member)
            && rng.random_bool(0.85)
            && let Some(v) = pool.choose(rng)
        {
            return json!(v);
        }
        if rng.random_bool(0.5) && !self.names.is_empty() {
            return json!(self.names.choose(rng).unwrap());
        }
        let lower = member.to_ascii_lowercase();
        let pool = if lower.contains("arn") {
            vec![
                "arn:aws:ecs:us-east-1:000000000000:cluster/default",
                "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1",
                "arn:aws:logs:us-east-1:000000000000:log-group:g",
            ]
        } else if lower.contains("image") {
            vec!["busybox", "nginx:1.27"]
        } else if lower.contains("cpu") || lower.contains("memory") {
            vec!["256", "512", "1024", "2 GB"]
        } else {
            vec!["md", "web", "svc", "g", "s", "app", "x-1"]
        };
        let base = (*pool.choose(rng).unwrap()).to_string();
        let mut t = base;
        while t.len() < min {
            t.push('a');
        }
        t.truncate(max.max(min).max(1));
        json!(t)
    }

    fn value(
        &self,
        name: &str,
        member: &str,
        rng: &mut impl Rng,
        mode: Mode,
        depth: usize,
    ) -> Value {
        let s = &self.shapes[name];
        match s["type"].as_str().unwrap_or("structure") {
            "string" => self.string(s, member, rng, mode),
            "integer" | "long" => {
                let min = num(s, "min").unwrap_or(0);
                let max = num(s, "max").unwrap_or(if s["type"] == "integer" {
                    i64::from(i32::MAX)
                } else {
                    i64::MAX
                });
                if mode == Mode::Boundary {
                    json!(if rng.random_bool(0.5) { min } else { max })
                } else {
                    json!(rng.random_range(min..=max.min(min.saturating_add(10))))
                }
            }
            "double" | "float" => json!(if mode == Mode::Boundary {
                0.0
            } else {
                rng.random_range(0.0..100.0)
            }),
            "boolean" => json!(rng.random_bool(0.5)),
            "timestamp" => json!(1_800_000_000 + rng.random_range(-100_000..100_000)),
            "blob" => json!("YmxvYg=="),
            "list" => {
                let elem = s["member"]["shape"].as_str().unwrap();
                let min = num(s, "min").unwrap_or(0).max(0) as usize;
                let max = num(s, "max").map_or(3, |m| m.max(0) as usize);
                let n = match mode {
                    Mode::Boundary if rng.random_bool(0.5) => min,
                    Mode::Boundary => max.min(20),
                    _ if depth > 4 => min,
                    _ => rng.random_range(min..=max.min(3).max(min)),
                };
                Value::Array(
                    (0..n)
                        .map(|_| self.value(elem, member, rng, mode, depth + 1))
                        .collect(),
                )
            }
            "map" => {
                let k = s["key"]["shape"].as_str().unwrap();
                let v = s["value"]["shape"].as_str().unwrap();
                let mut out = Map::new();
                for i in 0..rng.random_range(0..3) {
                    let key = match self.value(k, member, rng, Mode::Valid, depth + 1) {
                        Value::String(s) => format!("{s}{i}"),
                        other => other.to_string(),
                    };
                    out.insert(key, self.value(v, member, rng, mode, depth + 1));
                }
                Value::Object(out)
            }
            _ => self.structure(name, rng, mode, depth, false),
        }
    }

    /// An invalid value for `shape`.
    fn invalid(&self, name: &str, rng: &mut impl Rng) -> Value {
        let s = &self.shapes[name];
        let ty = s["type"].as_str().unwrap_or("structure");
        let choices: Vec<Value> = match ty {
            "string" => {
                let mut c = vec![
                    json!(1),
                    json!(true),
                    json!([]),
                    json!({}),
                    json!("x".repeat(70_000)),
                    json!("\u{0}\u{202e}\u{fffd}"),
                    json!(""),
                ];
                if s.get("enum").is_some() {
                    c.push(json!("NOT_A_VALUE"));
                }
                if let Some(max) = num(s, "max") {
                    c.push(json!("m".repeat((max as usize + 1).min(70_000))));
                }
                c
            }
            "integer" | "long" => {
                let mut c = vec![
                    json!("1"),
                    json!(1.5),
                    json!(-1),
                    json!(i64::MAX),
                    json!(9_223_372_036_854_775_808u64),
                    json!(-2_147_483_649i64),
                    json!(null),
                ];
                if let Some(max) = num(s, "max") {
                    c.push(json!(max.saturating_add(1)));
                }
                if let Some(min) = num(s, "min") {
                    c.push(json!(min.saturating_sub(1)));
                }
                c
            }
            "double" | "float" => vec![json!("nan"), json!(-1e308), json!(1e308), json!([])],
            "boolean" => vec![json!("true"), json!(1), json!({})],
            "timestamp" => vec![
                json!("yesterday"),
                json!(-1e300),
                json!(1e300),
                json!(i64::MIN),
            ],
            "list" => vec![
                json!({}),
                json!("x"),
                json!([null]),
                json!([[[[[]]]]]),
                Value::Array(vec![json!("x"); 1000]),
            ],
            "map" => vec![json!([]), json!("x"), json!({"k": [1]})],
            _ => vec![
                json!([]),
                json!("x"),
                json!(1),
                json!([{}]),
                json!({"unknownMember": 1}),
            ],
        };
        choices.choose(rng).cloned().unwrap_or(Value::Null)
    }

    /// Break one member of the structure `v` (of shape `name`), descending at random.
    fn break_one(&self, name: &str, v: &mut Value, rng: &mut impl Rng, depth: usize) {
        let s = &self.shapes[name];
        let Some(members) = s["members"].as_object() else {
            return;
        };
        let Some(obj) = v.as_object_mut() else {
            return;
        };
        let required: Vec<String> = s["required"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        // Drop a required member now and then.
        if !required.is_empty() && rng.random_bool(0.2) {
            obj.remove(required.choose(rng).unwrap());
            return;
        }
        let names: Vec<&String> = members.keys().collect();
        let Some(m) = names.choose(rng) else {
            obj.insert("nextToken".into(), json!("forged-token"));
            return;
        };
        let shape = members[m.as_str()]["shape"].as_str().unwrap();
        let is_struct = self.shapes[shape]["type"] == "structure";
        if is_struct && depth < 3 && rng.random_bool(0.5) {
            let mut inner = obj
                .get(m.as_str())
                .cloned()
                .unwrap_or_else(|| self.structure(shape, rng, Mode::Valid, depth + 1, false));
            self.break_one(shape, &mut inner, rng, depth + 1);
            obj.insert((*m).clone(), inner);
        } else {
            obj.insert((*m).clone(), self.invalid(shape, rng));
        }
    }
}

/// Byte-level mutations of a serialized body: flips, JSON fragments spliced in,
/// truncation, duplication.
pub fn mutate(body: &mut Vec<u8>, rng: &mut impl Rng) {
    const FRAGMENTS: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b"\\",
        b",",
        b":",
        b"null",
        b"true",
        b"-0",
        b"1e999",
        b"9223372036854775808",
        b"\"\\ud800\"",
        b"{\"a\":",
        b"[[[[[[[[",
        b"\xff\xfe",
        b"\"nextToken\":\"00\"",
    ];
    for _ in 0..rng.random_range(1..4) {
        let at = if body.is_empty() {
            0
        } else {
            rng.random_range(0..=body.len())
        };
        match rng.random_range(0..5) {
            0 if !body.is_empty() => {
                let i = rng.random_range(0..body.len());
                body[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let f = FRAGMENTS.choose(rng).unwrap();
                body.splice(at..at, f.iter().copied());
            }
            2 => body.truncate(at),
            3 if !body.is_empty() => {
                let end = rng.random_range(at..=body.len());
                let copy = body[at..end].to_vec();
                body.splice(at..at, copy);
            }
            _ if !body.is_empty() => {
                let end = rng.random_range(at..=body.len().min(at + 8));
                body.drain(at..end);
            }
            _ => {}
        }
    }
}
