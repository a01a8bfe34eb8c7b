#![allow(clippy::unwrap_used)]
//! Model-driven end-to-end test: requests for every implemented ECS, CloudWatch Logs,
//! Application Auto Scaling and CloudWatch (metrics) operation, generated from botocore's
//! models (`crates/berth-api/model/{ecs,logs,application-autoscaling,cloudwatch}.json`)
//! with valid, boundary and invalid values (and some byte-level mutations), signed and sent
//! to a running `berth up`. Every answer must be below 500 and AWS-shaped (a refusal has
//! `__type` and `message`), Berth must stay up, and a refused request must change nothing:
//! a fingerprint of the state (List*/Describe* outputs) is compared around each refused
//! mutating request.
//!
//! `BERTH_MODEL_REQUESTS` sets how many requests (default 2,000, under a minute);
//! `BERTH_MODEL_SEED` the seed (default 1). For the long run:
//! `BERTH_MODEL_REQUESTS=20000 cargo test -p berth --test model_driven -- --nocapture`.

mod common;
#[path = "../../berth-core/tests/support/model_gen.rs"]
mod model_gen;

use common::{Berth, ECS_PREFIX, LOGS_PREFIX, Options};

/// Application Auto Scaling's `X-Amz-Target` prefix.
const AAS_PREFIX: &str = "AnyScaleFrontendService";
/// CloudWatch's `X-Amz-Target` prefix (AWS JSON 1.0).
const CW_PREFIX: &str = "GraniteServiceVersion20100801";

/// The content type the SDKs send with each protocol.
fn content_type(prefix: &str) -> &'static str {
    if prefix == CW_PREFIX {
        "application/x-amz-json-1.0"
    } else {
        "application/x-amz-json-1.1"
    }
}
use model_gen::{Mode, Model, mutate};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::time::Instant;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Api<'a> {
    berth: &'a Berth,
}

impl Api<'_> {
    fn send(&self, prefix: &str, op: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let target = format!("{prefix}.{op}");
        let r = self.berth.signed(
            "us-east-1",
            &[
                ("X-Amz-Target", &target),
                ("Content-Type", content_type(prefix)),
            ],
            body,
        );
        (r.status, r.body)
    }

    fn ok(&self, prefix: &str, op: &str, body: &Value) -> Value {
        let (status, out) = self.send(prefix, op, &serde_json::to_vec(body).unwrap());
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(status, 200, "{op} {body}: {v}");
        v
    }

    /// Every page of a listing, `field` of each concatenated.
    fn all(&self, prefix: &str, op: &str, body: &Value, field: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut body = body.clone();
        for _ in 0..100 {
            let page = self.ok(prefix, op, &body);
            out.extend(page[field].as_array().cloned().unwrap_or_default());
            // ECS and Logs page with `nextToken`, Application Auto Scaling with `NextToken`.
            let key = ["nextToken", "NextToken"]
                .into_iter()
                .find(|k| page.get(*k).and_then(Value::as_str).is_some());
            match key {
                Some(k) => body[k] = page[k].clone(),
                None => break,
            }
        }
        out
    }

    /// What a refused request must not change: clusters (with tags, settings and
    /// configuration, without the counters the scheduler moves), task definition families
    /// and revisions, services, container instances, log groups, scalable targets, scaling
    /// policies and scheduled actions.
    fn fingerprint(&self) -> Value {
        let clusters = self.all(
            ECS_PREFIX,
            "ListClusters",
            &json!({"maxResults": 100}),
            "clusterArns",
        );
        let mut described = Vec::new();
        for chunk in clusters.chunks(100) {
            let v = self.ok(
                ECS_PREFIX,
                "DescribeClusters",
                &json!({"clusters": chunk, "include": ["TAGS", "SETTINGS", "CONFIGURATIONS"]}),
            );
            for mut c in v["clusters"].as_array().cloned().unwrap_or_default() {
                if let Some(o) = c.as_object_mut() {
                    o.retain(|k, _| {
                        !(k.ends_with("Count") || k == "statistics" || k == "attachmentsStatus")
                    });
                }
                described.push(c);
            }
        }
        let services: Vec<Value> = clusters
            .iter()
            .map(|c| {
                json!(self.all(
                    ECS_PREFIX,
                    "ListServices",
                    &json!({"cluster": c, "maxResults": 100}),
                    "serviceArns"
                ))
            })
            .collect();
        let groups: Vec<Value> = self
            .all(LOGS_PREFIX, "DescribeLogGroups", &json!({}), "logGroups")
            .into_iter()
            .map(|g| json!([g["logGroupName"], g["retentionInDays"]]))
            .collect();
        let ns = json!({"ServiceNamespace": "ecs"});
        let targets: Vec<Value> = self
            .all(
                AAS_PREFIX,
                "DescribeScalableTargets",
                &ns,
                "ScalableTargets",
            )
            .into_iter()
            .map(|t| {
                json!([
                    t["ResourceId"],
                    t["MinCapacity"],
                    t["MaxCapacity"],
                    t["SuspendedState"]
                ])
            })
            .collect();
        let policies: Vec<Value> = self
            .all(
                AAS_PREFIX,
                "DescribeScalingPolicies",
                &ns,
                "ScalingPolicies",
            )
            .into_iter()
            .map(|p| {
                json!([
                    p["PolicyARN"],
                    p["TargetTrackingScalingPolicyConfiguration"]
                ])
            })
            .collect();
        let actions: Vec<Value> = self
            .all(
                AAS_PREFIX,
                "DescribeScheduledActions",
                &ns,
                "ScheduledActions",
            )
            .into_iter()
            .map(|a| {
                json!([
                    a["ScheduledActionARN"],
                    a["Schedule"],
                    a["Timezone"],
                    a["ScalableTargetAction"],
                    a["StartTime"],
                    a["EndTime"]
                ])
            })
            .collect();
        json!({
            "scalableTargets": targets,
            "scalingPolicies": policies,
            "scheduledActions": actions,
            "clusters": described,
            "families": self.all(ECS_PREFIX, "ListTaskDefinitionFamilies", &json!({"status": "ALL"}), "families"),
            "taskDefinitions": self.all(ECS_PREFIX, "ListTaskDefinitions", &json!({"status": "ACTIVE"}), "taskDefinitionArns"),
            "inactive": self.all(ECS_PREFIX, "ListTaskDefinitions", &json!({"status": "INACTIVE"}), "taskDefinitionArns"),
            "services": services,
            "instances": self.all(ECS_PREFIX, "ListContainerInstances", &json!({}), "containerInstanceArns"),
            "logGroups": groups,
        })
    }
}

fn read_only(op: &str) -> bool {
    ["Describe", "List", "Get", "Filter"]
        .iter()
        .any(|p| op.starts_with(p))
}

/// Operations the running Berth implements (the others answer that it does not).
fn implemented(api: &Api<'_>, prefix: &str, model: &Model) -> Vec<String> {
    model
        .operations()
        .into_iter()
        .filter(|op| {
            let (_, out) = api.send(prefix, op, b"{}");
            let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
            !v["message"]
                .as_str()
                .is_some_and(|m| m.contains("does not implement"))
        })
        .collect()
}

#[test]
fn generated_requests_never_fail_the_server_and_refusals_change_nothing() {
    let total = env_number("BERTH_MODEL_REQUESTS", 2_000);
    let seed = env_number("BERTH_MODEL_SEED", 1);
    // The process runtime, with room for few tasks: valid RunTask requests place a task
    // now and then, and nothing is pulled from a registry.
    let berth = Berth::start_with(Options {
        args: [
            "--runtime",
            "process",
            "--agent-cpu",
            "256",
            "--agent-memory",
            "256",
        ]
        .map(String::from)
        .to_vec(),
        ..Options::default()
    });
    let api = Api { berth: &berth };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../berth-api/model");
    let names: Vec<String> = ["default", "web", "web:1", "md", "svc", "g", "s", "missing"]
        .map(String::from)
        .to_vec();
    let hints: std::collections::BTreeMap<String, Vec<String>> = [
        ("cluster", vec!["default", "md"]),
        ("clusterName", vec!["md", "md2"]),
        ("clusters", vec!["default", "md"]),
        ("taskDefinition", vec!["web", "web:1"]),
        ("family", vec!["web"]),
        ("familyPrefix", vec!["web"]),
        ("serviceName", vec!["svc"]),
        ("service", vec!["svc"]),
        ("services", vec!["svc"]),
        (
            "resourceArn",
            vec![&format!("arn:aws:ecs:us-east-1:{}:cluster/md", common::ACCOUNT)[..]],
        ),
        ("logGroupName", vec!["g"]),
        ("logGroupNamePrefix", vec!["g"]),
        ("logStreamName", vec!["s"]),
        ("logStreamNamePrefix", vec!["s"]),
        ("image", vec!["busybox"]),
        ("ServiceNamespace", vec!["ecs"]),
        ("ResourceId", vec!["service/md/svc", "service/default/svc"]),
        ("ResourceIds", vec!["service/md/svc"]),
        ("ScalableDimension", vec!["ecs:service:DesiredCount"]),
        ("PolicyName", vec!["p"]),
        ("PolicyNames", vec!["p"]),
        ("ScheduledActionName", vec!["a"]),
        ("ScheduledActionNames", vec!["a"]),
        (
            "Schedule",
            vec![
                "rate(5 minutes)",
                "cron(0 12 * * ? *)",
                "at(2030-01-01T00:00:00)",
            ],
        ),
        ("Timezone", vec!["UTC", "Europe/Paris"]),
        ("Namespace", vec!["AWS/ECS"]),
        ("MetricName", vec!["CPUUtilization", "MemoryUtilization"]),
        ("Name", vec!["ClusterName", "ServiceName"]),
        ("Value", vec!["md", "svc"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    let mut ecs = Model::load(&dir.join("ecs.json"));
    ecs.names = names.clone();
    ecs.hints = hints.clone();
    let mut logs = Model::load(&dir.join("logs.json"));
    logs.names = names.clone();
    logs.hints = hints.clone();
    let mut aas = Model::load(&dir.join("application-autoscaling.json"));
    aas.names = names.clone();
    aas.hints = hints.clone();
    let mut cw = Model::load(&dir.join("cloudwatch.json"));
    cw.names = names;
    cw.hints = hints;

    // Things for valid requests to find.
    api.ok(ECS_PREFIX, "CreateCluster", &json!({"clusterName": "md"}));
    api.ok(
        ECS_PREFIX,
        "RegisterTaskDefinition",
        &json!({"family": "web", "containerDefinitions": [
            {"name": "app", "image": "busybox", "memory": 64, "command": ["sleep", "600"]}
        ]}),
    );
    api.ok(LOGS_PREFIX, "CreateLogGroup", &json!({"logGroupName": "g"}));
    api.ok(
        LOGS_PREFIX,
        "CreateLogStream",
        &json!({"logGroupName": "g", "logStreamName": "s"}),
    );
    api.ok(
        ECS_PREFIX,
        "CreateService",
        &json!({"cluster": "md", "serviceName": "svc", "taskDefinition": "web", "desiredCount": 0}),
    );
    api.ok(
        AAS_PREFIX,
        "RegisterScalableTarget",
        &json!({"ServiceNamespace": "ecs", "ResourceId": "service/md/svc",
                "ScalableDimension": "ecs:service:DesiredCount", "MinCapacity": 0, "MaxCapacity": 2}),
    );

    let ecs_ops = implemented(&api, ECS_PREFIX, &ecs);
    let logs_ops = implemented(&api, LOGS_PREFIX, &logs);
    let aas_ops = implemented(&api, AAS_PREFIX, &aas);
    let cw_ops = implemented(&api, CW_PREFIX, &cw);
    assert!(ecs_ops.len() >= 30, "{ecs_ops:?}");
    assert!(logs_ops.len() >= 10, "{logs_ops:?}");
    assert!(aas_ops.len() >= 10, "{aas_ops:?}");
    assert!(cw_ops.len() >= 3, "{cw_ops:?}");

    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fingerprint = api.fingerprint();
    let (mut ok, mut refused, mut checked) = (0u64, 0u64, 0u64);
    let mut problems: Vec<String> = Vec::new();
    let mut per_op: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for i in 0..total {
        let (prefix, model, ops) = match rng.random_range(0..100) {
            0..60 => (ECS_PREFIX, &ecs, &ecs_ops),
            60..80 => (LOGS_PREFIX, &logs, &logs_ops),
            80..93 => (AAS_PREFIX, &aas, &aas_ops),
            _ => (CW_PREFIX, &cw, &cw_ops),
        };
        let op = ops.choose(&mut rng).unwrap().clone();
        let mode = *[
            Mode::Valid,
            Mode::Valid,
            Mode::Boundary,
            Mode::Invalid,
            Mode::Invalid,
        ]
        .choose(&mut rng)
        .unwrap();
        let mut body = serde_json::to_vec(&model.request(&op, &mut rng, mode)).unwrap();
        if rng.random_bool(0.1) {
            mutate(&mut body, &mut rng);
        }
        let (status, out) = api.send(prefix, &op, &body);
        let shown = || {
            let text = String::from_utf8_lossy(&body);
            let cut: String = text.chars().take(300).collect();
            format!("#{i} {op} {cut}")
        };
        let answer: Value = match serde_json::from_slice(&out) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!(
                    "{}: {status}, the answer is not JSON ({e})",
                    shown()
                ));
                continue;
            }
        };
        if status >= 500 {
            problems.push(format!("{}: {status} {answer}", shown()));
        }
        let entry = per_op.entry(format!("{prefix}.{op}")).or_default();
        if status == 200 {
            ok += 1;
            entry.0 += 1;
            if !read_only(&op) {
                fingerprint = api.fingerprint();
            }
            continue;
        }
        refused += 1;
        entry.1 += 1;
        if mode == Mode::Valid && std::env::var_os("BERTH_MODEL_DEBUG").is_some() {
            eprintln!("valid refused: {} -> {answer}", shown());
        }
        let shaped = answer["__type"].as_str().is_some_and(|t| !t.is_empty())
            && answer["message"].is_string();
        if !shaped || !(400..500).contains(&status) {
            problems.push(format!(
                "{}: not an AWS-shaped refusal: {status} {answer}",
                shown()
            ));
        }
        if !read_only(&op) {
            checked += 1;
            let now = api.fingerprint();
            if now != fingerprint {
                problems.push(format!(
                    "{}: refused ({answer}) but the state changed",
                    shown()
                ));
                fingerprint = now;
            }
        }
    }
    let elapsed = started.elapsed();
    berth.assert_healthy();
    eprintln!(
        "model_driven: {total} requests in {elapsed:.1?} ({ok} answered, {refused} refused, {checked} refusals checked for no state change), {} ECS, {} Logs, {} Application Auto Scaling and {} CloudWatch operations, seed {seed}, {} problems",
        ecs_ops.len(),
        logs_ops.len(),
        aas_ops.len(),
        cw_ops.len(),
        problems.len()
    );
    let never_answered: Vec<&String> = per_op
        .iter()
        .filter(|(_, (ok, _))| *ok == 0)
        .map(|(op, _)| op)
        .collect();
    eprintln!("model_driven: operations never answered with 200: {never_answered:?}");
    assert!(
        problems.is_empty(),
        "{} problems, first ones:\n{}",
        problems.len(),
        problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(ok > total / 20, "too few valid requests succeeded: {ok}");
}
