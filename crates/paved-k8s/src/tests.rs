//! One test per row of the translation table, and determinism.

use crate::{RenderError, Tree, render};
use paved_model::{Spec, Strategy};
use paved_plan::{Capabilities, PlanInput, Release};
use paved_spec::SourceFile;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The example platform and environments, plus `services` (Score YAML documents).
fn specs(services: &[&str]) -> Vec<Spec> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let (mut sources, _) = paved_spec::read_path(&examples.join("platform"));
    sources.extend(paved_spec::read_path(&examples.join("environments")).0);
    for (i, s) in services.iter().enumerate() {
        sources.push(SourceFile::new(format!("svc-{i}.yaml"), s.to_string()));
    }
    let batch = paved_spec::check_sources(sources, vec![], &[]);
    let errors: Vec<String> = batch.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.short()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    batch.documents.into_iter().map(|d| d.spec).collect()
}

fn render_with(env: &str, services: &[&str], releases: BTreeMap<String, Release>) -> Result<Tree, Vec<RenderError>> {
    render_input(env, services, releases, true)
}

/// Renders `env` of the examples with `services`; `gitops`: the account names a repository.
fn render_input(
    env: &str,
    services: &[&str],
    releases: BTreeMap<String, Release>,
    gitops: bool,
) -> Result<Tree, Vec<RenderError>> {
    let specs = specs(services);
    let environment = specs
        .iter()
        .find_map(|s| match s {
            Spec::Environment(e) if e.metadata.name == env => Some(e),
            _ => None,
        })
        .expect("environment");
    let blueprint = specs.iter().find_map(|s| if let Spec::Blueprint(b) = s { Some(b) } else { None }).unwrap();
    let mut account = specs
        .iter()
        .find_map(|s| match s {
            Spec::CloudAccount(a) if a.metadata.name == environment.spec.account => Some(a.clone()),
            _ => None,
        })
        .unwrap();
    account.spec.gitops = gitops.then(|| paved_model::account::GitOps {
        repository: "https://git.example.com/platform/deployments.git".into(),
        branch: "main".into(),
        path: "clusters".into(),
        username: None,
    });
    let services: Vec<_> = specs.iter().filter_map(|s| if let Spec::Service(w) = s { Some(w) } else { None }).collect();
    render(&PlanInput {
        environment,
        blueprint,
        account: &account,
        services,
        capabilities: Capabilities::default(),
        addresses: Default::default(),
        releases,
        host: None,
        zones: None,
    })
}

fn tree(env: &str, services: &[&str]) -> Tree {
    render_with(env, services, BTreeMap::new()).unwrap_or_else(|e| panic!("{e:?}"))
}

fn problems(env: &str, services: &[&str]) -> Vec<String> {
    match render_with(env, services, BTreeMap::new()) {
        Ok(t) => panic!("rendered: {}", t.to_stream()),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

/// A Score file of service `name` whose image is pinned, with `extra` lines at the top level.
fn score(name: &str, extra: &str) -> String {
    // The example teams own api and worker (payments) and web (storefront).
    let owner = if name == "web" { "storefront" } else { "payments" };
    format!(
        "apiVersion: score.dev/v1b1\nmetadata:\n  name: {name}\n  annotations:\n    paved.dev/owner: {owner}\n\
         service:\n  ports:\n    http:\n      port: 80\n      targetPort: 8080\n\
         containers:\n  {name}:\n    image: registry.example.com:5000/team/{name}@{DIGEST}\n\
         {extra}"
    )
}

fn object<'a>(t: &'a Tree, kind: &str, name: &str) -> &'a Value {
    t.objects()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in\n{}", t.to_stream()))
}

fn container<'a>(t: &'a Tree, service: &str) -> &'a Value {
    &object(t, "Deployment", service)["spec"]["template"]["spec"]["containers"][0]
}

fn env_var<'a>(t: &'a Tree, service: &str, name: &str) -> &'a Value {
    container(t, service)["env"]
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no variable {name}"))
}

#[test]
fn the_namespace_carries_labels_quota_limits_and_default_deny() {
    let t = tree("eu-production", &[&score("api", "")]);
    let ns = object(&t, "Namespace", "eu-production");
    assert_eq!(ns["metadata"]["labels"]["paved.dev/blueprint"], "web-service-standard");
    assert_eq!(ns["metadata"]["labels"]["paved.dev/team"], "platform");
    assert_eq!(ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted");
    // Production: 4 replicas of size large (1 CPU, 1 GiB) + one surge pod.
    let quota = &object(&t, "ResourceQuota", "paved")["spec"]["hard"];
    assert_eq!(quota["pods"], "5");
    assert_eq!(quota["limits.cpu"], "5000m");
    assert_eq!(quota["limits.memory"], "5120Mi");
    assert_eq!(quota["services.loadbalancers"], "0");
    let limits = &object(&t, "LimitRange", "paved")["spec"]["limits"][0];
    assert_eq!(limits["default"]["cpu"], "1000m");
    let deny = &object(&t, "NetworkPolicy", "default-deny")["spec"];
    assert_eq!(deny["podSelector"], serde_json::json!({}));
    assert_eq!(deny["policyTypes"], serde_json::json!(["Ingress", "Egress"]));
    assert!(deny.get("ingress").is_none() && deny.get("egress").is_none());
    assert!(t.files.contains_key("envs/eu-production/namespace.yaml"));
    assert!(t.files.contains_key("envs/eu-production/api.yaml"));
}

#[test]
fn a_service_account_carries_the_cloud_identity_and_mounts_no_token() {
    let t = tree("eu-dev", &[&score("api", "")]);
    let sa = object(&t, "ServiceAccount", "api");
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/paved-eu-dev-svc-api"
    );
    assert_eq!(sa["automountServiceAccountToken"], false);
    let pod = &object(&t, "Deployment", "api")["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "api");
    assert_eq!(pod["automountServiceAccountToken"], false);
}

#[test]
fn the_image_is_the_current_deployment_by_digest_else_a_pinned_score_image_else_pending() {
    let release = Release {
        artifact: "sha256:feed".into(),
        strategy: Strategy::Recreate,
        soak_ms: 3000,
        ready_timeout_ms: 90_000,
    };
    let tagged = "apiVersion: score.dev/v1b1\nmetadata:\n  name: web\ncontainers:\n  web:\n    image: registry.example.com:5000/shop/web:2.0\n";
    let t = render_with("eu-dev", &[tagged], BTreeMap::from([("web".to_string(), release)])).unwrap();
    // The deployed artifact runs from the account's registry, where paved puts it.
    assert_eq!(container(&t, "web")["image"], "123456789012.dkr.ecr.eu-central-1.amazonaws.com/paved/web@sha256:feed");
    let d = &object(&t, "Deployment", "web")["spec"];
    assert_eq!(d["strategy"]["type"], "Recreate");
    assert_eq!(d["minReadySeconds"], 3);
    assert_eq!(d["progressDeadlineSeconds"], 90);
    let t = tree("eu-dev", &[&score("api", "")]);
    assert_eq!(container(&t, "api")["image"], format!("registry.example.com:5000/team/api@{DIGEST}"));
    assert_eq!(object(&t, "Deployment", "api")["spec"]["strategy"]["type"], "RollingUpdate");
    let t = tree("eu-dev", &[tagged]);
    assert!(t.pending["web"].contains("not pinned by digest"), "{:?}", t.pending);
    assert!(!t.files.contains_key("envs/eu-dev/web.yaml"));
}

#[test]
fn literal_variables_are_inline_and_outputs_go_through_the_secret_store() {
    let db = score(
        "api",
        "    variables:\n      MODE: \"$(literal) and $${HOME}\"\n      NAME: ${metadata.name}\n      \
         DB: postgres://${resources.db.username}:${resources.db.password}@${resources.db.host}/x\n      \
         TOKEN: ${secrets.token}\nresources:\n  db:\n    type: postgres\n",
    );
    let t = tree("eu-dev", &[&db]);
    // Kubernetes would expand `$(literal)`: written `$$(`; Score's `$${` escape becomes a plain `${`.
    assert_eq!(env_var(&t, "api", "MODE")["value"], "$$(literal) and ${HOME}");
    assert_eq!(env_var(&t, "api", "NAME")["value"], "api");
    for name in ["DB", "TOKEN"] {
        assert_eq!(
            env_var(&t, "api", name)["valueFrom"]["secretKeyRef"],
            serde_json::json!({"name": "api-env", "key": name})
        );
    }
    assert_eq!(t.secrets["api"]["TOKEN"], "${secret:api/token}");
    assert!(t.secrets["api"]["DB"].contains("${ref:aws.db-user/api-db-api.password}"), "{:?}", t.secrets);
    // A service not deployed yet has no manifests, but its secret's values
    // are known: the apply writes them before its first deploy.
    let unpinned = db.replace(&format!("@{DIGEST}"), ":1.0");
    let pending = tree("eu-dev", &[&unpinned]);
    assert!(pending.pending.contains_key("api") && !pending.files.contains_key("envs/eu-dev/api.yaml"));
    assert_eq!(pending.secrets["api"], t.secrets["api"]);
    let es = object(&t, "ExternalSecret", "api-env");
    assert_eq!(es["spec"]["dataFrom"][0]["extract"]["key"], "paved/eu-dev/api");
    assert_eq!(
        object(&t, "SecretStore", "api")["spec"]["provider"]["aws"]["auth"]["jwt"]["serviceAccountRef"]["name"],
        "api"
    );
    assert!(!t.to_stream().contains("${ref:"), "a reference leaked into a manifest");
}

#[test]
fn a_service_link_the_plan_knows_is_written_inline() {
    let web = score(
        "web",
        "    variables:\n      API: http://${resources.api.host}:${resources.api.port}\nresources:\n  api:\n    type: service\n",
    );
    let t = tree("eu-dev", &[&score("api", ""), &web]);
    // The Service's port (80), not the container's: callers go through the Service.
    assert_eq!(env_var(&t, "web", "API")["value"], "http://api.eu-dev.svc.cluster.local:80");
    assert!(!t.secrets.contains_key("web"));
}

#[test]
fn a_service_port_is_written_inline_with_the_named_port_of_the_service() {
    let api = score("api", "").replace("service:\n  ports:\n", "service:\n  ports:\n    admin:\n      port: 9000\n");
    let web = score(
        "web",
        "    variables:\n      ADMIN: ${resources.admin.hostname}:${resources.admin.port}\nresources:\n  admin:\n    \
         type: service-port\n    params:\n      workload: api\n      port: admin\n",
    );
    let t = tree("eu-dev", &[&api, &web]);
    assert_eq!(env_var(&t, "web", "ADMIN")["value"], "api.eu-dev.svc.cluster.local:9000");
}

#[test]
fn outputs_in_a_command_line_are_refused_with_the_way_out() {
    let p = problems(
        "eu-dev",
        &[&score("api", "    args: [\"--db\", \"${resources.db.host}\"]\nresources:\n  db:\n    type: postgres\n")],
    );
    assert!(p[0].contains("service `api`: containers.api.args.1") && p[0].contains("$(VARIABLE)"), "{p:?}");
}

#[test]
fn files_become_a_config_map_or_secret_items_with_their_mode() {
    let api = score(
        "api",
        "    files:\n      /etc/app/motd:\n        content: \"hello ${metadata.name}\"\n        mode: \"0600\"\n      \
         /etc/app/db:\n        content: \"${resources.db.password}\"\nresources:\n  db:\n    type: postgres\n",
    );
    let t = tree("eu-dev", &[&api]);
    let cm = object(&t, "ConfigMap", "api-files");
    assert_eq!(cm["data"]["file.api.1"], "hello api");
    let volumes = &object(&t, "Deployment", "api")["spec"]["template"]["spec"]["volumes"];
    let files = volumes.as_array().unwrap().iter().find(|v| v["name"] == "files").unwrap();
    assert_eq!(
        files["configMap"]["items"][0],
        serde_json::json!({"key": "file.api.1", "path": "file.api.1", "mode": 0o600})
    );
    let secret = volumes.as_array().unwrap().iter().find(|v| v["name"] == "env").unwrap();
    assert_eq!(secret["secret"]["items"][0]["key"], "file.api.0");
    assert_eq!(t.secrets["api"]["file.api.0"], "${ref:aws.db-user/api-db-api.password}");
    let mounts = container(&t, "api")["volumeMounts"].as_array().unwrap().clone();
    assert!(
        mounts
            .iter()
            .any(|m| m["mountPath"] == "/etc/app/motd" && m["subPath"] == "file.api.1" && m["readOnly"] == true)
    );
    assert!(mounts.iter().any(|m| m["mountPath"] == "/tmp"), "the read-only root filesystem keeps a writable /tmp");
}

#[test]
fn file_sources_volumes_and_requests_above_limits_are_refused_with_their_field() {
    let p = problems("eu-dev", &[&score("api", "    files:\n      /etc/x:\n        source: ./x.txt\n")]);
    assert!(p[0].contains("containers.api.files./etc/x") && p[0].contains("`content`"), "{p:?}");
    let p = problems("eu-dev", &[&score("api", "    volumes:\n      /data:\n        source: scratch\n")]);
    assert!(p.iter().any(|p| p.contains("containers.api.volumes")), "{p:?}");
    let p = problems(
        "eu-dev",
        &[&score("api", "    resources:\n      requests:\n        memory: 2Gi\n      limits:\n        memory: 1Gi\n")],
    );
    assert!(p[0].contains("above the limit"), "{p:?}");
}

#[test]
fn requests_and_limits_complete_each_other_or_come_from_the_size() {
    let t =
        tree("eu-dev", &[&score("api", "    resources:\n      requests:\n        cpu: 100m\n        memory: 64Mi\n")]);
    let r = &container(&t, "api")["resources"];
    assert_eq!(r["limits"], serde_json::json!({"cpu": "100m", "memory": "64Mi"}));
    let t = tree("eu-dev", &[&score("api", "")]);
    // eu-dev is a development environment: size small.
    assert_eq!(container(&t, "api")["resources"]["requests"], serde_json::json!({"cpu": "250m", "memory": "256Mi"}));
}

#[test]
fn probes_map_and_liveness_gates_readiness_when_alone() {
    let t = tree("eu-dev", &[&score("api", "    livenessProbe:\n      exec:\n        command: [/bin/ok]\n")]);
    let c = container(&t, "api");
    assert_eq!(c["livenessProbe"]["exec"]["command"][0], "/bin/ok");
    assert_eq!(c["readinessProbe"], c["livenessProbe"]);
    let t = tree(
        "eu-dev",
        &[&score("api", "    readinessProbe:\n      httpGet:\n        path: /ready\n        port: 8080\n")],
    );
    assert!(container(&t, "api").get("livenessProbe").is_none());
    assert!(t.warnings.iter().any(|w| w.contains("no livenessProbe")), "{:?}", t.warnings);
}

#[test]
fn pods_are_restricted() {
    let t = tree("eu-dev", &[&score("api", "")]);
    let pod = &object(&t, "Deployment", "api")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let sc = &pod["containers"][0]["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
}

#[test]
fn several_replicas_spread_across_zones_with_a_disruption_budget() {
    let t = tree("eu-staging", &[&score("api", "")]);
    let d = &object(&t, "Deployment", "api")["spec"];
    assert_eq!(d["replicas"], 2);
    assert_eq!(d["template"]["spec"]["topologySpreadConstraints"][0]["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(object(&t, "PodDisruptionBudget", "api")["spec"]["maxUnavailable"], 1);
    let t = tree("eu-dev", &[&score("api", "")]);
    assert!(t.objects().all(|o| o["kind"] != "PodDisruptionBudget"));
    assert!(object(&t, "Deployment", "api")["spec"]["template"]["spec"].get("topologySpreadConstraints").is_none());
}

#[test]
fn network_policies_admit_only_declared_callers_the_load_balancer_and_data() {
    let web = score(
        "web",
        "resources:\n  api:\n    type: service\n  route:\n    type: route\n    params:\n      host: shop.example.com\n      path: /\n      port: 80\n  files:\n    type: s3\n",
    );
    let t = tree(
        "eu-dev",
        &[
            &score(
                "api",
                "resources:\n  db:\n    type: postgres\n  orders:\n    type: mysql\n  cache:\n    type: redis\n",
            ),
            &web,
        ],
    );
    let api = &object(&t, "NetworkPolicy", "api")["spec"];
    assert_eq!(api["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "web");
    assert_eq!(api["ingress"][0]["ports"][0]["port"], 8080);
    // Each data engine's port, to the data subnets only.
    let ports: Vec<&Value> = api["egress"].as_array().unwrap().iter().map(|e| &e["ports"][0]["port"]).collect();
    assert_eq!(ports, [5432, 3306, 6379].map(Value::from).iter().collect::<Vec<_>>(), "{api}");
    assert!(api["egress"].as_array().unwrap().iter().all(|e| e["to"][0]["ipBlock"]["cidr"].as_str().is_some()));
    let web = &object(&t, "NetworkPolicy", "web")["spec"];
    // From the load balancer's (public) subnets only.
    let from: Vec<&str> =
        web["ingress"][0]["from"].as_array().unwrap().iter().filter_map(|f| f["ipBlock"]["cidr"].as_str()).collect();
    assert_eq!(from.len(), 2, "{web}");
    assert!(
        web["egress"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "api")
    );
    assert!(web["egress"].as_array().unwrap().iter().any(|e| e["ports"][0]["port"] == 443));
    let tgb = object(&t, "TargetGroupBinding", "web");
    assert_eq!(tgb["spec"]["targetGroupName"], "paved-eu-dev-web");
    assert_eq!(tgb["spec"]["serviceRef"], serde_json::json!({"name": "web", "port": 80}));
}

#[test]
fn each_routed_service_joins_its_own_target_group() {
    let route = |host: &str| {
        format!(
            "resources:\n  route:\n    type: route\n    params:\n      host: {host}\n      path: /\n      port: 80\n"
        )
    };
    let t = tree("eu-dev", &[&score("api", &route("api.example.com")), &score("web", &route("web.example.com"))]);
    let groups: Vec<&Value> =
        ["api", "web"].iter().map(|s| &object(&t, "TargetGroupBinding", s)["spec"]["targetGroupName"]).collect();
    assert_eq!(groups, ["paved-eu-dev-api", "paved-eu-dev-web"]);
}

#[test]
fn the_application_follows_the_accounts_gitops_repository() {
    let t = tree("eu-dev", &[&score("api", "")]);
    let app = object(&t, "Application", "paved-eu-dev");
    assert_eq!(app["metadata"]["namespace"], "argocd");
    assert_eq!(app["spec"]["source"]["repoURL"], "https://git.example.com/platform/deployments.git");
    assert_eq!(app["spec"]["source"]["path"], "clusters/envs/eu-dev");
    assert_eq!(app["spec"]["destination"], serde_json::json!({"name": "paved-eu-dev", "namespace": "eu-dev"}));
    assert_eq!(app["spec"]["syncPolicy"]["automated"], serde_json::json!({"prune": true, "selfHeal": true}));
    assert!(t.files.contains_key("apps/eu-dev.yaml"));
}

#[test]
fn without_a_gitops_repository_there_is_no_application_and_a_warning() {
    let t = render_input("eu-dev", &[&score("api", "")], BTreeMap::new(), false).unwrap();
    assert!(t.objects().all(|o| o["kind"] != "Application"));
    assert!(t.warnings.iter().any(|w| w.contains("account `aws-eu` has no `spec.gitops`")), "{:?}", t.warnings);
}

#[test]
fn local_environments_and_other_runtimes_are_refused() {
    let p = problems("dev", &[&score("api", "")]);
    assert!(p[0].contains("local provider"), "{p:?}");
}

#[test]
fn the_same_specs_give_the_same_bytes_in_any_order() {
    let services = [score("api", ""), score("web", "resources:\n  api:\n    type: service\n"), score("worker", "")];
    let a = tree("eu-production", &[&services[0], &services[1], &services[2]]);
    let b = tree("eu-production", &[&services[2], &services[0], &services[1]]);
    assert_eq!(a.to_files(), b.to_files());
    assert_eq!(a.to_stream(), tree("eu-production", &[&services[0], &services[1], &services[2]]).to_stream());
}

#[test]
fn an_unclosed_reference_is_text_not_a_panic() {
    let graph = paved_plan::ResourceGraph::new(paved_model::Provider::Aws, "eu-dev");
    for (text, kept) in [("${", "${"), ("a ${ref:x", "a ${ref:x"), ("$", "$"), ("$${", "${")] {
        assert_eq!(crate::workload::resolve_known_for_tests(&graph, text), kept, "{text}");
    }
}
