//! `paved plan -e ENV`: the resource graph of an environment and what
//! applying it would change, terraform-style.

use crate::Failure;
use crate::cli::Runtime;
use crate::commands::{Ctx, open, open_store};
use crate::output::structured;
use paved_catalog::{Catalog, EnvironmentContext};
use paved_plan::{Action, Capabilities, PlanInput, ResourceGraph};

/// What this machine offers the local provider. Planning is pure; detection
/// happens here, at the edge. Containers are planned when asked for
/// (`--runtime`), else when the environment already runs on them, else when
/// a Docker Engine answers: an environment does not flip runtime (which
/// replaces everything) because the engine was down for a moment.
async fn detect_capabilities(ctx: &Ctx, environment: &str) -> Result<Capabilities, Failure> {
    let on_path = |bin: &str| {
        std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(bin).is_file()))
    };
    let docker = match ctx.runtime {
        Some(r) => r == Runtime::Docker,
        None => {
            let applied =
                open_store(ctx).await?.applied_nodes(environment).await.map_err(|e| Failure::Internal(e.into()))?;
            match applied.iter().find(|n| n.node_id.starts_with("local.network/")) {
                Some(n) => n.node["properties"]["runtime"] == "docker",
                None => paved_local::docker::available().await,
            }
        }
    };
    Ok(Capabilities { docker, redis_server: on_path("redis-server") })
}

fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The desired resource graph of an environment, from the recorded specs.
pub(crate) async fn desired_graph(
    ctx: &Ctx,
    catalog: &Catalog,
    environment: &str,
) -> Result<(ResourceGraph, EnvironmentContext), Failure> {
    let c = catalog.environment_context(environment).await?;
    let input = PlanInput {
        environment: &c.environment,
        blueprint: &c.blueprint,
        account: &c.account,
        services: c.services.iter().collect(),
        capabilities: detect_capabilities(ctx, environment).await?,
    };
    let graph = paved_plan::plan(&input).map_err(|errors| {
        for e in &errors {
            eprintln!("error: {e}");
        }
        eprintln!("error: environment `{environment}` cannot be planned ({} problem(s))", errors.len());
        Failure::Reported
    })?;
    Ok((graph, c))
}

pub async fn plan(ctx: &Ctx, environment: &str, print_graph: bool) -> Result<(), Failure> {
    let catalog = open(ctx).await?;
    let (graph, c) = desired_graph(ctx, &catalog, environment).await?;
    if print_graph {
        print!("{}", String::from_utf8_lossy(&graph.to_bytes()));
        return Ok(());
    }
    let engine = paved_engine::Engine::new(
        open_store(ctx).await?,
        paved_engine::Drivers::default(),
        std::sync::Arc::new(paved_catalog::SystemClock),
    );
    let (applied, _) = engine.applied(environment, graph.provider).await.map_err(crate::provision::engine_failure)?;
    let plan = paved_plan::diff(&graph, Some(&applied)).map_err(|e| Failure::User(e.to_string()))?;
    if let Some(text) = structured(ctx.format, &plan) {
        println!("{text}");
        return Ok(());
    }
    println!(
        "Plan for environment {environment} ({} provider, region {}):\n",
        c.account.spec.provider.as_str(),
        c.environment.spec.region
    );
    for node in plan.nodes.iter().filter(|n| n.action != Action::NoOp) {
        println!("  {} {}", node.action.symbol(), node.id);
        for change in &node.changes {
            let value = match (&change.before, &change.after) {
                (None, Some(a)) => show(a),
                (Some(b), None) => format!("{} -> null", show(b)),
                (Some(b), Some(a)) => format!("{} -> {}", show(b), show(a)),
                (None, None) => String::new(),
            };
            let forces = if change.forces_replacement { "  # forces replacement" } else { "" };
            println!("      {} = {value}{forces}", change.field);
        }
    }
    println!(
        "\nPlan: {} to add, {} to change, {} to replace, {} to destroy.",
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Replace),
        plan.count(Action::Delete)
    );
    Ok(())
}
