//! Planning the example platform on the local provider.

mod world;

use paved_plan::{Action, Capabilities, PlanError, plan};
use paved_spec::SourceFile;
use serde_json::json;
use world::World;

const DOCKER: Capabilities = Capabilities { docker: true, redis_server: false, sandbox: true };

#[test]
fn the_same_input_gives_identical_bytes_whatever_the_order() {
    let world = World::examples();
    let input = world.input("dev", DOCKER);
    let first = plan(&input).unwrap().to_bytes();
    let mut reversed = input.clone();
    reversed.services.reverse();
    assert_eq!(first, plan(&input).unwrap().to_bytes());
    assert_eq!(first, plan(&reversed).unwrap().to_bytes());
    // …and differs where the inputs differ.
    let staging = plan(&world.input("staging", DOCKER)).unwrap().to_bytes();
    assert_ne!(first, staging);
}

#[test]
fn services_share_a_database_by_score_id_and_reference_its_outputs() {
    let world = World::examples();
    let g = plan(&world.input("dev", DOCKER)).unwrap();
    let dbs: Vec<&String> = g.nodes.keys().filter(|k| k.starts_with("local.postgres.database/")).collect();
    assert_eq!(dbs, ["local.postgres.database/payments-db"], "api and worker share one database");
    let db = &g.nodes["local.postgres.database/payments-db"];
    assert_eq!(db.properties["database"], "dev_payments_db");
    for svc in ["api", "worker"] {
        let w = &g.nodes[&format!("local.workload/{svc}")];
        assert!(w.depends_on.contains("local.postgres.database/payments-db"), "{svc}");
        let url = w.properties["containers"][svc]["variables"]["DATABASE_URL"].as_str().unwrap();
        assert!(url.contains("${ref:local.postgres.database/payments-db.password}"), "{url}");
    }
    // Parameters resolve per environment type: production gets the large class.
    let prod = plan(&world.input("production", DOCKER)).unwrap();
    assert_eq!(prod.nodes["local.postgres.database/payments-db"].properties["class"], "large");
    assert_eq!(prod.nodes["local.postgres.database/payments-db"].properties["backupRetentionDays"], 30);
    assert_eq!(prod.nodes["local.workload/api"].properties["replicas"], 2, "production on local sets replicas: 2");
}

#[test]
fn environments_are_isolated_by_name() {
    let world = World::examples();
    let dev = plan(&world.input("dev", DOCKER)).unwrap();
    let staging = plan(&world.input("staging", DOCKER)).unwrap();
    assert_eq!(dev.nodes["local.network/dev"].properties["name"], "paved-dev");
    assert_eq!(staging.nodes["local.network/staging"].properties["name"], "paved-staging");
    assert_ne!(
        dev.nodes["local.postgres.database/payments-db"].properties["role"],
        staging.nodes["local.postgres.database/payments-db"].properties["role"]
    );
}

#[test]
fn the_runtime_follows_the_machine() {
    let world = World::examples();
    let sandboxed = Capabilities { sandbox: true, ..Capabilities::default() };
    let without_docker = plan(&world.input("dev", sandboxed)).unwrap();
    assert_eq!(without_docker.nodes["local.workload/api"].properties["runtime"], "process");
    let with_docker = plan(&world.input("dev", DOCKER)).unwrap();
    assert_eq!(with_docker.nodes["local.workload/api"].properties["runtime"], "docker");
}

#[test]
fn the_ingress_behaviour_is_normalised_from_the_blueprint() {
    let g = plan(&World::examples().input("dev", DOCKER)).unwrap();
    let proxy = &g.nodes["local.proxy/dev"].properties;
    assert_eq!(proxy["idleTimeoutSeconds"], 60);
    assert_eq!(proxy["requestTimeoutSeconds"], 30);
    assert_eq!(proxy["healthCheck"]["intervalSeconds"], 10);
}

fn service(name: &str, body: &str) -> SourceFile {
    SourceFile::new(
        format!("services/{name}.score.yaml"),
        format!("apiVersion: score.dev/v1b1\nmetadata:\n  name: {name}\n{body}"),
    )
}

#[test]
fn unsatisfiable_placeholders_fail_at_plan_time() {
    let world = World::with_extra(vec![service(
        "reporter",
        "containers:\n  main:\n    image: r:1\n    variables:\n      BUCKET: ${resources.db.bucket}\nresources:\n  db:\n    type: postgres\n",
    )]);
    let errors = plan(&world.input("dev", DOCKER)).unwrap_err();
    assert!(
        errors.iter().any(|e| matches!(e, PlanError::Unsatisfiable { placeholder, reason, .. }
            if placeholder == "${resources.db.bucket}" && reason.contains("host, port, name, database, username, password"))),
        "{errors:?}"
    );
}

#[test]
fn resource_types_the_provider_lacks_are_listed() {
    let world = World::with_extra(vec![service(
        "uploader",
        "containers:\n  main:\n    image: u:1\nresources:\n  files:\n    type: s3\n  cache:\n    type: mysql\n",
    )]);
    let errors = plan(&world.input("dev", DOCKER)).unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|e| e.contains("type `s3`") && e.contains("built in: postgres, mysql, amqp, redis")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|e| e.contains("resource `cache` needs a mysql database on the docker runtime")),
        "{text:?}"
    );
}

#[test]
fn a_service_link_needs_its_target_in_the_environment() {
    let world = World::with_extra(vec![service(
        "caller",
        "containers:\n  main:\n    image: c:1\nresources:\n  billing:\n    type: service\n",
    )]);
    let errors = plan(&world.input("dev", DOCKER)).unwrap_err();
    assert!(errors.iter().any(|e| e.to_string().contains("service `billing` in environment `dev`")), "{errors:?}");
}

#[test]
fn a_first_plan_creates_everything_in_dependency_order() {
    let g = plan(&World::examples().input("dev", DOCKER)).unwrap();
    let p = paved_plan::diff(&g, None).unwrap();
    assert!(p.nodes.iter().all(|n| n.action == Action::Create));
    let pos = |id: &str| p.nodes.iter().position(|n| n.id == id).unwrap();
    assert!(pos("local.network/dev") < pos("local.postgres.database/payments-db"));
    assert!(pos("local.postgres.database/payments-db") < pos("local.workload/api"));
    assert!(pos("local.workload/web") < pos("local.route/web-route"));
    assert!(paved_plan::diff(&g, Some(&g)).unwrap().is_empty());
}

mod generated {
    use super::*;
    use proptest::prelude::*;

    /// A generated resource: name, type and optional shared id.
    type GenResource = (String, &'static str, Option<String>);

    fn workload_yaml(name: &str, resources: &[GenResource]) -> String {
        let mut vars = String::new();
        let mut res = String::new();
        for (rname, kind, id) in resources {
            let field = match *kind {
                "postgres" => "host",
                "dns" => "host",
                _ => "source",
            };
            vars.push_str(&format!(
                "      {}: ${{resources.{rname}.{field}}}\n",
                rname.to_uppercase().replace('-', "_")
            ));
            res.push_str(&format!("  {rname}:\n    type: {kind}\n"));
            if let Some(id) = id {
                res.push_str(&format!("    id: {id}\n"));
            }
        }
        let vars = if vars.is_empty() { String::new() } else { format!("    variables:\n{vars}") };
        format!("containers:\n  main:\n    image: {name}:1\n{vars}resources:\n{res}")
    }

    fn services() -> impl Strategy<Value = Vec<(String, Vec<GenResource>)>> {
        let resource = (
            "[a-z]{2,6}",
            prop_oneof![Just("postgres"), Just("volume"), Just("dns")],
            proptest::option::of("[a-z]{2,4}"),
        );
        proptest::collection::btree_map(
            "[a-z]{3,8}",
            proptest::collection::btree_map("[a-z]{2,6}", resource, 1..4),
            1..6,
        )
        .prop_map(|m| {
            m.into_iter()
                .map(|(svc, res)| {
                    // Shared ids carry their type in their name, so one id never has two types.
                    let res = res
                        .into_iter()
                        .map(|(rname, (_, kind, id))| (rname, kind, id.map(|i| format!("{kind}-{i}"))))
                        .collect();
                    (format!("g-{svc}"), res)
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn plans_are_byte_identical_for_identical_inputs(svcs in services(), replicas in 1i64..20) {
            let mut extra: Vec<SourceFile> = svcs.iter().map(|(n, r)| service(n, &workload_yaml(n, r))).collect();
            extra.push(SourceFile::new(
                "environments/gen.yaml",
                format!("apiVersion: paved.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: gen\nspec:\n  blueprint: web-service-standard@1.2.0\n  account: local\n  region: local\n  type: staging\n  owner: platform\n  parameters:\n    replicas: {replicas}\n"),
            ));
            let world = World::with_extra(extra);
            let input = world.input("gen", DOCKER);
            let a = plan(&input).unwrap().to_bytes();
            let mut shuffled = input.clone();
            shuffled.services.reverse();
            shuffled.services.rotate_left(1);
            prop_assert_eq!(&a, &plan(&input).unwrap().to_bytes());
            prop_assert_eq!(&a, &plan(&shuffled).unwrap().to_bytes());
        }
    }
}

#[test]
fn a_service_link_points_at_its_target_inside_the_environment() {
    let process = Capabilities { docker: false, ..DOCKER };
    let g = plan(&World::examples().input("dev", process)).unwrap();
    let link = &g.nodes["local.service-link/web-api"];
    // api listens on its targetPort at the environment's own address.
    assert_eq!(link.properties["port"], 8080);
    assert_eq!(link.properties["address"], "${ref:local.network/dev.address}");
    assert!(link.depends_on.contains("local.network/dev"));
    assert!(!link.depends_on.contains("local.workload/api"), "no cycle between services calling each other");
    let api = &g.nodes["local.workload/api"];
    assert_eq!(api.properties["address"], "${ref:local.network/dev.address}");
    assert_eq!(api.properties["state"], "running");

    // On Docker, api answers to its name on the environment's network.
    let g = plan(&World::examples().input("dev", DOCKER)).unwrap();
    let link = &g.nodes["local.service-link/web-api"];
    assert_eq!((&link.properties["address"], &link.properties["port"]), (&json!("api"), &json!(8080)));
}

#[test]
fn on_docker_each_environment_has_its_own_database_cluster() {
    let world = World::examples();
    let g = plan(&world.input("dev", DOCKER)).unwrap();
    let cluster = &g.nodes["local.postgres.cluster/dev"];
    assert_eq!(cluster.properties["runtime"], "docker");
    assert!(cluster.depends_on.contains("local.network/dev"), "the cluster joins the environment's network");
    let db = &g.nodes["local.postgres.database/payments-db"];
    assert!(db.depends_on.contains("local.postgres.cluster/dev"));
    assert_eq!(db.properties["runtime"], "docker");
    assert!(!g.nodes.contains_key("local.postgres.cluster/platform"));

    // Processes share the platform cluster.
    let g = plan(&world.input("dev", Capabilities { docker: false, ..DOCKER })).unwrap();
    assert!(g.nodes.contains_key("local.postgres.cluster/platform"));
    assert_eq!(g.nodes["local.postgres.database/payments-db"].properties["runtime"], "process");
}

#[test]
fn an_account_that_names_its_runtime_gets_it_whatever_the_machine() {
    let world = World::with_extra(vec![SourceFile::new(
        "platform/pinned.yaml",
        "apiVersion: paved.dev/v1alpha1\nkind: CloudAccount\nmetadata:\n  name: pinned\nspec:\n  provider: local\n  allowedRegions: [local]\n  runtime: process\n---\napiVersion: paved.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: pinned-dev\nspec:\n  blueprint: web-service-standard@1.2.0\n  account: pinned\n  region: local\n  type: development\n  owner: platform\n",
    )]);
    let g = plan(&world.input("pinned-dev", DOCKER)).unwrap();
    assert_eq!(g.nodes["local.network/pinned-dev"].properties["runtime"], "process");
    assert_eq!(g.nodes["local.workload/api"].properties["runtime"], "process");
}

#[test]
fn two_services_listening_on_one_port_of_an_environment_fail_at_plan_time() {
    let world = World::with_extra(vec![service(
        "clash",
        "service:\n  ports:\n    http:\n      port: 81\n      targetPort: 8080\ncontainers:\n  main:\n    image: c:1\n",
    )]);
    let errors = plan(&world.input("dev", DOCKER)).unwrap_err();
    assert!(errors.iter().any(|e| e.to_string().contains("port 8080 in environment `dev`")), "{errors:?}");
}

#[test]
fn processes_are_not_planned_where_they_cannot_be_sandboxed() {
    let errors = plan(&World::examples().input("dev", Capabilities::default())).unwrap_err();
    let services: Vec<String> = errors
        .iter()
        .filter_map(|e| match e {
            PlanError::NoSandbox { service } => Some(service.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(services, ["api", "web", "worker"], "{errors:?}");
    assert!(errors[0].to_string().contains("Debian package `bubblewrap`"), "{}", errors[0]);
    // On Docker the containers are the sandbox.
    assert!(plan(&World::examples().input("dev", Capabilities { sandbox: false, ..DOCKER })).is_ok());
}

/// A blueprint like the example's, with workload exceptions, and an environment using it.
fn with_exceptions(security: &str, score: SourceFile) -> World {
    let bp = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/platform/blueprint-web-service-standard.yaml"
    ))
    .unwrap()
    .replace("version: 1.2.0", "version: 1.9.0")
    .replace("    defaultDeny: true\n", &format!("    defaultDeny: true\n{security}"));
    World::with_extra(vec![
        SourceFile::new("platform/bp-1.9.yaml", bp),
        SourceFile::new(
            "environments/open.yaml",
            "apiVersion: paved.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: open\nspec:\n  blueprint: web-service-standard@1.9.0\n  account: local\n  region: local\n  type: development\n  owner: platform\n",
        ),
        score,
    ])
}

fn mounting(source: &str) -> SourceFile {
    service(
        "mounter",
        &format!(
            "  annotations:\n    paved.dev/owner: payments\ncontainers:\n  main:\n    image: m:1\n    volumes:\n      /data:\n        source: {source}\nresources:\n  scratch:\n    type: volume\n  db:\n    type: postgres\n"
        ),
    )
}

#[test]
fn a_volume_mounts_a_paved_volume_or_a_host_directory_the_blueprint_allows() {
    // `/` or paved's data directory are refused, naming the field.
    for source in ["/", "/root/.local/share/paved", "${resources.db.host}"] {
        let world = World::with_extra(vec![mounting(source)]);
        let errors = plan(&world.input("dev", DOCKER)).unwrap_err();
        let e = errors
            .iter()
            .find(|e| matches!(e, PlanError::HostVolumeNotAllowed { .. }))
            .unwrap_or_else(|| panic!("{source}: {errors:?}"));
        let text = e.to_string();
        assert!(
            text.contains("containers.main.volumes./data.source") && text.contains("allows no host directories"),
            "{text}"
        );
    }
    // A paved volume is fine.
    let world = World::with_extra(vec![mounting("${resources.scratch}")]);
    let g = plan(&world.input("dev", DOCKER)).unwrap();
    assert!(g.nodes["local.workload/mounter"].properties.get("runAsRoot").is_none());

    // The blueprint's exceptions: a host directory tree, and root inside containers.
    let rules = "    workloads:\n      runAsRoot: true\n      hostVolumes: [/srv/shared]\n";
    let world = with_exceptions(rules, mounting("/srv/shared/payments"));
    let g = plan(&world.input("open", DOCKER)).unwrap();
    assert_eq!(g.nodes["local.workload/mounter"].properties["runAsRoot"], true);
    for outside in ["/srv/shared/../../etc", "/srv/sharedness", "/etc"] {
        let world = with_exceptions(rules, mounting(outside));
        let errors = plan(&world.input("open", DOCKER)).unwrap_err();
        assert!(
            errors.iter().any(
                |e| matches!(e, PlanError::HostVolumeNotAllowed { allowed, .. } if allowed.contains("/srv/shared"))
            ),
            "{outside}: {errors:?}"
        );
    }
}

#[test]
fn a_service_that_cannot_be_planned_is_left_out_and_keeps_what_it_runs() {
    // `uploader` asks for what nothing provisions locally; the examples' services still plan.
    let world = World::with_extra(vec![service(
        "uploader",
        "containers:\n  main:\n    image: u:1\nresources:\n  files:\n    type: s3\n    class: large\n",
    )]);
    let input = world.input("dev", DOCKER);
    let g = paved_plan::plan_services(&input).unwrap();
    assert_eq!(g.blocked.keys().collect::<Vec<_>>(), ["uploader"]);
    assert!(g.blocked["uploader"][0].contains("type `s3` (class `large`), which nothing provisions"), "{g:?}");
    assert!(g.nodes.contains_key("local.workload/api") && !g.nodes.contains_key("local.workload/uploader"));
    // Blocked, nothing applied is deleted: an applied node the graph lacks is kept, with its dependencies.
    let examples = World::examples();
    let mut applied = plan(&examples.input("dev", DOCKER)).unwrap();
    let old = paved_plan::Node::new("local.volume", "uploader-cache", json!({"path": "volumes/dev/uploader-cache"}))
        .after(["local.network/dev".to_string()]);
    applied.add(old);
    let mut kept = g.clone();
    assert_eq!(paved_plan::keep_applied(&mut kept, &applied).unwrap(), ["local.volume/uploader-cache"]);
    assert_eq!(paved_plan::diff(&kept, Some(&applied)).unwrap().count(Action::Delete), 0);
    // Nothing blocked: deletions are not deferred.
    let mut clean = plan(&examples.input("dev", DOCKER)).unwrap();
    assert!(paved_plan::keep_applied(&mut clean, &applied).unwrap().is_empty());
    // The graph's bytes name the blocked service only when there is one.
    assert!(String::from_utf8(g.to_bytes()).unwrap().contains("\"blocked\""));
    assert!(!String::from_utf8(clean.to_bytes()).unwrap().contains("\"blocked\""));
    // A platform problem (no sandbox for processes on this machine) still stops the whole environment.
    let machine = Capabilities { docker: false, redis_server: false, sandbox: false };
    let errors = paved_plan::plan_services(&examples.input("dev", machine)).unwrap_err();
    assert!(errors.iter().all(|e| e.service().is_none()), "{errors:?}");
}

#[test]
fn a_service_port_resource_gives_hostname_and_port_of_another_workloads_named_port() {
    let frontend = "containers:\n  main:\n    image: f:1\n    variables:\n      BACKEND: \
                    http://${resources.backend.hostname}:${resources.backend.port}\nresources:\n  backend:\n    \
                    type: service-port\n    params:\n      workload: api\n      port: http\n";
    let world = World::with_extra(vec![service("frontend", frontend)]);
    let g = plan(&world.input("dev", DOCKER)).unwrap();
    let link = &g.nodes["local.service-link/frontend-backend"];
    assert_eq!((link.properties["target"].as_str(), link.properties["port"].as_u64()), (Some("api"), Some(8080)));
    assert!(link.outputs.contains("hostname"));
    let url = g.nodes["local.workload/frontend"].properties["containers"]["main"]["variables"]["BACKEND"].clone();
    assert_eq!(
        url,
        json!(
            "http://${ref:local.service-link/frontend-backend.hostname}:${ref:local.service-link/frontend-backend.port}"
        )
    );
    // A port the workload does not declare: named with the ones it does.
    let wrong = frontend.replace("port: http", "port: grpc");
    let world = World::with_extra(vec![service("frontend", &wrong)]);
    let errors: Vec<String> = plan(&world.input("dev", DOCKER)).unwrap_err().iter().map(ToString::to_string).collect();
    assert!(
        errors.iter().any(|e| e.contains("port `grpc` of workload `api`") && e.contains("`api` declares: http")),
        "{errors:?}"
    );
}

#[test]
fn a_files_source_blocks_its_service_and_binary_content_is_carried_as_is() {
    let logo = "containers:\n  main:\n    image: l:1\n    files:\n      /srv/logo.png:\n        \
                binaryContent: iVBORw0KGgo=\n      /etc/motd:\n        source: ./motd.txt\n";
    let world = World::with_extra(vec![service("logo", logo)]);
    let g = paved_plan::plan_services(&world.input("dev", DOCKER)).unwrap();
    let reasons = &g.blocked["logo"];
    assert!(
        reasons[0].contains("containers.main.files./etc/motd reads `source: ./motd.txt`")
            && reasons[0].contains("`binaryContent`"),
        "{reasons:?}"
    );
    assert!(g.nodes.contains_key("local.workload/api"), "the neighbours are planned");
    let world =
        World::with_extra(vec![service("logo", &logo.replace("      /etc/motd:\n        source: ./motd.txt\n", ""))]);
    let g = plan(&world.input("dev", DOCKER)).unwrap();
    let file = &g.nodes["local.workload/logo"].properties["containers"]["main"]["files"]["/srv/logo.png"];
    assert_eq!(file["binaryContent"], json!("iVBORw0KGgo="));
}

#[test]
fn an_environment_resource_reads_the_environments_secrets_when_applied() {
    let hello = "containers:\n  main:\n    image: h:1\n    variables:\n      FRIEND: ${resources.env.NAME}\nresources:\n  env:\n    type: environment\n";
    let world = World::with_extra(vec![service("hello", hello)]);
    let g = plan(&world.input("dev", DOCKER)).unwrap();
    let friend = &g.nodes["local.workload/hello"].properties["containers"]["main"]["variables"]["FRIEND"];
    assert_eq!(friend, &json!("${secret:hello/NAME}"));
    // Nothing is provisioned for it.
    assert!(!g.nodes.keys().any(|id| id.contains("hello-env")), "{:?}", g.nodes.keys());
    let bare = hello.replace("${resources.env.NAME}", "${resources.env}");
    let world = World::with_extra(vec![service("hello", &bare)]);
    let errors: Vec<String> = plan(&world.input("dev", DOCKER)).unwrap_err().iter().map(ToString::to_string).collect();
    assert!(errors.iter().any(|e| e.contains("name the value: `${resources.env.NAME}`")), "{errors:?}");
}
