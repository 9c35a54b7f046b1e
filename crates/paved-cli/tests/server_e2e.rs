//! End-to-end on `paved server`: the real binary serves real applied state;
//! every route found in the served OpenAPI document is exercised for each
//! role, without a token and with expired and revoked ones.
//!
//! Needs the PostgreSQL server binaries (the demo environment has a
//! database) and a Python with openapi-spec-validator and prometheus_client
//! (`PAVED_TEST_PYTHON`, set up by scripts/test).

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{Platform, python, run_python};

const ROLES: [&str; 4] = ["viewer", "developer", "operator", "admin"];

/// Role bindings for one service account per role, at the organisation, production included.
fn role_bindings() -> String {
    ROLES
        .iter()
        .map(|r| {
            format!(
                "apiVersion: paved.dev/v1alpha1\nkind: RoleBinding\nmetadata:\n  name: e2e-{r}\nspec:\n  role: {r}\n  \
                 subjects: [serviceaccount:e2e-{r}]\n  scope: organisation\n  production: true\n---\n"
            )
        })
        .collect::<String>()
        + "apiVersion: paved.dev/v1alpha1\nkind: RoleBinding\nmetadata:\n  name: platform-developers\nspec:\n  role: developer\n  \
           subjects: [team:platform]\n  scope: team:platform\n"
}

/// An environment document (JSON): recording one does not change what other environments run.
fn env_doc(name: &str, env_type: &str) -> String {
    json!({
        "apiVersion": "paved.dev/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": name},
        "spec": {"blueprint": "web-service-standard@1.2.0", "account": "local", "region": "local", "type": env_type, "owner": "platform"}
    })
    .to_string()
}

/// What one route needs, and a request for it that succeeds for a role allowed to make it.
struct Expect {
    /// `None`: public; `Some("any")`: any valid token; else the least role.
    needs: Option<&'static str>,
    success: u16,
}

/// Marks a route that needs an explicit grant rather than a role.
const REVEAL: &str = "revealSecrets";

fn rank(role: &str) -> usize {
    ROLES.iter().position(|r| *r == role).unwrap_or(usize::MAX)
}

/// The authorisation expectation of every route. A route served (in the
/// OpenAPI document) without an entry here fails the test.
fn expectations() -> BTreeMap<(&'static str, &'static str), Expect> {
    let e = |needs, success| Expect { needs, success };
    BTreeMap::from([
        (("get", "/healthz"), e(None, 200)),
        (("get", "/readyz"), e(None, 200)),
        (("get", "/metrics"), e(None, 200)),
        (("get", "/api/v1/whoami"), e(Some("any"), 200)),
        (("get", "/.well-known/openid-configuration"), e(None, 200)),
        (("get", "/.well-known/jwks.json"), e(None, 200)),
        (("get", "/api/v1/accounts/{name}/trust-policy"), e(Some("operator"), 200)),
        (("get", "/api/v1/specs"), e(Some("viewer"), 200)),
        (("post", "/api/v1/specs"), e(Some("developer"), 200)),
        (("get", "/api/v1/specs/{kind}/{name}"), e(Some("viewer"), 200)),
        (("put", "/api/v1/specs/{kind}/{name}"), e(Some("developer"), 200)),
        (("delete", "/api/v1/specs/{kind}/{name}"), e(Some("admin"), 200)),
        (("get", "/api/v1/specs/{kind}/{name}/history"), e(Some("viewer"), 200)),
        (("get", "/api/v1/environments"), e(Some("viewer"), 200)),
        (("get", "/api/v1/environments/{name}"), e(Some("viewer"), 200)),
        (("get", "/api/v1/environments/{name}/plan"), e(Some("viewer"), 200)),
        (("post", "/api/v1/environments/{name}/apply"), e(Some("developer"), 202)),
        (("post", "/api/v1/environments/{name}/destroy"), e(Some("operator"), 202)),
        (("get", "/api/v1/environments/{name}/drift"), e(Some("viewer"), 200)),
        (("get", "/api/v1/environments/{name}/parity"), e(Some("viewer"), 200)),
        // The matrix's environment runs on this machine: nothing to render or deliver
        // (gitops_e2e renders and delivers a cluster one through the server).
        (("get", "/api/v1/environments/{name}/kubernetes"), e(Some("viewer"), 422)),
        (("post", "/api/v1/environments/{name}/deliver"), e(Some("developer"), 422)),
        (("get", "/api/v1/environments/{name}/services/{service}/logs"), e(Some("developer"), 200)),
        (("get", "/api/v1/environments/{name}/secrets"), e(Some("viewer"), 200)),
        (("put", "/api/v1/environments/{name}/secrets/{secret}"), e(Some("developer"), 200)),
        (("delete", "/api/v1/environments/{name}/secrets/{secret}"), e(Some("developer"), 200)),
        (("get", "/api/v1/environments/{name}/secrets/{secret}/versions"), e(Some("viewer"), 200)),
        // No role reveals a secret: only a binding with `revealSecrets: true` (tested separately).
        (("post", "/api/v1/environments/{name}/secrets/{secret}/reveal"), e(Some(REVEAL), 200)),
        // Past authorisation, the deployment routes answer by the promotion rules: the
        // matrix deploys a digest never pushed (404) and promotes from an environment
        // where api never ran (409); nothing has run before to roll back to (409).
        (("post", "/api/v1/environments/{name}/services/{service}/deployments"), e(Some("developer"), 404)),
        (("get", "/api/v1/environments/{name}/services/{service}/deployments"), e(Some("viewer"), 200)),
        (("post", "/api/v1/environments/{name}/services/{service}/rollback"), e(Some("developer"), 409)),
        (("post", "/api/v1/environments/{name}/services/{service}/promote"), e(Some("developer"), 409)),
        (("get", "/api/v1/status"), e(Some("viewer"), 200)),
        (("get", "/api/v1/artifacts"), e(Some("viewer"), 200)),
        (("get", "/api/v1/dora"), e(Some("viewer"), 200)),
        // Authenticated by the delivery's signature, not a token; this server has no webhook
        // secret, so it takes no deliveries at all (git_e2e tests the signed ones).
        (("post", "/api/v1/webhooks/github"), e(None, 503)),
        // Argo CD does not sign: the environment's secret header, no token (gitops_e2e tests it).
        (("post", "/api/v1/webhooks/argocd"), e(None, 401)),
        (("get", "/api/v1/operations/{id}"), e(Some("viewer"), 200)),
        (("get", "/api/v1/operations/{id}/events"), e(Some("viewer"), 200)),
        (("get", "/api/v1/audit"), e(Some("operator"), 200)),
        (("get", "/api/v1/audit/verify"), e(Some("operator"), 200)),
        (("get", "/api/v1/tokens"), e(Some("admin"), 200)),
        (("post", "/api/v1/tokens"), e(Some("admin"), 201)),
        (("delete", "/api/v1/tokens/{id}"), e(Some("admin"), 204)),
        (("get", "/api/v1/openapi.json"), e(None, 200)),
        (("get", "/console/login"), e(None, 200)),
        (("post", "/console/login"), e(None, 303)),
        (("post", "/console/logout"), e(None, 303)),
        (("get", "/console"), e(Some("viewer"), 200)),
        (("get", "/console/environments/{name}"), e(Some("viewer"), 200)),
        (("post", "/console/environments/{name}/apply"), e(Some("developer"), 303)),
        (("post", "/console/environments/{name}/destroy"), e(Some("operator"), 303)),
        (("get", "/console/services/{name}"), e(Some("viewer"), 200)),
        (("get", "/console/audit"), e(Some("operator"), 200)),
        (("get", "/console/policies"), e(Some("viewer"), 200)),
        (("get", "/console/operations/{id}"), e(Some("viewer"), 200)),
    ])
}

/// A concrete request for a route template, for one role (mutations touch
/// objects of that role's own, so roles do not interfere).
fn concrete(method: &str, template: &str, role: &str, fixtures: &Fixtures) -> (String, Vec<u8>) {
    let path = template
        .replace(
            "{kind}/{name}",
            match method {
                "put" => "environment/put-ROLE",
                "delete" => "team/doomed-ROLE",
                _ => "environment/dev",
            },
        )
        .replace(
            "{name}",
            if template.ends_with("/destroy") {
                "staging"
            } else if template.starts_with("/api/v1/accounts") {
                "aws-eu"
            } else if template.starts_with("/console/services") {
                "api"
            } else {
                "dev"
            },
        )
        .replace(
            "{id}",
            if template.starts_with("/api/v1/tokens") { &fixtures.doomed_tokens[role] } else { &fixtures.operation },
        )
        .replace("{service}", "api")
        .replace(
            "{secret}",
            match method {
                "delete" => "DOOMED_ROLE",
                "put" => "PUT_ROLE",
                _ => "SHARED",
            },
        )
        .replace("ROLE", role)
        .replace("/parity", "/parity?with=staging");
    let body = match (method, template) {
        ("post", "/api/v1/specs") => env_doc(&format!("posted-{role}"), "development").into_bytes(),
        ("put", t) if t.contains("/secrets/") => br#"{"value": "not-the-canary"}"#.to_vec(),
        ("put", _) => env_doc(&format!("put-{role}"), "development").into_bytes(),
        ("post", "/console/login") => format!("token={}&next=/console/audit", fixtures.login_token).into_bytes(),
        ("post", t) if t.ends_with("/deployments") => {
            json!({"artifact": format!("sha256:{}", "0".repeat(64))}).to_string().into_bytes()
        }
        ("post", t) if t.ends_with("/rollback") => b"{}".to_vec(),
        ("post", t) if t.ends_with("/promote") => br#"{"from": "staging"}"#.to_vec(),
        ("post", "/api/v1/tokens") => {
            json!({"name": format!("made-by-{role}"), "subject": "serviceaccount:ci"}).to_string().into_bytes()
        }
        _ => vec![],
    };
    (path, body)
}

struct Fixtures {
    operation: String,
    login_token: String,
    doomed_tokens: BTreeMap<String, String>,
}

#[test]
fn every_route_enforces_roles_tokens_and_limits_and_is_documented() {
    route_matrix(1);
}

/// The same suite through three replicas on one PostgreSQL store, each
/// request to the next replica in turn (as behind a load balancer): an
/// operation started on one is read and streamed from the others, and a
/// token revoked through one is refused by all.
#[test]
fn every_route_behaves_the_same_through_three_replicas_on_postgresql() {
    route_matrix(3);
}

/// Starts `n` replicas of `p`'s platform (its store must be PostgreSQL),
/// all answering as `public`: replica-0 as `p`'s own server on `first`, the
/// others returned (stopped when dropped); `p.replicas` lists every port, and
/// `p.request` goes round them. Replica i logs to `server-{i}.log`
/// (replica-0 to `server.log`).
fn start_replicas(p: &mut Platform, n: usize, first: u16, public: &str) -> Vec<Replica> {
    p.start_on(first, &["--replica-id", "replica-0", "--public-url", public]);
    let others: Vec<(u16, Replica)> = (1..n)
        .map(|i| {
            let port = support::free_port();
            let (name, log) = (format!("replica-{i}"), format!("server-{i}.log"));
            (port, spawn_replica(p, port, &["--replica-id", &name, "--public-url", public], &log))
        })
        .collect();
    p.replicas = std::iter::once(first).chain(others.iter().map(|(port, _)| *port)).collect();
    others.into_iter().map(|(_, r)| r).collect()
}

/// The route × role matrix and the API's contracts, against `replicas`
/// servers (one on SQLite; several on PostgreSQL, one public URL).
fn route_matrix(replicas: usize) {
    let mut p = Platform::new();
    if replicas > 1 {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        p.state = Some(runtime.block_on(paved_store::testing::postgres_url()).expect("a PostgreSQL server"));
    }
    // Real applied state: the demo environment on processes, with its PostgreSQL.
    p.ok(&["up", "--runtime", "process"]);
    p.ok_with_input(&["apply", "-f", "-"], &role_bindings());
    let doomed_teams: String = ROLES
        .iter()
        .map(|r| {
            format!("apiVersion: paved.dev/v1alpha1\nkind: Team\nmetadata:\n  name: doomed-{r}\nspec: {{}}\n---\n")
        })
        .collect();
    p.ok_with_input(&["apply", "-f", "-"], &doomed_teams);
    p.ok_with_input(&["secret", "set", "SHARED", "-e", "dev"], "shared-value");
    for r in ROLES {
        p.ok_with_input(&["secret", "set", &format!("DOOMED_{r}"), "-e", "dev"], "doomed");
    }
    let tokens: BTreeMap<&str, String> =
        ROLES.iter().map(|r| (*r, p.token(r, &format!("serviceaccount:e2e-{r}"), None).1)).collect();
    let (_, expiring) = p.token("short", "serviceaccount:e2e-admin", Some("1s"));
    let (revoked_id, revoked) = p.token("gone", "serviceaccount:e2e-admin", None);
    p.ok(&["token", "revoke", &revoked_id]);
    let (_, team_dev) = p.token("grace", "user:ada@example.com", None);
    let doomed_tokens =
        ROLES.iter().map(|r| (r.to_string(), p.token(&format!("doomed-{r}"), "serviceaccount:x", None).0)).collect();

    let first = support::free_port();
    let _others = if replicas > 1 {
        start_replicas(&mut p, replicas, first, &format!("http://127.0.0.1:{first}"))
    } else {
        p.start_on(first, &[]);
        Vec::new()
    };
    let bootstrap = std::fs::read_to_string(p.data.path().join("bootstrap-admin.token")).unwrap().trim().to_string();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(p.data.path().join("bootstrap-admin.token")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    for i in 0..replicas {
        let log = if i == 0 { p.log() } else { p.log_of(&format!("server-{i}.log")) };
        assert!(!log.contains(&bootstrap), "the bootstrap token was logged");
    }
    let admin = &tokens["admin"];

    // An operation to read, started by the admin and finished.
    let started = p.request("POST", "/api/v1/environments/dev/apply", Some(admin), &[], b"");
    assert_eq!(started.status, 202, "{}", started.text());
    let operation = started.json()["id"].as_str().unwrap().to_string();
    let finished = p.wait_operation(&operation, admin);
    assert_eq!(finished["status"], "succeeded", "{finished}");
    let fixtures = Fixtures { operation, doomed_tokens, login_token: admin.clone() };

    // Every route in the document has an expectation, and every expectation a route.
    let doc = p.request("GET", "/api/v1/openapi.json", None, &[], b"").json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let mut served: BTreeSet<(String, String)> = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in
            item.as_object().unwrap().keys().filter(|m| ["get", "put", "post", "delete", "patch"].contains(&m.as_str()))
        {
            served.insert((method.clone(), path.clone()));
        }
    }
    served.insert(("get".into(), "/api/v1/openapi.json".into()));
    let expect = expectations();
    let known: BTreeSet<(String, String)> = expect.keys().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    let unexpected: Vec<_> = served.difference(&known).collect();
    assert!(unexpected.is_empty(), "routes without an authorisation expectation: {unexpected:?}");
    let gone: Vec<_> = known.difference(&served).collect();
    assert!(gone.is_empty(), "expectations for routes the server does not document: {gone:?}");

    // Without --public-url the server is the issuer at the address it listens on.
    let discovery = p.request("GET", "/.well-known/openid-configuration", None, &[], b"").json();
    assert_eq!(discovery["issuer"], format!("http://127.0.0.1:{}", p.port));

    // The document passes an independent OpenAPI validator.
    let verdict = run_python(
        "import json,sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(sys.stdin))\nprint('valid')",
        &serde_json::to_vec(&doc).unwrap(),
    );
    assert_eq!(verdict.trim(), "valid");

    std::thread::sleep(Duration::from_millis(1100)); // the 1 s token has expired
    for ((method, template), e) in &expect {
        let m = method.to_ascii_uppercase();
        if e.needs.is_some() {
            let (path, body) = concrete(method, template, "admin", &fixtures);
            for (what, token) in [
                ("no", None),
                ("an expired", Some(expiring.as_str())),
                ("a revoked", Some(revoked.as_str())),
                ("a malformed", Some("pvd_nope")),
            ] {
                let r = p.request(&m, &path, token, &[], &body);
                if template.starts_with("/console") {
                    // The console sends people to sign in instead.
                    assert_eq!(r.status, 303, "{m} {path} with {what} token: {}", r.text());
                    assert!(r.headers["location"].starts_with("/console/login?next=/console"), "{:?}", r.headers);
                } else {
                    assert_eq!(r.status, 401, "{m} {path} with {what} token: {}", r.text());
                    assert_eq!(r.json()["code"], "unauthenticated");
                }
            }
        }
        for role in ROLES {
            let (path, body) = concrete(method, template, role, &fixtures);
            let form: &[(&str, &str)] = if path.starts_with("/console/login") {
                &[("Content-Type", "application/x-www-form-urlencoded")]
            } else {
                &[]
            };
            let r = p.request(&m, &path, Some(&tokens[role]), form, &body);
            let allowed = match e.needs {
                None | Some("any") => true,
                Some(REVEAL) => false,
                Some(needs) => rank(role) >= rank(needs),
            };
            if allowed {
                assert_eq!(r.status, e.success, "{m} {path} as {role}: {}", r.text());
            } else {
                assert_eq!(r.status, 403, "{m} {path} as {role} should be forbidden: {}", r.text());
                let message = if template.starts_with("/console") {
                    r.text()
                } else {
                    let body = r.json();
                    assert_eq!(body["code"], "forbidden");
                    body["message"].as_str().unwrap().to_string()
                };
                match e.needs {
                    // A viewer is told about the role first; the others about the grant.
                    Some(REVEAL) if role == "viewer" => {
                        assert!(message.contains("needs the developer role"), "{message}")
                    }
                    Some(REVEAL) => assert!(message.contains("revealSecrets: true"), "{message}"),
                    Some(needs) => assert!(message.contains(&format!("needs the {needs} role")), "{message}"),
                    None => unreachable!(),
                }
            }
        }
    }

    // Denials are in the audit log, with who, what and where from.
    let denied = p.get("/api/v1/audit?actor=serviceaccount:e2e-viewer&action=environment.apply", admin).json();
    let event = &denied["items"][0];
    assert_eq!(
        (event["outcome"].as_str(), event["target"].as_str()),
        (Some("denied"), Some("Environment/dev")),
        "{denied}"
    );
    assert_eq!(event["origin"], "127.0.0.1");
    assert!(!event["request_id"].as_str().unwrap().is_empty());

    // Production needs an explicit binding: a team developer applies dev, not production.
    assert_eq!(p.request("POST", "/api/v1/environments/dev/apply", Some(&team_dev), &[], b"").status, 202);
    let refused = p.request("POST", "/api/v1/environments/production/apply", Some(&team_dev), &[], b"");
    assert_eq!(refused.status, 403);
    assert!(refused.json()["message"].as_str().unwrap().contains("production: true"), "{}", refused.text());

    // Changing what runs in production needs the operator role: a developer's promotion is refused and audited.
    let promote = br#"{"from": "staging"}"#;
    let path = "/api/v1/environments/production/services/api/promote";
    let refused = p.request("POST", path, Some(&tokens["developer"]), &[], promote);
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.json()["message"].as_str().unwrap().contains("needs the operator role"), "{}", refused.text());
    let denied = p.get("/api/v1/audit?actor=serviceaccount:e2e-developer&action=deployment.promote", admin).json();
    let on_production = denied["items"].as_array().unwrap().iter().find(|e| e["target"] == "Environment/production");
    assert_eq!(on_production.map(|e| &e["outcome"]), Some(&json!("denied")), "{denied}");
    // An operator gets past access, to the promotion rules (api never ran in staging).
    let rules = p.request("POST", path, Some(&tokens["operator"]), &[], promote);
    assert_eq!(rules.status, 409, "{}", rules.text());
    assert!(rules.json()["message"].as_str().unwrap().contains("not healthy in `staging`"), "{}", rules.text());

    // Listings hold what the caller may view: a team's developer does not see another team's environment.
    let theirs = env_doc("payments-dev", "development").replace("\"owner\":\"platform\"", "\"owner\":\"payments\"");
    assert!(theirs.contains("payments\""), "{theirs}");
    assert_eq!(
        p.request("PUT", "/api/v1/specs/environment/payments-dev", Some(admin), &[], theirs.as_bytes()).status,
        200
    );
    let names = |token: &str| -> Vec<String> {
        let page = p.get("/api/v1/environments?limit=1000", token).json();
        page["items"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect()
    };
    assert!(names(admin).contains(&"payments-dev".to_string()));
    let visible = names(&team_dev);
    assert!(visible.contains(&"dev".to_string()) && !visible.contains(&"payments-dev".to_string()), "{visible:?}");
    assert_eq!(p.get("/api/v1/specs/environment/payments-dev", &team_dev).status, 403);
    assert_eq!(p.request("DELETE", "/api/v1/specs/environment/payments-dev", Some(admin), &[], b"").status, 200);
    listings_page_through_everything(&p, admin);
    let logs = p.get("/api/v1/environments/dev/services/api/logs?tail=3", admin).json();
    let logs = logs.as_array().unwrap();
    assert!(!logs.is_empty() && logs.len() <= 3 && logs.iter().all(|l| l["line"].is_string()), "{logs:?}");
    assert_eq!(p.get("/api/v1/environments/dev/services/nope/logs", admin).status, 404);
    malformed_input_names_the_field(&p, admin);
    oversized_bodies_get_413(&p, admin);
    stale_updates_get_412_and_lose_nothing(&p, admin);
    progress_streams_as_server_sent_events(&p, admin);
    metrics_parse_with_a_prometheus_parser(&p);
    assert_eq!(p.get("/api/v1/audit/verify", admin).json()["intact"], true);
}

fn listings_page_through_everything(p: &Platform, admin: &str) {
    let all: Vec<String> = p.get("/api/v1/environments?limit=1000", admin).json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert!(all.len() > 5 && all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    for path in ["/api/v1/environments?limit=2", "/api/v1/specs?kind=environment&limit=2"] {
        let (mut seen, mut next) = (vec![], None::<String>);
        loop {
            let url = match &next {
                Some(n) => format!("{path}&after={n}"),
                None => path.to_string(),
            };
            let page = p.get(&url, admin).json();
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= 2);
            seen.extend(items.iter().map(|e| e["name"].as_str().unwrap().to_string()));
            match page["next"].as_str() {
                Some(n) => next = Some(n.to_string()),
                None => break,
            }
        }
        assert_eq!(seen, all, "{path}");
    }
}

fn malformed_input_names_the_field(p: &Platform, admin: &str) {
    let renamed = env_doc("two", "staging");
    let cases: [(&str, &str, &[u8], u16, &str); 7] = [
        ("GET", "/api/v1/specs?kind=gadget", b"", 400, "kind"),
        ("GET", "/api/v1/environments?limit=many", b"", 400, "limit"),
        ("GET", "/api/v1/audit?since=yesterday", b"", 400, "since"),
        ("POST", "/api/v1/tokens", br#"{"name": "x", "subject": "root"}"#, 422, "subject"),
        ("POST", "/api/v1/tokens", br#"{"name": "x", "subject": "user:a", "colour": 1}"#, 422, "colour"),
        ("PUT", "/api/v1/specs/environment/other-name", renamed.as_bytes(), 422, "metadata.name"),
        (
            "POST",
            "/api/v1/specs",
            b"apiVersion: paved.dev/v1alpha1\nkind: Team\nmetadata:\n  name: x\nspec:\n  members: [nobody]\n",
            422,
            "spec.members[0]",
        ),
    ];
    for (method, path, body, status, field) in cases {
        let r = p.request(method, path, Some(admin), &[], body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        let v = r.json();
        let paths: Vec<&str> = v["details"].as_array().unwrap().iter().filter_map(|d| d["path"].as_str()).collect();
        assert!(paths.contains(&field), "{method} {path}: no detail at `{field}` in {v}");
    }
    // Spec diagnostics carry line and column in the body, like the CLI's.
    let r = p.request(
        "POST",
        "/api/v1/specs",
        Some(admin),
        &[],
        b"apiVersion: paved.dev/v1alpha1\nkind: Team\nmetadata:\n  name: x\nspec:\n  members: [nobody]\n",
    );
    let d = &r.json()["details"][0];
    assert_eq!((d["line"].as_u64(), d["column"].as_u64().is_some()), (Some(6), true), "{d}");
    assert_eq!(p.get("/api/v1/specs/team/x", admin).status, 404, "an invalid batch recorded something");
}

fn oversized_bodies_get_413(p: &Platform, admin: &str) {
    let big = vec![b'#'; 2 * 1024 * 1024];
    for (method, path) in
        [("POST", "/api/v1/specs"), ("PUT", "/api/v1/specs/environment/big"), ("POST", "/api/v1/tokens")]
    {
        let r = p.request(method, path, Some(admin), &[], &big);
        assert_eq!(r.status, 413, "{method} {path}: {}", r.text());
        assert_eq!(r.json()["code"], "too-large");
    }
}

fn stale_updates_get_412_and_lose_nothing(p: &Platform, admin: &str) {
    let path = "/api/v1/specs/environment/etag-demo";
    let create =
        p.request("PUT", path, Some(admin), &[("If-None-Match", "*")], env_doc("etag-demo", "development").as_bytes());
    assert_eq!(
        (create.status, create.headers.get("etag").map(String::as_str)),
        (200, Some("\"1\"")),
        "{}",
        create.text()
    );
    let again =
        p.request("PUT", path, Some(admin), &[("If-None-Match", "*")], env_doc("etag-demo", "development").as_bytes());
    assert_eq!(again.status, 412, "create-only over an existing object: {}", again.text());
    let v2 = env_doc("etag-demo", "staging");
    let update = p.request("PUT", path, Some(admin), &[("If-Match", "\"1\"")], v2.as_bytes());
    assert_eq!((update.status, update.headers.get("etag").map(String::as_str)), (200, Some("\"2\"")));
    let stale = env_doc("etag-demo", "production");
    let r = p.request("PUT", path, Some(admin), &[("If-Match", "\"1\"")], stale.as_bytes());
    assert_eq!(r.status, 412, "{}", r.text());
    assert_eq!(r.json()["code"], "stale");
    let now = p.get(path, admin).json();
    assert_eq!(now["generation"], 2);
    assert_eq!(now["document"]["spec"]["type"], "staging");
    let r = p.request("DELETE", path, Some(admin), &[("If-Match", "\"1\"")], b"");
    assert_eq!(r.status, 412);
    assert_eq!(p.request("DELETE", path, Some(admin), &[("If-Match", "\"2\"")], b"").status, 200);
}

fn progress_streams_as_server_sent_events(p: &Platform, admin: &str) {
    let started = p.request("POST", "/api/v1/environments/dev/apply", Some(admin), &[], b"");
    let id = started.json()["id"].as_str().unwrap().to_string();
    let r = p.get(&format!("/api/v1/operations/{id}/events"), admin);
    assert_eq!(r.headers.get("content-type").map(String::as_str), Some("text/event-stream"));
    let text = r.text();
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    // Applies of one environment queue: this one may wait for an earlier one first.
    assert!(events.iter().all(|e| *e == "waiting") || events.contains(&"planned"), "{text}");
    assert_eq!(events.iter().find(|e| **e != "waiting"), Some(&"planned"), "{text}");
    assert_eq!(events.last(), Some(&"done"), "{text}");
    assert!(text.contains("\"status\":\"succeeded\""), "{text}");
    assert!(events.contains(&"finished"), "{text}");
    assert!(text.contains("local.workload/api"), "{text}");
}

fn metrics_parse_with_a_prometheus_parser(p: &Platform) {
    let r = p.request("GET", "/metrics", None, &[], b"");
    assert!(r.headers["content-type"].starts_with("application/openmetrics-text"));
    let families = run_python(
        "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
         for f in parse(sys.stdin.read()):\n  for s in f.samples:\n    print(s.name, s.labels.get('route', ''), s.labels.get('outcome', ''), s.value)",
        &r.body,
    );
    assert!(
        families
            .lines()
            .any(|l| l.starts_with("paved_http_request_duration_seconds_count /api/v1/environments/{name}/apply")),
        "{families}"
    );
    assert!(families.lines().any(|l| l.starts_with("paved_operations_total  succeeded")), "{families}");
    assert!(families.lines().any(|l| l.starts_with("paved_access_denied_total")), "{families}");
    // The matrix asked every role for a reveal without the grant.
    assert!(families.lines().any(|l| l.starts_with("paved_secret_reveals_total  denied")), "{families}");
    assert!(families.lines().any(|l| l.starts_with("paved_provisioning_duration_seconds_bucket")), "{families}");

    // /metrics needs no token, so a scrape must be cheap: 20 scrapes at once read the
    // deployment history at most once (the DORA figures are refreshed every 30 s).
    let refreshes = |text: &str| -> f64 {
        let line =
            text.lines().find(|l| l.starts_with("paved_dora_refreshes_total ")).unwrap_or_else(|| panic!("{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let before = refreshes(&r.text());
    let scrapes: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..20).map(|_| s.spawn(|| p.request("GET", "/metrics", None, &[], b"").text())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let after = scrapes.iter().map(|t| refreshes(t)).fold(before, f64::max);
    assert!(after - before <= 1.0, "20 scrapes computed the DORA figures {} times", after - before);
}

#[test]
fn the_bootstrap_token_stays_private_and_retires_once_admins_have_tokens() {
    use std::os::unix::fs::PermissionsExt;
    let mut p = Platform::new();
    p.start(&["--bootstrap-grace", "2s"]);
    let file = p.data.path().join("bootstrap-admin.token");
    let bootstrap = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert_eq!(p.get("/api/v1/whoami", &bootstrap).status, 200);

    // Someone loosens the file while the server is down: the next start puts it back, and says so.
    let mut server = p.server.take().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    p.start(&["--bootstrap-grace", "2s"]);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(p.log().contains("had mode 0644; set back to 0600"), "{}", p.log());

    let tokens = |p: &Platform| p.get("/api/v1/tokens", &bootstrap).json();
    let boot_expiry = |list: &Value| {
        list.as_array().unwrap().iter().find(|t| t["subject"] == "serviceaccount:paved-bootstrap-admin").unwrap()
            ["expires_at"]
            .clone()
    };
    let issue = |p: &Platform, name: &str, subject: &str| {
        let body = json!({"name": name, "subject": subject}).to_string();
        let r = p.request("POST", "/api/v1/tokens", Some(&bootstrap), &[], body.as_bytes());
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["secret"].as_str().unwrap().to_string()
    };
    // A token for someone who is not an organisation admin changes nothing.
    let binding = "apiVersion: paved.dev/v1alpha1\nkind: RoleBinding\nmetadata:\n  name: owners\nspec:\n  role: admin\n  \
                   subjects: [user:owner@example.com]\n  scope: organisation\n  production: true\n";
    let r = p.request(
        "POST",
        "/api/v1/specs",
        Some(&bootstrap),
        &[("Content-Type", "application/yaml")],
        binding.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    issue(&p, "ci", "serviceaccount:ci");
    assert_eq!(boot_expiry(&tokens(&p)), Value::Null, "{}", tokens(&p));

    // The first real admin token starts the grace period; the bootstrap token ends with it.
    let owner = issue(&p, "owner-laptop", "user:owner@example.com");
    let expiry = boot_expiry(&tokens(&p));
    assert!(expiry.is_string(), "the bootstrap token did not get an expiry: {}", tokens(&p));
    let audit = p.get("/api/v1/audit?action=token.expire", &owner).json();
    let event = &audit["items"][0];
    assert_eq!(event["actor"], "paved server", "{audit}");
    assert!(event["details"]["reason"].as_str().unwrap().contains("user:owner@example.com"), "{audit}");
    std::thread::sleep(Duration::from_millis(2500));
    let r = p.get("/api/v1/whoami", &bootstrap);
    assert_eq!(r.status, 401, "the bootstrap token still works after its grace: {}", r.text());
    assert_eq!(p.get("/api/v1/whoami", &owner).status, 200);
}

#[test]
fn a_token_over_its_rate_gets_429_with_retry_after() {
    let mut p = Platform::new();
    p.ok(&["token", "list"]);
    let (_, token) = p.token("busy", "serviceaccount:busy", None);
    p.start(&["--rate-limit", "1", "--rate-burst", "3"]);
    let statuses: Vec<u16> = (0..6).map(|_| p.get("/api/v1/whoami", &token).status).collect();
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    let r = p.get("/api/v1/whoami", &token);
    assert_eq!(r.status, 429);
    assert!(r.headers.contains_key("retry-after"));
    // Another token is not slowed down by it.
    let (_, other) = p.token("calm", "serviceaccount:calm", None);
    assert_eq!(p.get("/api/v1/whoami", &other).status, 200);
}

#[test]
fn the_console_works_in_headless_chromium() {
    console_in_chromium(1);
}

/// The console in Chromium through a load balancer (Debian's nginx, each
/// request to the next replica) in front of three replicas on PostgreSQL:
/// pages, the API calls behind them and an operation's progress stream land
/// on different replicas, and the console works as it does on one.
#[test]
fn the_console_works_in_headless_chromium_through_three_replicas_behind_a_load_balancer() {
    console_in_chromium(3);
}

fn console_in_chromium(replicas: usize) {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(tool).exists() || std::env::var_os("PAVED_CHROMIUM").is_some(),
            "{tool} missing: this test needs Debian's chromium and chromium-driver (scripts/test installs them)"
        );
    }
    let mut p = Platform::new();
    if replicas > 1 {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        p.state = Some(runtime.block_on(paved_store::testing::postgres_url()).expect("a PostgreSQL server"));
    }
    p.ok(&["up", "--runtime", "process"]);
    p.ok_with_input(&["apply", "-f", "-"], &role_bindings());
    p.ok_with_input(&["secret", "set", "API_KEY", "-e", "dev"], "console-canary-7d1");
    let (_, viewer) = p.token("viewer", "serviceaccount:e2e-viewer", None);
    let (_, admin) = p.token("admin", "serviceaccount:e2e-admin", None);
    let (url, _replicas, _balancer) = if replicas > 1 {
        let port = support::free_port();
        let url = format!("http://127.0.0.1:{port}");
        let started = start_replicas(&mut p, replicas, support::free_port(), &url);
        (url, started, Some(support::Nginx::start(port, &p.replicas)))
    } else {
        p.start(&[]);
        (format!("http://127.0.0.1:{}", p.port), Vec::new(), None)
    };
    // Screenshots are kept as test artifacts under the target directory.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("console-screenshots-{replicas}"));
    let _ = std::fs::remove_dir_all(&shots);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console_browser.py");
    let out = Command::new(python())
        .arg(&script)
        .args([&url, &admin, &viewer, shots.to_str().unwrap()])
        .env("SE_OFFLINE", "true")
        .output()
        .expect("python3 (PAVED_TEST_PYTHON) with selenium");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let logs: Vec<String> =
        (0..replicas).map(|i| if i == 0 { p.log() } else { p.log_of(&format!("server-{i}.log")) }).collect();
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "browser test failed:\n{stdout}\n{}\nserver logs:\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs.join("\n")
    );
    for name in ["02-matrix", "05-denied", "07-progress", "08-audit"] {
        assert!(shots.join(format!("{name}.png")).metadata().is_ok_and(|m| m.len() > 1000), "no screenshot {name}");
    }
    // Every replica served the browser's pages, and one of them the progress page's event stream.
    let pages: Vec<usize> =
        logs.iter().map(|log| log.lines().filter(|l| l.contains(r#""route":"/console"#)).count()).collect();
    assert!(pages.iter().all(|n| *n > 0), "console pages served per replica: {pages:?}\n{}", logs.join("\n"));
    let streams = logs.iter().filter(|l| l.contains(r#""route":"/api/v1/operations/{id}/events""#)).count();
    assert!(streams > 0, "no replica served the progress page's event stream");
    eprintln!("console: pages served per replica {pages:?}; {streams} served an operation's event stream");
    eprintln!("{stdout}");
}

#[test]
fn the_cli_logged_in_to_a_server_goes_through_its_roles_and_audit_log() {
    let mut p = Platform::new();
    p.ok(&["up", "--runtime", "process"]);
    p.ok_with_input(&["apply", "-f", "-"], &role_bindings());
    let (_, developer) = p.token("dev", "serviceaccount:e2e-developer", None);
    let (_, viewer) = p.token("viewer", "serviceaccount:e2e-viewer", None);
    p.start(&[]);
    let server = format!("http://127.0.0.1:{}", p.port);

    // A token file others can read is refused; standard input works.
    let file = p.data.path().join("token");
    std::fs::write(&file, &viewer).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = p.command(&["login", "--server", &server, "--token-file", file.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    p.ok_with_input(&["login", "--server", &server], &viewer);
    let saved = p.data.path().join("config/server.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&saved).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(p.ok(&["whoami"]).contains("serviceaccount:e2e-viewer"));

    // Reads go through the server; a viewer's apply is refused by it, with the reason.
    assert!(p.ok(&["get", "environments"]).contains("production"));
    let out = p.command(&["apply", "-e", "dev"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs the developer role") && err.contains("HTTP 403"), "{err}");
    // A spec error names the file, line and column it is at.
    let bad = p.data.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: paved.dev/v1alpha1\nkind: Team\nmetadata:\n  name: x\nspec:\n  members: [nobody]\n",
    )
    .unwrap();
    p.ok(&["logout"]);
    p.ok_with_input(&["login", "--server", &server], &developer);
    let out = p.command(&["apply", "-f", bad.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("({}:6:", bad.display())), "{err}");

    // A developer applies through the server; the audit log names the token's subject.
    let applied = p.ok(&["apply", "-e", "dev"]);
    assert!(applied.contains("dev: succeeded"), "{applied}");
    p.ok(&["drift", "-e", "dev"]);
    p.ok(&["logout"]);
    // The audit log through the server (operators read it), printed as embedded.
    let (_, operator) = p.token("op", "serviceaccount:e2e-operator", None);
    p.ok_with_input(&["login", "--server", &server], &operator);
    let remote_list = p.ok(&["audit", "list", "--by", "serviceaccount:e2e-developer"]);
    assert!(remote_list.contains("environment.apply") && remote_list.contains("127.0.0.1"), "{remote_list}");
    // Plan, parity and history come from the server and print as embedded.
    assert!(p.ok(&["plan", "-e", "dev"]).contains("Plan: 0 to add, 0 to change, 0 to replace, 0 to destroy."));
    let parity = p.command(&["parity", "dev", "production"]).output().unwrap();
    assert_eq!(parity.status.code(), Some(0), "only declared parameters differ");
    let said = String::from_utf8_lossy(&parity.stdout);
    assert!(said.contains("replicas") && said.contains("no undeclared differences"), "{said}");
    assert!(p.ok(&["history", "environment", "dev"]).contains("created"));
    // The trust to install in an AWS account, from the server (its issuer URL).
    let trust = p.ok(&["account", "trust-policy", "aws-eu"]);
    assert!(trust.contains("sts:AssumeRoleWithWebIdentity") && trust.contains("paved:env:eu-production"), "{trust}");
    // Secrets through the server: set from stdin, listed by name.
    p.ok_with_input(&["secret", "set", "REMOTE_KEY", "-e", "dev"], "remote-value");
    assert!(p.ok(&["secret", "list", "-e", "dev"]).contains("REMOTE_KEY"));
    // Tokens are for admins; an operator is told so by the server.
    let refused = p.command(&["token", "list"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("needs the admin role"));
    p.ok(&["logout"]);
    let events = p.ok(&["audit", "list", "--action", "environment.apply", "-o", "json"]);
    let events: Vec<Value> = serde_json::from_str(&events).unwrap();
    let actors: BTreeSet<&str> = events.iter().filter_map(|e| e["actor"].as_str()).collect();
    assert!(
        actors.contains("serviceaccount:e2e-developer") && actors.contains("serviceaccount:e2e-viewer"),
        "{actors:?}"
    );
    // `--by` filters by actor; the global `--actor` (who is acting) does not filter.
    let by: Vec<Value> =
        serde_json::from_str(&p.ok(&["audit", "list", "--by", "serviceaccount:e2e-viewer", "-o", "json"])).unwrap();
    assert!(!by.is_empty() && by.iter().all(|e| e["actor"] == "serviceaccount:e2e-viewer"));
}

#[test]
fn the_server_keeps_its_state_in_postgresql() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = runtime.block_on(paved_store::testing::postgres_url()).expect("a PostgreSQL server for the test");
    let mut p = Platform::new();
    p.state = Some(url);
    p.ok(&["apply", "-f", "examples/"]);
    p.ok_with_input(&["apply", "-f", "-"], &role_bindings());
    let (_, admin) = p.token("admin", "serviceaccount:e2e-admin", None);
    let (_, viewer) = p.token("viewer", "serviceaccount:e2e-viewer", None);
    p.start(&[]);
    assert_eq!(p.request("GET", "/readyz", None, &[], b"").status, 200);
    // Specs with preconditions, a denial, token revocation: all on PostgreSQL.
    let path = "/api/v1/specs/environment/pg-demo";
    let created =
        p.request("PUT", path, Some(&admin), &[("If-None-Match", "*")], env_doc("pg-demo", "development").as_bytes());
    assert_eq!(created.status, 200, "{}", created.text());
    let stale =
        p.request("PUT", path, Some(&admin), &[("If-Match", "\"7\"")], env_doc("pg-demo", "staging").as_bytes());
    assert_eq!(stale.status, 412);
    assert_eq!(p.request("DELETE", path, Some(&viewer), &[], b"").status, 403);
    let listed = p.get("/api/v1/environments?limit=1000", &viewer).json();
    assert!(listed["items"].as_array().unwrap().iter().any(|e| e["name"] == "pg-demo"));
    let issued =
        p.request("POST", "/api/v1/tokens", Some(&admin), &[], br#"{"name": "ci", "subject": "serviceaccount:ci"}"#);
    assert_eq!(issued.status, 201);
    let (id, secret) =
        (issued.json()["id"].as_str().unwrap().to_string(), issued.json()["secret"].as_str().unwrap().to_string());
    assert_eq!(p.get("/api/v1/whoami", &secret).status, 200);
    assert_eq!(p.request("DELETE", &format!("/api/v1/tokens/{id}"), Some(&admin), &[], b"").status, 204);
    assert_eq!(p.get("/api/v1/whoami", &secret).status, 401, "a revoked token still worked");
    // The denial and the token's life are in the chain, which verifies.
    let denied = p.get("/api/v1/audit?action=spec.delete", &admin).json();
    assert_eq!(denied["items"][0]["outcome"], "denied", "{denied}");
    assert!(p.ok(&["audit", "verify"]).contains("intact"));
    assert!(!p.data.path().join("state.db").exists(), "state went to SQLite, not PostgreSQL");
}

/// Two replicas on one PostgreSQL: both answer the API, the background
/// loops run on exactly one; killed, the other takes them over within the
/// lease; stopped cleanly, it lets go at once.
#[test]
fn replicas_on_postgresql_run_the_background_loops_once_and_take_over_from_a_dead_one() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = runtime.block_on(paved_store::testing::postgres_url()).expect("a PostgreSQL server for the test");
    let mut p = Platform::new();
    p.state = Some(url);
    p.ok_with_input(&["apply", "-f", "-"], &role_bindings());
    let (_, viewer) = p.token("viewer", "serviceaccount:e2e-viewer", None);
    let replica =
        |name: &str| ["--replica-id", name, "--lease-ttl", "3s", "--reconcile-interval", "1s"].map(str::to_string);
    p.start(&replica("replica-a").iter().map(String::as_str).collect::<Vec<_>>());
    let a = p.port;
    // The second replica: the same store and key, its own port and log.
    let b = support::free_port();
    let mut replica_b =
        spawn_replica(&p, b, &replica("replica-b").iter().map(String::as_str).collect::<Vec<_>>(), "server-b.log");
    let ready = |port: u16| -> Value { serde_json::from_slice(&support::http(port, "GET", "/readyz")).unwrap() };
    let leaders = || [a, b].into_iter().filter(|port| ready(*port)["leader"] == true).collect::<Vec<_>>();
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let started = std::time::Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(15), "{what}: A {} B {}", ready(a), ready(b));
            std::thread::sleep(Duration::from_millis(100));
        }
        started.elapsed()
    };
    until("one leader", &|| leaders().len() == 1);
    // Stable: one leader at every look, and both replicas serve the API.
    for _ in 0..10 {
        assert_eq!(leaders().len(), 1, "A {} B {}", ready(a), ready(b));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(leaders(), [a], "the first replica started takes the lease");
    let first_token = ready(a)["lease_token"].as_i64().unwrap();
    assert_eq!(ready(b)["replica"], "replica-b");
    p.port = b;
    assert_eq!(p.get("/api/v1/environments", &viewer).status, 200);
    p.port = a;
    assert_eq!(p.get("/api/v1/environments", &viewer).status, 200);
    // One issuer: the same signing keys from either replica.
    assert_eq!(support::http(a, "GET", "/.well-known/jwks.json"), support::http(b, "GET", "/.well-known/jwks.json"));
    // A token revoked through one replica is refused by the other at once (its caches follow the store).
    let (doomed_id, doomed) = p.token("doomed", "serviceaccount:e2e-viewer", None);
    p.port = b;
    assert_eq!(p.get("/api/v1/whoami", &doomed).status, 200);
    p.ok(&["token", "revoke", &doomed_id]);
    assert_eq!(p.get("/api/v1/whoami", &doomed).status, 401, "replica-b still took a revoked token");
    p.port = a;

    // kill -9 the leader: replica-b takes over within the lease, with a higher token.
    let mut leader = p.server.take().unwrap();
    leader.kill().unwrap();
    leader.wait().unwrap();
    let failover = until("replica-b takes over", &|| ready(b)["leader"] == true);
    assert!(ready(b)["lease_token"].as_i64().unwrap() > first_token);
    let metrics = String::from_utf8(support::http(b, "GET", "/metrics")).unwrap();
    assert!(metrics.contains("paved_leader{replica=\"replica-b\"} 1"), "{metrics}");
    assert!(metrics.contains("paved_lease_takeovers_total 1"), "{metrics}");
    eprintln!("failover after kill -9: {failover:?} (lease 3s)");

    // The killed replica comes back as a standby.
    p.start(&replica("replica-a").iter().map(String::as_str).collect::<Vec<_>>());
    let a = p.port;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ready(a)["leader"], false, "{}", ready(a));
    assert_eq!(ready(b)["leader"], true);

    // A clean stop lets go at once: replica-a leads well before the lease would have lapsed.
    unsafe { libc::kill(replica_b.0.id() as i32, libc::SIGTERM) };
    replica_b.0.wait().unwrap();
    let handover = until("replica-a takes over", &|| ready(a)["leader"] == true);
    assert!(handover < Duration::from_secs(3), "a clean stop waited for the lease to lapse: {handover:?}");
    let log_b = std::fs::read_to_string(p.data.path().join("server-b.log")).unwrap();
    assert!(log_b.contains("took the background lease"), "{log_b}");
}

/// A replica process killed with the test, whatever happens to it.
struct Replica(std::process::Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `paved server` on `port` beside the platform's own (same store and
/// key), logging to `log` in the data directory; returns once it listens.
fn spawn_replica(p: &Platform, port: u16, args: &[&str], log: &str) -> Replica {
    let log = std::fs::File::options().create(true).append(true).open(p.data.path().join(log)).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut all = vec!["server", "--listen", listen.as_str()];
    all.extend(args);
    let child = Replica(p.command(&all).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the replica on {port} did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn lcg(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    move || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        x >> 33
    }
}

/// Supervisors of `dev`'s workloads running on this machine, per workload.
fn supervisors(p: &Platform) -> BTreeMap<String, usize> {
    let root = p.data.path().join("local/envs/dev/workloads");
    let mut counts = BTreeMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let Some((_, rest)) = cmd.split_once(&format!("{}/", root.display())) else { continue };
        if cmd.contains("__supervise") {
            let workload = rest.split('/').next().unwrap_or_default().to_string();
            *counts.entry(workload).or_default() += 1;
        }
    }
    counts
}

/// The durable operation queue: three replicas; applies and destroys accepted
/// by one that is then killed -9 at a random moment are finished by another,
/// exactly once — one audit event per operation, one supervisor per
/// workload, no drift — and followed from the surviving replicas, its event
/// stream resuming after the last event seen. A probe loop calls the API
/// through all three meanwhile: no 5xx anywhere, and the survivors answer
/// every request (only requests in flight on the killed one may go unanswered).
#[test]
fn operations_of_a_replica_killed_at_random_points_are_finished_by_another_exactly_once() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = runtime.block_on(paved_store::testing::postgres_url()).expect("a PostgreSQL server for the test");
    let mut p = Platform::new();
    p.state = Some(url);
    p.ok(&["up", "--runtime", "process"]);
    p.ok_with_input(&["apply", "-f", "-"], &role_bindings());
    let (_, admin) = p.token("admin", "serviceaccount:e2e-admin", None);
    let args = |name: &'static str| ["--replica-id", name, "--operation-heartbeat", "300ms", "--lease-ttl", "3s"];
    let (a, b, c) = (support::free_port(), support::free_port(), support::free_port());
    let _b = spawn_replica(&p, b, &args("replica-b"), "server-b.log");
    let _c = spawn_replica(&p, c, &args("replica-c"), "server-c.log");
    let (_, viewer) = p.token("viewer", "serviceaccount:e2e-viewer", None);
    let probe = Probe::start(&[a, b, c], &viewer);
    let mut killed = 0;
    let mut resumed = 0;
    let seeds: u64 = std::env::var("PAVED_REPLICA_CRASH_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    for seed in 0..seeds {
        let mut rng = lcg(seed);
        let destroying = seed % 2 == 1;
        p.port = b;
        if !destroying {
            // Something to apply: dev destroyed first (through the survivor).
            let id = p.request("POST", "/api/v1/environments/dev/destroy", Some(&admin), &[], b"").json()["id"].clone();
            assert_eq!(p.wait_operation(id.as_str().unwrap(), &admin)["status"], "succeeded", "seed {seed}");
        }
        let mut victim = spawn_replica(&p, a, &args("replica-a"), "server-a.log");
        p.port = a;
        let verb = if destroying { "destroy" } else { "apply" };
        let started = p.request("POST", &format!("/api/v1/environments/dev/{verb}"), Some(&admin), &[], b"");
        assert_eq!(started.status, 202, "seed {seed}: {}", started.text());
        let id = started.json()["id"].as_str().unwrap().to_string();
        std::thread::sleep(Duration::from_millis(rng() % 1500));
        // Read from another replica: the operation is in the store, not only in A's memory.
        p.port = if seed % 3 == 0 { c } else { b };
        let before = p.get(&format!("/api/v1/operations/{id}"), &admin).json();
        victim.0.kill().unwrap();
        victim.0.wait().unwrap();
        if before["status"] == "running" {
            killed += 1;
        }
        let op = p.wait_operation(&id, &admin);
        assert_eq!(
            op["status"],
            "succeeded",
            "seed {seed} ({verb}): {op}\n{}{}",
            p.log_of("server-b.log"),
            p.log_of("server-c.log")
        );
        if op["attempts"].as_i64().unwrap() > 1 {
            resumed += 1;
        }
        // Exactly one audit event for the operation, however many replicas ran it.
        let audit = p.get("/api/v1/audit?target=Environment/dev&limit=1000", &admin).json();
        let mine: Vec<&Value> =
            audit["items"].as_array().unwrap().iter().filter(|e| e["details"]["operation"] == id.as_str()).collect();
        assert_eq!(mine.len(), 1, "seed {seed}: audit events of {id}: {mine:#?}");
        assert_eq!(mine[0]["action"], format!("environment.{verb}"));
        // Every resource once: one supervisor per workload after an apply, none after a destroy.
        let expected: BTreeMap<String, usize> = if destroying {
            BTreeMap::new()
        } else {
            ["api", "web", "worker"].iter().map(|w| (w.to_string(), 1)).collect()
        };
        assert_eq!(supervisors(&p), expected, "seed {seed} ({verb})");
        let drift = p.get("/api/v1/environments/dev/drift", &admin).json();
        assert_eq!(drift["drifted"], false, "seed {seed}: {drift}");
        // The whole trail from the survivor, and a stream resumed after an event it saw.
        let all = p.get(&format!("/api/v1/operations/{id}/events"), &admin).text();
        let seqs: Vec<i64> = all.lines().filter_map(|l| l.strip_prefix("id: ")).map(|n| n.parse().unwrap()).collect();
        assert_eq!(seqs, (0..seqs.len() as i64).collect::<Vec<_>>(), "seed {seed}: {all}");
        assert!(all.lines().any(|l| l == "event: done"), "seed {seed}: {all}");
        let mid = seqs[seqs.len() / 2];
        let rest = p.request(
            "GET",
            &format!("/api/v1/operations/{id}/events"),
            Some(&admin),
            &[("Last-Event-ID", &mid.to_string())],
            b"",
        );
        let rest_seqs: Vec<i64> =
            rest.text().lines().filter_map(|l| l.strip_prefix("id: ")).map(|n| n.parse().unwrap()).collect();
        assert_eq!(rest_seqs, seqs[seqs.len() / 2 + 1..].to_vec(), "seed {seed}");
    }
    // A clean stop (a rolling restart) does not cancel its running operation: another replica finishes it.
    p.port = b;
    let id = p.request("POST", "/api/v1/environments/dev/destroy", Some(&admin), &[], b"").json()["id"].clone();
    assert_eq!(p.wait_operation(id.as_str().unwrap(), &admin)["status"], "succeeded");
    let mut stopping = spawn_replica(&p, a, &args("replica-a"), "server-a.log");
    p.port = a;
    let id = p.request("POST", "/api/v1/environments/dev/apply", Some(&admin), &[], b"").json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(stopping.0.id() as i32, libc::SIGTERM) };
    stopping.0.wait().unwrap();
    p.port = b;
    let op = p.wait_operation(&id, &admin);
    assert_eq!(op["status"], "succeeded", "an operation stopped by SIGTERM: {op}");
    let audit = p.get("/api/v1/audit?target=Environment/dev&limit=1000", &admin).json();
    let mine: Vec<&Value> =
        audit["items"].as_array().unwrap().iter().filter(|e| e["details"]["operation"] == id.as_str()).collect();
    assert_eq!(mine.len(), 1, "audit events of {id}: {mine:#?}");
    assert_eq!(mine[0]["details"]["cancelled"], false, "{mine:#?}");
    let bad =
        p.request("GET", &format!("/api/v1/operations/{id}/events"), Some(&admin), &[("Last-Event-ID", "x")], b"");
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert!(bad.text().contains("Last-Event-ID"), "{}", bad.text());
    // Handed over at the stop (released), or — when its running step outlived the shutdown grace — claimed
    // once its heartbeat lapsed: either way finished once, by the other replica.
    if op["attempts"].as_i64().unwrap() > 1 {
        resumed += 1;
    }
    assert_eq!(supervisors(&p), ["api", "web", "worker"].iter().map(|w| (w.to_string(), 1)).collect());
    // The kills must land while operations run, and some must have been taken over.
    assert!(killed * 2 >= seeds, "only {killed} of {seeds} kills interrupted an operation");
    assert!(resumed > 0, "no operation was taken over");
    // Takeovers are counted by the replica that made them; the two survivors' counts add up.
    let takeovers: i64 = [b, c]
        .iter()
        .map(|port| {
            let metrics = String::from_utf8(support::http(*port, "GET", "/metrics")).unwrap();
            metrics
                .lines()
                .find_map(|l| l.strip_prefix("paved_operation_takeovers_total "))
                .unwrap_or_else(|| panic!("no takeover count in {metrics}"))
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    assert_eq!(takeovers, resumed, "takeovers counted by replicas b and c");
    let (answered, unanswered) = probe.finish(&[b, c]);
    eprintln!(
        "{killed} of {seeds} kills interrupted an operation; {resumed} taken over; probe: {answered} answered, \
         {unanswered} unanswered (all by the killed replica)"
    );
}

/// What one probe request got: (replica port, status if answered).
type Probed = (u16, Option<u16>);

/// A probe loop: a thread per replica reading the API (`GET` environments and
/// one environment) until finished; what each request got is kept.
struct Probe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<Probed>>>,
}

impl Probe {
    fn start(ports: &[u16], token: &str) -> Probe {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = ports
            .iter()
            .map(|&port| {
                let (stop, token) = (stop.clone(), token.to_string());
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        for path in ["/api/v1/environments", "/api/v1/environments/dev"] {
                            let status = support::try_request(port, "GET", path, Some(&token), b"").map(|r| r.status);
                            seen.push((port, status));
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    seen
                })
            })
            .collect();
        Probe { stop, threads }
    }

    /// Stops the loop and asserts what a user behind a load balancer relies
    /// on: no 5xx from any replica, and every request to `steady` (replicas
    /// never stopped) answered. Returns (requests answered, unanswered).
    fn finish(self, steady: &[u16]) -> (usize, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let seen: Vec<Probed> = self.threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        let errors: Vec<_> = seen.iter().filter(|(_, s)| s.is_some_and(|s| s >= 500)).collect();
        assert!(errors.is_empty(), "5xx answers in {} probe requests: {errors:?}", seen.len());
        let lost: Vec<_> = seen.iter().filter(|(port, s)| steady.contains(port) && s.is_none()).collect();
        assert!(lost.is_empty(), "replicas never stopped left requests unanswered: {lost:?}");
        let answered = seen.iter().filter(|(_, s)| s.is_some()).count();
        assert!(seen.iter().any(|(_, s)| *s == Some(200)), "the probe's reads were answered");
        (answered, seen.len() - answered)
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with openssl in `dir`:
/// (CA certificate, server certificate, server key).
fn test_pki(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (Debian openssl)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let (ca, ca_key) = (format!("{name}-ca.pem"), format!("{name}-ca.key"));
    let (cert, key, csr, ext) =
        (format!("{name}.pem"), format!("{name}.key"), format!("{name}.csr"), format!("{name}.ext"));
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        &[&["req", "-x509"], &ec[..], &["-keyout", &ca_key, "-out", &ca, "-days", "2", "-subj", "/CN=paved test CA"]]
            .concat(),
    );
    openssl(&[&["req"], &ec[..], &["-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]].concat());
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
        "-extfile",
        &ext,
    ]);
    (dir.join(ca), dir.join(cert), dir.join(key))
}

/// A TLS-terminating proxy (Python's ssl) in front of 127.0.0.1:`backend`; its port.
fn tls_proxy(cert: &Path, key: &Path, backend: u16) -> (std::process::Child, u16) {
    const PROXY: &str = r#"
import asyncio, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
backend = int(sys.argv[3])
async def pipe(r, w):
    try:
        while (d := await r.read(65536)):
            w.write(d)
            await w.drain()
    except Exception:
        pass
    finally:
        w.close()
async def handle(cr, cw):
    try:
        br, bw = await asyncio.open_connection('127.0.0.1', backend)
    except Exception:
        cw.close()
        return
    await asyncio.gather(pipe(cr, bw), pipe(br, cw))
async def main():
    srv = await asyncio.start_server(handle, '127.0.0.1', 0, ssl=ctx)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()
asyncio.run(main())
"#;
    use std::io::BufRead;
    let mut child = Command::new(python())
        .args(["-c", PROXY])
        .arg(cert)
        .arg(key)
        .arg(backend.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (PAVED_TEST_PYTHON)");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| panic!("the TLS proxy did not start: {line:?}"));
    (child, port)
}

#[test]
fn the_cli_speaks_https_and_refuses_clear_text_across_the_network() {
    let mut p = Platform::new();
    p.start(&[]);
    let token_file = p.data.path().join("bootstrap-admin.token");
    let pki = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(pki.path(), "server");
    let (other_ca, _, _) = test_pki(pki.path(), "stranger");
    let (mut proxy, port) = tls_proxy(&cert, &key, p.port);
    let url = format!("https://127.0.0.1:{port}");
    let login = |extra: &[&str]| {
        let mut args = vec!["login", "--server", url.as_str(), "--token-file", token_file.to_str().unwrap()];
        args.extend(extra);
        p.command(&args).output().unwrap()
    };

    // A certificate from a CA the CLI was not told about is refused, with what to do.
    for extra in [&[][..], &["--ca-file", other_ca.to_str().unwrap()][..]] {
        let out = login(extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("certificate") && err.contains("--ca-file"), "{err}");
    }
    // With the CA, the CLI logs in over TLS and keeps using it.
    let out = login(&["--ca-file", ca.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let who = p.ok(&["whoami"]);
    assert!(who.contains("serviceaccount:paved-bootstrap-admin") && who.contains(&url), "{who}");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(p.data.path().join("config/server.json")).unwrap()).unwrap();
    assert_eq!(saved["ca_file"].as_str(), ca.to_str());

    // Plain http is for this machine only: elsewhere the token would travel in clear text.
    let out = p
        .command(&["login", "--server", "http://10.11.12.13:7480", "--token-file", token_file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("clear text") && err.contains("https://"), "{err}");
    let _ = proxy.kill();
    let _ = proxy.wait();
}

#[test]
fn the_server_signs_audit_checkpoints_and_verify_reports_them() {
    let mut p = Platform::new();
    let (_, admin) = p.token("ops", "serviceaccount:e2e-admin", None);
    p.ok_with_input(&["apply", "-f", "-"], &role_bindings());
    p.start(&["--audit-checkpoint-interval", "1s"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let verified = loop {
        let v = p.get("/api/v1/audit/verify", &admin).json();
        if v["anchored_seq"].is_i64() || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(verified["intact"], true, "{verified}");
    let anchored = verified["anchored_seq"].as_i64().unwrap_or_else(|| panic!("no checkpoint signed: {verified}"));
    assert!(anchored >= 2, "{verified}");
    let events = p.get("/api/v1/audit?action=audit.checkpoint", &admin).json();
    let c = &events["items"][0];
    assert_eq!(
        (c["actor"].as_str(), c["target"].as_str()),
        (Some("paved server"), Some(&*format!("Audit/{anchored}")))
    );
    // The signature is an ES256 JWS over the head, with a key the server publishes.
    let signature = c["details"]["signature"].as_str().unwrap();
    assert_eq!(signature.split('.').count(), 3, "{c}");
    // Nothing new happened: the next ticks sign nothing more.
    std::thread::sleep(Duration::from_millis(2500));
    let again = p.get("/api/v1/audit?action=audit.checkpoint", &admin).json();
    assert_eq!(again["items"].as_array().unwrap().len(), 1, "{again}");
}

#[test]
fn reads_served_from_memory_follow_every_write_including_another_processs() {
    let mut p = Platform::new();
    p.ok(&["apply", "-f", "examples/"]);
    p.ok_with_input(&["apply", "-f", "-"], &role_bindings());
    let (_, viewer) = p.token("viewer", "serviceaccount:e2e-viewer", None);
    p.start(&[]);
    let (spec, describe, list) =
        ("/api/v1/specs/environment/cache-demo", "/api/v1/environments/cache-demo", "/api/v1/environments?limit=1000");
    let listed_type = |p: &Platform| {
        let items = p.get(list, &viewer).json()["items"].clone();
        items.as_array().unwrap().iter().find(|e| e["name"] == "cache-demo").map(|e| e["type"].clone())
    };
    // Absent, read twice (the second answer may come from memory)…
    for _ in 0..2 {
        assert_eq!(p.get(spec, &viewer).status, 404);
        assert_eq!(listed_type(&p), None);
    }
    // …until another process (the CLI on the same store, not the server) records it.
    p.ok_with_input(&["apply", "-f", "-"], &env_doc("cache-demo", "development"));
    assert_eq!(p.get(spec, &viewer).json()["document"]["spec"]["type"], "development");
    assert_eq!(listed_type(&p), Some(json!("development")));
    // Changed behind the server's back: every read has the change at once.
    p.ok_with_input(&["apply", "-f", "-"], &env_doc("cache-demo", "staging"));
    assert_eq!(p.get(spec, &viewer).json()["document"]["spec"]["type"], "staging");
    assert_eq!(p.get(describe, &viewer).json()["type"], "staging");
    assert_eq!(listed_type(&p), Some(json!("staging")));
    // Applied resources are written without an audit event: a resource
    // recorded by another process shows in the environment's detail at once,
    // and so does its removal.
    let resources = |p: &Platform| {
        let detail = p.get(describe, &viewer).json();
        detail["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(resources(&p), Vec::<String>::new());
    assert_eq!(resources(&p), Vec::<String>::new());
    let db = p.data.path().join("state.db");
    let sql = |statement: &str| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()"])
            .arg(&db)
            .arg(statement)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    sql("INSERT INTO applied_nodes (environment, node_id, node, outputs, updated_at) VALUES \
         ('cache-demo', 'local.route/web', '{}', '{\"url\": \"http://web.cache-demo.test\"}', '2026-12-06T10:00:00Z')");
    assert_eq!(resources(&p), ["local.route/web"]);
    assert_eq!(p.get(describe, &viewer).json()["urls"]["local.route/web"], "http://web.cache-demo.test");
    sql("DELETE FROM applied_nodes WHERE environment = 'cache-demo'");
    assert_eq!(resources(&p), Vec::<String>::new());
    // And deleted.
    p.ok(&["delete", "environment", "cache-demo"]);
    assert_eq!(p.get(spec, &viewer).status, 404);
    assert_eq!(p.get(describe, &viewer).status, 404);
    assert_eq!(listed_type(&p), None);
}

/// A rolling upgrade: three replicas on PostgreSQL are replaced one at a
/// time by the next release — a build knowing one more migration, an
/// additive one (`PAVED_TEST_NEXT_RELEASE`, see `paved_store::testing`) —
/// while a probe loop reads and writes through every replica not being
/// replaced (a load balancer drains a replica before it is stopped). The
/// first new replica migrates; the old ones keep serving beside the newer
/// schema; an old replica started after the migration (a rollback) serves
/// too; no request fails and no write is lost.
#[test]
fn replicas_replaced_one_at_a_time_by_the_next_release_keep_serving_without_errors() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = runtime.block_on(paved_store::testing::postgres_url()).expect("a PostgreSQL server for the test");
    let mut p = Platform::new();
    p.state = Some(url.clone());
    p.ok(&["apply", "-f", "examples/platform"]);
    p.ok_with_input(&["apply", "-f", "-"], &role_bindings());
    let (_, developer) = p.token("developer", "serviceaccount:e2e-developer", None);
    let migrated = || -> bool {
        let out = Command::new("psql")
            .args([url.as_str(), "-tAc"])
            .arg(format!(
                "SELECT count(*) FROM _sqlx_migrations WHERE version = {}",
                paved_store::testing::NEXT_RELEASE_MIGRATION
            ))
            .output()
            .expect("psql (Debian package postgresql-client)");
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    };
    let start = |i: usize, port: u16, next: bool| -> Replica {
        let listen = format!("127.0.0.1:{port}");
        let name = format!("replica-{i}");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(p.data.path().join(format!("server-{i}.log")))
            .unwrap();
        let mut command = p.command(&["server", "--listen", &listen, "--replica-id", &name, "--lease-ttl", "3s"]);
        if next {
            command.env("PAVED_TEST_NEXT_RELEASE", "additive");
        }
        let replica = Replica(command.stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while support::try_request(port, "GET", "/readyz", None, b"").is_none_or(|r| r.status != 200) {
            assert!(
                std::time::Instant::now() < deadline,
                "replica-{i} did not become ready: {}",
                p.log_of(&format!("server-{i}.log"))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        replica
    };
    let ports: Vec<u16> = (0..3).map(|_| support::free_port()).collect();
    let mut replicas: Vec<Replica> = ports.iter().enumerate().map(|(i, port)| start(i, *port, false)).collect();
    assert!(!migrated());

    // The probe loop: every replica in rotation (the drained one skipped), a read and a write each.
    let draining: Arc<Mutex<Option<u16>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // (replica port, what was asked — `probe-N` written or `read` — and the status, if any answered).
    type Seen = Vec<(u16, String, Option<u16>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let probe = {
        let (draining, stop, seen, ports, developer) =
            (draining.clone(), stop.clone(), seen.clone(), ports.clone(), developer.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                for port in &ports {
                    if *draining.lock().unwrap() == Some(*port) {
                        continue;
                    }
                    n += 1;
                    let name = format!("probe-{n}");
                    let doc = env_doc(&name, "development");
                    let path = format!("/api/v1/specs/environment/{name}");
                    let write = support::try_request(*port, "PUT", &path, Some(&developer), doc.as_bytes());
                    let read =
                        support::try_request(*port, "GET", "/api/v1/environments?limit=5", Some(&developer), b"");
                    let mut seen = seen.lock().unwrap();
                    seen.push((*port, name, write.map(|r| r.status)));
                    seen.push((*port, "read".into(), read.map(|r| r.status)));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    for (i, port) in ports.iter().enumerate() {
        // Drained, stopped cleanly, replaced by the next release, back in rotation.
        *draining.lock().unwrap() = Some(*port);
        std::thread::sleep(Duration::from_millis(300)); // requests already sent to it finish
        let mut old = replicas.remove(0);
        unsafe { libc::kill(old.0.id() as i32, libc::SIGTERM) };
        assert!(old.0.wait().unwrap().success(), "replica-{i} did not stop cleanly");
        replicas.push(start(i, *port, true));
        *draining.lock().unwrap() = None;
        assert!(migrated(), "the next release's migration ran when replica-{i} started");
        std::thread::sleep(Duration::from_secs(1));
    }
    stop.store(true, Ordering::SeqCst);
    probe.join().unwrap();
    let seen = seen.lock().unwrap();
    let failed: Vec<_> = seen.iter().filter(|(_, _, status)| !status.is_some_and(|s| s < 300)).collect();
    assert!(
        failed.is_empty(),
        "{} of {} probe requests failed during the upgrade: {failed:?}",
        failed.len(),
        seen.len()
    );

    // A replica of the previous release started now (a rollback) serves beside the newer schema,
    // and every environment written during the upgrade is there.
    let back = support::free_port();
    let _rollback = start(3, back, false);
    let written: Vec<&String> =
        seen.iter().filter(|(_, what, _)| what.starts_with("probe-")).map(|(_, w, _)| w).collect();
    assert!(written.len() > 30, "the probe loop wrote {} environments", written.len());
    let lost: Vec<_> = written
        .iter()
        .filter(|name| {
            let path = format!("/api/v1/specs/environment/{name}");
            support::try_request(back, "GET", &path, Some(&developer), b"").is_none_or(|r| r.status != 200)
        })
        .collect();
    assert!(lost.is_empty(), "written during the upgrade, then missing: {lost:?}");
    eprintln!("rolling upgrade: {} probe requests through 3 replicas replaced one at a time, none failed", seen.len());
}
