//! Drivers of the platform provisioners that run something
//! (`paved_plan::provision`): a program or a Terraform module the server's
//! administrator installed in the provisioner directory
//! ([`Config::provisioner_dir`]: `PAVED_PROVISIONERS`, default
//! `DATA/provisioners`). A blueprint names them; it cannot name anything
//! else, so an operator who may write blueprints runs only what the
//! administrator put there.
//!
//! Both run in the workloads' sandbox (`crate::sandbox`) as the
//! environment's unprivileged user, with the host's programs read-only
//! (`host_tools`), the provisioner directory's entries at `/`, a working
//! directory of their own (`DATA/local/provisioners/ENV/KEY`) and a clean
//! environment (`PATH`, `HOME`): nothing of paved's data directory, its keys,
//! its store or its own credentials.
//!
//! | kind              | create / update                                   | delete                      | observe |
//! |-------------------|---------------------------------------------------|-----------------------------|---------|
//! | `paved.command`   | run `/PROGRAM ARGS…`, stdin `{"action": "apply", …request}`, stdout `{"outputs": {…}}` with every declared output | run with `"action": "delete"` | not observed: the program's resource is its own; it runs again when its inputs change |
//! | `paved.terraform` | copy the module in, `terraform init`, `apply` with the variables and paved's state, `output -json` | `terraform destroy`, then the state is forgotten | `terraform plan -detailed-exitcode`: no state is absent, changes (a module edit, drift) are a difference |
//!
//! The program's contract: `apply` is idempotent (paved runs it again after a
//! crash, before it recorded the answer), exit 0 means done, anything on
//! stderr is shown when it fails. A run that outlives its `timeout` is
//! killed. The answer must be one JSON object `{"outputs": {NAME: VALUE}}`
//! holding every declared output and secret; secrets are sealed in the
//! vault like every credential.
//!
//! Terraform runs with `-lock=false` (paved's environment lock already
//! serialises applies, and a killed run would leave a stale lock) and
//! `CHECKPOINT_DISABLE=1`; its state file lives in the working directory.

use crate::Config;
use crate::sandbox::{self, Sandbox};
use async_trait::async_trait;
use paved_engine::driver::{Driver, DriverError, Observation, Outputs, Resource};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Keeps the tail of a long stderr: the end says what went wrong.
const STDERR_TAIL: usize = 2000;

fn permanent(e: impl std::fmt::Display) -> DriverError {
    DriverError::Permanent(e.to_string())
}

/// What a provisioner's run answered.
struct Ran {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// The end of stderr, trimmed, or a note that there was none.
    fn stderr_tail(&self) -> String {
        let text = self.stderr.trim();
        if text.is_empty() {
            return "(nothing on stderr)".into();
        }
        let cut = text.len().saturating_sub(STDERR_TAIL);
        let cut = (cut..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        format!("{}{}", if cut > 0 { "…" } else { "" }, &text[cut..])
    }
}

/// A resource's working directory and sandbox.
struct Place {
    dir: PathBuf,
    sandbox: Sandbox,
}

fn place(config: &Config, r: &Resource) -> Result<Place, DriverError> {
    let image = config.provisioner_dir();
    let dir = config.local_dir().join("provisioners").join(&r.environment).join(&r.name);
    std::fs::create_dir_all(&dir).map_err(|e| DriverError::Retryable(format!("{}: {e}", dir.display())))?;
    let sandbox =
        Sandbox { image, root: dir.clone(), volumes: vec![], uid: sandbox::uid_for(&r.environment), host_tools: true };
    sandbox.hand_over(&dir).map_err(|e| DriverError::Retryable(format!("{}: {e}", dir.display())))?;
    Ok(Place { dir, sandbox })
}

/// Runs `program args…` (a path inside the sandbox) in `place`, `stdin`
/// written to it, killed after `timeout`.
async fn run(place: &Place, program: &str, args: &[String], stdin: &[u8], timeout: Duration) -> Result<Ran, String> {
    let mut c = place.sandbox.command(program, args)?;
    c.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &place.dir)
        .env("LANG", "C.UTF-8")
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .current_dir(&place.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut c = tokio::process::Command::from(c);
    c.kill_on_drop(true);
    let mut child = c.spawn().map_err(|e| format!("starting the sandbox: {e}"))?;
    let input = child.stdin.take();
    // The timeout covers writing the request too: a program that fills its
    // output before reading its input must not hang the apply.
    let work = async move {
        if let Some(mut input) = input {
            // A program that exits without reading its input is not an error here.
            let _ = input.write_all(stdin).await;
        } // Dropped: the program sees the end of its input.
        child.wait_with_output().await
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => Err(format!("did not finish within {}s and was stopped", timeout.as_secs())),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(out)) => Ok(Ran {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }),
    }
}

fn timeout_of(r: &Resource, default: u64) -> Duration {
    Duration::from_secs(r.properties["timeoutSeconds"].as_u64().unwrap_or(default).max(1))
}

fn names(r: &Resource, field: &str) -> Vec<String> {
    r.properties[field].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect()
}

/// The declared outputs and secrets of `answer`, or which are missing.
fn declared(r: &Resource, answer: &serde_json::Map<String, Value>, who: &str) -> Result<Outputs, DriverError> {
    let wanted: Vec<String> = names(r, "outputs").into_iter().chain(names(r, "secrets")).collect();
    let missing: Vec<&String> = wanted.iter().filter(|n| !answer.contains_key(*n)).collect();
    if !missing.is_empty() {
        let list = |v: Vec<&String>| v.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        return Err(permanent(format!(
            "{who} omits the declared output{} {} (it answered {})",
            if missing.len() == 1 { "" } else { "s" },
            list(missing),
            if answer.is_empty() { "none".into() } else { list(answer.keys().collect()) }
        )));
    }
    Ok(wanted.into_iter().filter_map(|n| answer.get(&n).map(|v| (n.clone(), v.clone()))).collect())
}

/// `paved.command`: a program that answers JSON.
pub struct CommandDriver {
    pub config: Arc<Config>,
}

impl CommandDriver {
    async fn call(&self, r: &Resource, action: &str) -> Result<Ran, DriverError> {
        let program = r.properties["program"].as_str().unwrap_or_default();
        let dir = self.config.provisioner_dir();
        let who = format!("provisioner program `{program}`");
        if program.is_empty() || program.contains('/') || !dir.join(program).is_file() {
            return Err(permanent(format!(
                "{who} is not installed: the server runs only programs in its provisioner directory {} \
                 (PAVED_PROVISIONERS); install it there, executable, or change the blueprint",
                dir.display()
            )));
        }
        let place = place(&self.config, r)?;
        let mut request = r.properties["request"].clone();
        request["action"] = json!(action);
        let args = names(r, "args");
        let ran = run(&place, &format!("/{program}"), &args, request.to_string().as_bytes(), timeout_of(r, 60))
            .await
            .map_err(|e| permanent(format!("{who} ({action}) {e}")))?;
        if !ran.status.success() {
            return Err(permanent(format!(
                "{who} failed ({action}, {}): {}",
                ran.status.code().map_or("killed".into(), |c| format!("exit {c}")),
                ran.stderr_tail()
            )));
        }
        Ok(ran)
    }
}

/// `e` saying which Score resource it concerns (the node's key names the service).
fn about(r: &Resource, e: DriverError) -> DriverError {
    let name = r.properties.pointer("/request/resource/name").or_else(|| r.properties.get("resource"));
    let name = name.and_then(Value::as_str).unwrap_or(&r.name);
    let at = |m: String| format!("resource `{name}`: {m}");
    match e {
        DriverError::Permanent(m) => DriverError::Permanent(at(m)),
        DriverError::Retryable(m) => DriverError::Retryable(at(m)),
    }
}

#[async_trait]
impl Driver for CommandDriver {
    async fn observe(&self, _: &Resource) -> Result<Observation, DriverError> {
        Ok(Observation::Absent)
    }
    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.answer(r).await.map_err(|e| about(r, e))
    }
    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.create(r).await
    }
    /// A program that is no longer installed fails the delete (what it made
    /// would be left behind unseen): reinstall it, then destroy again.
    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        self.call(r, "delete").await.map_err(|e| about(r, e))?;
        crate::remove_dir(&self.config.local_dir().join("provisioners").join(&r.environment).join(&r.name))
            .map_err(DriverError::Retryable)
    }
    fn has_external_state(&self) -> bool {
        false
    }
}

impl CommandDriver {
    /// Runs `apply` and checks the answer.
    async fn answer(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let ran = self.call(r, "apply").await?;
        let who = format!("provisioner program `{}`", r.properties["program"].as_str().unwrap_or_default());
        let answer: Value = serde_json::from_str(ran.stdout.trim()).map_err(|e| {
            permanent(format!(
                "{who} printed invalid JSON on stdout ({e}); it must print one object like \
                 {{\"outputs\": {{\"host\": \"…\"}}}}"
            ))
        })?;
        let Some(outputs) = answer.get("outputs").and_then(Value::as_object) else {
            return Err(permanent(format!(
                "{who} answered without an `outputs` object; it must print {{\"outputs\": {{…}}}}"
            )));
        };
        declared(r, outputs, &who)
    }
}

/// `paved.terraform`: a module applied per resource.
pub struct TerraformDriver {
    pub config: Arc<Config>,
}

const STATE: &str = "terraform.tfstate";
/// Where the sandbox shows the host's programs (`Sandbox::host_tools`).
const TOOL_PREFIXES: [&str; 3] = ["/usr/", "/bin/", "/sbin/"];

impl TerraformDriver {
    fn who(r: &Resource) -> String {
        format!("terraform module `{}`", r.properties["module"].as_str().unwrap_or_default())
    }

    /// The working directory with the module's current files and the
    /// variables written, initialised.
    async fn prepare(&self, r: &Resource) -> Result<Place, DriverError> {
        let module = r.properties["module"].as_str().unwrap_or_default();
        let source = self.config.provisioner_dir().join(module);
        if module.is_empty() || module.contains('/') || !source.is_dir() {
            return Err(permanent(format!(
                "{} is not installed: the server applies only modules in its provisioner directory {} \
                 (PAVED_PROVISIONERS); put the module's directory there, or change the blueprint",
                Self::who(r),
                self.config.provisioner_dir().display()
            )));
        }
        let place = place(&self.config, r)?;
        copy_module(&source, &place.dir).map_err(|e| permanent(format!("copying {}: {e}", Self::who(r))))?;
        let vars = r.properties.get("variables").cloned().unwrap_or(json!({}));
        std::fs::write(place.dir.join("paved.auto.tfvars.json"), vars.to_string())
            .map_err(|e| DriverError::Retryable(e.to_string()))?;
        place.sandbox.hand_over(&place.dir).map_err(|e| DriverError::Retryable(e.to_string()))?;
        // Offline and quick (a module may have gained a provider since the last run).
        self.terraform(r, &place, &["init", "-input=false", "-no-color"]).await?;
        Ok(place)
    }

    async fn terraform(&self, r: &Resource, place: &Place, args: &[&str]) -> Result<Ran, DriverError> {
        let bin = sandbox::find("terraform").or_else(|| sandbox::find("tofu")).ok_or_else(|| {
            permanent(format!(
                "{} needs `terraform` (or OpenTofu's `tofu`) on PATH, which is not installed",
                Self::who(r)
            ))
        })?;
        if !TOOL_PREFIXES.iter().any(|p| bin.starts_with(p)) {
            return Err(permanent(format!(
                "{} runs `terraform` in the provisioner sandbox, which sees the host's programs only under \
                 /usr and /bin; {} is elsewhere (install it in /usr/local/bin)",
                Self::who(r),
                bin.display()
            )));
        }
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let ran = run(place, &bin.display().to_string(), &args, b"", timeout_of(r, 600))
            .await
            .map_err(|e| permanent(format!("{} (`terraform {}`) {e}", Self::who(r), args[0])))?;
        // `plan -detailed-exitcode` answers 2 for "changes present".
        let changes = args.iter().any(|a| a == "-detailed-exitcode") && ran.status.code() == Some(2);
        if !ran.status.success() && !changes {
            return Err(permanent(format!("{} failed (`terraform {}`): {}", Self::who(r), args[0], ran.stderr_tail())));
        }
        Ok(ran)
    }

    /// The declared outputs, from `terraform output -json`.
    async fn outputs(&self, r: &Resource, place: &Place) -> Result<Outputs, DriverError> {
        let ran = self.terraform(r, place, &["output", "-json", "-no-color"]).await?;
        let all: serde_json::Map<String, Value> = serde_json::from_str(ran.stdout.trim())
            .map_err(|e| permanent(format!("{}: `terraform output -json` printed invalid JSON: {e}", Self::who(r))))?;
        let secrets = names(r, "secrets");
        if let Some((name, _)) = all.iter().find(|(n, v)| v["sensitive"] == json!(true) && !secrets.contains(n)) {
            return Err(permanent(format!(
                "{}: output `{name}` is sensitive, so paved keeps it sealed only if the provisioner lists it \
                 under `secrets`",
                Self::who(r)
            )));
        }
        let values = all.into_iter().map(|(n, v)| (n, v["value"].clone())).collect();
        declared(r, &values, &Self::who(r))
    }
}

impl TerraformDriver {
    async fn look(&self, r: &Resource) -> Result<Observation, DriverError> {
        let state = self.config.local_dir().join("provisioners").join(&r.environment).join(&r.name).join(STATE);
        if !state.is_file() {
            return Ok(Observation::Absent);
        }
        let place = self.prepare(r).await?;
        let plan = ["plan", "-detailed-exitcode", "-input=false", "-lock=false", "-no-color"];
        let ran = self.terraform(r, &place, &plan).await?;
        if ran.status.code() == Some(2) {
            // A difference the engine answers with `update` (an apply), whose outputs count.
            let properties = json!({"terraformPlan": "changes pending"});
            return Ok(Observation::Present { properties, outputs: Outputs::new(), ready: true });
        }
        Ok(Observation::Present {
            properties: r.properties.clone(),
            outputs: self.outputs(r, &place).await?,
            ready: true,
        })
    }
    async fn apply(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let place = self.prepare(r).await?;
        self.terraform(r, &place, &["apply", "-auto-approve", "-input=false", "-lock=false", "-no-color"]).await?;
        self.outputs(r, &place).await
    }
    async fn remove(&self, r: &Resource) -> Result<(), DriverError> {
        let dir = self.config.local_dir().join("provisioners").join(&r.environment).join(&r.name);
        if dir.join(STATE).is_file() {
            let place = self.prepare(r).await?;
            self.terraform(r, &place, &["destroy", "-auto-approve", "-input=false", "-lock=false", "-no-color"])
                .await?;
        }
        crate::remove_dir(&dir).map_err(DriverError::Retryable)
    }
}

#[async_trait]
impl Driver for TerraformDriver {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        self.look(r).await.map_err(|e| about(r, e))
    }
    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.apply(r).await.map_err(|e| about(r, e))
    }
    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.apply(r).await.map_err(|e| about(r, e))
    }
    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        self.remove(r).await.map_err(|e| about(r, e))
    }
}

/// The module's files copied over `to` (its state and Terraform's own
/// directory left as they are), so an edit of the module is applied.
fn copy_module(from: &Path, to: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let name = e.file_name();
        let text = name.to_string_lossy();
        if text.starts_with(".terraform") || text.starts_with("terraform.tfstate") {
            continue;
        }
        let target = to.join(&name);
        let kind = e.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_module(&e.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}
