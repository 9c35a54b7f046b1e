//! A network partition between the leading `paved server` replica and its
//! PostgreSQL, made with Docker: three replicas and the database run in
//! containers built from this machine's files (no image is pulled), on a
//! database network (internal) and an API network (ports published on
//! 127.0.0.1); `docker network disconnect` cuts the leader off the database.
//!
//! What a user relies on, checked here: another replica runs the background
//! loops within the lease; the cut-off replica stopped its loops before that
//! and says it is not ready; the store's fence keeps its late writes out (the
//! audit checkpoints each loop signs carry their lease token, and in the
//! log's order the tokens never go down); reconnected, it rejoins as a
//! standby — one leader throughout; and the replicas that kept the database
//! answered every API request of a probe loop without a 5xx.

mod support;

use serde_json::Value;
use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Platform, try_request};

/// Runs the `docker` CLI; its output, or a panic naming what failed.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("this test needs the `docker` CLI and a running Docker Engine: {e}"));
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Containers, networks and images removed with the test, whatever happens to it.
#[derive(Default)]
struct Cleanup {
    containers: Vec<String>,
    networks: Vec<String>,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
        for n in &self.networks {
            let _ = Command::new("docker").args(["network", "rm", n]).output();
        }
        for i in &self.images {
            match Command::new("docker").args(["rmi", i]).output() {
                Ok(o) if o.status.success() => {}
                Ok(o) => eprintln!("docker rmi {i}: {}", String::from_utf8_lossy(&o.stderr)),
                Err(e) => eprintln!("docker rmi {i}: {e}"),
            }
        }
    }
}

fn ready(port: u16) -> Option<(u16, Value)> {
    try_request(port, "GET", "/readyz", None, b"")
        .map(|r| (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null)))
}

fn leader(port: u16) -> bool {
    ready(port).is_some_and(|(s, v)| s == 200 && v["leader"] == true)
}

fn until(what: &str, within: Duration, done: &dyn Fn() -> bool) -> Duration {
    until_or(what, within, done, &String::new)
}

/// [`until`], with `context()` (logs, say) in the failure message.
fn until_or(what: &str, within: Duration, done: &dyn Fn() -> bool, context: &dyn Fn() -> String) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}\n{}", context());
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

/// When a container logged lines containing `needle` (Docker's clock, this machine's).
fn logs(container: &str) -> String {
    let out = Command::new("docker").args(["logs", container]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

fn logged_at(container: &str, needle: &str) -> Vec<time::OffsetDateTime> {
    let out = Command::new("docker").args(["logs", "--timestamps", container]).output().unwrap();
    let all = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    all.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .collect()
}

#[test]
fn a_leader_cut_off_from_postgresql_stops_before_another_leads_is_fenced_and_rejoins_as_a_standby() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let api = runtime
        .block_on(paved_local::docker::connect())
        .unwrap_or_else(|e| panic!("this test needs a running Docker Engine (the project's machines have one): {e}"));
    let tag = std::process::id().to_string();
    let mut cleanup = Cleanup::default();

    // The database's files on this machine, owned by the `postgres` account, trusting the database network.
    let bin = paved_store::testing::pg_bin_dir().expect("PostgreSQL server programs (Debian package `postgresql`)");
    let cluster = tempfile::Builder::new().prefix("paved-partition-pg-").tempdir().unwrap();
    let data = cluster.path().join("data");
    let status = Command::new("chown").args(["postgres:postgres"]).arg(cluster.path()).status().unwrap();
    assert!(status.success(), "chown to the `postgres` account (created by the Debian package `postgresql`)");
    let initdb = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", "paved", "-A", "trust", "--no-sync", "--no-locale", "-E", "UTF8"])
        .output()
        .unwrap();
    assert!(initdb.status.success(), "initdb: {}", String::from_utf8_lossy(&initdb.stderr));
    std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("pg_hba.conf"))
        .unwrap()
        .write_all(b"host all all 0.0.0.0/0 trust\n")
        .unwrap();
    let (uid, gid) = {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&data).unwrap();
        (m.uid(), m.gid())
    };

    // Images from this machine's files.
    let postgres = std::fs::canonicalize(bin.join("postgres")).unwrap();
    let pg_image = runtime.block_on(paved_local::postgres::postgres_image(&api, &postgres, uid, gid)).unwrap();
    let paved_image = runtime
        .block_on(async {
            use paved_local::docker::rootfs::{ImageConfig, RootFs};
            let mut fs = RootFs::new();
            fs.file(std::path::Path::new(env!("CARGO_BIN_EXE_paved")), "/usr/local/bin/paved")?;
            fs.with_libraries()?;
            let config = ImageConfig { entrypoint: vec!["/usr/local/bin/paved".into()], ..Default::default() };
            fs.build(&api, "paved-test/partition", &config).await
        })
        .unwrap();
    // A debug build's image is as large as its binary and changes with every build: not kept.
    cleanup.images.push(paved_image.clone());

    // Networks: the database's (internal) and the API's; fixed addresses, so a reconnected replica keeps its own.
    // The first free /24 of 10.231.0.0/16 from one picked by the process id (another run may hold one).
    let (db_net, api_net) = (format!("paved-part-db-{tag}"), format!("paved-part-api-{tag}"));
    let octet = (0..40)
        .map(|i| (std::process::id() + i) % 240 + 10)
        .find(|octet| {
            let subnet = format!("10.231.{octet}.0/24");
            Command::new("docker")
                .args(["network", "create", "--internal", "--subnet", &subnet, &db_net])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("no free /24 in 10.231.0.0/16 for the test's database network (`docker network ls`)");
    cleanup.networks.push(db_net.clone());
    docker(&["network", "create", &api_net]);
    cleanup.networks.push(api_net.clone());
    let ip = |n: u32| format!("10.231.{octet}.{n}");

    let pg = format!("paved-part-pg-{tag}");
    let mount = format!("{}:{}", cluster.path().display(), paved_local::postgres::CONTAINER_DIR);
    let pg_data = format!("{}/data", paved_local::postgres::CONTAINER_DIR);
    let socket_dir = format!("unix_socket_directories={}", paved_local::postgres::CONTAINER_DIR);
    docker(&[
        "run",
        "-d",
        "--name",
        &pg,
        "--network",
        &db_net,
        "--ip",
        &ip(2),
        "--network-alias",
        "db",
        "-v",
        &mount,
        &pg_image,
        &postgres.display().to_string(),
        "-D",
        &pg_data,
        "-c",
        "listen_addresses=*",
        "-c",
        &socket_dir,
        "-c",
        "fsync=off",
        "-c",
        "log_statement=mod",
        "-c",
        "log_line_prefix=%m %h ",
    ]);
    cleanup.containers.push(pg.clone());

    // This machine reaches the database through its socket in the mounted directory.
    let mut p = Platform::new();
    p.state = Some(format!("postgres://paved@localhost/postgres?host={}&sslmode=disable", cluster.path().display()));
    let started = Instant::now();
    while !cluster.path().join(".s.PGSQL.5432").exists() {
        let logs = Command::new("docker").args(["logs", &pg]).output().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "PostgreSQL in its container did not open its socket within 30 s: {}{}",
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    p.ok_with_input(
        &["apply", "-f", "-"],
        "apiVersion: paved.dev/v1alpha1\nkind: RoleBinding\nmetadata:\n  name: e2e-viewer\nspec:\n  role: viewer\n  \
         subjects: [serviceaccount:e2e-viewer]\n  scope: organisation\n",
    );
    let (_, viewer) = p.token("viewer", "serviceaccount:e2e-viewer", None);

    // Three replicas: the API network first (its published port), then the database network.
    let data_dir = p.data.path().display().to_string();
    let mut ports = Vec::new();
    let mut names = Vec::new();
    for i in 0..3u32 {
        let name = format!("paved-part-r{i}-{tag}");
        let volume = format!("{data_dir}:{data_dir}");
        let replica = format!("replica-{i}");
        docker(&[
            "create",
            "--name",
            &name,
            "--network",
            &api_net,
            "-p",
            "127.0.0.1::7480",
            "-v",
            &volume,
            "-e",
            &format!("PAVED_DATA_DIR={data_dir}"),
            "-e",
            &format!("PAVED_CONFIG_DIR={data_dir}/config"),
            "-e",
            "PAVED_STATE=postgres://paved@db:5432/postgres?sslmode=disable",
            "-e",
            "NO_COLOR=1",
            &paved_image,
            "server",
            "--listen",
            "0.0.0.0:7480",
            "--replica-id",
            &replica,
            "--lease-ttl",
            "3s",
            "--reconcile-interval",
            "1s",
            "--audit-checkpoint-interval",
            "500ms",
        ]);
        cleanup.containers.push(name.clone());
        docker(&["network", "connect", "--ip", &ip(10 + i), &db_net, &name]);
        docker(&["start", &name]);
        let published = docker(&["port", &name, "7480/tcp"]);
        let port: u16 = published.lines().next().and_then(|l| l.rsplit(':').next()).unwrap().parse().unwrap();
        ports.push(port);
        names.push(name);
    }
    until("three replicas ready", Duration::from_secs(30), &|| {
        ports.iter().all(|p| ready(*p).is_some_and(|(s, _)| s == 200))
    });
    until("one leader", Duration::from_secs(15), &|| ports.iter().filter(|p| leader(**p)).count() == 1);
    let first = ports.iter().position(|p| leader(*p)).unwrap();
    let first_token = ready(ports[first]).unwrap().1["lease_token"].as_i64().unwrap();

    // The probe loop: on every replica, a read and a denied token request (an audit event, so
    // there is always something for the leader's checkpoints to sign).
    let stop = Arc::new(AtomicBool::new(false));
    // (replica index, status if any answered).
    type Seen = Vec<(usize, Option<u16>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    // One thread per replica, so one that hangs (the cut-off one) does not slow the others.
    let probes: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let (stop, seen, port, viewer) = (stop.clone(), seen.clone(), *port, viewer.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let read = try_request(port, "GET", "/api/v1/environments", Some(&viewer), b"").map(|r| r.status);
                    let write = try_request(port, "POST", "/api/v1/tokens", Some(&viewer), b"{}").map(|r| r.status);
                    seen.lock().unwrap().extend([(i, read), (i, write)]);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect();
    until_or(
        "a checkpoint signed by the first leader",
        Duration::from_secs(15),
        &|| !logged_at(&names[first], "audit checkpoint signed").is_empty(),
        &|| logs(&names[first]),
    );

    // Cut the leader off the database.
    let cut_at = seen.lock().unwrap().len();
    docker(&["network", "disconnect", &db_net, &names[first]]);
    let others: Vec<usize> = (0..3).filter(|i| *i != first).collect();
    let failover =
        until("another replica leads", Duration::from_secs(20), &|| others.iter().any(|i| leader(ports[*i])));
    let second = *others.iter().find(|i| leader(ports[**i])).unwrap();
    let second_token = ready(ports[second]).unwrap().1["lease_token"].as_i64().unwrap();
    assert!(second_token > first_token, "a takeover gets a newer token: {first_token} → {second_token}");
    // The cut-off replica says it is not ready (within the probe's timeout) and no longer leads.
    let (status, body) = ready(ports[first]).expect("the cut-off replica answers /readyz in time");
    assert_eq!(status, 503, "{body}");
    // Its loops stopped before the other replica took the lease (both clocks are this machine's).
    let stopped = logged_at(&names[first], "background loops stopped");
    let took = logged_at(&names[second], "took the background lease");
    assert!(!stopped.is_empty(), "the cut-off leader never stopped its loops");
    assert!(stopped[0] < took[0], "the cut-off leader stopped at {} but another led from {}", stopped[0], took[0]);
    // If the cut caught the leader inside a transaction, its locks (the audit chain's) are held until
    // PostgreSQL ends the silent session (the store's 5 s idle-in-transaction limit), not TCP's 15 minutes.
    until_or(
        "a checkpoint signed by the new leader",
        Duration::from_secs(30),
        &|| !logged_at(&names[second], "audit checkpoint signed").is_empty(),
        &|| logs(&names[second]),
    );
    std::thread::sleep(Duration::from_secs(2));

    // Reconnected with its address: it rejoins as a standby; one leader at every look.
    docker(&["network", "connect", "--ip", &ip(10 + first as u32), &db_net, &names[first]]);
    until("the cut-off replica is ready again", Duration::from_secs(30), &|| {
        ready(ports[first]).is_some_and(|(s, _)| s == 200)
    });
    for _ in 0..20 {
        let leading: Vec<usize> = (0..3).filter(|i| leader(ports[*i])).collect();
        assert_eq!(leading, [second], "one leader, the one that took over");
        std::thread::sleep(Duration::from_millis(150));
    }
    stop.store(true, Ordering::SeqCst);
    probes.into_iter().for_each(|p| p.join().unwrap());

    // The probe loop: no 5xx and no unanswered request from the replicas that kept the database.
    let seen = seen.lock().unwrap();
    let bad: Vec<_> =
        seen[cut_at..].iter().filter(|(i, status)| *i != first && !status.is_some_and(|s| s < 500)).collect();
    assert!(bad.is_empty(), "replicas that kept the database failed {} of {} requests: {bad:?}", bad.len(), seen.len());
    assert!(seen.iter().any(|(_, s)| *s == Some(403)), "the probe's denied writes were answered");

    // Fencing, read from the store: checkpoints in the log's order never go back to an older lease
    // token, and the cut-off leader's last one precedes the new leader's first.
    let out = p.ok(&["audit", "list", "--action", "audit.checkpoint", "--limit", "1000", "-o", "json"]);
    let events: Value = serde_json::from_str(&out).unwrap();
    let mut checkpoints: Vec<(i64, i64, String)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let signer = &e["details"]["signer"];
            (
                e["seq"].as_i64().unwrap(),
                signer["lease_token"].as_i64().unwrap(),
                signer["replica"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    checkpoints.sort();
    let tokens: Vec<i64> = checkpoints.iter().map(|c| c.1).collect();
    assert!(
        tokens.windows(2).all(|w| w[0] <= w[1]),
        "a checkpoint under an older lease landed after a newer one: {checkpoints:?}"
    );
    assert!(checkpoints.iter().any(|c| c.1 == first_token && c.2 == format!("replica-{first}")), "{checkpoints:?}");
    assert!(checkpoints.iter().any(|c| c.1 == second_token && c.2 == format!("replica-{second}")), "{checkpoints:?}");
    assert!(p.ok(&["audit", "verify"]).contains("intact"));
    eprintln!(
        "partition: another replica led {failover:?} after the cut (lease 3 s); {} probe requests, {} checkpoints",
        seen.len(),
        checkpoints.len()
    );
    drop(cleanup);
}
