//! Names and certificates: the HTTPS listener's certificate from ACM,
//! validated by DNS in the blueprint domain's Route 53 zone, and the alias
//! records that point each route's host at the load balancer.
//!
//! | node | AWS | AWS's rules kept here |
//! |---|---|---|
//! | `aws.acm-certificate` | `RequestCertificate` (DNS validation), the validation `CNAME`s `UPSERT`ed in the zone; ready when `ISSUED` | the validation records appear in `DescribeCertificate` some seconds after the request, so creating waits for them (retryable) under an idempotency token: a retried request returns the same certificate (<https://docs.aws.amazon.com/acm/latest/APIReference/API_RequestCertificate.html>); issuing takes minutes after the records resolve (<https://docs.aws.amazon.com/acm/latest/userguide/dns-validation.html>) |
//! | `aws.dns-record` | an alias `A` record to the load balancer (its DNS name and canonical zone) | alias targets are named with the load balancer's own hosted zone id, not the record's (<https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/resource-record-sets-choosing-alias-non-alias.html>); `DELETE` must repeat the record exactly as it is |
//!
//! The zone is found by its name among the account's public zones; a
//! domain without one is a permanent error that says what to create.

use super::props::tags_value;
use super::{Props, Session, failed, is_code};
use async_trait::async_trait;
use aws_sdk_acm::types::{CertificateStatus, DomainValidation, Tag, ValidationMethod};
use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// The id of the account's public hosted zone named `zone`.
async fn zone_id(s: &Session, zone: &str) -> Result<String, DriverError> {
    let out = s
        .route53
        .list_hosted_zones_by_name()
        .dns_name(zone)
        .send()
        .await
        .map_err(|e| failed("ListHostedZonesByName", e))?;
    let want = format!("{}.", zone.trim_end_matches('.'));
    out.hosted_zones()
        .iter()
        .find(|z| z.name() == want && !z.config().is_some_and(|c| c.private_zone()))
        .map(|z| z.id().trim_start_matches("/hostedzone/").to_string())
        .ok_or_else(|| {
            DriverError::Permanent(format!(
                "the account has no public Route 53 zone `{zone}`: create it (or delegate the domain to one) so paved can validate certificates and write records there"
            ))
        })
}

fn dotless(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Sends one change of one record set to the zone named `zone`.
async fn change(
    s: &Session,
    zone: &str,
    action: ChangeAction,
    set: ResourceRecordSet,
) -> Result<
    (),
    aws_sdk_route53::error::SdkError<
        aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsError,
        aws_sdk_route53::config::http::HttpResponse,
    >,
> {
    let permanent = |e: aws_sdk_route53::error::BuildError| aws_sdk_route53::error::SdkError::construction_failure(e);
    let change = Change::builder().action(action).resource_record_set(set).build().map_err(permanent)?;
    let batch = ChangeBatch::builder().changes(change).build().map_err(permanent)?;
    s.route53.change_resource_record_sets().hosted_zone_id(zone).change_batch(batch).send().await.map(|_| ())
}

async fn upsert(s: &Session, zone: &str, set: ResourceRecordSet) -> Result<(), DriverError> {
    let zone = zone_id(s, zone).await?;
    change(s, &zone, ChangeAction::Upsert, set).await.map_err(|e| failed("ChangeResourceRecordSets", e))
}

pub(crate) struct Certificate(pub(crate) Arc<Session>);

impl Certificate {
    async fn find(&self, r: &Resource) -> Result<Option<String>, DriverError> {
        Ok(self.by_domain().await?.remove(Props::of(r).str("domain")?))
    }

    /// The account's certificates in this region that are issued or being
    /// validated, by domain (the first listed for each): one paginated
    /// `ListCertificates` for every node of a sweep.
    async fn by_domain(&self) -> Result<HashMap<String, String>, DriverError> {
        let mut pages = self
            .0
            .acm
            .list_certificates()
            .certificate_statuses(CertificateStatus::PendingValidation)
            .certificate_statuses(CertificateStatus::Issued)
            .into_paginator()
            .send();
        let mut out = HashMap::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed("ListCertificates", e))?;
            for c in page.certificate_summary_list() {
                if let (Some(domain), Some(arn)) = (c.domain_name(), c.certificate_arn()) {
                    out.entry(domain.to_string()).or_insert_with(|| arn.to_string());
                }
            }
        }
        Ok(out)
    }

    /// The node as ACM holds it.
    fn seen(
        r: &Resource,
        arn: &str,
        c: &aws_sdk_acm::types::CertificateDetail,
        tags: Value,
    ) -> Result<Observation, DriverError> {
        let domain = c.domain_name().unwrap_or_default();
        let sans: Vec<Value> =
            c.subject_alternative_names().iter().filter(|n| *n != domain).map(|n| json!(n)).collect();
        let properties = json!({
            "domain": domain,
            "alternativeNames": sans,
            "zone": Props::of(r).str("zone")?,
            "tags": tags,
        });
        let ready = c.status() == Some(&CertificateStatus::Issued);
        Ok(Observation::Present { properties, outputs: Self::outputs(arn), ready })
    }

    async fn describe(&self, arn: &str) -> Result<aws_sdk_acm::types::CertificateDetail, DriverError> {
        let out = self
            .0
            .acm
            .describe_certificate()
            .certificate_arn(arn)
            .send()
            .await
            .map_err(|e| failed("DescribeCertificate", e))?;
        out.certificate().cloned().ok_or_else(|| DriverError::Retryable(format!("certificate {arn} not visible yet")))
    }

    /// Writes the validation records ACM asks for; retryable until it has named them all.
    async fn validate(&self, r: &Resource, options: &[DomainValidation]) -> Result<(), DriverError> {
        let zone = Props::of(r).str("zone")?;
        if options.is_empty() || options.iter().any(|o| o.resource_record().is_none()) {
            return Err(DriverError::Retryable(format!("{}: ACM has not named its validation records yet", r.id)));
        }
        let mut seen = std::collections::BTreeSet::new();
        for record in options.iter().filter_map(|o| o.resource_record()) {
            // The apex and its wildcard share one record.
            if !seen.insert(record.name().to_string()) {
                continue;
            }
            let set = ResourceRecordSet::builder()
                .name(record.name())
                .r#type(RrType::Cname)
                .ttl(300)
                .resource_records(
                    ResourceRecord::builder()
                        .value(record.value())
                        .build()
                        .map_err(|e| DriverError::Permanent(e.to_string()))?,
                )
                .build()
                .map_err(|e| DriverError::Permanent(e.to_string()))?;
            upsert(&self.0, zone, set).await?;
        }
        Ok(())
    }

    fn outputs(arn: &str) -> Outputs {
        Outputs::from([("arn".to_string(), json!(arn))])
    }
}

#[async_trait]
impl Driver for Certificate {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(arn) = self.find(r).await? else { return Ok(Observation::Absent) };
        let c = self.describe(&arn).await?;
        let tags = self
            .0
            .acm
            .list_tags_for_certificate()
            .certificate_arn(&arn)
            .send()
            .await
            .map_err(|e| failed("ListTagsForCertificate", e))?;
        Self::seen(r, &arn, &c, tags_value(tags.tags().iter().map(|t| (t.key(), t.value().unwrap_or_default()))))
    }

    /// A sweep's certificates: found in one listing, their tags from one
    /// tagging-API listing ([`super::tags_by_arn`]); each still needs its
    /// own `DescribeCertificate` (ACM has no batch describe).
    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let (arns, tags) = match tokio::try_join!(self.by_domain(), super::tags_by_arn(&self.0, &["acm:certificate"])) {
            Ok(both) => both,
            Err(e) => return super::every(rs, e),
        };
        let mut out = Vec::with_capacity(rs.len());
        for r in rs {
            let observed = async {
                let Some(arn) = arns.get(Props::of(r).str("domain")?) else { return Ok(Observation::Absent) };
                let c = self.describe(arn).await?;
                Self::seen(r, arn, &c, tags.get(arn).cloned().unwrap_or_else(|| json!({})))
            };
            out.push(observed.await);
        }
        out
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let domain = p.str("domain")?;
        let tags: Vec<Tag> =
            p.tags().into_iter().filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok()).collect();
        // ACM returns the same certificate for the same token within an hour: a retried create requests one.
        let out = self
            .0
            .acm
            .request_certificate()
            .idempotency_token(self.0.client_token(r))
            .domain_name(domain)
            .set_subject_alternative_names(Some(p.strings("alternativeNames")))
            .validation_method(ValidationMethod::Dns)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| failed("RequestCertificate", e))?;
        let arn = out.certificate_arn().unwrap_or_default().to_string();
        let c = self.describe(&arn).await?;
        self.validate(r, c.domain_validation_options()).await?;
        Ok(Self::outputs(&arn))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let Some(arn) = self.find(r).await? else { return self.create(r).await };
        let p = Props::of(r);
        let tags: Vec<Tag> =
            p.tags().into_iter().filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok()).collect();
        self.0
            .acm
            .add_tags_to_certificate()
            .certificate_arn(&arn)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| failed("AddTagsToCertificate", e))?;
        let c = self.describe(&arn).await?;
        if c.status() == Some(&CertificateStatus::PendingValidation) {
            self.validate(r, c.domain_validation_options()).await?;
        }
        Ok(Self::outputs(&arn))
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(arn) = self.find(r).await? else { return Ok(()) };
        match self.0.acm.delete_certificate().certificate_arn(arn).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["ResourceNotFoundException"]) => Ok(()),
            // Still attached to a listener being deleted: AWS lets go of it shortly.
            Err(e) if is_code(&e, &["ResourceInUseException"]) => {
                Err(DriverError::Retryable("AWS DeleteCertificate: still in use by a listener".into()))
            }
            Err(e) => Err(failed("DeleteCertificate", e)),
        }
    }
}

pub(crate) struct DnsRecord(pub(crate) Arc<Session>);

impl DnsRecord {
    async fn find(&self, r: &Resource) -> Result<Option<ResourceRecordSet>, DriverError> {
        let p = Props::of(r);
        let zone = zone_id(&self.0, p.str("zone")?).await?;
        let name = dotless(p.str("name")?);
        let out = self
            .0
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone)
            .start_record_name(&name)
            .start_record_type(RrType::A)
            .max_items(1)
            .send()
            .await
            .map_err(|e| failed("ListResourceRecordSets", e))?;
        Ok(out.resource_record_sets().iter().find(|s| dotless(s.name()) == name && s.r#type() == &RrType::A).cloned())
    }

    /// The `A` record sets of the hosted zone `zone`, by dotless name:
    /// `ListResourceRecordSets` pages of 300 (its most), each starting where
    /// the last one said (<https://docs.aws.amazon.com/Route53/latest/APIReference/API_ListResourceRecordSets.html>).
    async fn a_records(&self, zone: &str) -> Result<HashMap<String, ResourceRecordSet>, DriverError> {
        let mut out = HashMap::new();
        let mut next: Option<(String, RrType, Option<String>)> = None;
        loop {
            let mut ask = self.0.route53.list_resource_record_sets().hosted_zone_id(zone).max_items(300);
            if let Some((name, kind, identifier)) = next.take() {
                ask = ask.start_record_name(name).start_record_type(kind).set_start_record_identifier(identifier);
            }
            let page = ask.send().await.map_err(|e| failed("ListResourceRecordSets", e))?;
            for set in page.resource_record_sets().iter().filter(|s| s.r#type() == &RrType::A) {
                out.entry(dotless(set.name())).or_insert_with(|| set.clone());
            }
            match (page.is_truncated(), page.next_record_name(), page.next_record_type()) {
                (true, Some(name), Some(kind)) => {
                    next = Some((name.to_string(), kind.clone(), page.next_record_identifier().map(str::to_string)))
                }
                _ => return Ok(out),
            }
        }
    }

    /// The node as the zone holds it.
    fn seen(r: &Resource, set: &ResourceRecordSet) -> Result<Observation, DriverError> {
        let p = Props::of(r);
        let properties = json!({
            "zone": p.str("zone")?,
            "name": dotless(set.name()),
            "type": set.r#type().as_str(),
            "aliasTarget": set.alias_target().map(|a| json!({"dnsName": dotless(a.dns_name()), "hostedZoneId": a.hosted_zone_id()})),
        });
        Ok(Observation::Present { properties, outputs: Outputs::new(), ready: true })
    }

    fn record(r: &Resource) -> Result<ResourceRecordSet, DriverError> {
        let p = Props::of(r);
        let target = p.value("aliasTarget");
        let field = |k: &str| {
            target[k]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| DriverError::Permanent(format!("{}: aliasTarget.{k} is missing", r.id)))
        };
        let alias = AliasTarget::builder()
            .dns_name(field("dnsName")?)
            .hosted_zone_id(field("hostedZoneId")?)
            .evaluate_target_health(false)
            .build()
            .map_err(|e| DriverError::Permanent(e.to_string()))?;
        ResourceRecordSet::builder()
            .name(p.str("name")?)
            .r#type(RrType::A)
            .alias_target(alias)
            .build()
            .map_err(|e| DriverError::Permanent(e.to_string()))
    }
}

#[async_trait]
impl Driver for DnsRecord {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(set) = self.find(r).await? else { return Ok(Observation::Absent) };
        Self::seen(r, &set)
    }

    /// A sweep's records: each zone found once and its `A` records listed
    /// once ([`Self::a_records`]) instead of two calls per record.
    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let mut zones: HashMap<&str, Result<HashMap<String, ResourceRecordSet>, DriverError>> = HashMap::new();
        let mut out = Vec::with_capacity(rs.len());
        for r in rs {
            let observed = async {
                let p = Props::of(r);
                let zone = p.str("zone")?;
                if !zones.contains_key(zone) {
                    let listed = match zone_id(&self.0, zone).await {
                        Ok(id) => self.a_records(&id).await,
                        Err(e) => Err(e),
                    };
                    zones.insert(zone, listed);
                }
                match &zones[zone] {
                    Ok(records) => match records.get(&dotless(p.str("name")?)) {
                        Some(set) => Self::seen(r, set),
                        None => Ok(Observation::Absent),
                    },
                    Err(e) => Err(e.clone()),
                }
            };
            out.push(observed.await);
        }
        out
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        upsert(&self.0, Props::of(r).str("zone")?, Self::record(r)?).await?;
        Ok(Outputs::new())
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.create(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(set) = self.find(r).await? else { return Ok(()) };
        let zone = zone_id(&self.0, Props::of(r).str("zone")?).await?;
        // DELETE repeats the record exactly as it is: the one just read.
        match change(&self.0, &zone, ChangeAction::Delete, set).await {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["InvalidChangeBatch"]) => Ok(()),
            Err(e) => Err(failed("ChangeResourceRecordSets", e)),
        }
    }
}
