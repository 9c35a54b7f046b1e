//! `paved account` (the trust to install for keyless access, and a check
//! that it works) and `paved identity token`.

use crate::Failure;
use crate::cli::{AccountCommand, IdentityCommand};
use crate::commands::Ctx;
use crate::output::{structured, timestamp};
use paved_identity::WorkloadIdentity;

pub async fn account(ctx: &Ctx, command: AccountCommand) -> Result<(), Failure> {
    let control = ctx.control().await?;
    match command {
        AccountCommand::TrustPolicy { name, control_plane } => {
            print_trust(ctx, &control.trust_setup(&name, control_plane).await?);
        }
        AccountCommand::PermissionsPolicy { name } => {
            let catalog = control.catalog(ctx.request.clone());
            let object = catalog.get(paved_model::Kind::CloudAccount, &name).await?;
            let paved_model::Spec::CloudAccount(account) = object.spec else {
                return Err(Failure::Internal(anyhow::anyhow!("a CloudAccount record holds another kind")));
            };
            if account.spec.provider != paved_model::Provider::Aws {
                return Err(Failure::User(format!(
                    "account `{name}` is on the {} provider; permissions policies are written for `aws` accounts",
                    account.spec.provider.as_str()
                )));
            }
            let region = account.spec.allowed_regions.first().map(String::as_str).unwrap_or_default();
            let partition = paved_model::partition::of_region(region).name;
            let policy = paved_aws::permissions::policy(partition, account.spec.account_id.as_deref());
            // A policy document is JSON whatever `-o` says (unless YAML is asked for).
            match structured(ctx.format, &policy) {
                Some(text) => println!("{text}"),
                None => println!("{}", serde_json::to_string_pretty(&policy).unwrap_or_default()),
            }
        }
        AccountCommand::Check { name, environment } => {
            let check = control.check_account(&name, environment.as_deref(), &ctx.request.request_id).await?;
            if let Some(text) = structured(ctx.format, &check) {
                println!("{text}");
            } else {
                println!(
                    "{}: {} is {} (credentials until {}, held in memory only)",
                    check.account,
                    check.subject,
                    check.principal,
                    timestamp(check.credentials_expire_at)
                );
            }
        }
    }
    Ok(())
}

/// The trust to install, as steps (or JSON/YAML with `-o`).
pub(crate) fn print_trust(ctx: &Ctx, setup: &paved_control::TrustSetup) {
    if let Some(text) = structured(ctx.format, setup) {
        println!("{text}");
        return;
    }
    let p = &setup.oidc_provider;
    println!("1. An IAM OIDC provider for paved's issuer (once per AWS account):");
    println!("   URL:        {}", p.url);
    println!("   audience:   {}", p.client_ids.join(", "));
    println!("   thumbprint: {}", p.thumbprint);
    println!("   ARN:        {}", p.arn);
    println!("\n2. This trust policy on role {}:\n", setup.role_arn);
    println!("{}", serde_json::to_string_pretty(&setup.trust_policy).unwrap_or_default());
    println!("\nThen check it: paved account check {} -e ENVIRONMENT", setup.account);
}

pub async fn identity(ctx: &Ctx, command: IdentityCommand) -> Result<(), Failure> {
    let control = ctx.control().await?;
    match command {
        IdentityCommand::Token { environment, service, audience, ttl } => {
            let catalog = control.catalog(ctx.request.clone());
            let identity = match environment {
                Some(env) => {
                    let object = catalog.get(paved_model::Kind::Environment, &env).await?;
                    let paved_model::Spec::Environment(e) = object.spec else {
                        return Err(Failure::Internal(anyhow::anyhow!("an Environment record holds another kind")));
                    };
                    WorkloadIdentity {
                        environment: env,
                        account: e.spec.account,
                        operation: ctx.request.request_id.clone(),
                        service,
                    }
                }
                None => WorkloadIdentity::control_plane("", &ctx.request.request_id),
            };
            let token = control.mint_token(&identity, &audience, ttl).await?;
            if let Some(text) = structured(
                ctx.format,
                &serde_json::json!({
                    "token": token.token,
                    "kid": token.kid,
                    "claims": token.claims,
                    "expires_at": token.expires_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                }),
            ) {
                println!("{text}");
            } else {
                println!("{}", token.token);
            }
        }
    }
    Ok(())
}
