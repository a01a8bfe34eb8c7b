//! Task definitions over the wire path (model decoding + Berth's rules): the validation
//! table, the defaults ECS fills in, and the behaviour of the read/lifecycle operations.

use crate::state::{Kind, Mutation, PartitionKey, Record, World, keys};
use crate::{Ctx, ecs};
use berth_api::ApiError;
use proptest::prelude::*;
use rand::SeedableRng;
use serde_json::{Value, json};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const NOW_MS: i64 = 1_700_000_000_000;

fn partition() -> PartitionKey {
    PartitionKey {
        account: ACCOUNT.into(),
        region: REGION.into(),
    }
}

/// A world and the means to call operations on it the way the server does.
struct Harness {
    world: World,
    rng: rand::rngs::StdRng,
    now_ms: i64,
    /// Every mutation any call left, in order (what the store would hold).
    log: Vec<Mutation>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            world: World::default(),
            rng: rand::rngs::StdRng::seed_from_u64(7),
            now_ms: NOW_MS,
            log: Vec::new(),
        }
    }

    /// Run `op` with `body`; returns the decoded response and the mutations it left.
    fn call_logged(&mut self, op: &str, body: &Value) -> (Result<Value, ApiError>, Vec<Mutation>) {
        let mut ctx = Ctx::new(self.now_ms, partition(), "root", &mut self.rng);
        let bytes = serde_json::to_vec(body).unwrap();
        let out = ecs::handle(&mut self.world, &mut ctx, op, &bytes)
            .map(|b| serde_json::from_slice(&b).unwrap());
        let mutations = std::mem::take(&mut ctx.mutations);
        self.log.extend(mutations.clone());
        self.now_ms += 1000;
        (out, mutations)
    }

    fn call(&mut self, op: &str, body: &Value) -> Result<Value, ApiError> {
        self.call_logged(op, body).0
    }

    fn ok(&mut self, op: &str, body: &Value) -> Value {
        self.call(op, body)
            .unwrap_or_else(|e| panic!("{op} {body}: {e}"))
    }

    fn register(&mut self, body: &Value) -> Value {
        self.ok("RegisterTaskDefinition", body)["taskDefinition"].clone()
    }

    fn describe(&mut self, reference: &str) -> Result<Value, ApiError> {
        self.call(
            "DescribeTaskDefinition",
            &json!({ "taskDefinition": reference }),
        )
        .map(|v| v["taskDefinition"].clone())
    }

    fn deregister(&mut self, reference: &str) -> Value {
        self.ok(
            "DeregisterTaskDefinition",
            &json!({ "taskDefinition": reference }),
        )["taskDefinition"]
            .clone()
    }

    /// The world as a restart would rebuild it from the mutation log.
    fn restarted(&self) -> World {
        let mut records: std::collections::BTreeMap<(String, String), Record> = Default::default();
        for m in &self.log {
            match m {
                Mutation::Put(r) => {
                    records.insert((r.kind.name().into(), r.key.clone()), r.clone());
                }
                Mutation::Delete { kind, key } => {
                    records.remove(&(kind.name().into(), key.clone()));
                }
            }
        }
        World::load(records.into_values()).unwrap()
    }
}

fn arn(family: &str, revision: i64) -> String {
    format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:{revision}")
}

/// A valid EC2 (bridge) definition with one container.
fn ec2() -> Value {
    json!({
        "family": "web",
        "containerDefinitions": [{
            "name": "app",
            "image": "nginx:latest",
            "memory": 256,
            "portMappings": [{ "containerPort": 80 }]
        }]
    })
}

/// A valid Fargate definition (the shape of `examples/my-web-app.json`).
fn fargate() -> Value {
    json!({
        "family": "web",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
        "containerDefinitions": [{
            "name": "app",
            "image": "nginx:latest",
            "portMappings": [{ "containerPort": 80, "hostPort": 80, "protocol": "tcp" }],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": "/ecs/web",
                    "awslogs-region": "us-east-1",
                    "awslogs-stream-prefix": "web"
                }
            }
        }]
    })
}

/// An EC2 definition with an essential `app` and a non-essential `init` with a health check.
fn pair() -> Value {
    json!({
        "family": "web",
        "memory": "1024",
        "containerDefinitions": [
            { "name": "app", "image": "nginx:latest" },
            {
                "name": "init",
                "image": "busybox",
                "essential": false,
                "healthCheck": { "command": ["CMD-SHELL", "true"] }
            }
        ]
    })
}

fn c0(v: &mut Value) -> &mut Value {
    &mut v["containerDefinitions"][0]
}

fn set(v: &mut Value, key: &str, value: Value) {
    v[key] = value;
}

enum Expect {
    Ok,
    Client(&'static str),
    Invalid(&'static str),
}

struct Row {
    rule: &'static str,
    base: fn() -> Value,
    tweak: fn(&mut Value),
    expect: Expect,
}

macro_rules! row {
    ($rule:expr, $base:ident, |$v:ident| $tweak:expr, $expect:expr) => {
        Row {
            rule: $rule,
            base: $base,
            tweak: |$v: &mut Value| {
                $tweak;
            },
            expect: $expect,
        }
    };
}

/// One row per rule: a base request, a tweak, and what ECS answers. Kept one line per row.
#[rustfmt::skip]
fn rows() -> Vec<Row> {
    use Expect::{Client, Invalid, Ok};
    vec![
        // Family and container list.
        row!("family characters", ec2, |v| set(v, "family", json!("my app")), Client("Family contains invalid characters")),
        row!("family length", ec2, |v| set(v, "family", json!("f".repeat(256))), Client("Family contains invalid characters")),
        row!("family 255 characters", ec2, |v| set(v, "family", json!("f".repeat(255))), Ok),
        row!("family required (model)", ec2, |v| v.as_object_mut().unwrap().remove("family"), Invalid("Member must not be null")),
        row!("at least one container", ec2, |v| set(v, "containerDefinitions", json!([])), Client("Container list cannot be empty.")),
        row!("at most ten containers", ec2, |v| {
            let c = v["containerDefinitions"][0].clone();
            let many: Vec<Value> = (0..11).map(|i| { let mut c = c.clone(); c["name"] = json!(format!("c{i}")); c["portMappings"] = json!([]); c }).collect();
            v["containerDefinitions"] = json!(many);
        }, Client("Too many containers.")),
        row!("container name format", ec2, |v| c0(v)["name"] = json!("my app"), Client("Container.name contains invalid characters.")),
        row!("container name required", ec2, |v| c0(v).as_object_mut().unwrap().remove("name"), Client("Container.name should not be null or empty.")),
        row!("container names unique", pair, |v| v["containerDefinitions"][1]["name"] = json!("app"), Client("Container names must be unique within a task definition.")),
        row!("image required", ec2, |v| c0(v)["image"] = json!(""), Client("Container.image should not be null or empty.")),
        row!("one essential container", ec2, |v| c0(v)["essential"] = json!(false), Client("doesn't have any essential container")),
        // Memory and CPU.
        row!("EC2 needs some memory", ec2, |v| c0(v).as_object_mut().unwrap().remove("memory"), Client("Invalid setting for container 'app'. At least one of 'memory' or 'memoryReservation' must be specified.")),
        row!("task memory is enough", ec2, |v| { c0(v).as_object_mut().unwrap().remove("memory"); v["memory"] = json!("512"); }, Ok),
        row!("reservation alone is enough", ec2, |v| { c0(v).as_object_mut().unwrap().remove("memory"); c0(v)["memoryReservation"] = json!(128); }, Ok),
        row!("memory at least 6 MiB", ec2, |v| c0(v)["memory"] = json!(4), Client("The 'memory' value must be at least 6 MiB")),
        row!("memory of 6 MiB", ec2, |v| c0(v)["memory"] = json!(6), Ok),
        row!("reservation at least 6 MiB", ec2, |v| c0(v)["memoryReservation"] = json!(5), Client("The 'memoryReservation' value must be at least 6 MiB")),
        row!("reservation within memory", ec2, |v| c0(v)["memoryReservation"] = json!(512), Client("'memory' must be greater than or equal to 'memoryReservation'")),
        row!("container memory within task memory", ec2, |v| v["memory"] = json!("128"), Client("The 'memory' setting for container 'app' is greater than for the task.")),
        row!("sum of reservations within task memory", pair, |v| {
            v["containerDefinitions"][0]["memoryReservation"] = json!(600);
            v["containerDefinitions"][1]["memoryReservation"] = json!(600);
        }, Client("The sum of all container memory reservations cannot be greater than the value of the task 'memory'.")),
        row!("sum of cpu within task cpu", pair, |v| {
            v["cpu"] = json!("512");
            v["containerDefinitions"][0]["cpu"] = json!(256);
            v["containerDefinitions"][1]["cpu"] = json!(512);
        }, Client("The sum of all container 'cpu' values cannot be greater than the value of the task 'cpu'.")),
        row!("container cpu not negative", ec2, |v| c0(v)["cpu"] = json!(-1), Client("The 'cpu' value must not be negative.")),
        row!("EC2 task cpu range", ec2, |v| v["cpu"] = json!("64"), Client("Task CPU must be between 128 and 196608")),
        row!("task cpu syntax", ec2, |v| v["cpu"] = json!("lots"), Client("Invalid 'cpu' setting for task")),
        row!("task memory syntax", ec2, |v| v["memory"] = json!("0"), Client("Invalid 'memory' setting for task")),
        // Fargate.
        row!("Fargate needs awsvpc", fargate, |v| v["networkMode"] = json!("bridge"), Client("Fargate only supports network mode \u{2018}awsvpc\u{2019}.")),
        row!("Fargate needs an explicit network mode", fargate, |v| v.as_object_mut().unwrap().remove("networkMode"), Client("Fargate only supports network mode")),
        row!("Fargate needs task cpu", fargate, |v| v.as_object_mut().unwrap().remove("cpu"), Client("Fargate requires that 'cpu' be defined at the task level.")),
        row!("Fargate needs task memory", fargate, |v| v.as_object_mut().unwrap().remove("memory"), Client("Fargate requires that 'memory' be defined at the task level.")),
        row!("Fargate size table", fargate, |v| v["memory"] = json!("4096"), Client("No Fargate configuration exists for given values: 256 CPU, 4096 memory.")),
        row!("Fargate sizes in vCPU and GB", fargate, |v| { v["cpu"] = json!("1 vCPU"); v["memory"] = json!("2 GB"); }, Ok),
        row!("Fargate Windows needs 1 vCPU", fargate, |v| v["runtimePlatform"] = json!({"operatingSystemFamily": "WINDOWS_SERVER_2022_CORE"}), Client("No Fargate configuration exists")),
        row!("Fargate awslogs needs an execution role", fargate, |v| v.as_object_mut().unwrap().remove("executionRoleArn"), Client("Fargate requires task definition to have execution role ARN to support log driver awslogs.")),
        row!("Fargate awslogs needs a stream prefix", fargate, |v| c0(v)["logConfiguration"]["options"].as_object_mut().unwrap().remove("awslogs-stream-prefix"), Client("Log driver awslogs requires options: awslogs-stream-prefix")),
        row!("Fargate log drivers", fargate, |v| c0(v)["logConfiguration"] = json!({"logDriver": "json-file"}), Client("Fargate does not support the log driver 'json-file'")),
        row!("Fargate no privileged", fargate, |v| c0(v)["privileged"] = json!(true), Client("Fargate requires that the 'privileged' setting be 'false'")),
        row!("Fargate privileged false", fargate, |v| c0(v)["privileged"] = json!(false), Ok),
        row!("Fargate no host sourcePath", fargate, |v| v["volumes"] = json!([{"name": "data", "host": {"sourcePath": "/srv"}}]), Client("Fargate compatible task definitions do not support sourcePath")),
        row!("Fargate bind mount without sourcePath", fargate, |v| v["volumes"] = json!([{"name": "data", "host": {}}]), Ok),
        row!("Fargate no docker volumes", fargate, |v| v["volumes"] = json!([{"name": "data", "dockerVolumeConfiguration": {"scope": "task"}}]), Client("do not support dockerVolumeConfiguration")),
        row!("Fargate no ipcMode", fargate, |v| v["ipcMode"] = json!("task"), Client("do not support ipcMode")),
        row!("Fargate no host pidMode", fargate, |v| v["pidMode"] = json!("host"), Client("do not support pidMode 'host'")),
        row!("Fargate task pidMode", fargate, |v| v["pidMode"] = json!("task"), Ok),
        row!("Fargate no placement constraints", fargate, |v| v["placementConstraints"] = json!([{"type": "memberOf", "expression": "attribute:ecs.os-type == linux"}]), Client("do not support constraints")),
        row!("Fargate stop timeout", fargate, |v| c0(v)["stopTimeout"] = json!(121), Client("'stopTimeout' between 2 and 120")),
        row!("Fargate start timeout", fargate, |v| c0(v)["startTimeout"] = json!(1), Client("'startTimeout' between 2 and 120")),
        row!("Fargate devices", fargate, |v| c0(v)["linuxParameters"] = json!({"devices": [{"hostPath": "/dev/fuse"}]}), Client("do not support devices")),
        row!("Fargate capabilities", fargate, |v| c0(v)["linuxParameters"] = json!({"capabilities": {"add": ["NET_ADMIN"]}}), Client("'SYS_PTRACE'")),
        row!("Fargate SYS_PTRACE", fargate, |v| c0(v)["linuxParameters"] = json!({"capabilities": {"add": ["SYS_PTRACE"]}}), Ok),
        row!("Fargate GPUs", fargate, |v| c0(v)["resourceRequirements"] = json!([{"type": "GPU", "value": "1"}]), Client("do not support GPU resource requirements")),
        // Network modes and ports.
        row!("awsvpc host port must match", fargate, |v| c0(v)["portMappings"][0]["hostPort"] = json!(8080), Client("When networkMode=awsvpc, the host ports and container ports in port mappings must match.")),
        row!("host host port must match", ec2, |v| { v["networkMode"] = json!("host"); c0(v)["portMappings"][0]["hostPort"] = json!(8080); }, Client("When networkMode=host, the host ports and container ports in port mappings must match.")),
        row!("bridge maps any host port", ec2, |v| c0(v)["portMappings"][0]["hostPort"] = json!(8080), Ok),
        row!("bridge dynamic host port", ec2, |v| c0(v)["portMappings"][0]["hostPort"] = json!(0), Ok),
        row!("reserved host ports are accepted at registration", ec2, |v| c0(v)["portMappings"][0]["hostPort"] = json!(22), Ok),
        row!("links only in bridge mode", fargate, |v| c0(v)["links"] = json!(["db"]), Client("Links are not supported when networkMode=awsvpc")),
        row!("links not in host mode", ec2, |v| { v["networkMode"] = json!("host"); c0(v)["links"] = json!(["db"]); }, Client("Links are not supported when networkMode=host")),
        row!("links in bridge mode", ec2, |v| c0(v)["links"] = json!(["db:database"]), Ok),
        row!("awsvpc no hostname", fargate, |v| c0(v)["hostname"] = json!("web"), Client("hostname is not supported on container when networkMode=awsvpc")),
        row!("awsvpc no DNS servers", fargate, |v| c0(v)["dnsServers"] = json!(["10.0.0.2"]), Client("DNS servers are not supported on container when networkMode=awsvpc")),
        row!("awsvpc no extra hosts", fargate, |v| c0(v)["extraHosts"] = json!([{"hostname": "db", "ipAddress": "10.0.0.3"}]), Client("Extra hosts are not supported on container when networkMode=awsvpc")),
        row!("awsvpc accepts empty lists from describe output", fargate, |v| { c0(v)["dnsServers"] = json!([]); c0(v)["links"] = json!([]); c0(v)["extraHosts"] = json!([]); }, Ok),
        row!("none mode has no port mappings", ec2, |v| v["networkMode"] = json!("none"), Client("Port mappings are not supported when networkMode=none.")),
        row!("container port range", ec2, |v| c0(v)["portMappings"][0]["containerPort"] = json!(70000), Client("The container port 70000 is outside the range 1-65535.")),
        row!("port mapping needs a port", ec2, |v| c0(v)["portMappings"] = json!([{"protocol": "tcp"}]), Client("Port mappings must specify a containerPort or a containerPortRange.")),
        row!("containerPortRange syntax", ec2, |v| c0(v)["portMappings"] = json!([{"containerPortRange": "9000-8000"}]), Client("Invalid 'containerPortRange' setting '9000-8000'")),
        row!("containerPortRange alone", ec2, |v| c0(v)["portMappings"] = json!([{"containerPortRange": "8000-8010"}, {"containerPort": 80}]), Ok),
        row!("containerPortRange without hostPort", ec2, |v| c0(v)["portMappings"] = json!([{"containerPortRange": "8000-8010", "hostPort": 8000}]), Client("cannot specify both single port and port range")),
        row!("containerPortRange not in host mode", ec2, |v| { v["networkMode"] = json!("host"); c0(v)["portMappings"] = json!([{"containerPortRange": "8000-8010"}]); }, Client("containerPortRange is only supported when networkMode=bridge or networkMode=awsvpc")),
        row!("a container port once per protocol", ec2, |v| c0(v)["portMappings"] = json!([{"containerPort": 80}, {"containerPortRange": "79-81"}]), Client("container port is used multiple times in task")),
        row!("same port over tcp and udp", ec2, |v| c0(v)["portMappings"] = json!([{"containerPort": 53}, {"containerPort": 53, "protocol": "udp"}]), Ok),
        row!("port mapping names unique", pair, |v| {
            v["containerDefinitions"][0]["portMappings"] = json!([{"containerPort": 80, "name": "http"}]);
            v["containerDefinitions"][1]["portMappings"] = json!([{"containerPort": 81, "name": "http"}]);
        }, Client("port mapping name is already used")),
        row!("port mapping name format", ec2, |v| c0(v)["portMappings"][0]["name"] = json!("Web"), Client("Port mapping name 'Web' is invalid.")),
        // Dependencies.
        row!("dependsOn names a container", pair, |v| v["containerDefinitions"][0]["dependsOn"] = json!([{"containerName": "ghost", "condition": "START"}]), Client("Cannot depend on container 'ghost' because it does not exist")),
        row!("dependsOn not on itself", pair, |v| v["containerDefinitions"][0]["dependsOn"] = json!([{"containerName": "app", "condition": "START"}]), Client("Container 'app' cannot depend on itself.")),
        row!("dependsOn without cycles", pair, |v| {
            v["containerDefinitions"][0]["dependsOn"] = json!([{"containerName": "init", "condition": "START"}]);
            v["containerDefinitions"][1]["dependsOn"] = json!([{"containerName": "app", "condition": "START"}]);
        }, Client("The container dependencies form a cycle: app -> init -> app.")),
        row!("COMPLETE not on an essential container", pair, |v| {
            v["containerDefinitions"][1]["essential"] = json!(true);
            v["containerDefinitions"][0]["dependsOn"] = json!([{"containerName": "init", "condition": "COMPLETE"}]);
        }, Client("A dependency container with SUCCESS or COMPLETE condition cannot be an essential container")),
        row!("SUCCESS on a non-essential container", pair, |v| v["containerDefinitions"][0]["dependsOn"] = json!([{"containerName": "init", "condition": "SUCCESS"}]), Ok),
        row!("HEALTHY needs a health check", pair, |v| {
            v["containerDefinitions"][1]["dependsOn"] = json!([{"containerName": "app", "condition": "HEALTHY"}]);
        }, Client("A dependency container with HEALTHY condition must have health check configured")),
        row!("HEALTHY with a health check", pair, |v| v["containerDefinitions"][0]["dependsOn"] = json!([{"containerName": "init", "condition": "HEALTHY"}]), Ok),
        row!("dependency condition enum (model)", pair, |v| v["containerDefinitions"][0]["dependsOn"] = json!([{"containerName": "init", "condition": "READY"}]), Invalid("Member must satisfy enum value set")),
        // Health checks and timeouts.
        row!("health check command form", ec2, |v| c0(v)["healthCheck"] = json!({"command": ["curl", "-f", "http://localhost/"]}), Client("The health check command must start with 'CMD' or 'CMD-SHELL'")),
        row!("health check command has a command", ec2, |v| c0(v)["healthCheck"] = json!({"command": ["CMD-SHELL"]}), Client("The health check command must start with 'CMD' or 'CMD-SHELL'")),
        row!("health check NONE", ec2, |v| c0(v)["healthCheck"] = json!({"command": ["NONE"]}), Ok),
        row!("health check interval", ec2, |v| c0(v)["healthCheck"] = json!({"command": ["CMD", "true"], "interval": 4}), Client("The health check 'interval' must be between 5 and 300, got 4.")),
        row!("health check timeout", ec2, |v| c0(v)["healthCheck"] = json!({"command": ["CMD", "true"], "timeout": 61}), Client("The health check 'timeout' must be between 2 and 60, got 61.")),
        row!("health check retries", ec2, |v| c0(v)["healthCheck"] = json!({"command": ["CMD", "true"], "retries": 0}), Client("The health check 'retries' must be between 1 and 10, got 0.")),
        row!("health check startPeriod", ec2, |v| c0(v)["healthCheck"] = json!({"command": ["CMD", "true"], "startPeriod": 301}), Client("The health check 'startPeriod' must be between 0 and 300, got 301.")),
        row!("health check at the limits", ec2, |v| c0(v)["healthCheck"] = json!({"command": ["CMD", "true"], "interval": 300, "timeout": 2, "retries": 10, "startPeriod": 0}), Ok),
        row!("stop timeout not negative", ec2, |v| c0(v)["stopTimeout"] = json!(-1), Client("The 'stopTimeout' value must not be negative")),
        row!("EC2 stop timeout beyond Fargate's", ec2, |v| c0(v)["stopTimeout"] = json!(600), Ok),
        row!("restart attempt period", ec2, |v| c0(v)["restartPolicy"] = json!({"enabled": true, "restartAttemptPeriod": 59}), Client("the 'restartAttemptPeriod' setting for container 'app' must be between 60 and 1800")),
        row!("restart policy ignored exit codes", ec2, |v| c0(v)["restartPolicy"] = json!({"enabled": true, "ignoredExitCodes": (0..51).collect::<Vec<i32>>()}), Client("at most 50 exit codes")),
        // Volumes and mounts.
        row!("volume names unique", ec2, |v| v["volumes"] = json!([{"name": "data"}, {"name": "data"}]), Client("Volume names must be unique within a task definition: 'data'.")),
        row!("volume name format", ec2, |v| v["volumes"] = json!([{"name": "my data"}]), Client("Volume name 'my data' is invalid.")),
        row!("mount points name a volume", ec2, |v| c0(v)["mountPoints"] = json!([{"sourceVolume": "data", "containerPath": "/data"}]), Client("Unknown volume 'data'")),
        row!("mount points of a defined volume", ec2, |v| { v["volumes"] = json!([{"name": "data"}]); c0(v)["mountPoints"] = json!([{"sourceVolume": "data", "containerPath": "/data"}]); }, Ok),
        row!("volumesFrom names a container", ec2, |v| c0(v)["volumesFrom"] = json!([{"sourceContainer": "ghost"}]), Client("Invalid 'volumesFrom' setting. Unknown container: 'ghost'")),
        row!("volumesFrom another container", ec2, |v| c0(v)["volumesFrom"] = json!([{"sourceContainer": "app"}]), Client("cannot mount volumes from itself")),
        row!("one volume configured at launch", ec2, |v| v["volumes"] = json!([{"name": "a", "configuredAtLaunch": true}, {"name": "b", "configuredAtLaunch": true}]), Client("only one volume configured at launch")),
        row!("EFS IAM needs transit encryption", ec2, |v| v["volumes"] = json!([{"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1", "authorizationConfig": {"iam": "ENABLED"}}}]), Client("EFS IAM authorization requires TransitEncryption to be enabled")),
        row!("EFS access point root directory", ec2, |v| v["volumes"] = json!([{"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1", "rootDirectory": "/data", "transitEncryption": "ENABLED", "authorizationConfig": {"accessPointId": "fsap-1"}}}]), Client("When using an EFS access point, the root directory must either be set to \"/\" or be omitted")),
        row!("EFS transit encryption port", ec2, |v| v["volumes"] = json!([{"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1", "transitEncryptionPort": 2049}}]), Client("TransitEncryptionPort requires that TransitEncryption is enabled")),
        // Placement, proxy, storage.
        row!("memberOf needs an expression", ec2, |v| v["placementConstraints"] = json!([{"type": "memberOf"}]), Client("A memberOf placement constraint requires an expression.")),
        row!("at most ten placement constraints", ec2, |v| v["placementConstraints"] = json!(vec![json!({"type": "memberOf", "expression": "attribute:a == b"}); 11]), Client("Too many placement constraints")),
        row!("placement constraint types (model)", ec2, |v| v["placementConstraints"] = json!([{"type": "distinctInstance"}]), Invalid("Member must satisfy enum value set: [memberOf]")),
        row!("pidMode values (model)", ec2, |v| v["pidMode"] = json!("container"), Invalid("Member must satisfy enum value set: [host, task]")),
        row!("ipcMode values (model)", ec2, |v| v["ipcMode"] = json!("shareable"), Invalid("Member must satisfy enum value set: [host, task, none]")),
        row!("App Mesh proxy needs awsvpc", ec2, |v| v["proxyConfiguration"] = json!({"type": "APPMESH", "containerName": "app"}), Client("APPMESH proxy configuration is only supported in networkMode=awsvpc")),
        row!("App Mesh proxy container exists", fargate, |v| v["proxyConfiguration"] = json!({"type": "APPMESH", "containerName": "envoy"}), Client("Proxy container [envoy] does not exist")),
        row!("ephemeral storage at least 21 GiB", fargate, |v| v["ephemeralStorage"] = json!({"sizeInGiB": 20}), Client("EphemeralStorage size should be at least 21")),
        row!("ephemeral storage at most 200 GiB", fargate, |v| v["ephemeralStorage"] = json!({"sizeInGiB": 201}), Client("EphemeralStorage size should be at most 200")),
        // Environment, secrets, logging, limits, resources.
        row!("environment names non-empty", ec2, |v| c0(v)["environment"] = json!([{"name": "", "value": "x"}]), Client("Environment variable names must not be null or empty.")),
        row!("environment names present", ec2, |v| c0(v)["environment"] = json!([{"value": "x"}]), Client("Environment variable names must not be null or empty.")),
        row!("at most ten environment files", ec2, |v| c0(v)["environmentFiles"] = json!(vec![json!({"type": "s3", "value": "arn:aws:s3:::b/a.env"}); 11]), Client("The maximum number of environment files was exceeded.")),
        row!("environment files are ARNs", ec2, |v| c0(v)["environmentFiles"] = json!([{"type": "s3", "value": "s3://b/a.env"}]), Client("Invalid arn syntax")),
        row!("secrets need an execution role", ec2, |v| c0(v)["secrets"] = json!([{"name": "DB", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/db"}]), Client("When you are specifying container secrets, you must also specify a value for 'executionRoleArn'.")),
        row!("awslogs needs group and region", ec2, |v| c0(v)["logConfiguration"] = json!({"logDriver": "awslogs", "options": {"awslogs-stream-prefix": "x"}}), Client("Log driver awslogs requires options: awslogs-region, awslogs-group")),
        row!("EC2 awslogs without a stream prefix", ec2, |v| c0(v)["logConfiguration"] = json!({"logDriver": "awslogs", "options": {"awslogs-group": "g", "awslogs-region": "us-east-1"}}), Ok),
        row!("awsfirelens needs a log router", ec2, |v| c0(v)["logConfiguration"] = json!({"logDriver": "awsfirelens"}), Client("a firelens configuration object must be specified")),
        row!("ulimit soft within hard", ec2, |v| c0(v)["ulimits"] = json!([{"name": "nofile", "softLimit": 2048, "hardLimit": 1024}]), Client("Soft limit exceeds hard limit for ulimit nofile")),
        row!("ulimit names (model)", ec2, |v| c0(v)["ulimits"] = json!([{"name": "files", "softLimit": 1, "hardLimit": 1}]), Invalid("Member must satisfy enum value set")),
        row!("swappiness range", ec2, |v| c0(v)["linuxParameters"] = json!({"maxSwap": 0, "swappiness": 101}), Client("The 'swappiness' value must be between 0 and 100")),
        row!("GPU count", ec2, |v| c0(v)["resourceRequirements"] = json!([{"type": "GPU", "value": "0"}]), Client("The GPU resource requirement must be a positive integer")),
        row!("inference accelerators are declared", ec2, |v| c0(v)["resourceRequirements"] = json!([{"type": "InferenceAccelerator", "value": "eia"}]), Client("The inference accelerator 'eia' is not defined")),
        row!("one credential spec", ec2, |v| c0(v)["credentialSpecs"] = json!(["credentialspec:arn:a", "credentialspec:arn:b"]), Client("At most one credential spec")),
        // Launch types.
        row!("Managed Instances network modes", ec2, |v| v["requiresCompatibilities"] = json!(["MANAGED_INSTANCES"]), Client("Managed Instances only supports network mode")),
        row!("External instances lack awsvpc", ec2, |v| { v["networkMode"] = json!("awsvpc"); v["requiresCompatibilities"] = json!(["EXTERNAL"]); }, Client("External instances do not support network mode 'awsvpc'.")),
        row!("tags", ec2, |v| v["tags"] = json!([{"key": "aws:owner", "value": "x"}]), Invalid("reserved prefix 'aws:'")),
    ]
}

#[test]
fn validation_table() {
    let rows = rows();
    assert!(rows.len() >= 30);
    let mut failures = Vec::new();
    for row in rows {
        let mut body = (row.base)();
        (row.tweak)(&mut body);
        let mut h = Harness::new();
        let (got, mutations) = h.call_logged("RegisterTaskDefinition", &body);
        let outcome = match (&row.expect, &got) {
            (Expect::Ok, Ok(_)) => None,
            (Expect::Client(want), Err(e))
                if e.code == "ClientException" && e.message.contains(want) =>
            {
                None
            }
            (Expect::Invalid(want), Err(e))
                if e.code == "InvalidParameterException" && e.message.contains(want) =>
            {
                None
            }
            _ => Some(format!(
                "{}: got {:?}",
                row.rule,
                got.as_ref()
                    .map(|_| "accepted")
                    .map_err(ToString::to_string)
            )),
        };
        if let Some(f) = outcome {
            failures.push(f);
            continue;
        }
        if got.is_err() {
            // A refused request changes nothing.
            assert!(
                mutations.is_empty(),
                "{}: refused but wrote {mutations:?}",
                row.rule
            );
            let p = h.world.partition(&partition());
            assert!(
                p.families.is_empty(),
                "{}: refused but stored a revision",
                row.rule
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

proptest! {
    /// Fargate accepts a task size exactly when it is in ECS's table; FARGATE appears in
    /// `compatibilities` of an EC2 definition under the same rule.
    #[test]
    fn fargate_sizes(cpu in prop::sample::select(vec![128u32, 256, 512, 1024, 2048, 4096, 8192, 16384]), memory_gb_quarters in 1u32..=480) {
        let memory = memory_gb_quarters * 256;
        let mut body = fargate();
        body["cpu"] = json!(cpu.to_string());
        body["memory"] = json!(memory.to_string());
        let mut h = Harness::new();
        let got = h.call("RegisterTaskDefinition", &body);
        prop_assert_eq!(got.is_ok(), crate::task_definition::fargate_memory_ok(cpu, memory), "{}/{}: {:?}", cpu, memory, got.as_ref().err());
        body["requiresCompatibilities"] = json!(["EC2"]);
        if let Ok(td) = h.call("RegisterTaskDefinition", &body) {
            let listed = td["taskDefinition"]["compatibilities"].as_array().unwrap().contains(&json!("FARGATE"));
            prop_assert_eq!(listed, crate::task_definition::fargate_memory_ok(cpu, memory));
        }
    }
}

fn test_data(name: &str) -> Value {
    let path = format!(
        "{}/test-data/task-definitions/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn example(name: &str) -> Value {
    let path = format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The seed definitions come back exactly as real ECS describes them.
#[test]
fn seed_definitions_describe_as_ecs_does() {
    for (seed, expected) in [
        ("my-web-app.json", "my-web-app.describe.json"),
        ("data-processor.json", "data-processor.describe.json"),
    ] {
        let mut h = Harness::new();
        let input = example(seed);
        let registered = h.ok("RegisterTaskDefinition", &input);
        let family = input["family"].as_str().unwrap();
        let described = h.ok(
            "DescribeTaskDefinition",
            &json!({ "taskDefinition": family }),
        );
        let expected = test_data(expected);
        assert_eq!(described, expected, "{seed}:\n{described:#}");
        assert_eq!(registered["taskDefinition"], expected["taskDefinition"]);
        assert_eq!(registered["tags"], json!([]));
    }
}

#[test]
fn defaults_for_bridge_definitions() {
    let mut h = Harness::new();
    let td = h.register(&json!({
        "family": "web",
        "containerDefinitions": [{
            "name": "app",
            "image": "nginx",
            "memory": 128,
            "portMappings": [{ "containerPort": 80 }, { "containerPortRange": "8000-8010", "protocol": "udp" }],
            "healthCheck": { "command": ["CMD-SHELL", "curl -f http://localhost/"], "startPeriod": 10 }
        }]
    }));
    let c = &td["containerDefinitions"][0];
    assert_eq!(
        c["portMappings"],
        json!([
            { "containerPort": 80, "hostPort": 0, "protocol": "tcp" },
            { "containerPortRange": "8000-8010", "protocol": "udp" }
        ])
    );
    assert_eq!(
        c["healthCheck"],
        json!({ "command": ["CMD-SHELL", "curl -f http://localhost/"], "interval": 30, "timeout": 5, "retries": 3, "startPeriod": 10 })
    );
    for (k, v) in [
        ("cpu", json!(0)),
        ("essential", json!(true)),
        ("environment", json!([])),
        ("mountPoints", json!([])),
        ("volumesFrom", json!([])),
        ("systemControls", json!([])),
    ] {
        assert_eq!(c[k], v, "{k}");
    }
    assert_eq!(td["compatibilities"], json!(["EXTERNAL", "EC2"]));
    assert!(
        td.get("networkMode").is_none(),
        "ECS leaves networkMode out"
    );
    assert!(td.get("requiresCompatibilities").is_none());
    assert_eq!(
        td["requiresAttributes"],
        json!([
            { "name": "ecs.capability.container-health-check" },
            { "name": "com.amazonaws.ecs.capability.docker-remote-api.1.29" }
        ])
    );

    // A definition needing nothing has no requiresAttributes at all.
    let plain = h.register(&ec2());
    assert!(plain.get("requiresAttributes").is_none(), "{plain:#}");
    assert_eq!(
        plain["containerDefinitions"][0]["portMappings"][0]["hostPort"],
        0
    );
}

#[test]
fn defaults_for_awsvpc_and_host_definitions() {
    let mut h = Harness::new();
    let mut body = fargate();
    body["requiresCompatibilities"] = json!(["EC2"]);
    body["runtimePlatform"] =
        json!({ "cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX" });
    body["containerDefinitions"][0]["portMappings"] =
        json!([{ "containerPort": 8080 }, { "containerPort": 9090, "hostPort": 0 }]);
    let td = h.register(&body);
    assert_eq!(
        td["containerDefinitions"][0]["portMappings"],
        json!([
            { "containerPort": 8080, "hostPort": 8080, "protocol": "tcp" },
            { "containerPort": 9090, "hostPort": 9090, "protocol": "tcp" }
        ])
    );
    assert_eq!(
        td["compatibilities"],
        json!(["EC2", "FARGATE", "MANAGED_INSTANCES"])
    );

    let mut host = ec2();
    host["networkMode"] = json!("host");
    host["taskRoleArn"] = json!("arn:aws:iam::123456789012:role/app");
    let td = h.register(&host);
    assert_eq!(
        td["containerDefinitions"][0]["portMappings"][0]["hostPort"],
        80
    );
    assert_eq!(td["compatibilities"], json!(["EXTERNAL", "EC2"]));
    let names: Vec<&str> = td["requiresAttributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "com.amazonaws.ecs.capability.task-iam-role",
            "com.amazonaws.ecs.capability.task-iam-role-network-host"
        ]
    );
}

#[test]
fn requires_attributes_for_ecr_secrets_and_volumes() {
    let mut h = Harness::new();
    let td = h.register(&json!({
        "family": "api",
        "networkMode": "awsvpc",
        "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
        "memory": "1024",
        "volumes": [{ "name": "efs", "efsVolumeConfiguration": { "fileSystemId": "fs-1", "transitEncryption": "ENABLED", "authorizationConfig": { "iam": "ENABLED" } } }],
        "containerDefinitions": [{
            "name": "api",
            "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/api:1",
            "secrets": [{ "name": "DB", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db" }],
            "dependsOn": [],
            "logConfiguration": { "logDriver": "awslogs", "options": { "awslogs-group": "g", "awslogs-region": "us-east-1" } }
        }]
    }));
    let names: Vec<&str> = td["requiresAttributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "com.amazonaws.ecs.capability.logging-driver.awslogs",
            "ecs.capability.execution-role-awslogs",
            "com.amazonaws.ecs.capability.ecr-auth",
            "com.amazonaws.ecs.capability.docker-remote-api.1.19",
            "ecs.capability.execution-role-ecr-pull",
            "ecs.capability.secrets.asm.environment-variables",
            "ecs.capability.efsAuth",
            "ecs.capability.efs",
            "com.amazonaws.ecs.capability.docker-remote-api.1.18",
            "ecs.capability.task-eni",
        ]
    );
}

#[test]
fn revisions_count_up_and_are_never_reused() {
    let mut h = Harness::new();
    for expected in 1..=3 {
        assert_eq!(h.register(&ec2())["revision"], expected);
    }
    h.deregister("web:3");
    h.ok(
        "DeleteTaskDefinitions",
        &json!({ "taskDefinitions": ["web:3"] }),
    );
    assert_eq!(
        h.register(&ec2())["revision"],
        4,
        "a deleted revision's number is not reused"
    );
    // Nor after a restart: the world rebuilt from what was persisted carries on from 5.
    h.world = h.restarted();
    assert_eq!(h.register(&ec2())["revision"], 5);
    assert_eq!(
        h.describe("web:3").unwrap_err().message,
        "Unable to describe task definition."
    );
    assert_eq!(h.describe("web").unwrap()["revision"], 5);
}

#[test]
fn describe_resolves_references() {
    let mut h = Harness::new();
    for _ in 0..3 {
        h.register(&ec2());
    }
    // A bare family is the latest ACTIVE revision.
    assert_eq!(h.describe("web").unwrap()["revision"], 3);
    h.deregister("web:3");
    assert_eq!(
        h.describe("web").unwrap()["revision"],
        2,
        "latest ACTIVE, not latest"
    );
    // INACTIVE revisions stay describable by number and ARN.
    let inactive = h.describe("web:3").unwrap();
    assert_eq!(inactive["status"], "INACTIVE");
    assert_eq!(inactive["deregisteredAt"], json!(1_700_000_004.0));
    assert_eq!(h.describe(&arn("web", 3)).unwrap(), inactive);
    // DELETE_IN_PROGRESS is gone for every kind of reference.
    let deleted = h.ok(
        "DeleteTaskDefinitions",
        &json!({ "taskDefinitions": [arn("web", 3)] }),
    );
    assert_eq!(
        deleted["taskDefinitions"][0]["status"],
        "DELETE_IN_PROGRESS"
    );
    assert!(deleted["taskDefinitions"][0]["deleteRequestedAt"].is_f64());
    assert_eq!(deleted["failures"], json!([]));
    for reference in ["web:3".to_string(), arn("web", 3)] {
        let e = h.describe(&reference).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            ("ClientException", "Unable to describe task definition.")
        );
    }
    // With every revision inactive, the bare family resolves to nothing.
    h.deregister("web:1");
    h.deregister("web:2");
    assert_eq!(h.describe("web").unwrap_err().code, "ClientException");
    assert_eq!(h.describe("web:2").unwrap()["status"], "INACTIVE");
    // Bad references.
    for (reference, message) in [
        ("nope", "Unable to describe task definition."),
        ("web:9", "Unable to describe task definition."),
        ("web:x", "Invalid revision number. Number: x"),
        ("web:0", "Invalid revision number. Number: 0"),
        (
            "arn:aws:ecs:eu-west-1:123456789012:task-definition/web:1",
            "Unable to describe task definition.",
        ),
        (
            "arn:aws:ecs:us-east-1:999999999999:task-definition/web:1",
            "Unable to describe task definition.",
        ),
    ] {
        let e = h.describe(reference).unwrap_err();
        assert_eq!(e.code, "ClientException", "{reference}");
        assert_eq!(e.message, message, "{reference}");
    }
}

#[test]
fn describe_includes_tags_only_on_request() {
    let mut h = Harness::new();
    let mut body = ec2();
    body["tags"] = json!([{ "key": "team", "value": "web" }]);
    let registered = h.ok("RegisterTaskDefinition", &body);
    assert_eq!(
        registered["tags"],
        json!([{ "key": "team", "value": "web" }])
    );
    let plain = h.ok(
        "DescribeTaskDefinition",
        &json!({ "taskDefinition": "web" }),
    );
    assert!(plain.get("tags").is_none());
    let tagged = h.ok(
        "DescribeTaskDefinition",
        &json!({ "taskDefinition": "web", "include": ["TAGS"] }),
    );
    assert_eq!(tagged["tags"], json!([{ "key": "team", "value": "web" }]));
}

fn list_all(h: &mut Harness, op: &str, mut req: Value, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let page = h.ok(op, &req);
        let items = page[key].as_array().unwrap();
        assert!(
            items.len() <= req.get("maxResults").and_then(Value::as_u64).unwrap_or(100) as usize
        );
        out.extend(items.iter().map(|a| a.as_str().unwrap().to_string()));
        match page.get("nextToken").and_then(Value::as_str) {
            Some(t) => req["nextToken"] = json!(t),
            None => return out,
        }
    }
}

#[test]
fn list_task_definitions_pages_in_both_orders() {
    let mut h = Harness::new();
    // `web-api` sorts after `web` even though '-' sorts before ':' in an ARN.
    for (family, n) in [("web", 3), ("api", 2), ("web-api", 2), ("worker", 1)] {
        for _ in 0..n {
            let mut body = ec2();
            body["family"] = json!(family);
            h.register(&body);
        }
    }
    let asc: Vec<String> = [
        ("api", 1),
        ("api", 2),
        ("web", 1),
        ("web", 2),
        ("web", 3),
        ("web-api", 1),
        ("web-api", 2),
        ("worker", 1),
    ]
    .iter()
    .map(|(f, r)| arn(f, *r))
    .collect();
    for page in 1..=9 {
        let got = list_all(
            &mut h,
            "ListTaskDefinitions",
            json!({ "maxResults": page }),
            "taskDefinitionArns",
        );
        assert_eq!(got, asc, "ASC, pages of {page}");
        let got = list_all(
            &mut h,
            "ListTaskDefinitions",
            json!({ "maxResults": page, "sort": "DESC" }),
            "taskDefinitionArns",
        );
        let mut desc = asc.clone();
        desc.reverse();
        assert_eq!(got, desc, "DESC, pages of {page}");
    }
    // familyPrefix is the whole family name.
    let web = list_all(
        &mut h,
        "ListTaskDefinitions",
        json!({ "familyPrefix": "web" }),
        "taskDefinitionArns",
    );
    assert_eq!(web, [arn("web", 1), arn("web", 2), arn("web", 3)]);
    // Status filters.
    h.deregister("web:2");
    h.deregister("api:1");
    let active = list_all(
        &mut h,
        "ListTaskDefinitions",
        json!({ "familyPrefix": "web" }),
        "taskDefinitionArns",
    );
    assert_eq!(active, [arn("web", 1), arn("web", 3)]);
    let inactive = list_all(
        &mut h,
        "ListTaskDefinitions",
        json!({ "status": "INACTIVE", "maxResults": 1 }),
        "taskDefinitionArns",
    );
    assert_eq!(inactive, [arn("api", 1), arn("web", 2)]);
    h.ok(
        "DeleteTaskDefinitions",
        &json!({ "taskDefinitions": ["web:2"] }),
    );
    let deleting = list_all(
        &mut h,
        "ListTaskDefinitions",
        json!({ "status": "DELETE_IN_PROGRESS" }),
        "taskDefinitionArns",
    );
    assert_eq!(deleting, [arn("web", 2)]);
    // Paging limits and tokens.
    let e = h
        .call("ListTaskDefinitions", &json!({ "maxResults": 0 }))
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");
    let e = h
        .call("ListTaskDefinitions", &json!({ "nextToken": "zz" }))
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");
}

#[test]
fn list_families_by_status_and_prefix() {
    let mut h = Harness::new();
    for family in ["web", "web-api", "worker", "api"] {
        let mut body = ec2();
        body["family"] = json!(family);
        h.register(&body);
    }
    h.register(&ec2()); // web:2
    let all =
        |h: &mut Harness, req: Value| list_all(h, "ListTaskDefinitionFamilies", req, "families");
    assert_eq!(all(&mut h, json!({})), ["api", "web", "web-api", "worker"]);
    assert_eq!(
        all(&mut h, json!({ "maxResults": 1 })),
        ["api", "web", "web-api", "worker"]
    );
    assert_eq!(
        all(&mut h, json!({ "familyPrefix": "web" })),
        ["web", "web-api"]
    );
    h.deregister("worker:1");
    h.deregister("web:1");
    assert_eq!(
        all(&mut h, json!({ "status": "ACTIVE" })),
        ["api", "web", "web-api"]
    );
    assert_eq!(all(&mut h, json!({ "status": "INACTIVE" })), ["worker"]);
    assert_eq!(
        all(&mut h, json!({ "status": "ALL" })),
        ["api", "web", "web-api", "worker"]
    );
    // Once its last revision is being deleted, a family is no longer listed.
    h.ok(
        "DeleteTaskDefinitions",
        &json!({ "taskDefinitions": ["worker:1"] }),
    );
    assert_eq!(all(&mut h, json!({})), ["api", "web", "web-api"]);
    assert_eq!(
        all(&mut h, json!({ "status": "INACTIVE" })),
        Vec::<String>::new()
    );
}

#[test]
fn deregister_and_delete_rules() {
    let mut h = Harness::new();
    h.register(&ec2());
    h.register(&ec2());
    // Deregister needs a revision.
    let e = h
        .call(
            "DeregisterTaskDefinition",
            &json!({ "taskDefinition": "web" }),
        )
        .unwrap_err();
    assert_eq!(e.code, "ClientException");
    assert!(
        e.message.contains("Specify a valid revision"),
        "{}",
        e.message
    );
    let e = h
        .call(
            "DeregisterTaskDefinition",
            &json!({ "taskDefinition": "web:7" }),
        )
        .unwrap_err();
    assert_eq!(e.message, "Unable to describe task definition.");
    // Deregistering twice is harmless and keeps the first time.
    let first = h.deregister("web:1");
    let (second, writes) = h.call_logged(
        "DeregisterTaskDefinition",
        &json!({ "taskDefinition": "web:1" }),
    );
    assert_eq!(second.unwrap()["taskDefinition"], first);
    assert!(writes.is_empty());
    // Delete: per-item failures, ACTIVE refused, at most ten references.
    let out = h.ok(
        "DeleteTaskDefinitions",
        &json!({ "taskDefinitions": ["web:1", "web:2", "web", "web:9"] }),
    );
    assert_eq!(out["taskDefinitions"].as_array().unwrap().len(), 1);
    assert_eq!(
        out["taskDefinitions"][0]["taskDefinitionArn"],
        arn("web", 1)
    );
    let reasons: Vec<(&str, &str)> = out["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["arn"].as_str().unwrap(), f["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].1.contains("still in ACTIVE status"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].1.contains("Specify a valid revision"),
        "{reasons:?}"
    );
    assert!(reasons[2].1.contains("does not exist"), "{reasons:?}");
    let e = h
        .call(
            "DeleteTaskDefinitions",
            &json!({ "taskDefinitions": vec!["web:1"; 11] }),
        )
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");
    // A deleted revision cannot be deregistered again.
    let e = h
        .call(
            "DeregisterTaskDefinition",
            &json!({ "taskDefinition": "web:1" }),
        )
        .unwrap_err();
    assert_eq!(e.message, "Unable to describe task definition.");
}

/// What is persisted is what is served: the world rebuilt from the records describes every
/// revision identically, in every state.
#[test]
fn persisted_records_round_trip() {
    let mut h = Harness::new();
    let mut body = fargate();
    body["tags"] = json!([{ "key": "k", "value": "v" }]);
    h.register(&body);
    h.register(&body);
    h.register(&body);
    h.deregister("web:2");
    h.deregister("web:3");
    h.ok(
        "DeleteTaskDefinitions",
        &json!({ "taskDefinitions": ["web:3"] }),
    );
    let before: Vec<Value> = (1..=2)
        .map(|r| {
            h.ok(
                "DescribeTaskDefinition",
                &json!({ "taskDefinition": format!("web:{r}"), "include": ["TAGS"] }),
            )
        })
        .collect();
    let p_before = h.world.partition(&partition()).families.clone();
    h.world = h.restarted();
    let p_after = h.world.partition(&partition()).families.clone();
    assert_eq!(p_before, p_after);
    let after: Vec<Value> = (1..=2)
        .map(|r| {
            h.ok(
                "DescribeTaskDefinition",
                &json!({ "taskDefinition": format!("web:{r}"), "include": ["TAGS"] }),
            )
        })
        .collect();
    assert_eq!(before, after);
    // Every record key is where ecs::handle's mutations put it.
    let key = format!("{ACCOUNT}/{REGION}/{}", keys::task_definition("web", 3));
    assert!(
        h.log.iter().any(
            |m| matches!(m, Mutation::Put(r) if r.kind == Kind::TaskDefinition && r.key == key)
        )
    );
}
