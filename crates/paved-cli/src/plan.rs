//! `paved plan -e ENV`: the resource graph of an environment and what
//! applying it would change, terraform-style.

use crate::Failure;
use crate::commands::{Ctx, open, open_store};
use crate::output::structured;
use paved_catalog::{Catalog, EnvironmentContext};
use paved_control::ControlError;
use paved_plan::{Action, ResourceGraph};

fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The desired resource graph of an environment, from the recorded specs;
/// planning problems are printed one per line.
pub(crate) async fn desired_graph(
    ctx: &Ctx,
    catalog: &Catalog,
    environment: &str,
) -> Result<(ResourceGraph, EnvironmentContext), Failure> {
    match ctx.control().await?.desired_graph(catalog, environment).await {
        Err(ControlError::Unplannable { problems, .. }) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            eprintln!("error: environment `{environment}` cannot be planned ({} problem(s))", problems.len());
            Err(Failure::Reported)
        }
        other => other.map_err(Failure::from),
    }
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
    let applied = engine.recorded(environment, graph.provider).await.map_err(crate::provision::engine_failure)?;
    let mut plan = paved_plan::diff(&graph, Some(&applied)).map_err(|e| Failure::User(e.to_string()))?;
    let control = ctx.control().await?;
    plan.warnings = missing_secret_warnings(&control.missing_secrets(&catalog, &graph).await?, environment);
    let policies = control.plan_policies(&ctx.caller(), &graph, &applied).await?;
    for f in &policies.findings {
        let effect = match (&f.excepted_by, f.blocks()) {
            (Some(e), _) => format!("is waived by exception `{e}`"),
            (None, true) => "would deny the apply".to_string(),
            (None, false) => "warns".to_string(),
        };
        plan.warnings.push(format!("policy `{}` rule `{}` {effect}: {}", f.policy, f.rule, f.message));
    }
    if paved_plan::aws::zones_provisional(&graph) {
        plan.warnings.push(format!(
            "zones are provisional: the apply puts the subnets in the first {} zones AWS offers the account in {} (DescribeAvailabilityZones), which may not be the ones shown",
            paved_plan::aws::ZONE_SLOTS.len(),
            c.environment.spec.region
        ));
    }
    let header = format!(
        "Plan for environment {environment} ({} provider, region {}):",
        c.account.spec.provider.as_str(),
        c.environment.spec.region
    );
    print_plan(ctx, &header, &plan);
    Ok(())
}

/// `paved export terraform -e ENV`: the desired graph as Terraform JSON.
pub async fn export_terraform(ctx: &Ctx, environment: &str) -> Result<(), Failure> {
    let catalog = open(ctx).await?;
    let (graph, c) = desired_graph(ctx, &catalog, environment).await?;
    if graph.provider != paved_model::Provider::Aws {
        return Err(Failure::User(format!(
            "environment `{environment}` is on the {} provider; Terraform export covers AWS environments",
            c.account.spec.provider.as_str()
        )));
    }
    let doc = paved_plan::terraform::render(&graph);
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    Ok(())
}

/// One warning per secret a plan references that is not set.
pub(crate) fn missing_secret_warnings(missing: &[String], environment: &str) -> Vec<String> {
    missing
        .iter()
        .map(|key| {
            let (service, name) = key.split_once('/').unwrap_or(("", key));
            format!(
                "secret `{name}` (used by `{service}`) is not set for {environment}: `paved secret set {name} -e {environment}`; the apply would fail on it"
            )
        })
        .collect()
}

/// `paved plan` output, embedded or from a server.
pub(crate) fn print_plan(ctx: &Ctx, header: &str, plan: &paved_plan::Plan) {
    if let Some(text) = structured(ctx.format, plan) {
        println!("{text}");
        return;
    }
    println!("{header}\n");
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
    for w in &plan.warnings {
        println!("warning: {w}");
    }
    for (service, reasons) in &plan.blocked {
        println!(
            "blocked: service `{service}` is left out (the rest applies; what it runs stays): {}",
            reasons.join("; ")
        );
    }
}

/// `paved parity A B`.
pub async fn parity(ctx: &Ctx, left: &str, right: &str) -> Result<(), Failure> {
    let catalog = open(ctx).await?;
    let differences = ctx.control().await?.parity(&catalog, left, right).await?;
    print_parity(ctx, left, right, &differences)
}

/// `paved parity` output, embedded or from a server; exit code 3 when they differ.
pub(crate) fn print_parity(
    ctx: &Ctx,
    left: &str,
    right: &str,
    differences: &[paved_plan::parity::Difference],
) -> Result<(), Failure> {
    let undeclared = differences.iter().filter(|d| !d.declared).count();
    if let Some(text) = structured(ctx.format, &differences) {
        println!("{text}");
    } else if differences.is_empty() {
        println!("{left} and {right}: no differences besides their names");
    } else {
        let cell = |v: &Option<serde_json::Value>| v.as_ref().map_or("(absent)".into(), show);
        let rows = differences
            .iter()
            .map(|d| {
                let field = if d.field.is_empty() { "-".into() } else { d.field.clone() };
                let why = match (d.live, d.declared) {
                    (true, _) => "LIVE (changed outside paved)",
                    (false, true) => "parameter",
                    (false, false) => "UNDECLARED",
                };
                vec![d.node.clone(), field, cell(&d.left), cell(&d.right), why.into()]
            })
            .collect();
        println!("{}", crate::output::table(&["RESOURCE", "FIELD", left, right, "WHY"], rows));
        match undeclared {
            0 => println!(
                "{} difference(s), all from the blueprint's parameters: no undeclared differences",
                differences.len()
            ),
            n => println!("{} difference(s), {n} not declared by the blueprint's parameters", differences.len()),
        }
    }
    // Exit code 3 when something differs that no parameter explains.
    if undeclared == 0 { Ok(()) } else { Err(Failure::Drift) }
}
