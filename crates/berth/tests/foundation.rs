#![allow(clippy::unwrap_used)]
//! End-to-end tests of the foundation: clusters, task definitions, tags, durability and the
//! HTTP front end, through the real `berth` binary and the real `aws` CLI (v1).

mod common;

use common::{
    ACCOUNT, AwsResultExt, Berth, ECS_PREFIX, Options, arns, example, http_head_only, now_secs,
    read_response, run_with_timeout,
};
use serde_json::{Value, json};
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

const REGION: &str = "us-east-1";

fn cluster_arn(region: &str, name: &str) -> String {
    format!("arn:aws:ecs:{region}:{ACCOUNT}:cluster/{name}")
}

fn td_arn(family: &str, revision: i64) -> String {
    format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:{revision}")
}

fn read_example(name: &str) -> (Value, String) {
    let path = example(name);
    let text = std::fs::read_to_string(&path).unwrap();
    (
        serde_json::from_str(&text).unwrap(),
        format!("file://{}", path.display()),
    )
}

/// Every member of `expected` is in `actual` with the same value: objects may have extra
/// members (ECS's defaults), arrays must match element by element.
fn assert_contained(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                let Some(av) = a.get(k) else {
                    panic!("{path}.{k} is missing from the output: {actual:#}");
                };
                assert_contained(v, av, &format!("{path}.{k}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "{path}: {expected} vs {actual}");
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                assert_contained(ev, av, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(expected, actual, "{path}"),
    }
}

/// `td` (as ECS returns it) is `input` registered as `family:revision`, with nothing but
/// ECS's own additions.
fn assert_registered_verbatim(input: &Value, td: &Value, family: &str, revision: i64) {
    assert_contained(input, td, "taskDefinition");
    assert_eq!(td["taskDefinitionArn"], td_arn(family, revision));
    assert_eq!(
        td["taskDefinitionArn"],
        format!("arn:aws:ecs:us-east-1:000000000000:task-definition/{family}:{revision}")
    );
    assert_eq!(td["revision"], revision);
    assert_eq!(td["status"], "ACTIVE");
    assert_eq!(td["family"], family);
    let at = td["registeredAt"]
        .as_f64()
        .unwrap_or_else(|| panic!("registeredAt {}", td["registeredAt"]));
    assert!(
        (at - now_secs()).abs() < 300.0,
        "registeredAt {at} is not now"
    );
    let by = td["registeredBy"].as_str().unwrap();
    assert!(by.starts_with(&format!("arn:aws:iam::{ACCOUNT}:")), "{by}");
    assert_eq!(td["compatibilities"], json!(["EC2", "FARGATE"]));
    assert_eq!(td["volumes"], json!([]));
    assert_eq!(td["placementConstraints"], json!([]));
    let required: Vec<&str> = td["requiresAttributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for capability in [
        "com.amazonaws.ecs.capability.logging-driver.awslogs",
        "ecs.capability.execution-role-awslogs",
        "com.amazonaws.ecs.capability.task-iam-role",
        "ecs.capability.task-eni",
    ] {
        assert!(required.contains(&capability), "{capability}: {required:?}");
    }

    // Nothing else: every member is from the input or one ECS adds.
    let added = [
        "taskDefinitionArn",
        "revision",
        "status",
        "registeredAt",
        "registeredBy",
        "compatibilities",
        "requiresAttributes",
        "volumes",
        "placementConstraints",
    ];
    for k in td.as_object().unwrap().keys() {
        assert!(
            input.get(k).is_some() || added.contains(&k.as_str()),
            "unexpected member {k} in {td:#}"
        );
    }
    let containers = td["containerDefinitions"].as_array().unwrap();
    let input_containers = input["containerDefinitions"].as_array().unwrap();
    for (c, ic) in containers.iter().zip(input_containers) {
        let defaults = json!({
            "cpu": 0, "essential": true, "environment": [], "mountPoints": [],
            "volumesFrom": [], "systemControls": [], "portMappings": [],
        });
        for (k, v) in c.as_object().unwrap() {
            if ic.get(k).is_none() {
                assert_eq!(
                    defaults.get(k),
                    Some(v),
                    "container member {k} = {v} was not in the input and is not an ECS default"
                );
            }
        }
    }
}

#[test]
fn aws_error_lines_are_parsed() {
    let plain = "\nAn error occurred (ClientException) when calling the DescribeTaskDefinition operation: Unable to describe task definition.\n";
    let retried = "An error occurred (ClientException) when calling the RegisterTaskDefinition operation (reached max retries: 0): Container list cannot be empty.";
    assert_eq!(
        common::parse_aws_error(plain),
        Some((
            "ClientException".into(),
            "DescribeTaskDefinition".into(),
            "Unable to describe task definition.".into()
        ))
    );
    assert_eq!(
        common::parse_aws_error(retried).map(|(_, _, m)| m),
        Some("Container list cannot be empty.".into())
    );
    assert_eq!(common::parse_aws_error("usage: aws [options]"), None);
}

#[test]
fn seed_task_definitions_register_verbatim() {
    let berth = Berth::start();
    for (file, family) in [
        ("my-web-app.json", "my-web-app"),
        ("data-processor.json", "data-processor"),
    ] {
        let (input, url) = read_example(file);
        let registered = berth
            .aws(&["ecs", "register-task-definition", "--cli-input-json", &url])
            .json();
        assert_registered_verbatim(&input, &registered["taskDefinition"], family, 1);

        let described = berth
            .aws(&[
                "ecs",
                "describe-task-definition",
                "--task-definition",
                family,
                "--include",
                "TAGS",
            ])
            .json();
        assert_registered_verbatim(&input, &described["taskDefinition"], family, 1);
        assert_eq!(
            described["taskDefinition"], registered["taskDefinition"],
            "describe returns exactly what register returned"
        );
        assert_eq!(described["tags"], json!([]));
    }
    // The Fargate sizes are kept as the strings ECS shows.
    let (_, v) = berth.ecs(
        "DescribeTaskDefinition",
        &json!({"taskDefinition": "data-processor:1"}),
    );
    assert_eq!(v["taskDefinition"]["cpu"], "1024");
    assert_eq!(v["taskDefinition"]["memory"], "2048");
}

#[test]
fn task_definition_revisions_and_listing() {
    let berth = Berth::start();
    let (_, web) = read_example("my-web-app.json");
    let (_, data) = read_example("data-processor.json");
    for expected in 1..=3 {
        let v = berth
            .aws(&["ecs", "register-task-definition", "--cli-input-json", &web])
            .json();
        assert_eq!(v["taskDefinition"]["revision"], expected);
        assert_eq!(
            v["taskDefinition"]["taskDefinitionArn"],
            td_arn("my-web-app", expected)
        );
    }
    berth
        .aws(&["ecs", "register-task-definition", "--cli-input-json", &data])
        .json();

    // Describe: bare family = latest ACTIVE; family:revision; full ARN.
    let describe = |reference: &str| {
        berth
            .aws(&[
                "ecs",
                "describe-task-definition",
                "--task-definition",
                reference,
            ])
            .json()["taskDefinition"]
            .clone()
    };
    assert_eq!(describe("my-web-app")["revision"], 3);
    let second = describe("my-web-app:2");
    assert_eq!(second["revision"], 2);
    assert_eq!(second["taskDefinitionArn"], td_arn("my-web-app", 2));
    assert_eq!(describe(&td_arn("my-web-app", 1))["revision"], 1);

    let all = vec![
        td_arn("data-processor", 1),
        td_arn("my-web-app", 1),
        td_arn("my-web-app", 2),
        td_arn("my-web-app", 3),
    ];
    let list = |args: &[&str]| {
        let mut full = vec!["ecs", "list-task-definitions"];
        full.extend_from_slice(args);
        berth.aws(&full).json()
    };
    assert_eq!(arns(&list(&[])["taskDefinitionArns"]), all);
    assert_eq!(
        arns(&list(&["--family-prefix", "my-web-app", "--sort", "DESC"])["taskDefinitionArns"]),
        vec![
            td_arn("my-web-app", 3),
            td_arn("my-web-app", 2),
            td_arn("my-web-app", 1),
        ]
    );
    // ListTaskDefinitions' familyPrefix is, despite its name, the full family name.
    let v = berth.ecs_ok("ListTaskDefinitions", &json!({"familyPrefix": "my"}));
    assert_eq!(v["taskDefinitionArns"], json!([]));
    // The CLI follows nextToken itself: one item per page still yields everything, in order.
    assert_eq!(
        arns(&list(&["--page-size", "1"])["taskDefinitionArns"]),
        all
    );
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(
        arns(&list(&["--sort", "DESC", "--page-size", "1"])["taskDefinitionArns"]),
        reversed
    );
    // Client-visible paging: two at a time.
    let first = list(&["--max-items", "2", "--page-size", "1"]);
    assert_eq!(arns(&first["taskDefinitionArns"]), all[..2]);
    let token = first["NextToken"].as_str().unwrap().to_string();
    let rest = list(&[
        "--max-items",
        "2",
        "--page-size",
        "1",
        "--starting-token",
        &token,
    ]);
    assert_eq!(arns(&rest["taskDefinitionArns"]), all[2..]);
    assert!(rest.get("NextToken").is_none(), "{rest}");

    // Families.
    let families = berth
        .aws(&["ecs", "list-task-definition-families", "--page-size", "1"])
        .json();
    assert_eq!(
        arns(&families["families"]),
        vec!["data-processor", "my-web-app"]
    );
    let families = berth
        .aws(&[
            "ecs",
            "list-task-definition-families",
            "--family-prefix",
            "my",
        ])
        .json();
    assert_eq!(arns(&families["families"]), vec!["my-web-app"]);
}

#[test]
fn task_definition_deregister_and_delete() {
    let berth = Berth::start();
    let (_, web) = read_example("my-web-app.json");
    let (_, data) = read_example("data-processor.json");
    for url in [&web, &web, &data] {
        berth
            .aws(&["ecs", "register-task-definition", "--cli-input-json", url])
            .json();
    }

    let gone = berth
        .aws(&[
            "ecs",
            "deregister-task-definition",
            "--task-definition",
            "my-web-app:2",
        ])
        .json();
    let td = &gone["taskDefinition"];
    assert_eq!(td["status"], "INACTIVE");
    assert_eq!(td["revision"], 2);
    assert!(td["deregisteredAt"].is_number(), "{td}");

    // The bare family now resolves to the latest ACTIVE revision; the INACTIVE one is still
    // describable by revision.
    let latest = berth
        .aws(&[
            "ecs",
            "describe-task-definition",
            "--task-definition",
            "my-web-app",
        ])
        .json();
    assert_eq!(latest["taskDefinition"]["revision"], 1);
    assert_eq!(latest["taskDefinition"]["status"], "ACTIVE");
    let inactive = berth
        .aws(&[
            "ecs",
            "describe-task-definition",
            "--task-definition",
            "my-web-app:2",
        ])
        .json();
    assert_eq!(inactive["taskDefinition"]["status"], "INACTIVE");

    let listed = berth
        .aws(&["ecs", "list-task-definitions", "--status", "INACTIVE"])
        .json();
    assert_eq!(
        arns(&listed["taskDefinitionArns"]),
        vec![td_arn("my-web-app", 2)]
    );
    let active = berth.ecs_ok("ListTaskDefinitions", &json!({}));
    assert_eq!(
        arns(&active["taskDefinitionArns"]),
        vec![td_arn("data-processor", 1), td_arn("my-web-app", 1)]
    );

    // With no ACTIVE revision left, the bare family names nothing.
    berth
        .aws(&[
            "ecs",
            "deregister-task-definition",
            "--task-definition",
            &td_arn("data-processor", 1),
        ])
        .json();
    berth
        .aws(&[
            "ecs",
            "describe-task-definition",
            "--task-definition",
            "data-processor",
        ])
        .fails_with("ClientException", "Unable to describe task definition.");

    let families = |status: &str| {
        arns(
            &berth
                .aws(&["ecs", "list-task-definition-families", "--status", status])
                .json()["families"],
        )
    };
    assert_eq!(families("ACTIVE"), vec!["my-web-app"]);
    assert_eq!(families("INACTIVE"), vec!["data-processor"]);
    assert_eq!(berth.families(), vec!["data-processor", "my-web-app"]);

    // Delete: refused per item for an ACTIVE revision, DELETE_IN_PROGRESS for an INACTIVE one.
    let deleted = berth
        .aws(&[
            "ecs",
            "delete-task-definitions",
            "--task-definitions",
            "my-web-app:1",
            "data-processor:1",
        ])
        .json();
    let done = deleted["taskDefinitions"].as_array().unwrap();
    assert_eq!(done.len(), 1, "{deleted:#}");
    assert_eq!(done[0]["taskDefinitionArn"], td_arn("data-processor", 1));
    assert_eq!(done[0]["status"], "DELETE_IN_PROGRESS");
    assert!(done[0]["deleteRequestedAt"].is_number(), "{deleted:#}");
    let failures = deleted["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{deleted:#}");
    assert!(
        failures[0]["arn"]
            .as_str()
            .unwrap()
            .ends_with("my-web-app:1"),
        "{deleted:#}"
    );
    assert!(
        failures[0]["reason"].as_str().unwrap().contains("ACTIVE"),
        "{deleted:#}"
    );
    let in_progress = berth
        .aws(&[
            "ecs",
            "list-task-definitions",
            "--status",
            "DELETE_IN_PROGRESS",
        ])
        .json();
    assert_eq!(
        arns(&in_progress["taskDefinitionArns"]),
        vec![td_arn("data-processor", 1)]
    );
    // my-web-app:1 is untouched.
    let (_, v) = berth.ecs(
        "DescribeTaskDefinition",
        &json!({"taskDefinition": "my-web-app:1"}),
    );
    assert_eq!(v["taskDefinition"]["status"], "ACTIVE");

    // Revisions are never reused.
    let again = berth
        .aws(&["ecs", "register-task-definition", "--cli-input-json", &data])
        .json();
    assert_eq!(again["taskDefinition"]["revision"], 2);
}

#[test]
fn clusters() {
    let berth = Berth::start();
    assert!(
        berth
            .banner
            .iter()
            .any(|l| l.contains("created the 'default' cluster")),
        "{:#?}",
        berth.banner
    );
    let listed = berth.aws(&["ecs", "list-clusters"]).json();
    assert_eq!(
        arns(&listed["clusterArns"]),
        vec![cluster_arn(REGION, "default")]
    );

    let created = berth
        .aws(&[
            "ecs",
            "create-cluster",
            "--cluster-name",
            "jobs",
            "--tags",
            "key=team,value=data",
        ])
        .json();
    let c = &created["cluster"];
    assert_eq!(c["clusterArn"], cluster_arn(REGION, "jobs"));
    assert_eq!(c["clusterName"], "jobs");
    assert_eq!(c["status"], "ACTIVE");
    assert_eq!(c["tags"], json!([{"key": "team", "value": "data"}]));
    for count in [
        "registeredContainerInstancesCount",
        "runningTasksCount",
        "pendingTasksCount",
        "activeServicesCount",
    ] {
        assert_eq!(c[count], 0, "{count}");
    }
    // Creating it again is idempotent.
    let again = berth
        .aws(&["ecs", "create-cluster", "--cluster-name", "jobs"])
        .json();
    assert_eq!(again["cluster"]["clusterArn"], c["clusterArn"]);
    assert_eq!(again["cluster"]["status"], "ACTIVE");
    assert_eq!(again["cluster"]["tags"], c["tags"]);
    berth.ecs_ok("CreateCluster", &json!({"clusterName": "web"}));

    let described = berth
        .aws(&[
            "ecs",
            "describe-clusters",
            "--clusters",
            "jobs",
            "default",
            "nope",
            &cluster_arn(REGION, "ghost"),
            "--include",
            "TAGS",
            "SETTINGS",
            "STATISTICS",
        ])
        .json();
    let found = described["clusters"].as_array().unwrap();
    assert_eq!(found.len(), 2, "{described:#}");
    assert_eq!(found[0]["clusterName"], "jobs");
    assert_eq!(found[1]["clusterName"], "default");
    assert_eq!(found[0]["tags"], json!([{"key": "team", "value": "data"}]));
    assert_eq!(
        found[0]["settings"],
        json!([{"name": "containerInsights", "value": "disabled"}])
    );
    let stats = found[0]["statistics"].as_array().unwrap();
    assert!(!stats.is_empty(), "{described:#}");
    assert!(
        stats
            .iter()
            .all(|s| s["name"].is_string() && s["value"] == "0"),
        "{stats:?}"
    );
    let failures = described["failures"].as_array().unwrap();
    assert_eq!(
        failures,
        &vec![
            json!({"arn": cluster_arn(REGION, "nope"), "reason": "MISSING"}),
            json!({"arn": cluster_arn(REGION, "ghost"), "reason": "MISSING"}),
        ]
    );
    // Without --include, tags and settings are left out and statistics is empty.
    let plain = berth.ecs_ok("DescribeClusters", &json!({"clusters": ["jobs"]}));
    let plain = &plain["clusters"][0];
    assert!(plain.get("tags").is_none_or(|t| t == &json!([])), "{plain}");
    assert!(plain.get("settings").is_none(), "{plain}");
    assert_eq!(plain["statistics"], json!([]));

    // Listing: sorted by ARN, paged by the CLI.
    let all = vec![
        cluster_arn(REGION, "default"),
        cluster_arn(REGION, "jobs"),
        cluster_arn(REGION, "web"),
    ];
    let paged = berth
        .aws(&["ecs", "list-clusters", "--page-size", "1"])
        .json();
    assert_eq!(arns(&paged["clusterArns"]), all);
    let first = berth
        .aws(&["ecs", "list-clusters", "--max-items", "2"])
        .json();
    assert_eq!(arns(&first["clusterArns"]), all[..2]);
    let token = first["NextToken"].as_str().unwrap().to_string();
    let rest = berth
        .aws(&[
            "ecs",
            "list-clusters",
            "--max-items",
            "2",
            "--starting-token",
            &token,
        ])
        .json();
    assert_eq!(arns(&rest["clusterArns"]), all[2..]);
    assert!(rest.get("NextToken").is_none(), "{rest}");

    let updated = berth
        .aws(&[
            "ecs",
            "update-cluster-settings",
            "--cluster",
            "jobs",
            "--settings",
            "name=containerInsights,value=enabled",
        ])
        .json();
    assert_eq!(
        updated["cluster"]["settings"],
        json!([{"name": "containerInsights", "value": "enabled"}])
    );
    let v = berth.ecs_ok(
        "DescribeClusters",
        &json!({"clusters": ["jobs"], "include": ["SETTINGS"]}),
    );
    assert_eq!(
        v["clusters"][0]["settings"],
        json!([{"name": "containerInsights", "value": "enabled"}])
    );

    let deleted = berth
        .aws(&["ecs", "delete-cluster", "--cluster", "jobs"])
        .json();
    assert_eq!(deleted["cluster"]["status"], "INACTIVE");
    assert_eq!(
        deleted["cluster"]["clusterArn"],
        cluster_arn(REGION, "jobs")
    );
    let after = berth
        .aws(&["ecs", "describe-clusters", "--clusters", "jobs"])
        .json();
    assert_eq!(after["clusters"][0]["status"], "INACTIVE");
    assert_eq!(after["failures"], json!([]));
    assert_eq!(
        arns(&berth.aws(&["ecs", "list-clusters"]).json()["clusterArns"]),
        vec![cluster_arn(REGION, "default"), cluster_arn(REGION, "web")]
    );
    berth
        .aws(&["ecs", "delete-cluster", "--cluster", "jobs"])
        .fails_with("ClusterNotFoundException", "Cluster not found.");

    // The name can be used again: a new, ACTIVE cluster.
    let reborn = berth.ecs_ok("CreateCluster", &json!({"clusterName": "jobs"}));
    assert_eq!(reborn["cluster"]["status"], "ACTIVE");
    assert_eq!(berth.cluster_names(), vec!["default", "jobs", "web"]);
}

#[test]
fn tags_on_clusters_and_task_definitions() {
    let berth = Berth::start();
    let cluster = cluster_arn(REGION, "tagged");
    berth.ecs_ok(
        "CreateCluster",
        &json!({"clusterName": "tagged", "tags": [{"key": "team", "value": "data"}]}),
    );
    let (web, _) = read_example("my-web-app.json");
    berth.ecs_ok("RegisterTaskDefinition", &web);
    let td = td_arn("my-web-app", 1);
    let list_tags = |arn: &str| {
        berth.ecs_ok("ListTagsForResource", &json!({"resourceArn": arn}))["tags"].clone()
    };

    berth
        .aws(&[
            "ecs",
            "tag-resource",
            "--resource-arn",
            &cluster,
            "--tags",
            "key=a,value=1",
            "key=b,value=2",
        ])
        .json();
    let tags = berth
        .aws(&["ecs", "list-tags-for-resource", "--resource-arn", &cluster])
        .json();
    assert_eq!(
        tags["tags"],
        json!([
            {"key": "team", "value": "data"},
            {"key": "a", "value": "1"},
            {"key": "b", "value": "2"},
        ])
    );
    berth
        .aws(&[
            "ecs",
            "untag-resource",
            "--resource-arn",
            &cluster,
            "--tag-keys",
            "a",
            "team",
        ])
        .json();
    // Tagging an existing key replaces its value.
    berth
        .aws(&[
            "ecs",
            "tag-resource",
            "--resource-arn",
            &cluster,
            "--tags",
            "key=b,value=3",
        ])
        .json();
    let tags = berth
        .aws(&["ecs", "list-tags-for-resource", "--resource-arn", &cluster])
        .json();
    assert_eq!(tags["tags"], json!([{"key": "b", "value": "3"}]));
    let v = berth.ecs_ok(
        "DescribeClusters",
        &json!({"clusters": ["tagged"], "include": ["TAGS"]}),
    );
    assert_eq!(
        v["clusters"][0]["tags"],
        json!([{"key": "b", "value": "3"}])
    );

    // A task definition.
    berth
        .aws(&[
            "ecs",
            "tag-resource",
            "--resource-arn",
            &td,
            "--tags",
            "key=env,value=prod",
        ])
        .json();
    let tags = berth
        .aws(&["ecs", "list-tags-for-resource", "--resource-arn", &td])
        .json();
    assert_eq!(tags["tags"], json!([{"key": "env", "value": "prod"}]));
    let described = berth
        .aws(&[
            "ecs",
            "describe-task-definition",
            "--task-definition",
            "my-web-app:1",
            "--include",
            "TAGS",
        ])
        .json();
    assert_eq!(described["tags"], json!([{"key": "env", "value": "prod"}]));
    berth
        .aws(&[
            "ecs",
            "untag-resource",
            "--resource-arn",
            &td,
            "--tag-keys",
            "env",
        ])
        .json();
    assert_eq!(list_tags(&td), json!([]));

    // Limits: 51 tags in one request; 50 in all; the reserved aws: prefix.
    let many: Vec<String> = (0..51).map(|i| format!("key=k{i},value=v")).collect();
    let mut args = vec!["ecs", "tag-resource", "--resource-arn", &td, "--tags"];
    args.extend(many.iter().map(String::as_str));
    let e = berth.aws(&args).fails_with("InvalidParameterException", "");
    assert!(e.message.contains("50"), "{e:?}");
    assert_eq!(list_tags(&td), json!([]), "nothing was stored");

    let mut args = vec!["ecs", "tag-resource", "--resource-arn", &cluster, "--tags"];
    args.extend(many[..49].iter().map(String::as_str));
    berth.aws(&args).json();
    assert_eq!(list_tags(&cluster).as_array().unwrap().len(), 50);
    let e = berth
        .aws(&[
            "ecs",
            "tag-resource",
            "--resource-arn",
            &cluster,
            "--tags",
            "key=one-too-many,value=v",
        ])
        .fails_with("InvalidParameterException", "50");
    assert!(!e.message.is_empty());
    assert_eq!(list_tags(&cluster).as_array().unwrap().len(), 50);

    berth
        .aws(&[
            "ecs",
            "tag-resource",
            "--resource-arn",
            &td,
            "--tags",
            "key=aws:owner,value=me",
        ])
        .fails_with("InvalidParameterException", "aws:");
    assert_eq!(list_tags(&td), json!([]), "nothing was stored");

    // An ARN naming no cluster.
    berth
        .aws(&[
            "ecs",
            "tag-resource",
            "--resource-arn",
            &cluster_arn(REGION, "ghost"),
            "--tags",
            "key=a,value=b",
        ])
        .fails_with("ClusterNotFoundException", "Cluster not found.");
    berth.assert_healthy();
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let mut berth = Berth::start();
    let (_, web) = read_example("my-web-app.json");

    // Writes through the CLI.
    berth
        .aws(&[
            "ecs",
            "create-cluster",
            "--cluster-name",
            "durable",
            "--tags",
            "key=k,value=v",
        ])
        .json();
    berth
        .aws(&[
            "ecs",
            "update-cluster-settings",
            "--cluster",
            "durable",
            "--settings",
            "name=containerInsights,value=enabled",
        ])
        .json();
    for _ in 0..2 {
        berth
            .aws(&["ecs", "register-task-definition", "--cli-input-json", &web])
            .json();
    }
    berth
        .aws(&[
            "ecs",
            "tag-resource",
            "--resource-arn",
            &td_arn("my-web-app", 2),
            "--tags",
            "key=release,value=blue",
        ])
        .json();
    berth.ecs_ok(
        "DeregisterTaskDefinition",
        &json!({"taskDefinition": "my-web-app:1"}),
    );
    berth.ecs_ok("CreateCluster", &json!({"clusterName": "doomed"}));
    berth.ecs_ok("DeleteCluster", &json!({"cluster": "doomed"}));

    // Many concurrent raw writes (group commit), each acknowledged before SIGKILL.
    let threads = 4;
    let per_thread = 10;
    std::thread::scope(|s| {
        for t in 0..threads {
            let berth = &berth;
            s.spawn(move || {
                for i in 0..per_thread {
                    berth.ecs_ok(
                        "CreateCluster",
                        &json!({"clusterName": format!("c{t}-{i}")}),
                    );
                    if i % 2 == 0 {
                        berth.ecs_ok(
                            "RegisterTaskDefinition",
                            &json!({
                                "family": format!("bulk-{t}"),
                                "containerDefinitions": [
                                    {"name": "app", "image": "busybox", "memory": 64}
                                ],
                            }),
                        );
                    }
                }
            });
        }
    });

    berth.sigkill();
    berth.restart();
    assert!(
        !berth
            .banner
            .iter()
            .any(|l| l.contains("created the 'default' cluster")),
        "the default cluster is created once: {:#?}",
        berth.banner
    );

    let listed = berth.aws(&["ecs", "list-clusters"]).json();
    let listed = arns(&listed["clusterArns"]);
    assert_eq!(listed.len(), threads * per_thread + 2, "{listed:#?}");
    assert!(listed.contains(&cluster_arn(REGION, "durable")));
    assert!(listed.contains(&cluster_arn(REGION, "default")));
    assert!(!listed.contains(&cluster_arn(REGION, "doomed")));
    for t in 0..threads {
        for i in 0..per_thread {
            assert!(
                listed.contains(&cluster_arn(REGION, &format!("c{t}-{i}"))),
                "c{t}-{i} lost"
            );
        }
        let (_, v) = berth.ecs(
            "DescribeTaskDefinition",
            &json!({"taskDefinition": format!("bulk-{t}")}),
        );
        assert_eq!(v["taskDefinition"]["revision"], 5, "bulk-{t}: {v}");
    }
    let described = berth
        .aws(&[
            "ecs",
            "describe-clusters",
            "--clusters",
            "durable",
            "doomed",
            "--include",
            "TAGS",
            "SETTINGS",
        ])
        .json();
    let durable = &described["clusters"][0];
    assert_eq!(durable["status"], "ACTIVE");
    assert_eq!(durable["tags"], json!([{"key": "k", "value": "v"}]));
    assert_eq!(
        durable["settings"],
        json!([{"name": "containerInsights", "value": "enabled"}])
    );
    assert_eq!(described["clusters"][1]["status"], "INACTIVE");

    let td = berth
        .aws(&[
            "ecs",
            "describe-task-definition",
            "--task-definition",
            "my-web-app",
            "--include",
            "TAGS",
        ])
        .json();
    assert_eq!(td["taskDefinition"]["revision"], 2);
    assert_eq!(td["tags"], json!([{"key": "release", "value": "blue"}]));
    let (_, first) = berth.ecs(
        "DescribeTaskDefinition",
        &json!({"taskDefinition": "my-web-app:1"}),
    );
    assert_eq!(first["taskDefinition"]["status"], "INACTIVE");
    // The revision counter survived too.
    let next = berth
        .aws(&["ecs", "register-task-definition", "--cli-input-json", &web])
        .json();
    assert_eq!(next["taskDefinition"]["revision"], 3);
}

#[test]
fn second_berth_on_the_same_data_dir_is_refused() {
    let mut first = Berth::start();
    for subcommand in ["up", "server"] {
        let refused = Berth::start_in(
            first.data_dir(),
            Options {
                subcommand,
                args: vec!["--allow-dev-credentials".into()],
                ..Options::default()
            },
        )
        .err()
        .unwrap_or_else(|| panic!("a second berth {subcommand} started on a locked data dir"));
        let status = refused.status.expect("the second berth exits by itself");
        assert!(!status.success(), "{refused:?}");
        assert!(
            refused.stderr.contains("in use by another Berth"),
            "{refused:?}"
        );
        assert!(
            refused.stderr.contains(&first.pid().to_string()),
            "the message names the holder's pid: {refused:?}"
        );
    }
    // The first one is unaffected.
    first.assert_healthy();
    assert_eq!(first.cluster_names(), vec!["default"]);

    // Once it has stopped, the directory can be used again.
    let dir = first.data_dir().to_path_buf();
    first.sigterm();
    assert!(first.wait_exit(Duration::from_secs(10)).is_some());
    let second = Berth::start_in(&dir, Options::default()).unwrap();
    assert_eq!(second.cluster_names(), vec!["default"]);
}

#[test]
fn command_line() {
    let run = |args: &[&str]| {
        let mut cmd = Command::new(common::berth_bin());
        cmd.args(args);
        run_with_timeout(cmd, Duration::from_secs(30))
    };
    let (status, out, _) = run(&["--version"]);
    assert!(status.success());
    assert_eq!(out.trim(), format!("berth {}", env!("CARGO_PKG_VERSION")));

    let (status, out, _) = run(&["up", "--help"]);
    assert!(status.success());
    for flag in [
        "--listen",
        "--data-dir",
        "--account-id",
        "--region",
        "--allow-reset",
        "--runtime",
    ] {
        assert!(out.contains(flag), "berth up --help lacks {flag}:\n{out}");
    }
    let (status, out, _) = run(&["server", "--help"]);
    assert!(status.success());
    for flag in [
        "--listen",
        "--data-dir",
        "--account-id",
        "--region",
        "--allow-reset",
    ] {
        assert!(
            out.contains(flag),
            "berth server --help lacks {flag}:\n{out}"
        );
    }
    assert!(!out.contains("--runtime"), "{out}");

    let (status, _, err) = run(&["up", "--listen", "not-an-address"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("--listen"), "{err}");
    let (status, _, err) = run(&["frobnicate"]);
    assert_eq!(status.code(), Some(2), "{err}");
}

#[test]
fn sigterm_stops_cleanly_and_keeps_state() {
    let mut berth = Berth::start();
    berth.ecs_ok("CreateCluster", &json!({"clusterName": "kept"}));
    let started = Instant::now();
    berth.sigterm();
    let status = berth
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("berth up ignored SIGTERM for 5 s"));
    assert!(status.success(), "{status}: {}", berth.stderr());
    assert!(started.elapsed() < Duration::from_secs(5));
    berth.restart();
    assert_eq!(berth.cluster_names(), vec!["default", "kept"]);
}

#[test]
fn berth_server_has_no_default_cluster() {
    let berth = Berth::start_with(Options {
        subcommand: "server",
        args: vec!["--allow-dev-credentials".into()],
        ..Options::default()
    });
    assert!(berth.banner[0].contains("(server)"), "{:#?}", berth.banner);
    assert!(berth.cluster_names().is_empty());
    berth.assert_healthy();
}

#[test]
fn reset_wipes_everything_when_allowed() {
    let mut berth = Berth::start();
    berth.assert_healthy();
    berth.ecs_ok("CreateCluster", &json!({"clusterName": "a"}));
    let (web, _) = read_example("my-web-app.json");
    berth.ecs_ok("RegisterTaskDefinition", &web);
    let (status, _) = berth.ecs_in("eu-west-1", "CreateCluster", &json!({"clusterName": "eu"}));
    assert_eq!(status, 200);

    let r = berth.http("POST", "/_berth/reset", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());

    let clusters = berth.aws(&["ecs", "list-clusters"]).json();
    assert_eq!(clusters["clusterArns"], json!([]), "not even 'default'");
    let tds = berth.aws(&["ecs", "list-task-definitions"]).json();
    assert_eq!(tds["taskDefinitionArns"], json!([]));
    assert!(berth.families().is_empty());
    let (_, eu) = berth.ecs_in("eu-west-1", "ListClusters", &json!({}));
    assert_eq!(eu["clusterArns"], json!([]), "every region is wiped");
    // Revisions start again from 1.
    let v = berth.ecs_ok("RegisterTaskDefinition", &web);
    assert_eq!(v["taskDefinition"]["revision"], 1);

    // The reset is durable.
    berth.sigkill();
    berth.restart();
    assert!(!berth.cluster_names().contains(&"a".to_string()));
    let v = berth.ecs_ok("ListTaskDefinitions", &json!({}));
    assert_eq!(
        arns(&v["taskDefinitionArns"]),
        vec![td_arn("my-web-app", 1)]
    );
}

#[test]
fn reset_is_not_served_unless_allowed() {
    let berth = Berth::start_with(Options {
        allow_reset: false,
        ..Options::default()
    });
    berth.ecs_ok("CreateCluster", &json!({"clusterName": "a"}));
    let r = berth.http("POST", "/_berth/reset", &[], b"");
    assert_eq!(r.status, 404, "{}", r.text());
    let body = r.json();
    assert!(body["__type"].is_string(), "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert_eq!(berth.cluster_names(), vec!["a", "default"]);
}

#[test]
fn regions_are_isolated() {
    let berth = Berth::start();
    let eu = "eu-west-1";
    let created = berth
        .aws_in(eu, &["ecs", "create-cluster", "--cluster-name", "euro"])
        .json();
    assert_eq!(created["cluster"]["clusterArn"], cluster_arn(eu, "euro"));
    assert_eq!(
        berth.aws_in(eu, &["ecs", "list-clusters"]).json()["clusterArns"],
        json!([cluster_arn(eu, "euro")])
    );
    assert_eq!(
        berth.aws(&["ecs", "list-clusters"]).json()["clusterArns"],
        json!([cluster_arn(REGION, "default")])
    );
    let from_us = berth
        .aws(&["ecs", "describe-clusters", "--clusters", "euro"])
        .json();
    assert_eq!(from_us["clusters"], json!([]));
    assert_eq!(from_us["failures"][0]["reason"], "MISSING");
    let (_, by_arn) = berth.ecs(
        "DescribeClusters",
        &json!({"clusters": [cluster_arn(eu, "euro")]}),
    );
    assert_eq!(by_arn["clusters"], json!([]), "{by_arn}");

    // Task definition families and revisions are per region too.
    let (_, url) = read_example("my-web-app.json");
    let v = berth
        .aws_in(
            eu,
            &["ecs", "register-task-definition", "--cli-input-json", &url],
        )
        .json();
    assert_eq!(
        v["taskDefinition"]["taskDefinitionArn"],
        format!("arn:aws:ecs:{eu}:{ACCOUNT}:task-definition/my-web-app:1")
    );
    assert!(berth.families().is_empty());
    let (web, _) = read_example("my-web-app.json");
    let us = berth.ecs_ok("RegisterTaskDefinition", &web);
    assert_eq!(us["taskDefinition"]["revision"], 1);
}

// ------------------------------------------------------------------------ invalid input

/// A valid EC2 task definition for family `bad`, changed by `edit`.
fn td_with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = json!({
        "family": "bad",
        "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 128}],
    });
    edit(&mut v);
    v
}

fn fargate_with(edit: impl FnOnce(&mut Value)) -> Value {
    td_with(|v| {
        v["requiresCompatibilities"] = json!(["FARGATE"]);
        v["networkMode"] = json!("awsvpc");
        v["cpu"] = json!("256");
        v["memory"] = json!("512");
        edit(v);
    })
}

/// Register `input`; it must fail with `code` and a message containing every one of
/// `parts`, and leave nothing behind.
fn refused(berth: &Berth, what: &str, input: &Value, code: &str, parts: &[&str]) {
    let e = berth.register(input).fails_with(code, "");
    for part in parts {
        assert!(
            e.message.contains(part),
            "{what}: message {:?} lacks {part:?}",
            e.message
        );
    }
    assert!(
        berth.families().is_empty(),
        "{what}: something was stored: {:?}",
        berth.families()
    );
}

#[test]
fn invalid_task_definitions_are_refused() {
    let berth = Berth::start();
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "no containers",
            td_with(|v| v["containerDefinitions"] = json!([])),
            &["Container list cannot be empty."],
        ),
        (
            "duplicate container names",
            td_with(|v| {
                v["containerDefinitions"] = json!([
                    {"name": "app", "image": "busybox", "memory": 128},
                    {"name": "app", "image": "nginx", "memory": 128},
                ]);
            }),
            &["unique"],
        ),
        (
            "missing image",
            td_with(|v| {
                v["containerDefinitions"] = json!([{"name": "app", "memory": 128}]);
            }),
            &["Container.image should not be null or empty."],
        ),
        (
            "no essential container",
            td_with(|v| v["containerDefinitions"][0]["essential"] = json!(false)),
            &["essential"],
        ),
        (
            "no memory anywhere (EC2)",
            td_with(|v| {
                v["containerDefinitions"] = json!([{"name": "app", "image": "busybox"}]);
            }),
            &["'app'", "'memory'", "'memoryReservation'"],
        ),
        (
            "memoryReservation above memory",
            td_with(|v| v["containerDefinitions"][0]["memoryReservation"] = json!(256)),
            &["memoryReservation"],
        ),
        (
            "Fargate with bridge networking",
            fargate_with(|v| v["networkMode"] = json!("bridge")),
            &["Fargate", "awsvpc"],
        ),
        (
            "Fargate 256 CPU with 4096 MiB",
            fargate_with(|v| v["memory"] = json!("4096")),
            &["No Fargate configuration exists for given values: 256 CPU, 4096 memory"],
        ),
        (
            "awsvpc hostPort differs from containerPort",
            td_with(|v| {
                v["networkMode"] = json!("awsvpc");
                v["containerDefinitions"][0]["portMappings"] =
                    json!([{"containerPort": 80, "hostPort": 8080}]);
            }),
            &["host ports and container ports in port mappings must match"],
        ),
        (
            "dependsOn a missing container",
            td_with(|v| {
                v["containerDefinitions"][0]["dependsOn"] =
                    json!([{"containerName": "ghost", "condition": "START"}]);
            }),
            &["ghost"],
        ),
        (
            "invalid family characters",
            td_with(|v| v["family"] = json!("bad family!")),
            &["Family"],
        ),
        (
            "health check without CMD",
            td_with(|v| {
                v["containerDefinitions"][0]["healthCheck"] =
                    json!({"command": ["curl", "-f", "http://localhost/"]});
            }),
            &["CMD"],
        ),
        (
            "Fargate awslogs without an execution role",
            fargate_with(|v| {
                v["containerDefinitions"][0]["logConfiguration"] = json!({
                    "logDriver": "awslogs",
                    "options": {"awslogs-group": "g", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "p"},
                });
            }),
            &["execution role"],
        ),
        (
            "dependency cycle",
            td_with(|v| {
                v["containerDefinitions"] = json!([
                    {"name": "a", "image": "busybox", "memory": 64,
                     "dependsOn": [{"containerName": "b", "condition": "START"}]},
                    {"name": "b", "image": "busybox", "memory": 64,
                     "dependsOn": [{"containerName": "a", "condition": "START"}]},
                ]);
            }),
            &["cycle"],
        ),
        (
            "invalid container name",
            td_with(|v| v["containerDefinitions"][0]["name"] = json!("my app")),
            &["invalid"],
        ),
        (
            "eleven containers",
            td_with(|v| {
                v["containerDefinitions"] = (0..11)
                    .map(|i| json!({"name": format!("c{i}"), "image": "busybox", "memory": 64}))
                    .collect();
            }),
            &["Too many containers"],
        ),
        (
            "task cpu that is not a size",
            td_with(|v| v["cpu"] = json!("lots")),
            &["cpu"],
        ),
    ];
    assert!(cases.len() >= 15);
    for (what, input, parts) in &cases {
        refused(&berth, what, input, "ClientException", parts);
    }
    // The server is still serving, and no revision number was used up.
    berth.assert_healthy();
    let ok = berth.register(&td_with(|_| {})).json();
    assert_eq!(ok["taskDefinition"]["revision"], 1);
}

#[test]
fn invalid_references_and_parameters_are_refused() {
    let berth = Berth::start();
    let (web, _) = read_example("my-web-app.json");
    berth.ecs_ok("RegisterTaskDefinition", &web);

    berth
        .aws(&[
            "ecs",
            "describe-task-definition",
            "--task-definition",
            "nope",
        ])
        .fails_with("ClientException", "Unable to describe task definition.");
    berth
        .aws(&[
            "ecs",
            "describe-task-definition",
            "--task-definition",
            "my-web-app:7",
        ])
        .fails_with("ClientException", "Unable to describe task definition.");
    berth
        .aws(&[
            "ecs",
            "deregister-task-definition",
            "--task-definition",
            "my-web-app",
        ])
        .fails_with("ClientException", "revision");
    berth
        .aws(&[
            "ecs",
            "update-cluster-settings",
            "--cluster",
            "nope",
            "--settings",
            "name=containerInsights,value=enabled",
        ])
        .fails_with("ClusterNotFoundException", "Cluster not found.");
    berth
        .aws(&["ecs", "delete-cluster", "--cluster", "nope"])
        .fails_with("ClusterNotFoundException", "Cluster not found.");
    berth
        .aws(&["ecs", "create-cluster", "--cluster-name", "bad name!"])
        .fails_with("InvalidParameterException", "Cluster name");
    berth
        .aws(&[
            "ecs",
            "update-cluster-settings",
            "--cluster",
            "default",
            "--settings",
            "name=containerInsights,value=bogus",
        ])
        .fails_with("InvalidParameterException", "bogus");
    berth
        .aws(&["ecs", "list-clusters", "--page-size", "101"])
        .fails_with("InvalidParameterException", "maxResults");

    // Nothing changed.
    assert_eq!(berth.cluster_names(), vec!["default"]);
    let v = berth.ecs_ok(
        "DescribeClusters",
        &json!({"clusters": ["default"], "include": ["SETTINGS"]}),
    );
    assert_eq!(
        v["clusters"][0]["settings"],
        json!([{"name": "containerInsights", "value": "disabled"}])
    );
    let v = berth.ecs_ok("ListTaskDefinitions", &json!({}));
    assert_eq!(
        arns(&v["taskDefinitionArns"]),
        vec![td_arn("my-web-app", 1)]
    );
    berth.assert_healthy();
}

/// An AWS-shaped JSON error: status, `__type`, a non-empty `message`, the JSON 1.1 content type.
fn assert_error(r: &common::HttpResponse, status: u16, code: &str, message_part: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let body = r.json();
    assert_eq!(body["__type"], code, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{body}");
    assert!(
        message.contains(message_part),
        "{message:?} lacks {message_part:?}"
    );
    assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.1"));
    assert!(r.header("x-amzn-requestid").is_some(), "{:?}", r.headers);
}

#[test]
fn protocol_errors_over_raw_http() {
    let berth = Berth::start();
    let json_type = ("Content-Type", "application/x-amz-json-1.1");
    let target = |op: &str| format!("{ECS_PREFIX}.{op}");
    let post = |t: &str, body: &[u8]| berth.signed(REGION, &[("X-Amz-Target", t), json_type], body);

    let r = post(&target("CreateCluster"), br#"{"clusterName": "#);
    assert_error(&r, 400, "SerializationException", "");
    let r = post(&target("ListClusters"), br#"{"maxResults": "x"}"#);
    assert_error(&r, 400, "SerializationException", "maxResults");
    let r = post(&target("CreateCluster"), b"[]");
    assert_error(&r, 400, "SerializationException", "");
    let r = post(&target("Frobnicate"), b"{}");
    assert_error(&r, 400, "UnknownOperationException", "Frobnicate");
    let r = post("Bogus_20200101.ListClusters", b"{}");
    assert_error(&r, 400, "UnknownOperationException", "Bogus_20200101");
    let r = berth.signed(REGION, &[json_type], b"{}");
    assert_error(&r, 400, "UnknownOperationException", "X-Amz-Target");
    let r = berth.http("GET", "/nowhere", &[], b"");
    assert_error(&r, 404, "UnknownOperationException", "");

    // Bodies: exactly 2 MiB is accepted, more is 413 whether declared or streamed.
    const LIMIT: usize = 2 * 1024 * 1024;
    let mut body = br#"{"clusterName": "big"}"#.to_vec();
    body.resize(LIMIT, b' ');
    let r = post(&target("CreateCluster"), &body);
    assert_eq!(r.status, 200, "{}", r.text());

    let head = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nX-Amz-Target: {}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        berth.addr,
        target("CreateCluster"),
        3 * 1024 * 1024
    );
    let r = http_head_only(berth.addr, &head);
    assert_error(&r, 413, "RequestEntityTooLargeException", "");

    let mut big = br#"{"clusterName": "huge"}"#.to_vec();
    big.resize(LIMIT + 1, b' ');
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nX-Amz-Target: {}\r\nContent-Type: application/x-amz-json-1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        berth.addr,
        target("CreateCluster"),
    );
    let mut s = std::net::TcpStream::connect(berth.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may answer and close before it has read everything: ignore write errors.
    let _ = s
        .write_all(head.as_bytes())
        .and_then(|()| s.write_all(&common::chunked(&big)));
    let r = read_response(&mut s);
    assert_error(&r, 413, "RequestEntityTooLargeException", "");

    // Still serving; only the 2 MiB request stored anything.
    berth.assert_healthy();
    assert_eq!(berth.cluster_names(), vec!["big", "default"]);
    let clusters = berth.aws(&["ecs", "list-clusters"]).json();
    assert_eq!(
        arns(&clusters["clusterArns"]),
        vec![cluster_arn(REGION, "big"), cluster_arn(REGION, "default")]
    );
}
