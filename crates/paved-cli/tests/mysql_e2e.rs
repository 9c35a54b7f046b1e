//! End-to-end on the local provider's built-in `mysql`: a platform MariaDB
//! (Debian `mariadb-server`) managed by paved, one database and user per
//! resource. A real workload creates a table and reads its rows with the
//! `mariadb` client; the same service in another environment cannot open
//! the first one's database, nor log in as MariaDB's root; the password is
//! sealed; destroying the last database stops the server.

mod support;

use support::Platform;

/// Creates a table, inserts a row and reads it back in its own database,
/// then tries dev's database and MariaDB's root account.
const SHOP: &str = "apiVersion: score.dev/v1b1\nmetadata:\n  name: shop\n  annotations:\n    \
paved.dev/owner: platform\ncontainers:\n  main:\n    image: registry.example.com/test/mysql-tools:1\n    \
command: [\"/bin/sh\", \"-c\", \"M='mariadb --no-defaults -N -h '$H' -P '$P' -u '$U; \
$M $D -e 'CREATE TABLE IF NOT EXISTS items (n INT); INSERT INTO items VALUES (42); SELECT n FROM items;' > $PAVED_ROOT/rows 2>&1; \
$M -e 'SELECT count(*) FROM dev_shop_db.items;' > $PAVED_ROOT/other 2>&1; \
MYSQL_PWD= mariadb --no-defaults -h $H -P $P -u root -e 'SELECT 1;' > $PAVED_ROOT/root 2>&1; \
exec sleep 600\"]\n    variables:\n      H: ${resources.db.host}\n      P: ${resources.db.port}\n      \
U: ${resources.db.username}\n      D: ${resources.db.database}\n      MYSQL_PWD: ${resources.db.password}\n\
resources:\n  db:\n    type: mysql\n";

fn written(p: &Platform, env: &str, file: &str) -> String {
    let path = p.data.path().join(format!("local/envs/{env}/workloads/shop/slots/blue/containers/main/root/{file}"));
    support::wait_for(&format!("{env}'s shop to write {file}"), 60, || {
        std::fs::read_to_string(&path).ok().filter(|t| !t.trim().is_empty())
    })
}

#[test]
fn a_mysql_resource_gets_its_own_database_on_the_platform_mariadb_and_no_other() {
    let p = Platform::new();
    let _down = support::Down::of(&p);
    p.ok(&["apply", "-f", "examples/platform"]);
    p.ok(&["apply", "-f", "examples/environments/local.yaml"]);
    let tools = support::tools_bundle(&p.data.path().join("tools"), &["sh", "sleep", "mariadb"]);
    p.ok(&["image", "import", tools.to_str().unwrap(), "--tag", "registry.example.com/test/mysql-tools:1"]);
    p.ok_with_input(&["apply", "-f", "-"], SHOP);

    let plan = p.ok(&["plan", "-e", "dev"]);
    assert!(
        plan.contains("+ local.mysql.server/platform") && plan.contains("+ local.mysql.database/shop-db"),
        "{plan}"
    );
    p.ok(&["apply", "-e", "dev"]);
    p.ok(&["apply", "-e", "staging"]);

    // Each reads its own rows.
    assert_eq!(written(&p, "dev", "rows").trim(), "42");
    assert_eq!(written(&p, "staging", "rows").trim(), "42");
    // Dev opens its own database by name; staging's credentials cannot open dev's.
    assert_eq!(written(&p, "dev", "other").trim(), "1");
    let denied = written(&p, "staging", "other");
    assert!(denied.contains("command denied to user 'staging_shop_db'"), "{denied}");
    // Nobody logs in as MariaDB's root without paved's password.
    let root = written(&p, "staging", "root");
    assert!(root.contains("Access denied for user 'root'"), "{root}");

    // The generated password is sealed in the vault, not in the state store.
    let status = p.ok(&["status", "-o", "json"]);
    assert!(!status.contains("MYSQL_PWD"), "{status}");
    let graph = p.ok(&["plan", "-e", "dev", "--graph"]);
    assert!(graph.contains("${ref:local.mysql.database/shop-db.password}"), "{graph}");

    // Applied again: nothing to do, and the observed database is paved's as it left it.
    assert!(p.ok(&["plan", "-e", "dev"]).contains("0 to add, 0 to change, 0 to replace, 0 to destroy"));
    let again = p.ok(&["apply", "-e", "dev"]);
    assert!(!again.contains("mysql.database/shop-db"), "{again}");

    // Destroying dev drops its database and keeps the server staging uses; destroying staging too stops it.
    p.ok(&["destroy", "-e", "dev"]);
    assert_eq!(written(&p, "staging", "rows").trim(), "42");
    p.ok(&["destroy", "-e", "staging"]);
    let plan = p.ok(&["plan", "-e", "staging"]);
    assert!(plan.contains("+ local.mysql.server/platform"), "the server is gone with its last database:\n{plan}");
}
