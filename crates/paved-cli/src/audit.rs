//! `paved audit verify|list|export`: the audit log from the store.

use crate::Failure;
use crate::cli::{AuditCommand, AuditFilterArgs, Format};
use crate::commands::{Ctx, open_store};
use crate::output::structured;
use paved_store::{AuditEvent, AuditFilter, AuditOutcome, Store};
use std::io::Write;

/// Records an action of this command in the audit log (spec changes record
/// themselves, with their commit).
pub(crate) async fn record(
    ctx: &Ctx,
    action: &str,
    target: String,
    outcome: AuditOutcome,
    after: Option<String>,
    details: serde_json::Value,
) -> Result<(), Failure> {
    Ok(ctx.control().await?.record(&ctx.caller(), action, target, outcome, after, details).await?)
}

/// A refused or failed attempt is recorded too, with why.
pub(crate) async fn record_failure(ctx: &Ctx, action: &str, target: String, error: &Failure) -> Result<(), Failure> {
    let reason = match error {
        Failure::User(msg) => msg.clone(),
        Failure::Internal(e) => e.to_string(),
        Failure::Reported | Failure::Drift => "see the command's output".into(),
    };
    record(ctx, action, target, AuditOutcome::Failed, None, serde_json::json!({"error": reason})).await
}

/// Events read per query when exporting or listing everything.
const PAGE: i64 = 10_000;

fn filter(args: &AuditFilterArgs) -> AuditFilter {
    AuditFilter {
        actor: args.actor.clone(),
        action: args.action.clone(),
        target: args.target.clone(),
        since: args.since,
        until: args.until,
        after_seq: 0,
        limit: 0,
        newest_first: false,
    }
}

/// Calls `each` with every matching event, page by page, up to `limit`.
async fn for_each(
    store: &dyn Store,
    args: &AuditFilterArgs,
    mut each: impl FnMut(AuditEvent) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut f = filter(args);
    let mut left = args.limit.unwrap_or(i64::MAX);
    while left > 0 {
        f.limit = left.min(PAGE);
        let page = store.audit_events(&f).await.map_err(|e| Failure::Internal(e.into()))?;
        let Some(last) = page.last() else { break };
        f.after_seq = last.seq;
        left -= page.len() as i64;
        for e in page {
            each(e)?;
        }
    }
    Ok(())
}

pub async fn run(ctx: &Ctx, command: AuditCommand) -> Result<(), Failure> {
    let store = open_store(ctx).await?;
    match command {
        AuditCommand::Verify => {
            drop(store);
            let v = ctx.control().await?.verify_audit().await?;
            report(ctx, &v)
        }
        AuditCommand::Checkpoint => {
            drop(store);
            let (v, signed) = ctx
                .control()
                .await?
                .checkpoint_audit(&ctx.caller(), serde_json::json!({"cli": crate::commands::hostname()}))
                .await?;
            if !v.intact() {
                return report(ctx, &v);
            }
            if let Some(text) = structured(ctx.format, &signed) {
                println!("{text}");
            } else if let Some(c) = signed {
                println!("signed checkpoint of event {} (head {})", c.seq, c.head);
            } else {
                println!("nothing to sign: the newest event is a checkpoint already");
            }
            Ok(())
        }
        AuditCommand::Export(args) => {
            let mut out = std::io::stdout().lock();
            for_each(store.as_ref(), &args, |e| {
                let line = serde_json::to_string(&e).map_err(|e| Failure::Internal(e.into()))?;
                writeln!(out, "{line}").map_err(|e| Failure::Internal(e.into()))
            })
            .await
        }
        AuditCommand::List(args) => {
            let mut events = Vec::new();
            for_each(store.as_ref(), &args, |e| {
                events.push(e);
                Ok(())
            })
            .await?;
            print_events(ctx, &events);
            Ok(())
        }
    }
}

/// A verification as the CLI shows it; exit 1 when the log does not hold.
fn report(ctx: &Ctx, v: &paved_control::anchor::AuditVerification) -> Result<(), Failure> {
    if let Some(text) = structured(ctx.format, v) {
        println!("{text}");
    }
    if let Some(b) = &v.chain.first_break {
        return Err(Failure::User(format!(
            "audit log broken at event {}: {} ({} events before it are intact)",
            b.seq, b.reason, v.chain.events
        )));
    }
    if let Some(why) = &v.anchor_break {
        return Err(Failure::User(format!("audit log tampered with: {why}")));
    }
    if ctx.format == Format::Table {
        println!("audit log intact: {} events, head {}", v.chain.events, v.chain.head);
        match v.anchored_seq {
            Some(seq) => println!("signed checkpoint covers events 1..{seq}"),
            None => {
                println!("no signed checkpoint yet (`paved audit checkpoint`; paved server signs one every 5 minutes)")
            }
        }
    }
    if let Some(why) = &v.unverifiable {
        eprintln!("warning: {why}");
    }
    Ok(())
}

/// `paved audit list` output, embedded or from a server.
pub(crate) fn print_events(ctx: &Ctx, events: &[AuditEvent]) {
    if let Some(text) = structured(ctx.format, &events) {
        println!("{text}");
        return;
    }
    let rows = events
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                e.event.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                e.event.actor.clone(),
                e.event.action.clone(),
                e.event.target.clone(),
                e.event.outcome.as_str().to_string(),
                e.event.request.request_id.clone(),
                e.event.request.origin.clone(),
            ]
        })
        .collect();
    let headers = ["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "REQUEST", "ORIGIN"];
    println!("{}", crate::output::table(&headers, rows));
}
