//! Developer tasks. `cargo xtask codegen` regenerates the wire shapes in
//! `crates/berth-api/src/generated/` from the vendored botocore models in
//! `crates/berth-api/model/`; `cargo xtask codegen --check` fails if they are stale
//! (a test in berth-api runs the same check).

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The services Berth speaks: (model file stem, Rust module name).
const SERVICES: &[(&str, &str)] = &[
    ("ecs", "ecs"),
    ("logs", "logs"),
    ("application-autoscaling", "application_autoscaling"),
    ("cloudwatch", "cloudwatch"),
    ("secretsmanager", "secretsmanager"),
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("codegen") => {
            let check = args.iter().any(|a| a == "--check");
            codegen(check)
        }
        _ => {
            eprintln!("usage: cargo xtask codegen [--check]");
            std::process::exit(2);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn codegen(check: bool) -> Result<()> {
    let api = root().join("crates/berth-api");
    let mut stale = Vec::new();
    for (stem, module) in SERVICES {
        let model_path = api.join("model").join(format!("{stem}.json"));
        let text = std::fs::read_to_string(&model_path)
            .with_context(|| format!("reading {}", model_path.display()))?;
        let model: Value = serde_json::from_str(&text)?;
        let code = generate(stem, &model)?;
        let out = api.join("src/generated").join(format!("{module}.rs"));
        let current = std::fs::read_to_string(&out).unwrap_or_default();
        if current != code {
            if check {
                stale.push(out.display().to_string());
            } else {
                std::fs::create_dir_all(out.parent().expect("has parent"))?;
                std::fs::write(&out, code)?;
                eprintln!("wrote {}", out.display());
            }
        }
    }
    if !stale.is_empty() {
        bail!(
            "generated code is stale, run `cargo xtask codegen`: {}",
            stale.join(", ")
        );
    }
    Ok(())
}

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// Names that would shadow std items the generated code uses.
const RESERVED_TYPES: &[&str] = &["Option", "Vec", "String", "Box", "BTreeMap", "Result"];

fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    if KEYWORDS.contains(&out.as_str()) {
        format!("r#{out}")
    } else {
        out
    }
}

fn variant_name(value: &str) -> String {
    let mut out = String::new();
    let mut upper_next = true;
    let all_upper = !value.chars().any(|c| c.is_ascii_lowercase());
    for c in value.chars() {
        if c.is_ascii_alphanumeric() {
            if upper_next {
                out.push(c.to_ascii_uppercase());
                upper_next = false;
            } else if all_upper {
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        } else {
            upper_next = true;
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'V');
    }
    if out == "Unknown" {
        out.push('_');
    }
    out
}

struct Gen<'a> {
    shapes: &'a Map<String, Value>,
    patterns: BTreeMap<String, usize>,
    out: String,
}

impl Gen<'_> {
    fn shape(&self, name: &str) -> Result<&Map<String, Value>> {
        self.shapes
            .get(name)
            .and_then(Value::as_object)
            .with_context(|| format!("shape {name} missing"))
    }

    fn kind(&self, name: &str) -> Result<&str> {
        Ok(self.shape(name)?["type"].as_str().unwrap_or(""))
    }

    fn is_enum(&self, name: &str) -> Result<bool> {
        Ok(self.shape(name)?.contains_key("enum"))
    }

    /// The Rust type of a value of shape `name` (without the surrounding Option).
    fn rust_type(&self, name: &str, boxed: &BTreeSet<(String, String)>) -> Result<String> {
        let _ = boxed;
        let s = self.shape(name)?;
        Ok(match self.kind(name)? {
            "string" if s.contains_key("enum") => name.to_string(),
            "string" | "blob" => "String".into(),
            "integer" => "i32".into(),
            "long" => "i64".into(),
            "double" | "float" => "f64".into(),
            "boolean" => "bool".into(),
            "timestamp" => "f64".into(),
            "list" => {
                let member = s["member"]["shape"].as_str().context("list member")?;
                format!("Vec<{}>", self.rust_type(member, boxed)?)
            }
            "map" => {
                let value = s["value"]["shape"].as_str().context("map value")?;
                format!("BTreeMap<String, {}>", self.rust_type(value, boxed)?)
            }
            "structure" | "union" if s.get("document").and_then(Value::as_bool) == Some(true) => {
                "serde_json::Value".into()
            }
            "structure" | "union" => name.to_string(),
            other => bail!("shape {name}: unsupported type {other}"),
        })
    }

    fn pattern_ref(&mut self, pattern: &str) -> String {
        let n = self.patterns.len();
        let idx = *self.patterns.entry(pattern.to_string()).or_insert(n);
        format!("Some(&PATTERN_{idx})")
    }

    /// A `Constraint` literal for the shape `name`.
    fn constraint(&mut self, name: &str) -> Result<String> {
        let s = self.shape(name)?.clone();
        let num = |k: &str| -> String {
            match s.get(k).and_then(Value::as_f64) {
                Some(v) => format!("Some({v:?})"),
                None => "None".into(),
            }
        };
        let pattern = match s.get("pattern").and_then(Value::as_str) {
            Some(p) => self.pattern_ref(p),
            None => "None".into(),
        };
        Ok(format!(
            "Constraint {{ min: {}, max: {}, pattern: {} }}",
            num("min"),
            num("max"),
            pattern
        ))
    }

    fn element_constraint(&mut self, name: &str) -> Result<String> {
        let s = self.shape(name)?.clone();
        let member = match self.kind(name)? {
            "list" => s["member"]["shape"].as_str().map(str::to_string),
            "map" => s["value"]["shape"].as_str().map(str::to_string),
            _ => None,
        };
        match member {
            Some(m) => self.constraint(&m),
            None => Ok("Constraint::NONE".into()),
        }
    }

    fn gen_enum(&mut self, name: &str, values: &[Value]) -> Result<()> {
        writeln!(self.out, "string_enum! {{")?;
        writeln!(self.out, "    /// Shape `{name}`.")?;
        writeln!(self.out, "    {name} {{")?;
        let mut seen = BTreeSet::new();
        for v in values {
            let v = v.as_str().context("enum value")?;
            let mut variant = variant_name(v);
            while !seen.insert(variant.clone()) {
                variant.push('_');
            }
            writeln!(self.out, "        {variant} = {v:?},")?;
        }
        writeln!(self.out, "    }}")?;
        writeln!(self.out, "}}\n")?;
        Ok(())
    }

    fn gen_struct(&mut self, name: &str, boxed: &BTreeSet<(String, String)>) -> Result<()> {
        let s = self.shape(name)?.clone();
        let required: BTreeSet<String> = s
            .get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let empty = Map::new();
        let members = s
            .get("members")
            .and_then(Value::as_object)
            .unwrap_or(&empty)
            .clone();
        let exception = s.contains_key("exception");
        writeln!(
            self.out,
            "/// Shape `{name}`{}.",
            if exception { " (an error)" } else { "" }
        )?;
        writeln!(
            self.out,
            "#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]"
        )?;
        // The serde impls are `checked_struct!`'s, which forward to the derived code and
        // accept a JSON object only (never an array).
        writeln!(self.out, "#[serde(remote = \"Self\")]")?;
        writeln!(self.out, "pub struct {name} {{")?;
        let mut validations = String::new();
        let mut used_fields = BTreeSet::new();
        for (member, spec) in &members {
            let target = spec["shape"].as_str().context("member shape")?;
            let mut field = snake(member);
            while !used_fields.insert(field.clone()) {
                field.push('_');
            }
            let mut ty = self.rust_type(target, boxed)?;
            if boxed.contains(&(name.to_string(), member.clone())) {
                ty = format!("Box<{ty}>");
            }
            let doc = if required.contains(member) {
                " (required)"
            } else {
                ""
            };
            writeln!(self.out, "    /// `{member}`{doc}.")?;
            writeln!(
                self.out,
                "    #[serde(rename = {member:?}, default, skip_serializing_if = \"Option::is_none\")]"
            )?;
            writeln!(self.out, "    pub {field}: Option<{ty}>,")?;
            let c = self.constraint(target)?;
            let ec = self.element_constraint(target)?;
            writeln!(
                validations,
                "        v.member({member:?}, &self.{field}, {}, &{c}, &{ec});",
                required.contains(member)
            )?;
        }
        writeln!(self.out, "}}\n")?;
        writeln!(self.out, "impl Validate for {name} {{")?;
        if validations.is_empty() {
            writeln!(self.out, "    fn validate(&self, _v: &mut Violations) {{}}")?;
        } else {
            writeln!(self.out, "    fn validate(&self, v: &mut Violations) {{")?;
            self.out.push_str(&validations);
            writeln!(self.out, "    }}")?;
        }
        writeln!(self.out, "}}\n")?;
        writeln!(self.out, "checked_struct!({name});\n")?;
        Ok(())
    }
}

/// Struct members that close a cycle and need a Box.
fn find_cycles(shapes: &Map<String, Value>) -> BTreeSet<(String, String)> {
    fn direct_struct_refs(shapes: &Map<String, Value>, name: &str) -> Vec<String> {
        // Lists and maps allocate, so only direct struct-in-struct edges need boxing.
        let Some(s) = shapes.get(name) else {
            return vec![];
        };
        match s["type"].as_str() {
            Some("structure") | Some("union") => s
                .get("members")
                .and_then(Value::as_object)
                .map(|m| {
                    m.values()
                        .filter_map(|v| v["shape"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            _ => vec![],
        }
    }
    let mut boxed = BTreeSet::new();
    for (name, s) in shapes {
        let Some(members) = s.get("members").and_then(Value::as_object) else {
            continue;
        };
        for (member, spec) in members {
            let Some(target) = spec["shape"].as_str() else {
                continue;
            };
            // Does `target` reach `name` through direct struct edges?
            let mut stack = vec![target.to_string()];
            let mut seen = BTreeSet::new();
            while let Some(n) = stack.pop() {
                if n == *name {
                    boxed.insert((name.clone(), member.clone()));
                    break;
                }
                if seen.insert(n.clone()) {
                    stack.extend(direct_struct_refs(shapes, &n));
                }
            }
        }
    }
    boxed
}

fn generate(stem: &str, model: &Value) -> Result<String> {
    let shapes = model["shapes"].as_object().context("shapes")?;
    let metadata = &model["metadata"];
    let mut g = Gen {
        shapes,
        patterns: BTreeMap::new(),
        out: String::new(),
    };
    let boxed = find_cycles(shapes);
    for name in shapes.keys() {
        if RESERVED_TYPES.contains(&name.as_str()) && g.kind(name)? == "structure" {
            bail!("shape {name} would shadow a std type");
        }
    }
    for (name, s) in shapes {
        let s = s.as_object().context("shape object")?;
        match s["type"].as_str() {
            Some("string") if s.contains_key("enum") => {
                let values = s["enum"].as_array().context("enum")?.clone();
                g.gen_enum(name, &values)?;
            }
            Some("structure") | Some("union") => {
                if s.get("document").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                g.gen_struct(name, &boxed)?;
            }
            _ => {}
        }
    }
    let _ = g.is_enum("");

    let mut head = String::new();
    writeln!(
        head,
        "//! Wire shapes of `{stem}` ({}), generated by `cargo xtask codegen` from",
        metadata["serviceFullName"].as_str().unwrap_or(stem)
    )?;
    writeln!(
        head,
        "//! `model/{stem}.json` (botocore {}). Do not edit by hand.\n",
        metadata["botocoreVersion"].as_str().unwrap_or("?")
    )?;
    writeln!(
        head,
        "#![allow(missing_docs, clippy::all, clippy::pedantic, unreachable_pub)]\n"
    )?;
    writeln!(
        head,
        "use crate::shape::{{Constraint, Validate, Violations, checked_struct, string_enum}};"
    )?;
    writeln!(head, "use regex::Regex;")?;
    writeln!(head, "use serde::{{Deserialize, Serialize}};")?;
    writeln!(head, "use std::collections::BTreeMap;")?;
    writeln!(head, "use std::sync::LazyLock;\n")?;
    writeln!(
        head,
        "/// The `X-Amz-Target` prefix of this service.\npub const TARGET_PREFIX: &str = {:?};\n",
        metadata["targetPrefix"].as_str().unwrap_or("")
    )?;
    let mut ops: Vec<(&String, &Value)> = model["operations"]
        .as_object()
        .context("operations")?
        .iter()
        .collect();
    ops.sort_by(|a, b| a.0.cmp(b.0));
    writeln!(
        head,
        "/// Every operation in the model: (name, input shape, output shape)."
    )?;
    writeln!(
        head,
        "pub const OPERATIONS: &[(&str, Option<&str>, Option<&str>)] = &["
    )?;
    for (name, op) in &ops {
        let input = op["input"]["shape"]
            .as_str()
            .map(|s| format!("Some({s:?})"));
        let output = op["output"]["shape"]
            .as_str()
            .map(|s| format!("Some({s:?})"));
        writeln!(
            head,
            "    ({name:?}, {}, {}),",
            input.unwrap_or_else(|| "None".into()),
            output.unwrap_or_else(|| "None".into())
        )?;
    }
    writeln!(head, "];\n")?;
    for (pattern, idx) in &g.patterns {
        writeln!(
            head,
            "static PATTERN_{idx}: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new({:?}).ok());",
            format!("^(?:{pattern})$")
        )?;
    }
    head.push('\n');
    head.push_str(&g.out);
    while head.ends_with("\n\n") {
        head.pop();
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    /// The committed generated code matches the vendored models and this generator.
    #[test]
    fn generated_code_is_fresh() {
        super::codegen(true).expect("run `cargo xtask codegen`");
    }
}
