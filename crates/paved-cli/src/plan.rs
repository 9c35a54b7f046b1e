//! `paved plan -e ENV`: the resource graph of an environment and what
//! applying it would change, terraform-style.

use crate::Failure;
use crate::commands::{Ctx, open, open_store};
use crate::output::structured;
use paved_catalog::{Catalog, EnvironmentContext};
use paved_plan::{Action, Capabilities, PlanInput, ResourceGraph};

/// What this machine offers the local provider. Planning is pure; detection
/// happens here, at the edge.
fn detect_capabilities() -> Capabilities {
    let on_path = |bin: &str| {
        std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(bin).is_file()))
    };
    Capabilities {
        // The docker runtime's driver is not built yet: plan for supervised
        // processes even where an engine answers.
        docker: false,
        redis_server: on_path("redis-server"),
    }
}

fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The desired resource graph of an environment, from the recorded specs.
pub(crate) async fn desired_graph(
    catalog: &Catalog,
    environment: &str,
) -> Result<(ResourceGraph, EnvironmentContext), Failure> {
    let c = catalog.environment_context(environment).await?;
    let input = PlanInput {
        environment: &c.environment,
        blueprint: &c.blueprint,
        account: &c.account,
        services: c.services.iter().collect(),
        capabilities: detect_capabilities(),
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
    let (graph, c) = desired_graph(&catalog, environment).await?;
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
