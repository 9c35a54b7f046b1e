//! End-to-end on the local provider's built-in `amqp`: a platform RabbitMQ
//! (Debian `rabbitmq-server`) managed by paved, a vhost and a user per
//! resource. A producer and a consumer sharing one broker resource (Score
//! `id`) exchange a message through it with real AMQP clients (Debian
//! `amqp-tools`); the same consumer in another environment cannot open the
//! first one's vhost; the last vhost's destroy stops the node.

mod support;

use support::Platform;

fn score(name: &str, script: &str) -> String {
    format!(
        "apiVersion: score.dev/v1b1\nmetadata:\n  name: {name}\n  annotations:\n    paved.dev/owner: platform\n\
         containers:\n  main:\n    image: registry.example.com/test/amqp-tools:1\n    \
         command: [\"/bin/sh\", \"-c\", \"{script}; exec sleep 600\"]\n    variables:\n      \
         URL: amqp://${{resources.bus.username}}:${{resources.bus.password}}@${{resources.bus.host}}:${{resources.bus.port}}/${{resources.bus.vhost}}\n      \
         OTHER: amqp://${{resources.bus.username}}:${{resources.bus.password}}@${{resources.bus.host}}:${{resources.bus.port}}/dev_orders_bus\n\
         resources:\n  bus:\n    type: amqp\n    id: orders-bus\n"
    )
}

fn written(p: &Platform, env: &str, service: &str, file: &str) -> String {
    let path =
        p.data.path().join(format!("local/envs/{env}/workloads/{service}/slots/blue/containers/main/root/{file}"));
    support::wait_for(&format!("{env}'s {service} to write {file}"), 90, || {
        std::fs::read_to_string(&path).ok().filter(|t| !t.trim().is_empty())
    })
}

#[test]
fn a_producer_and_a_consumer_exchange_a_message_through_the_platform_rabbitmq_and_no_other_environment_gets_in() {
    let p = Platform::new();
    let _down = support::Down::of(&p);
    p.ok(&["apply", "-f", "examples/platform"]);
    p.ok(&["apply", "-f", "examples/environments/local.yaml"]);
    let tools = support::tools_bundle(
        &p.data.path().join("tools"),
        &["sh", "sleep", "cat", "amqp-publish", "amqp-consume", "amqp-declare-queue"],
    );
    p.ok(&["image", "import", tools.to_str().unwrap(), "--tag", "registry.example.com/test/amqp-tools:1"]);
    let declare = "amqp-declare-queue -u $URL -q orders -d > /dev/null";
    p.ok_with_input(
        &["apply", "-f", "-"],
        &score(
            "producer",
            &format!("{declare} && amqp-publish -u $URL -r orders -b \\\"order 42 from $PAVED_ENVIRONMENT\\\""),
        ),
    );
    p.ok_with_input(
        &["apply", "-f", "-"],
        &score(
            "consumer",
            &format!(
                "{declare} && amqp-consume -u $URL -q orders -c 1 cat > $PAVED_ROOT/got 2>&1; \
                 amqp-declare-queue -u $OTHER -q stolen > $PAVED_ROOT/other 2>&1"
            ),
        ),
    );

    let plan = p.ok(&["plan", "-e", "dev"]);
    assert!(
        plan.contains("+ local.rabbitmq.server/platform") && plan.contains("+ local.rabbitmq.vhost/orders-bus"),
        "{plan}"
    );
    p.ok(&["apply", "-e", "dev"]);
    p.ok(&["apply", "-e", "staging"]);

    // Each environment's consumer gets its own environment's message.
    assert_eq!(written(&p, "dev", "consumer", "got").trim(), "order 42 from dev");
    assert_eq!(written(&p, "staging", "consumer", "got").trim(), "order 42 from staging");
    // Staging's credentials do not open dev's vhost (dev's own do).
    let refused = written(&p, "staging", "consumer", "other");
    assert!(
        refused.contains("ACCESS_REFUSED") || refused.contains("access") || refused.contains("refused"),
        "{refused}"
    );
    let own = written(&p, "dev", "consumer", "other");
    assert_eq!(own.trim(), "stolen", "dev reaches its own vhost: {own}");

    // The password is sealed: the graph holds a reference, not the value.
    let graph = p.ok(&["plan", "-e", "dev", "--graph"]);
    assert!(graph.contains("${ref:local.rabbitmq.vhost/orders-bus.password}"), "{graph}");
    // Applied again: the vhost is observed as paved left it.
    assert!(p.ok(&["plan", "-e", "dev"]).contains("0 to add, 0 to change, 0 to replace, 0 to destroy"));
    let again = p.ok(&["apply", "-e", "dev"]);
    assert!(!again.contains("rabbitmq.vhost/orders-bus"), "{again}");

    // Destroying dev keeps the node staging uses; destroying staging too stops it.
    p.ok(&["destroy", "-e", "dev"]);
    p.ok(&["destroy", "-e", "staging"]);
    let plan = p.ok(&["plan", "-e", "staging"]);
    assert!(plan.contains("+ local.rabbitmq.server/platform"), "the node is gone with its last vhost:\n{plan}");
}
