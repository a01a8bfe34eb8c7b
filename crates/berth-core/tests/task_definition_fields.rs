//! Field coverage of task definitions against botocore's ECS model.
//!
//! The test reads the vendored model (`crates/berth-api/model/ecs.json`) and builds, from the
//! model alone, a RegisterTaskDefinition request with every member of every structure
//! reachable from `RegisterTaskDefinitionRequest` populated. A small table of overrides
//! makes the generic values valid (names that other members refer to, ports, ranges ECS
//! enforces, one volume type per volume, ...). The request goes through the wire decoder
//! (`berth_api::decode`, so the model's own validation runs) and `berth_core`'s
//! RegisterTaskDefinition; DescribeTaskDefinition must then return every member path of
//! the input with the same value, and every member of the model's `TaskDefinition` that a
//! request can set. A field the model has and Berth drops fails here.
//!
//! ECS forbids some members together (`links`, `hostname`, DNS and extra hosts need
//! `bridge`; an App Mesh `proxyConfiguration` needs `awsvpc`), so no single valid request
//! can hold every member. The test registers two maximal requests, one per network mode,
//! each as full as its mode allows, and checks that together they cover the whole model.
//!
//! Values ECS converts are compared after conversion: task `cpu` "1 vCPU" is stored as
//! "1024" and `memory` "2 GB" as "2048" (RegisterTaskDefinition documents the conversion).
//!
//! Finally the stored records are persisted and reloaded (`World::load`), and describe
//! must return the same documents after the "restart".

// Test code: helpers may panic on anything unexpected.
#![allow(clippy::unwrap_used)]

use berth_api::ecs::{
    DeleteTaskDefinitionsRequest, DeregisterTaskDefinitionRequest, DescribeTaskDefinitionRequest,
    RegisterTaskDefinitionRequest, TaskDefinitionField,
};
use berth_api::{Service, decode, encode};
use berth_core::state::{Kind, TaskDefinitionRecord, keys};
use berth_core::{Ctx, Mutation, PartitionKey, Record, World, task_definition};
use rand::SeedableRng;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const NOW_MS: i64 = 1_700_000_000_000;

// ---------------------------------------------------------------------------------------
// The model.

struct Model {
    shapes: Map<String, Value>,
}

impl Model {
    fn load() -> Model {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../berth-api/model/ecs.json");
        let text = std::fs::read_to_string(path).unwrap();
        let mut doc: Value = serde_json::from_str(&text).unwrap();
        let shapes = doc["shapes"].as_object_mut().map(std::mem::take).unwrap();
        Model { shapes }
    }

    fn shape(&self, name: &str) -> &Value {
        self.shapes
            .get(name)
            .unwrap_or_else(|| panic!("model has no shape {name}"))
    }

    fn kind(&self, name: &str) -> &str {
        self.shape(name)["type"].as_str().unwrap()
    }

    fn members(&self, name: &str) -> Vec<(String, String)> {
        self.shape(name)["members"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v["shape"].as_str().unwrap().to_string()))
            .collect()
    }

    /// Every member path reachable from `shape`: `a.b`, `a[].b` for list elements, `a{}`
    /// for map values.
    fn paths(&self, shape: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect_paths(shape, "", &mut out, 0);
        out
    }

    fn collect_paths(&self, shape: &str, prefix: &str, out: &mut BTreeSet<String>, depth: usize) {
        assert!(depth < 20, "recursive shape at {prefix}");
        match self.kind(shape) {
            "structure" => {
                for (member, target) in self.members(shape) {
                    let path = join(prefix, &member);
                    out.insert(path.clone());
                    self.collect_paths(&target, &path, out, depth + 1);
                }
            }
            "list" => {
                let element = self.shape(shape)["member"]["shape"].as_str().unwrap();
                self.collect_paths(element, &format!("{prefix}[]"), out, depth + 1);
            }
            "map" => {
                let value = self.shape(shape)["value"]["shape"].as_str().unwrap();
                let path = format!("{prefix}{{}}");
                out.insert(path.clone());
                self.collect_paths(value, &path, out, depth + 1);
            }
            _ => {}
        }
    }
}

fn join(prefix: &str, member: &str) -> String {
    if prefix.is_empty() {
        member.to_string()
    } else {
        format!("{prefix}.{member}")
    }
}

// ---------------------------------------------------------------------------------------
// Generating a maximal request from the model.

/// List lengths by generic path (default 1). Lists whose elements take different shapes
/// (one volume type per volume, a single port or a range per mapping) are longer.
fn list_len(path: &str) -> usize {
    match path {
        "containerDefinitions" => 3,
        "volumes" => EXCLUSIVE_VOLUME_MEMBERS.len(),
        "containerDefinitions[].portMappings" => 2,
        "containerDefinitions[].resourceRequirements" => 2,
        "containerDefinitions[].dependsOn" => 2,
        _ => 1,
    }
}

/// A volume has one type: element i keeps only the i-th of these members.
const EXCLUSIVE_VOLUME_MEMBERS: [&str; 6] = [
    "host",
    "dockerVolumeConfiguration",
    "efsVolumeConfiguration",
    "fsxWindowsFileServerVolumeConfiguration",
    "s3filesVolumeConfiguration",
    "configuredAtLaunch",
];

struct Generator<'m> {
    model: &'m Model,
    next_int: i64,
}

impl Generator<'_> {
    /// A value for `shape` at `path` (generic) with list indices `idx`.
    fn value(&mut self, shape: &str, path: &str, idx: &[usize], leaf: &str) -> Value {
        let s = self.model.shape(shape);
        let suffix: String = idx.iter().map(|i| format!("-{i}")).collect();
        match self.model.kind(shape) {
            "structure" => {
                let mut obj = Map::new();
                for (member, target) in self.model.members(shape) {
                    let p = join(path, &member);
                    obj.insert(member.clone(), self.value(&target, &p, idx, &member));
                }
                Value::Object(obj)
            }
            "list" => {
                let element = s["member"]["shape"].as_str().unwrap().to_string();
                let items = (0..list_len(path))
                    .map(|i| {
                        let mut idx = idx.to_vec();
                        idx.push(i);
                        self.value(&element, &format!("{path}[]"), &idx, leaf)
                    })
                    .collect();
                Value::Array(items)
            }
            "map" => {
                let value = s["value"]["shape"].as_str().unwrap().to_string();
                let v = self.value(&value, &format!("{path}{{}}"), idx, leaf);
                json!({ format!("{}-key{suffix}", leaf.to_lowercase()): v })
            }
            "string" => match s.get("enum") {
                Some(values) => values[0].clone(),
                None => json!(format!("{}{suffix}", leaf.to_lowercase())),
            },
            "integer" | "long" => {
                // Distinct values (so swapped members would show), inside every range ECS
                // enforces on a member without an override.
                let n = 21 + self.next_int % 39;
                self.next_int += 1;
                json!(n)
            }
            "boolean" => json!(true),
            other => panic!("no generator for {other} shapes ({path})"),
        }
    }
}

/// Apply `f` to every node `pointer` names; `*` matches every element of a list.
fn each(v: &mut Value, pointer: &str, f: &mut dyn FnMut(&mut Value)) {
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    fn walk(v: &mut Value, parts: &[&str], f: &mut dyn FnMut(&mut Value)) {
        let Some((first, rest)) = parts.split_first() else {
            f(v);
            return;
        };
        match (*first, v) {
            ("*", Value::Array(items)) => {
                for item in items {
                    walk(item, rest, f);
                }
            }
            (key, Value::Array(items)) => {
                let i: usize = key.parse().unwrap();
                walk(&mut items[i], rest, f);
            }
            (key, Value::Object(obj)) => {
                let child = obj
                    .get_mut(key)
                    .unwrap_or_else(|| panic!("override names a missing member {key}"));
                walk(child, rest, f);
            }
            (key, other) => panic!("cannot descend into {other} at {key}"),
        }
    }
    walk(v, &parts, f);
}

fn set(v: &mut Value, pointer: &str, value: Value) {
    each(v, pointer, &mut |x| *x = value.clone());
}

fn remove(v: &mut Value, pointer: &str) {
    let (parent, member) = pointer.rsplit_once('/').unwrap();
    each(v, parent, &mut |x| {
        x.as_object_mut().unwrap().remove(member);
    });
}

/// The overrides that make the generic maximal request valid, as ECS validates it.
fn make_valid(req: &mut Value) {
    let overrides: Vec<(&str, Value)> = vec![
        ("/family", json!("maximal")),
        ("/cpu", json!("1 vCPU")),
        ("/memory", json!("2 GB")),
        ("/taskRoleArn", json!("arn:aws:iam::123456789012:role/app")),
        (
            "/executionRoleArn",
            json!("arn:aws:iam::123456789012:role/exec"),
        ),
        ("/runtimePlatform/operatingSystemFamily", json!("LINUX")),
        ("/ephemeralStorage/sizeInGiB", json!(30)),
        ("/inferenceAccelerators/0/deviceName", json!("eia-0")),
        (
            "/placementConstraints/0/expression",
            json!("attribute:ecs.instance-type =~ t3.*"),
        ),
        ("/proxyConfiguration/containerName", json!("app")),
        // Containers: app (essential) waits for sidecar (HEALTHY) and init (COMPLETE);
        // sidecar waits for init (SUCCESS); init is non-essential and waits for nobody.
        ("/containerDefinitions/0/name", json!("app")),
        ("/containerDefinitions/1/name", json!("sidecar")),
        ("/containerDefinitions/2/name", json!("init")),
        (
            "/containerDefinitions/0/image",
            json!("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1"),
        ),
        ("/containerDefinitions/2/essential", json!(false)),
        (
            "/containerDefinitions/0/dependsOn",
            json!([
                { "containerName": "sidecar", "condition": "HEALTHY" },
                { "containerName": "init", "condition": "COMPLETE" }
            ]),
        ),
        (
            "/containerDefinitions/1/dependsOn",
            json!([{ "containerName": "init", "condition": "SUCCESS" }]),
        ),
        ("/containerDefinitions/2/dependsOn", json!([])),
        (
            "/containerDefinitions/0/volumesFrom/0/sourceContainer",
            json!("sidecar"),
        ),
        (
            "/containerDefinitions/1/volumesFrom/0/sourceContainer",
            json!("init"),
        ),
        ("/containerDefinitions/2/volumesFrom", json!([])),
        ("/containerDefinitions/*/links", json!(["init:setup"])),
        ("/containerDefinitions/*/memory", json!(256)),
        ("/containerDefinitions/*/memoryReservation", json!(128)),
        (
            "/containerDefinitions/*/healthCheck/command",
            json!(["CMD-SHELL", "exit 0"]),
        ),
        ("/containerDefinitions/*/healthCheck/retries", json!(3)),
        (
            "/containerDefinitions/*/restartPolicy/restartAttemptPeriod",
            json!(300),
        ),
        ("/containerDefinitions/*/ulimits/0/name", json!("nofile")),
        ("/containerDefinitions/*/ulimits/0/softLimit", json!(1024)),
        ("/containerDefinitions/*/ulimits/0/hardLimit", json!(4096)),
        (
            "/containerDefinitions/*/linuxParameters/capabilities/add",
            json!(["SYS_PTRACE"]),
        ),
        (
            "/containerDefinitions/*/linuxParameters/capabilities/drop",
            json!(["NET_RAW"]),
        ),
        (
            "/containerDefinitions/*/dockerSecurityOptions",
            json!(["no-new-privileges"]),
        ),
        (
            "/containerDefinitions/*/environmentFiles/0/value",
            json!("arn:aws:s3:::config/app.env"),
        ),
        (
            "/containerDefinitions/*/secrets/0/valueFrom",
            json!("arn:aws:ssm:us-east-1:123456789012:parameter/db"),
        ),
        (
            "/containerDefinitions/*/resourceRequirements/0/value",
            json!("1"),
        ),
        (
            "/containerDefinitions/*/resourceRequirements/1/type",
            json!("InferenceAccelerator"),
        ),
        (
            "/containerDefinitions/*/resourceRequirements/1/value",
            json!("eia-0"),
        ),
        (
            "/containerDefinitions/*/credentialSpecs",
            json!(["credentialspec:arn:aws:ssm:us-east-1:123456789012:parameter/gmsa"]),
        ),
        (
            "/containerDefinitions/0/logConfiguration",
            json!({
                "logDriver": "awslogs",
                "options": { "awslogs-group": "/ecs/maximal", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "app" },
                "secretOptions": [{ "name": "token", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:t" }]
            }),
        ),
        (
            "/containerDefinitions/1/logConfiguration/logDriver",
            json!("awsfirelens"),
        ),
        (
            "/containerDefinitions/*/firelensConfiguration/options",
            json!({ "enable-ecs-log-metadata": "true" }),
        ),
        // EFS and S3 Files access points fix the root directory at "/".
        (
            "/volumes/2/efsVolumeConfiguration/rootDirectory",
            json!("/"),
        ),
        (
            "/volumes/4/s3filesVolumeConfiguration/rootDirectory",
            json!("/"),
        ),
    ];
    for (pointer, value) in overrides {
        set(req, pointer, value);
    }
    // Each port mapping is a single port or a range (ECS refuses both at once).
    for pointer in [
        "/containerDefinitions/*/portMappings/0/containerPortRange",
        "/containerDefinitions/*/portMappings/1/containerPort",
        "/containerDefinitions/*/portMappings/1/hostPort",
    ] {
        remove(req, pointer);
    }
    // One volume type per volume; names that mount points refer to.
    let volumes = req["volumes"].as_array_mut().unwrap();
    for (i, v) in volumes.iter_mut().enumerate() {
        let obj = v.as_object_mut().unwrap();
        for (j, member) in EXCLUSIVE_VOLUME_MEMBERS.iter().enumerate() {
            if i != j {
                obj.remove(*member);
            }
        }
        obj.insert("name".into(), json!(format!("vol-{i}")));
    }
    for (i, c) in req["containerDefinitions"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        c["mountPoints"][0]["sourceVolume"] = json!(format!("vol-{i}"));
        c["portMappings"][1]["containerPortRange"] =
            json!(format!("{}-{}", 8000 + i * 100, 8010 + i * 100));
    }
}

/// The network-mode variants: each one as full as ECS allows in that mode.
fn profiles(maximal: &Value) -> Vec<(&'static str, Value)> {
    let mut bridge = maximal.clone();
    bridge["networkMode"] = json!("bridge");
    // An App Mesh proxy needs awsvpc.
    bridge.as_object_mut().unwrap().remove("proxyConfiguration");

    let mut awsvpc = maximal.clone();
    awsvpc["networkMode"] = json!("awsvpc");
    for member in [
        "links",
        "hostname",
        "dnsServers",
        "dnsSearchDomains",
        "extraHosts",
        "disableNetworking",
    ] {
        remove(&mut awsvpc, &format!("/containerDefinitions/*/{member}"));
    }
    each(
        &mut awsvpc,
        "/containerDefinitions/*/portMappings/0",
        &mut |pm| {
            pm["hostPort"] = pm["containerPort"].clone();
        },
    );
    vec![("bridge", bridge), ("awsvpc", awsvpc)]
}

// ---------------------------------------------------------------------------------------
// Walking documents alongside the model.

/// Every member occurrence in `v` (a document of `shape`): (generic path, indexed path,
/// value). Members the model does not know are reported with a `?` generic path.
fn occurrences(model: &Model, shape: &str, v: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    walk(model, shape, v, "", "", &mut out);
    out
}

fn walk(
    model: &Model,
    shape: &str,
    v: &Value,
    generic: &str,
    indexed: &str,
    out: &mut Vec<(String, String, Value)>,
) {
    match (model.kind(shape), v) {
        ("structure", Value::Object(obj)) => {
            let members: BTreeMap<String, String> = model.members(shape).into_iter().collect();
            for (k, child) in obj {
                let g = join(generic, k);
                let i = join(indexed, k);
                match members.get(k) {
                    Some(target) => {
                        out.push((g.clone(), i.clone(), child.clone()));
                        walk(model, target, child, &g, &i, out);
                    }
                    None => out.push((format!("?{g}"), i, child.clone())),
                }
            }
        }
        ("list", Value::Array(items)) => {
            let element = model.shape(shape)["member"]["shape"].as_str().unwrap();
            for (n, item) in items.iter().enumerate() {
                walk(
                    model,
                    element,
                    item,
                    &format!("{generic}[]"),
                    &format!("{indexed}[{n}]"),
                    out,
                );
            }
        }
        ("map", Value::Object(obj)) => {
            let value = model.shape(shape)["value"]["shape"].as_str().unwrap();
            for (k, child) in obj {
                let g = format!("{generic}{{}}");
                let i = format!("{indexed}{{{k}}}");
                out.push((g.clone(), i.clone(), child.clone()));
                walk(model, value, child, &g, &i, out);
            }
        }
        _ => {}
    }
}

fn leaves(occ: &[(String, String, Value)]) -> BTreeMap<String, Value> {
    occ.iter()
        .filter(|(_, _, v)| match v {
            Value::Object(o) => o.is_empty(),
            Value::Array(a) => a.is_empty() || !a.iter().any(|x| x.is_object() || x.is_array()),
            _ => true,
        })
        .map(|(_, i, v)| (i.clone(), v.clone()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Running operations.

fn partition() -> PartitionKey {
    PartitionKey {
        account: ACCOUNT.into(),
        region: REGION.into(),
    }
}

fn with_ctx<T>(f: impl FnOnce(&mut Ctx<'_>) -> T) -> (T, Vec<Mutation>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut ctx = Ctx::new(NOW_MS, partition(), "root", &mut rng);
    let out = f(&mut ctx);
    (out, ctx.mutations)
}

fn register(world: &mut World, body: &Value) -> (Value, Vec<Mutation>) {
    let bytes = serde_json::to_vec(body).unwrap();
    let req: RegisterTaskDefinitionRequest = decode(Service::Ecs, &bytes)
        .unwrap_or_else(|e| panic!("the model refuses the maximal request: {e}"));
    let p = world.partition(&partition());
    let (resp, mutations) = with_ctx(|ctx| task_definition::register(p, ctx, req));
    let resp = resp.unwrap_or_else(|e| panic!("Berth refuses the maximal request: {e}"));
    (serde_json::from_slice(&encode(&resp)).unwrap(), mutations)
}

fn describe(world: &mut World, reference: &str) -> Value {
    let req = DescribeTaskDefinitionRequest {
        task_definition: Some(reference.into()),
        include: Some(vec![TaskDefinitionField::Tags]),
    };
    let p = world.partition(&partition());
    let (resp, _) = with_ctx(|ctx| task_definition::describe(p, ctx, req));
    serde_json::from_slice(&encode(&resp.unwrap())).unwrap()
}

/// Input values as ECS stores them.
fn converted(path: &str, v: &Value) -> Value {
    match (path, v.as_str()) {
        ("cpu", Some(s)) => json!(task_definition::parse_cpu(s).unwrap().to_string()),
        ("memory", Some(s)) => json!(task_definition::parse_memory(s).unwrap().to_string()),
        _ => v.clone(),
    }
}

#[test]
fn every_model_member_survives_register_describe_and_restart() {
    let model = Model::load();
    let request_paths = model.paths("RegisterTaskDefinitionRequest");
    let output_paths = model.paths("TaskDefinition");

    let mut generator = Generator {
        model: &model,
        next_int: 0,
    };
    let mut maximal = generator.value("RegisterTaskDefinitionRequest", "", &[], "request");
    make_valid(&mut maximal);

    let mut covered_in = BTreeSet::new();
    let mut covered_out = BTreeSet::new();
    let mut world = World::default();
    let mut persisted: Vec<Record> = Vec::new();
    let mut described = Vec::new();
    for (mode, body) in profiles(&maximal) {
        let input = occurrences(&model, "RegisterTaskDefinitionRequest", &body);
        assert!(input.iter().all(|(g, _, _)| !g.starts_with('?')));
        covered_in.extend(input.iter().map(|(g, _, _)| g.clone()));

        let (registered, mutations) = register(&mut world, &body);
        let revision = registered["taskDefinition"]["revision"].as_i64().unwrap();
        let reference = format!("maximal:{revision}");
        let out = describe(&mut world, &reference);
        assert_eq!(
            out["taskDefinition"], registered["taskDefinition"],
            "{mode}: register and describe differ"
        );

        // Tags come back beside the task definition.
        assert_eq!(out["tags"], body["tags"], "{mode}: tags");

        let td = &out["taskDefinition"];
        let output = occurrences(&model, "TaskDefinition", td);
        let unknown: Vec<&String> = output
            .iter()
            .filter(|(g, _, _)| g.starts_with('?'))
            .map(|(g, _, _)| g)
            .collect();
        assert!(
            unknown.is_empty(),
            "{mode}: members outside the model: {unknown:?}"
        );
        covered_out.extend(output.iter().map(|(g, _, _)| g.clone()));

        // Every input member path is in the output with the same value.
        let want = leaves(&input);
        let got = leaves(&output);
        let mut wrong = Vec::new();
        for (path, value) in &want {
            if path == "tags" || path.starts_with("tags[") {
                continue;
            }
            let expected = converted(path, value);
            match got.get(path) {
                Some(v) if *v == expected => {}
                Some(v) => wrong.push(format!("{path}: sent {value}, described {v}")),
                None => wrong.push(format!("{path}: sent {value}, missing from describe")),
            }
        }
        assert!(
            wrong.is_empty(),
            "{mode}: {} members lost or changed:\n{}",
            wrong.len(),
            wrong.join("\n")
        );

        for m in mutations {
            if let Mutation::Put(r) = m {
                persisted.push(r);
            }
        }
        described.push((reference, out));
    }

    // The generator populated the whole request shape (so the checks above saw every member).
    let missing: Vec<&String> = request_paths.difference(&covered_in).collect();
    assert!(
        missing.is_empty(),
        "the maximal requests leave out {missing:?}"
    );

    // Every TaskDefinition member a request can set came back.
    let settable: BTreeSet<&String> = output_paths.intersection(&request_paths).collect();
    let dropped: Vec<&&String> = settable
        .iter()
        .filter(|p| !covered_out.contains(**p))
        .collect();
    assert!(dropped.is_empty(), "Berth drops model members: {dropped:?}");
    assert!(!settable.is_empty());

    // Restart: the persisted records rebuild a world that describes the same documents.
    let mut reloaded = World::load(persisted.clone()).unwrap();
    for (reference, before) in &described {
        assert_eq!(
            &describe(&mut reloaded, reference),
            before,
            "{reference} after restart"
        );
    }
    // And the record itself survives serde unchanged.
    let p = world.partition(&partition());
    for family in p.families.values() {
        for rec in family.revisions.values() {
            let bytes = serde_json::to_vec(rec).unwrap();
            let back: TaskDefinitionRecord = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(&back, rec);
        }
    }

    // The members only ECS sets: present after register, deregister and delete.
    let (dereg, mut muts) = with_ctx(|ctx| {
        let p = world.partition(&partition());
        task_definition::deregister(
            p,
            ctx,
            DeregisterTaskDefinitionRequest {
                task_definition: Some("maximal:1".into()),
            },
        )
    });
    let (deleted, more) = with_ctx(|ctx| {
        let p = world.partition(&partition());
        task_definition::delete(
            p,
            ctx,
            DeleteTaskDefinitionsRequest {
                task_definitions: Some(vec!["maximal:1".into()]),
            },
        )
    });
    muts.extend(more);
    let dereg: Value = serde_json::from_slice(&encode(&dereg.unwrap())).unwrap();
    let deleted: Value = serde_json::from_slice(&encode(&deleted.unwrap())).unwrap();
    assert_eq!(deleted["failures"], json!([]));
    for doc in [&dereg["taskDefinition"], &deleted["taskDefinitions"][0]] {
        covered_out.extend(
            occurrences(&model, "TaskDefinition", doc)
                .into_iter()
                .map(|(g, _, _)| g),
        );
    }
    // ECS names required attributes only; their value/target members are for PutAttributes.
    let never_set = [
        "requiresAttributes[].targetId",
        "requiresAttributes[].targetType",
        "requiresAttributes[].value",
    ];
    let absent: Vec<&String> = output_paths
        .iter()
        .filter(|p| !covered_out.contains(*p) && !never_set.contains(&p.as_str()))
        .collect();
    assert!(
        absent.is_empty(),
        "TaskDefinition members never returned: {absent:?}"
    );

    // The deregister/delete records persist too, under the revision's key.
    let suffix = keys::task_definition("maximal", 1);
    let mut writes = 0;
    for m in muts {
        if let Mutation::Put(r) = m {
            assert_eq!(r.kind, Kind::TaskDefinition);
            assert!(r.key.ends_with(&suffix), "{}", r.key);
            persisted.push(r);
            writes += 1;
        }
    }
    assert_eq!(
        writes, 2,
        "deregister and delete each write the revision once"
    );
    let mut reloaded = World::load(persisted).unwrap();
    let rec = &reloaded.partition(&partition()).families["maximal"].revisions[&1];
    let stored = serde_json::to_value(&rec.task_definition).unwrap();
    assert_eq!(stored, deleted["taskDefinitions"][0]);
}

#[test]
fn the_model_paths_include_known_members() {
    // A guard on the walker itself: a few paths that must be there.
    let model = Model::load();
    let paths = model.paths("RegisterTaskDefinitionRequest");
    for p in [
        "family",
        "containerDefinitions[].portMappings[].containerPortRange",
        "containerDefinitions[].dockerLabels{}",
        "containerDefinitions[].linuxParameters.devices[].permissions",
        "volumes[].efsVolumeConfiguration.authorizationConfig.iam",
        "tags[].key",
    ] {
        assert!(paths.contains(p), "{p}");
    }
}
