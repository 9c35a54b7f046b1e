"""moto's server, with some of EKS's behaviour it lacks put back, and ACM's
validation delay shortened.

* EKS gives every cluster its own OIDC issuer
  (https://oidc.eks.REGION.amazonaws.com/id/<32 hex digits of the cluster>);
  moto draws one suffix when it starts, so every cluster of a region shares
  an issuer, and two environments' IAM OIDC providers would be one. Here
  each cluster gets an issuer of its own, derived from its ARN.
* EKS creates a cluster security group in the cluster's VPC (tagged
  `aws:eks:cluster-name`), attaches it to the managed nodes, reports it as
  `resourcesVpcConfig.clusterSecurityGroupId` and deletes it with the
  cluster (https://docs.aws.amazon.com/eks/latest/userguide/sec-group-reqs.html);
  moto creates none.
* EKS keeps a cluster's `accessConfig` (authentication mode, whether its
  creator is an administrator) and reports it
  (https://docs.aws.amazon.com/eks/latest/APIReference/API_CreateAccessConfigRequest.html);
  moto drops it.
* EKS upgrades a cluster's Kubernetes version (`UpdateClusterVersion`,
  https://docs.aws.amazon.com/eks/latest/APIReference/API_UpdateClusterVersion.html),
  as AWS itself does at the end of a version's support; moto has no such
  call. Here it takes effect at once.

    python moto_server.py -H 127.0.0.1 -p PORT
"""

import hashlib
import json
import os
import sys

# ACM issues a DNS-validated certificate minutes after its records resolve;
# moto after MOTO_ACM_VALIDATION_WAIT seconds (60 by default): here 2, so a
# test meets the pending state without waiting a minute.
os.environ.setdefault("MOTO_ACM_VALIDATION_WAIT", "2")

import moto.eks.models as eks  # noqa: E402
import moto.eks.responses as eks_responses  # noqa: E402
import moto.eks.urls as eks_urls  # noqa: E402
from moto.ec2.models import ec2_backends  # noqa: E402
from moto.server import main  # noqa: E402

_init = eks.Cluster.__init__


def _ec2(arn):
    _, _, _, region, account, _ = arn.split(":", 5)
    return ec2_backends[account][region]


def _init_like_eks(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    suffix = hashlib.sha256(self.arn.encode()).hexdigest()[:32].upper()
    region = self.arn.split(":")[3]
    self.identity = {"oidc": {"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{suffix}"}}
    subnets = (self.resources_vpc_config or {}).get("subnetIds") or []
    if subnets:
        ec2 = _ec2(self.arn)
        vpc = ec2.get_subnet(subnets[0]).vpc_id
        group = ec2.create_security_group(
            name=f"eks-cluster-sg-{self.name}-{suffix[:10].lower()}",
            description="EKS created security group applied to ENI that is attached to EKS Control Plane master nodes, as well as any managed workloads.",
            vpc_id=vpc,
            tags={"aws:eks:cluster-name": self.name, "Name": f"eks-cluster-sg-{self.name}"},
        )
        self.resources_vpc_config = dict(self.resources_vpc_config, clusterSecurityGroupId=group.id)
    self.access_config = {"authenticationMode": "CONFIG_MAP", "bootstrapClusterCreatorAdminPermissions": True}


eks.Cluster.__init__ = _init_like_eks

_delete = eks.EKSBackend.delete_cluster


def _delete_with_group(self, name):
    cluster = _delete(self, name)
    group = (cluster.resources_vpc_config or {}).get("clusterSecurityGroupId")
    if group:
        _ec2(cluster.arn).delete_security_group(group_id=group)
    return cluster


eks.EKSBackend.delete_cluster = _delete_with_group

_create_response = eks_responses.EKSResponse.create_cluster


def _create_keeping_access_config(self):
    result = _create_response(self)
    access = self._get_param("accessConfig")
    if access:
        cluster = self.eks_backend.clusters[self._get_param("name")]
        cluster.access_config = dict(cluster.access_config, **access)
    return result


eks_responses.EKSResponse.create_cluster = _create_keeping_access_config


def _update_cluster_version(self):
    cluster = self.eks_backend.clusters[self._get_param("name")]
    cluster.version = self._get_param("version")
    update = {"id": hashlib.sha256(f"{cluster.arn}/{cluster.version}".encode()).hexdigest()[:36], "status": "Successful",
              "type": "VersionUpdate", "params": [{"type": "Version", "value": cluster.version}], "errors": []}
    return 200, {}, json.dumps({"update": update})


eks_responses.EKSResponse.update_cluster_version = _update_cluster_version
eks_urls.url_paths["{0}/clusters/(?P<name>[^/]+)/updates$"] = eks_urls.response.dispatch

if __name__ == "__main__":
    sys.exit(main())
