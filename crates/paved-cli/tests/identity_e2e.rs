//! paved as an OIDC issuer, checked from outside: its tokens verify with an
//! independent JWT library (PyJWT) against the discovery document and JWKS
//! the server publishes; and against a real AWS API emulator (moto), paved
//! assumes a role with its own token and uses the credentials — for STS and
//! for a KMS key-encryption key — with no static key configured anywhere but
//! the emulator's own dummy root (used only to install the trust).
//!
//! Needs `PAVED_TEST_PYTHON` with PyJWT[crypto], moto[server] and boto3
//! (scripts/test installs them).

mod support;

use serde_json::{Value, json};
use std::process::{Command, Stdio};
use support::{Moto, Platform, python};

/// Runs `code` with the test Python, `args` after it; its stdout, or a panic with stderr.
fn py(code: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("PAVED_TEST_PYTHON");
    assert!(out.status.success(), "python failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Verifies a token the way a cloud would: discovery document → JWKS → key
/// by `kid`, then signature, audience, issuer and expiry. Prints `ok` + the
/// claims, or the name of PyJWT's exception.
const VERIFY: &str = r#"
import json, sys, urllib.request, jwt
base, token, audience, issuer = sys.argv[1:5]
discovery = json.load(urllib.request.urlopen(base + "/.well-known/openid-configuration"))
assert discovery["issuer"] == base, discovery
jwks = jwt.PyJWKClient(discovery["jwks_uri"])
key = jwks.get_signing_key_from_jwt(token)
try:
    claims = jwt.decode(token, key.key, algorithms=discovery["id_token_signing_alg_values_supported"],
                        audience=audience, issuer=issuer, options={"require": ["exp", "iat", "sub", "aud", "iss"]})
    print("ok " + json.dumps(claims))
except jwt.PyJWTError as e:
    print(type(e).__name__)
"#;

fn platform_with_specs() -> Platform {
    let p = Platform::new();
    p.ok(&["apply", "-f", "examples/platform"]);
    p.ok_with_input(
        &["apply", "-f", "-"],
        "apiVersion: paved.dev/v1alpha1\nkind: CloudAccount\nmetadata:\n  name: aws-test\nspec:\n  provider: aws\n  \
         accountId: \"123456789012\"\n  allowedRegions: [eu-central-1]\n  credentials:\n    aws:\n      \
         roleArn: arn:aws:iam::123456789012:role/paved-provisioner\n---\n\
         apiVersion: paved.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: aws-dev\nspec:\n  \
         blueprint: web-service-standard@1.2.0\n  account: aws-test\n  region: eu-central-1\n  type: development\n  owner: platform\n---\n\
         apiVersion: paved.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: aws-stage\nspec:\n  \
         blueprint: web-service-standard@1.2.0\n  account: aws-test\n  region: eu-central-1\n  type: staging\n  owner: platform\n",
    );
    p
}

#[test]
fn tokens_verify_with_pyjwt_against_the_served_discovery_and_jwks() {
    let mut p = platform_with_specs();
    let port = support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let public_url = format!("--public-url={base}");
    p.start_on(port, &[&public_url]);
    let token = |extra: &[&str]| -> String {
        let mut args = vec!["identity", "token", "-e", "aws-dev", &public_url];
        args.extend(extra);
        p.ok(&args).trim().to_string()
    };
    let verify = |token: &str, audience: &str, issuer: &str| py(VERIFY, &[&base, token, audience, issuer], &[]);

    let good = token(&["--service", "api"]);
    let verdict = verify(&good, "sts.amazonaws.com", &base);
    let claims: Value =
        serde_json::from_str(verdict.strip_prefix("ok ").unwrap_or_else(|| panic!("{verdict}"))).unwrap();
    assert_eq!(claims["sub"], "paved:env:aws-dev:service:api");
    assert_eq!((claims["environment"].as_str(), claims["account"].as_str()), (Some("aws-dev"), Some("aws-test")));
    assert!(!claims["operation"].as_str().unwrap().is_empty());
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 15 * 60);

    // The verifier refuses a wrong audience, a wrong issuer and an expired token.
    assert_eq!(verify(&good, "https://other.example", &base).trim(), "InvalidAudienceError");
    assert_eq!(
        verify(&token(&["--audience", "someone-else"]), "sts.amazonaws.com", &base).trim(),
        "InvalidAudienceError"
    );
    let foreign = p.ok(&["identity", "token", "-e", "aws-dev", "--public-url=https://impostor.example"]);
    assert_eq!(verify(foreign.trim(), "sts.amazonaws.com", &base).trim(), "InvalidIssuerError");
    let short = token(&["--ttl", "1s"]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(verify(&short, "sts.amazonaws.com", &base).trim(), "ExpiredSignatureError");
    // No token lives longer than 15 minutes.
    let out = p.command(&["identity", "token", "-e", "aws-dev", "--ttl", "16m"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("15m"), "{out:?}");

    // The discovery document is what AWS, GCP and Azure read.
    let discovery = p.request("GET", "/.well-known/openid-configuration", None, &[], b"").json();
    assert_eq!(discovery["id_token_signing_alg_values_supported"], json!(["ES256"]));
    assert_eq!(discovery["jwks_uri"], format!("{base}/.well-known/jwks.json"));
}

/// The emulator's dummy root, used by the setup step only (as a platform
/// engineer with admin rights would, once per account).
const ROOT: [(&str, &str); 3] =
    [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "eu-central-1")];

/// Creates the IAM OIDC provider and the role from `paved account
/// trust-policy` output, and a KMS key with an alias; prints the key id.
const SETUP: &str = r#"
import json, sys, boto3
endpoint, setup = sys.argv[1], json.loads(sys.argv[2])
iam = boto3.client("iam", endpoint_url=endpoint)
provider = setup["oidc_provider"]
iam.create_open_id_connect_provider(Url=provider["url"], ClientIDList=provider["client_ids"])
role = setup["role_arn"].split("/")[-1]
iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(setup["trust_policy"]))
kms = boto3.client("kms", endpoint_url=endpoint)
key = kms.create_key(Description="paved secrets")["KeyMetadata"]["KeyId"]
kms.create_alias(AliasName="alias/paved", TargetKeyId=key)
print(json.dumps({"key": key, "providers": [p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]]}))
"#;

#[test]
fn paved_assumes_an_aws_role_with_its_own_token_and_uses_the_credentials_on_moto() {
    let moto = Moto::start();
    let p = platform_with_specs();
    // paved talks to the emulator; any static key in its environment must be ignored.
    let aws = |args: &[&str]| -> std::process::Output {
        let mut c = p.command(args);
        c.env("AWS_ENDPOINT_URL", &moto.url)
            .env("AWS_ACCESS_KEY_ID", "AKIASTATICKEYNOTUSED")
            .env("AWS_SECRET_ACCESS_KEY", "static-secret-not-used")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE");
        c.output().unwrap()
    };
    let ok = |args: &[&str], input: Option<&str>| -> String {
        let mut c = p.command(args);
        c.env("AWS_ENDPOINT_URL", &moto.url).env("AWS_ACCESS_KEY_ID", "AKIASTATICKEYNOTUSED");
        let out = match input {
            Some(text) => {
                use std::io::Write;
                let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
                child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
                child.wait_with_output().unwrap()
            }
            None => c.output().unwrap(),
        };
        assert!(out.status.success(), "paved {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };

    // Setup: what `paved account trust-policy` says, installed with the emulator's root.
    let setup: Value =
        serde_json::from_str(&ok(&["account", "trust-policy", "aws-test", "--control-plane", "-o", "json"], None))
            .unwrap();
    let subjects = &setup["trust_policy"]["Statement"][0]["Condition"]["StringLike"]["127.0.0.1:7480:sub"];
    assert_eq!(
        subjects,
        &json!([
            "paved:env:aws-dev",
            "paved:env:aws-dev:service:*",
            "paved:env:aws-stage",
            "paved:env:aws-stage:service:*",
            "paved:control-plane"
        ]),
        "{setup}"
    );
    let installed: Value = serde_json::from_str(&py(SETUP, &[&moto.url, &setup.to_string()], &ROOT)).unwrap();
    assert_eq!(installed["providers"][0], setup["oidc_provider"]["arn"]);

    // paved assumes the role with its own token and AWS answers as that role.
    let out = aws(&["account", "check", "aws-test", "-e", "aws-dev", "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let check: Value = serde_json::from_slice(&out.stdout).unwrap();
    let principal = check["principal"].as_str().unwrap();
    assert!(
        principal.starts_with("arn:aws:sts::123456789012:assumed-role/paved-provisioner/paved-aws-dev-"),
        "{check}"
    );
    assert_eq!(check["subject"], "paved:env:aws-dev");

    // The KMS key as the secrets' key-encryption key, reached the same way.
    let kms = "--kek=aws-kms:aws-test/alias/paved";
    ok(&["secret", "set", "API_TOKEN", "-e", "aws-dev", kms], Some("kms-wrapped-canary"));
    assert_eq!(ok(&["secret", "reveal", "API_TOKEN", "-e", "aws-dev", kms], None).trim(), "kms-wrapped-canary");
    let stored = py(
        "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select kek_id from secret_data_keys').fetchall())",
        &[p.data.path().join("state.db").to_str().unwrap()],
        &[],
    );
    assert!(stored.contains("aws-kms:aws-test/alias/paved"), "{stored}");

    // A secret under the local key file, rotated onto KMS: the key file is then not needed for it.
    ok(&["secret", "set", "LOCAL_FIRST", "-e", "aws-stage"], Some("was-local"));
    // Another environment's data key is under the other KEK: refused with what to do, nothing written.
    let out = aws(&["secret", "set", "MIXED", "-e", "aws-dev", "--from-file", "/etc/hostname"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("rotate or configure that KEK"), "{out:?}");
    let rotated: Value = serde_json::from_str(&ok(
        &["secret", "rotate-keys", "--to", "aws-kms:aws-test/alias/paved", "-o", "json"],
        None,
    ))
    .unwrap();
    assert_eq!(rotated["finished"], true);
    assert_eq!(rotated["kek_ids"], json!(["aws-kms:aws-test/alias/paved"]), "{rotated}");
    std::fs::remove_file(p.data.path().join("keys/kek")).unwrap();
    assert_eq!(ok(&["secret", "reveal", "LOCAL_FIRST", "-e", "aws-stage", kms], None).trim(), "was-local");
    assert_eq!(ok(&["secret", "reveal", "API_TOKEN", "-e", "aws-dev", kms], None).trim(), "kms-wrapped-canary");

    // An account of another provider has no AWS role to assume.
    let out = aws(&["account", "check", "local"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a local account"), "{out:?}");
}
