//! AWS partitions: which one a region is in decides the `arn:PARTITION:`
//! of every ARN and the DNS suffix of its endpoints and regional service
//! principals. An account lives in one partition, and nothing crosses
//! between them
//! (<https://docs.aws.amazon.com/whitepapers/latest/aws-fault-isolation-boundaries/partitions.html>).
//!
//! | region prefix | partition | DNS suffix |
//! |---|---|---|
//! | `cn-` | `aws-cn` | `amazonaws.com.cn` |
//! | `us-gov-` | `aws-us-gov` | `amazonaws.com` |
//! | `us-isob-` | `aws-iso-b` | `sc2s.sgov.gov` |
//! | `us-iso-` | `aws-iso` | `c2s.ic.gov` |
//! | `eusc-` | `aws-eusc` | `amazonaws.eu` |
//! | anything else | `aws` | `amazonaws.com` |
//!
//! Global service principals (`eks.amazonaws.com`, `ec2.amazonaws.com`)
//! keep `amazonaws.com` in every partition; regional ones
//! (`logs.REGION.SUFFIX`) take the suffix.

/// One partition: its ARN name and its endpoints' DNS suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub name: &'static str,
    pub dns_suffix: &'static str,
}

const PARTITIONS: [(&str, Partition); 5] = [
    ("cn-", Partition { name: "aws-cn", dns_suffix: "amazonaws.com.cn" }),
    ("us-gov-", Partition { name: "aws-us-gov", dns_suffix: "amazonaws.com" }),
    ("us-isob-", Partition { name: "aws-iso-b", dns_suffix: "sc2s.sgov.gov" }),
    ("us-iso-", Partition { name: "aws-iso", dns_suffix: "c2s.ic.gov" }),
    ("eusc-", Partition { name: "aws-eusc", dns_suffix: "amazonaws.eu" }),
];

/// The partition of an AWS region.
pub fn of_region(region: &str) -> Partition {
    PARTITIONS
        .iter()
        .find(|(prefix, _)| region.starts_with(prefix))
        .map(|(_, p)| *p)
        .unwrap_or(Partition { name: "aws", dns_suffix: "amazonaws.com" })
}

#[cfg(test)]
mod tests {
    use super::of_region;

    #[test]
    fn regions_map_to_their_partition() {
        assert_eq!(of_region("eu-west-1").name, "aws");
        assert_eq!(of_region("cn-north-1").name, "aws-cn");
        assert_eq!(of_region("cn-north-1").dns_suffix, "amazonaws.com.cn");
        assert_eq!(of_region("us-gov-west-1").name, "aws-us-gov");
        assert_eq!(of_region("us-isob-east-1").name, "aws-iso-b");
        assert_eq!(of_region("us-iso-east-1").name, "aws-iso");
        assert_eq!(of_region("eusc-de-east-1").dns_suffix, "amazonaws.eu");
    }
}
