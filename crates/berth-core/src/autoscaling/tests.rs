// Test code: helpers may panic on anything unexpected.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::state::test_rng;
use crate::{PartitionKey, World, ecs};
use serde_json::{Value, json};

const T0: i64 = 1_800_000_000_000;

fn pk() -> PartitionKey {
    PartitionKey {
        account: "000000000000".into(),
        region: "us-east-1".into(),
    }
}

struct Fixture {
    world: World,
    now_ms: i64,
}

impl Fixture {
    fn new() -> Fixture {
        let mut f = Fixture {
            world: World::default(),
            now_ms: T0,
        };
        f.ecs("CreateCluster", json!({"clusterName": "default"}))
            .unwrap();
        f.ecs(
            "RegisterTaskDefinition",
            json!({"family": "web", "containerDefinitions": [{"name": "c", "image": "busybox", "memory": 64}]}),
        )
        .unwrap();
        f.ecs(
            "CreateService",
            json!({"serviceName": "web", "taskDefinition": "web", "desiredCount": 1}),
        )
        .unwrap();
        f
    }

    fn ecs(&mut self, op: &str, body: Value) -> std::result::Result<Value, (String, String)> {
        let mut rng = test_rng();
        let mut ctx = Ctx::new(self.now_ms, pk(), "root", &mut rng);
        match ecs::handle(
            &mut self.world,
            &mut ctx,
            op,
            &serde_json::to_vec(&body).unwrap(),
        ) {
            Ok(out) => Ok(serde_json::from_slice(&out).unwrap()),
            Err(e) => Err((e.code.to_string(), e.message)),
        }
    }

    /// Run an Application Auto Scaling operation; a refusal must leave no mutation.
    fn aas(&mut self, op: &str, body: Value) -> std::result::Result<Value, (String, String)> {
        let mut rng = test_rng();
        let mut ctx = Ctx::new(self.now_ms, pk(), "root", &mut rng);
        let before = format!("{:?}", self.world.partition(&pk()).autoscaling);
        match handle(
            &mut self.world,
            &mut ctx,
            op,
            &serde_json::to_vec(&body).unwrap(),
        ) {
            Ok(out) => {
                // What was committed rebuilds the same state.
                Ok(serde_json::from_slice(&out).unwrap())
            }
            Err(e) => {
                assert!(ctx.mutations.is_empty(), "a refused {op} left mutations");
                assert_eq!(
                    before,
                    format!("{:?}", self.world.partition(&pk()).autoscaling),
                    "a refused {op} changed the state"
                );
                Err((e.code.to_string(), e.message))
            }
        }
    }

    fn desired(&mut self) -> i32 {
        self.world.partition(&pk()).services["default/web"]
            .service
            .desired_count
            .unwrap()
    }

    fn tick(&mut self, metrics: &ServiceMetrics) -> Vec<crate::Mutation> {
        let mut rng = test_rng();
        let mut ctx = Ctx::new(self.now_ms, pk(), "autoscaler", &mut rng);
        reconcile(
            self.world.partition(&pk()),
            &mut ctx,
            metrics,
            &scaler::Evaluation::default(),
        );
        ctx.mutations
    }
}

fn target(extra: Value) -> Value {
    let mut v = json!({
        "ServiceNamespace": "ecs",
        "ResourceId": "service/default/web",
        "ScalableDimension": "ecs:service:DesiredCount",
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[test]
fn register_describe_update_and_deregister() {
    let mut f = Fixture::new();
    let r = f
        .aas(
            "RegisterScalableTarget",
            target(json!({"MinCapacity": 2, "MaxCapacity": 5})),
        )
        .unwrap();
    let arn = r["ScalableTargetARN"].as_str().unwrap().to_string();
    assert!(
        arn.starts_with(
            "arn:aws:application-autoscaling:us-east-1:000000000000:scalable-target/0ecs"
        ),
        "{arn}"
    );
    // The desired count (1) was raised to the new minimum, as an activity and an event.
    assert_eq!(f.desired(), 2);
    let acts = f
        .aas(
            "DescribeScalingActivities",
            json!({"ServiceNamespace": "ecs"}),
        )
        .unwrap();
    let a = &acts["ScalingActivities"][0];
    assert_eq!(a["Description"], "Setting desired count to 2.");
    assert_eq!(a["Cause"], "minimum capacity was set to 2");
    assert_eq!(a["StatusCode"], "Successful");
    let events = f
        .ecs("DescribeServices", json!({"services": ["web"]}))
        .unwrap();
    let msg = events["services"][0]["events"][0]["message"]
        .as_str()
        .unwrap();
    assert!(msg.contains("desired count set to 2"), "{msg}");

    let d = f
        .aas(
            "DescribeScalableTargets",
            json!({"ServiceNamespace": "ecs"}),
        )
        .unwrap();
    let t = &d["ScalableTargets"][0];
    assert_eq!(t["MinCapacity"], 2);
    assert_eq!(t["MaxCapacity"], 5);
    assert_eq!(t["ScalableTargetARN"], arn.as_str());
    assert_eq!(t["SuspendedState"]["DynamicScalingInSuspended"], false);
    assert!(
        t["RoleARN"]
            .as_str()
            .unwrap()
            .contains("AWSServiceRoleForApplicationAutoScaling_ECSService")
    );

    // Update: only what is given changes; the max below the desired count lowers it.
    f.ecs(
        "UpdateService",
        json!({"service": "web", "desiredCount": 5}),
    )
    .unwrap();
    f.aas(
        "RegisterScalableTarget",
        target(json!({"MaxCapacity": 3, "SuspendedState": {"DynamicScalingInSuspended": true}})),
    )
    .unwrap();
    assert_eq!(f.desired(), 3);
    let d = f
        .aas(
            "DescribeScalableTargets",
            json!({"ServiceNamespace": "ecs", "ResourceIds": ["service/default/web"]}),
        )
        .unwrap();
    let t = &d["ScalableTargets"][0];
    assert_eq!(
        (t["MinCapacity"].as_i64(), t["MaxCapacity"].as_i64()),
        (Some(2), Some(3))
    );
    assert_eq!(t["SuspendedState"]["DynamicScalingInSuspended"], true);
    assert_eq!(t["SuspendedState"]["ScheduledScalingSuspended"], false);
    assert_eq!(t["ScalableTargetARN"], arn.as_str(), "same target");

    // Other namespaces have nothing registered.
    let d = f
        .aas(
            "DescribeScalableTargets",
            json!({"ServiceNamespace": "dynamodb"}),
        )
        .unwrap();
    assert_eq!(d["ScalableTargets"], json!([]));

    f.aas("DeregisterScalableTarget", target(json!({})))
        .unwrap();
    let (code, msg) = f
        .aas("DeregisterScalableTarget", target(json!({})))
        .unwrap_err();
    assert_eq!(code, "ObjectNotFoundException");
    assert_eq!(
        msg,
        "No scalable target registered for service namespace: ecs, resource ID: service/default/web, scalable dimension: ecs:service:DesiredCount"
    );
}

#[test]
fn bad_targets_are_refused() {
    let mut f = Fixture::new();
    let cases = [
        (
            target(
                json!({"ResourceId": "service/default/nope", "MinCapacity": 1, "MaxCapacity": 2}),
            ),
            "ValidationException",
            "ECS service doesn't exist: service/default/nope",
        ),
        (
            target(json!({"ResourceId": "service/other/web", "MinCapacity": 1, "MaxCapacity": 2})),
            "ValidationException",
            "ECS service doesn't exist: service/other/web",
        ),
        (
            target(json!({"MinCapacity": 3, "MaxCapacity": 2})),
            "ValidationException",
            "Minimum capacity cannot be greater than maximum capacity",
        ),
        (
            target(json!({"MinCapacity": -1, "MaxCapacity": 2})),
            "ValidationException",
            "greater than or equal to 0",
        ),
        (
            target(json!({"MinCapacity": 1})),
            "ValidationException",
            "MinCapacity and MaxCapacity are required",
        ),
        (
            target(json!({"ResourceId": "web", "MinCapacity": 1, "MaxCapacity": 2})),
            "ValidationException",
            "Unsupported resource ID",
        ),
        (
            target(json!({"ServiceNamespace": "dynamodb", "MinCapacity": 1, "MaxCapacity": 2})),
            "ValidationException",
            "Unsupported service namespace, resource type or scalable dimension",
        ),
        (
            target(
                json!({"ScalableDimension": "ecs:service:Nope", "MinCapacity": 1, "MaxCapacity": 2}),
            ),
            "ValidationException",
            "enum value set",
        ),
        (
            json!({"ServiceNamespace": "ecs"}),
            "ValidationException",
            "2 validation errors detected",
        ),
    ];
    for (body, code, text) in cases {
        let (c, m) = f.aas("RegisterScalableTarget", body.clone()).unwrap_err();
        assert_eq!(c, code, "{body}: {m}");
        assert!(m.contains(text), "{body}: {m}");
    }
    assert_eq!(f.desired(), 1);
    // Policies and scheduled actions need a registered target.
    let (c, _) = f
        .aas(
            "PutScalingPolicy",
            target(json!({"PolicyName": "p", "PolicyType": "TargetTrackingScaling",
                "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 50.0,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}}})),
        )
        .unwrap_err();
    assert_eq!(c, "ObjectNotFoundException");
    let (c, _) = f
        .aas(
            "PutScheduledAction",
            target(json!({"ScheduledActionName": "s", "Schedule": "rate(5 minutes)", "ScalableTargetAction": {"MinCapacity": 2}})),
        )
        .unwrap_err();
    assert_eq!(c, "ObjectNotFoundException");
}

fn cpu_policy(name: &str, value: f64) -> Value {
    target(json!({
        "PolicyName": name,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": value,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
            "ScaleOutCooldown": 60,
            "ScaleInCooldown": 60,
        }
    }))
}

#[test]
fn policies_put_describe_delete_and_refusals() {
    let mut f = Fixture::new();
    f.aas(
        "RegisterScalableTarget",
        target(json!({"MinCapacity": 1, "MaxCapacity": 6})),
    )
    .unwrap();
    let r = f
        .aas("PutScalingPolicy", cpu_policy("cpu50", 50.0))
        .unwrap();
    let arn = r["PolicyARN"].as_str().unwrap().to_string();
    assert!(
        arn.starts_with("arn:aws:autoscaling:us-east-1:000000000000:scalingPolicy:"),
        "{arn}"
    );
    assert!(
        arn.ends_with(":resource/ecs/service/default/web:policyName/cpu50"),
        "{arn}"
    );
    let alarms = r["Alarms"].as_array().unwrap();
    assert_eq!(alarms.len(), 2);
    assert!(
        alarms[0]["AlarmName"]
            .as_str()
            .unwrap()
            .starts_with("TargetTracking-service/default/web-AlarmHigh-")
    );
    // Putting it again updates it in place.
    let again = f
        .aas("PutScalingPolicy", cpu_policy("cpu50", 60.0))
        .unwrap();
    assert_eq!(again["PolicyARN"], arn.as_str());
    let d = f
        .aas(
            "DescribeScalingPolicies",
            json!({"ServiceNamespace": "ecs", "ResourceId": "service/default/web"}),
        )
        .unwrap();
    let ps = d["ScalingPolicies"].as_array().unwrap();
    assert_eq!(ps.len(), 1);
    assert_eq!(
        ps[0]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"],
        60.0
    );
    assert_eq!(ps[0]["PolicyType"], "TargetTrackingScaling");

    let bad = [
        (
            json!({"PolicyType": "StepScaling"}),
            "Berth does not implement StepScaling",
        ),
        (
            json!({"PolicyType": null}),
            "Berth does not implement StepScaling",
        ),
        (
            json!({"TargetTrackingScalingPolicyConfiguration": {"TargetValue": 50.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "DynamoDBReadCapacityUtilization"}}}),
            "Unsupported metric type DynamoDBReadCapacityUtilization",
        ),
        (
            json!({"TargetTrackingScalingPolicyConfiguration": {"TargetValue": 50.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "CPUFoo"}}}),
            "enum value set",
        ),
        (
            json!({"TargetTrackingScalingPolicyConfiguration": {"TargetValue": 50.0}}),
            "Exactly one of",
        ),
        (
            json!({"TargetTrackingScalingPolicyConfiguration": {"TargetValue": 0.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}}}),
            "target value must be between",
        ),
        (
            json!({"TargetTrackingScalingPolicyConfiguration": null}),
            "is required",
        ),
    ];
    for (patch, text) in bad {
        let mut body = cpu_policy("bad", 50.0);
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        let (c, m) = f.aas("PutScalingPolicy", body.clone()).unwrap_err();
        assert_eq!(c, "ValidationException", "{body}: {m}");
        assert!(m.contains(text), "{body}: {m}");
    }
    let (c, m) = f
        .aas("DeleteScalingPolicy", target(json!({"PolicyName": "nope"})))
        .unwrap_err();
    assert_eq!(c, "ObjectNotFoundException");
    assert!(
        m.starts_with("No scaling policy found for service namespace: ecs"),
        "{m}"
    );
    f.aas(
        "DeleteScalingPolicy",
        target(json!({"PolicyName": "cpu50"})),
    )
    .unwrap();
    let d = f
        .aas(
            "DescribeScalingPolicies",
            json!({"ServiceNamespace": "ecs"}),
        )
        .unwrap();
    assert_eq!(d["ScalingPolicies"], json!([]));
}

#[test]
fn scheduled_actions_change_capacity_when_due() {
    let mut f = Fixture::new();
    f.aas(
        "RegisterScalableTarget",
        target(json!({"MinCapacity": 1, "MaxCapacity": 6})),
    )
    .unwrap();
    // 2027-01-15T08:00:00Z = 1_800_000_000_000 + ...; use a time a minute after T0.
    let at = jiff::Timestamp::from_millisecond(T0 + 60_000)
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%S")
        .to_string();
    f.aas(
        "PutScheduledAction",
        target(
            json!({"ScheduledActionName": "morning", "Schedule": format!("at({at})"),
            "ScalableTargetAction": {"MinCapacity": 3, "MaxCapacity": 6}}),
        ),
    )
    .unwrap();
    let d = f
        .aas(
            "DescribeScheduledActions",
            json!({"ServiceNamespace": "ecs"}),
        )
        .unwrap();
    let a = &d["ScheduledActions"][0];
    assert_eq!(a["Schedule"], format!("at({at})"));
    assert!(
        a["ScheduledActionARN"]
            .as_str()
            .unwrap()
            .ends_with(":resource/ecs/service/default/web:scheduledActionName/morning")
    );

    // Not yet.
    f.now_ms = T0 + 59_000;
    assert!(f.tick(&ServiceMetrics::new()).is_empty());
    assert_eq!(f.desired(), 1);
    // Due: min 3, and the service follows.
    f.now_ms = T0 + 61_000;
    let m = f.tick(&ServiceMetrics::new());
    assert!(!m.is_empty());
    assert_eq!(f.desired(), 3);
    let acts = f
        .aas("DescribeScalingActivities", json!({"ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": "ecs:service:DesiredCount"}))
        .unwrap();
    let acts = acts["ScalingActivities"].as_array().unwrap();
    assert_eq!(acts[0]["Description"], "Setting desired count to 3.");
    assert_eq!(acts[0]["Cause"], "minimum capacity was set to 3");
    assert_eq!(
        acts[1]["Description"],
        "Setting min capacity to 3 and max capacity to 6"
    );
    assert_eq!(
        acts[1]["Cause"],
        "scheduled action name morning was triggered"
    );
    assert_eq!(
        acts[1]["StatusMessage"],
        "Successfully set min capacity to 3 and max capacity to 6"
    );
    // Once only.
    f.now_ms = T0 + 3_600_000;
    assert!(f.tick(&ServiceMetrics::new()).is_empty());

    // Refusals.
    for (patch, text) in [
        (
            json!({"Schedule": "cron(bad)"}),
            "Invalid schedule expression",
        ),
        (
            json!({"Schedule": "rate(5 fortnights)"}),
            "Invalid schedule expression",
        ),
        (json!({"Timezone": "Mars/Olympus"}), "Invalid Timezone"),
        (
            json!({"ScalableTargetAction": {"MinCapacity": 4, "MaxCapacity": 2}}),
            "Minimum capacity cannot be greater than maximum capacity",
        ),
        (
            json!({"ScalableTargetAction": {}}),
            "must specify MinCapacity, MaxCapacity or both",
        ),
        (
            json!({"StartTime": 2000.0, "EndTime": 1000.0}),
            "EndTime must be later than StartTime",
        ),
    ] {
        let mut body = target(
            json!({"ScheduledActionName": "x", "Schedule": "rate(5 minutes)", "ScalableTargetAction": {"MinCapacity": 2}}),
        );
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (c, m) = f.aas("PutScheduledAction", body.clone()).unwrap_err();
        assert_eq!(c, "ValidationException", "{body}: {m}");
        assert!(m.contains(text), "{body}: {m}");
    }
    let (c, _) = f
        .aas(
            "DeleteScheduledAction",
            target(json!({"ScheduledActionName": "nope"})),
        )
        .unwrap_err();
    assert_eq!(c, "ObjectNotFoundException");
    f.aas(
        "DeleteScheduledAction",
        target(json!({"ScheduledActionName": "morning"})),
    )
    .unwrap();
}

fn points(value: f64, n: usize, now: i64) -> Vec<scaler::Point> {
    (0..n)
        .map(|i| scaler::Point {
            timestamp_ms: now - 60_000 * i64::try_from(n - i).unwrap(),
            value,
        })
        .collect()
}

#[test]
fn target_tracking_changes_the_service_and_tells_why() {
    let mut f = Fixture::new();
    f.aas(
        "RegisterScalableTarget",
        target(json!({"MinCapacity": 1, "MaxCapacity": 6})),
    )
    .unwrap();
    f.aas("PutScalingPolicy", cpu_policy("cpu50", 50.0))
        .unwrap();
    assert_eq!(tracked_services(f.world.partition(&pk())), ["default/web"]);
    // No data: nothing.
    assert!(f.tick(&ServiceMetrics::new()).is_empty());
    let mut metrics = ServiceMetrics::new();
    metrics.insert("default/web".into(), (points(100.0, 3, f.now_ms), vec![]));
    f.tick(&metrics);
    assert_eq!(f.desired(), 2);
    let acts = f
        .aas(
            "DescribeScalingActivities",
            json!({"ServiceNamespace": "ecs"}),
        )
        .unwrap();
    let a = &acts["ScalingActivities"][0];
    let cause = a["Cause"].as_str().unwrap();
    assert!(
        cause.starts_with("monitor alarm TargetTracking-service/default/web-AlarmHigh-"),
        "{cause}"
    );
    assert!(
        cause.ends_with(" in state ALARM triggered policy cpu50"),
        "{cause}"
    );
    assert_eq!(
        a["StatusMessage"],
        "Successfully set desired count to 2. Change successfully fulfilled by ecs."
    );
    // The cooldown (60 s) holds the same reading back.
    f.now_ms += 30_000;
    metrics.insert("default/web".into(), (points(100.0, 3, f.now_ms), vec![]));
    f.tick(&metrics);
    assert_eq!(f.desired(), 2);
    // Low for 15 points after the cooldown: back in.
    f.now_ms += 20 * 60_000;
    metrics.insert("default/web".into(), (points(5.0, 15, f.now_ms), vec![]));
    f.tick(&metrics);
    assert_eq!(f.desired(), 1);
    let acts = f
        .aas(
            "DescribeScalingActivities",
            json!({"ServiceNamespace": "ecs", "MaxResults": 1}),
        )
        .unwrap();
    assert!(
        acts["ScalingActivities"][0]["Cause"]
            .as_str()
            .unwrap()
            .contains("-AlarmLow-")
    );
    assert!(acts["NextToken"].is_string());
}

#[test]
fn state_survives_a_reload_and_tokens_are_sealed() {
    let mut f = Fixture::new();
    let mut rng = test_rng();
    let mut all = Vec::new();
    for (op, body) in [
        (
            "RegisterScalableTarget",
            target(json!({"MinCapacity": 2, "MaxCapacity": 4, "Tags": {"team": "web"}})),
        ),
        ("PutScalingPolicy", cpu_policy("cpu50", 50.0)),
        (
            "PutScheduledAction",
            target(
                json!({"ScheduledActionName": "nightly", "Schedule": "cron(0 22 * * ? *)", "Timezone": "Europe/Paris", "ScalableTargetAction": {"MaxCapacity": 2}}),
            ),
        ),
    ] {
        let mut ctx = Ctx::new(f.now_ms, pk(), "root", &mut rng);
        handle(
            &mut f.world,
            &mut ctx,
            op,
            &serde_json::to_vec(&body).unwrap(),
        )
        .unwrap();
        all.extend(ctx.mutations);
    }
    // Replay what was committed into a fresh world.
    let mut records: BTreeMap<(crate::state::Kind, String), Vec<u8>> = BTreeMap::new();
    for m in all {
        match m {
            crate::Mutation::Put(r) => {
                records.insert((r.kind, r.key), r.body);
            }
            crate::Mutation::Delete { kind, key } => {
                records.remove(&(kind, key));
            }
        }
    }
    let world = World::load(
        records
            .into_iter()
            .filter(|((k, _), _)| matches!(k, Kind::ScalableTarget | Kind::ScalingActivity))
            .map(|((kind, key), body)| crate::Record { kind, key, body }),
    )
    .unwrap();
    let mut reloaded = world.partitions[&pk()].autoscaling.clone();
    let original = &f.world.partition(&pk()).autoscaling;
    assert_eq!(reloaded.targets, original.targets);
    assert_eq!(reloaded.activities, original.activities);
    reloaded.targets.clear();

    // Paging: a plain token is refused as AWS refuses a bad one.
    let (c, _) = f
        .aas(
            "DescribeScalableTargets",
            json!({"ServiceNamespace": "ecs", "NextToken": crate::pagination::encode_token("x")}),
        )
        .unwrap_err();
    assert_eq!(c, "InvalidNextTokenException");
    let (c, _) = f
        .aas(
            "DescribeScalableTargets",
            json!({"ServiceNamespace": "ecs", "MaxResults": 51}),
        )
        .unwrap_err();
    assert_eq!(c, "ValidationException");
    // Tags.
    let arn = f
        .aas(
            "DescribeScalableTargets",
            json!({"ServiceNamespace": "ecs"}),
        )
        .unwrap()["ScalableTargets"][0]["ScalableTargetARN"]
        .as_str()
        .unwrap()
        .to_string();
    let tags = f
        .aas("ListTagsForResource", json!({"ResourceARN": arn}))
        .unwrap();
    assert_eq!(tags["Tags"], json!({"team": "web"}));
}
