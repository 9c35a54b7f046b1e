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
* EKS answers every cluster and node-group update with the update it
  started, which `DescribeUpdate` then reports
  (https://docs.aws.amazon.com/eks/latest/APIReference/API_DescribeUpdate.html),
  and upgrades node groups (`UpdateNodegroupVersion`); moto answers
  `UpdateClusterConfig` with the cluster and has neither call. Here every
  update succeeds at once (the test proxy can make them last).
* EKS tags managed node groups as well as clusters (`TagResource`,
  https://docs.aws.amazon.com/eks/latest/APIReference/API_TagResource.html);
  moto tags clusters only.
* ElastiCache deletes a cache subnet group (`DeleteCacheSubnetGroup`,
  https://docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_DeleteCacheSubnetGroup.html)
  and a replication group is gone once deleted; moto has no such call and
  keeps a deleted group as `deleting` forever. Here the subnet group goes,
  and a deleted replication group answers `deleting` once, then is gone.
* RDS keeps a DB subnet group that `ModifyDBSubnetGroup` changed; moto
  forgets it (it takes the group out and never puts it back).
* An RDS instance's endpoint is a real PostgreSQL when
  `PAVED_TEST_RDS_ENDPOINT=HOST:PORT` is set, a real MariaDB for engine
  `mysql` when `PAVED_TEST_RDS_MYSQL_ENDPOINT=HOST:PORT` is (moto's is a name
  that resolves nowhere), and the master secret RDS manages names the instance's master
  user (moto writes `admin` whatever was asked;
  https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-secrets-manager.html).

    python moto_server.py -H 127.0.0.1 -p PORT
"""

import hashlib
import json
import os
import sys
import uuid

# ACM issues a DNS-validated certificate minutes after its records resolve;
# moto after MOTO_ACM_VALIDATION_WAIT seconds (60 by default): here 2, so a
# test meets the pending state without waiting a minute.
os.environ.setdefault("MOTO_ACM_VALIDATION_WAIT", "2")

import moto.eks.models as eks  # noqa: E402
import moto.eks.responses as eks_responses  # noqa: E402
import moto.eks.urls as eks_urls  # noqa: E402
import moto.rds.models as rds_models  # noqa: E402
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


UPDATES = {}


def _update(kind, params):
    """Records an update EKS started (and finished) for DescribeUpdate."""
    update = {"id": str(uuid.uuid4()), "status": "Successful", "type": kind, "params": params, "errors": []}
    UPDATES[update["id"]] = update
    return 200, {}, json.dumps({"update": update})


def _update_cluster_version(self):
    cluster = self.eks_backend.clusters[self._get_param("name")]
    cluster.version = self._get_param("version")
    return _update("VersionUpdate", [{"type": "Version", "value": cluster.version}])


_update_cluster_config = eks_responses.EKSResponse.update_cluster_config


def _update_cluster_config_answering_the_update(self):
    _update_cluster_config(self)
    return _update("ConfigUpdate", [])


_update_nodegroup_config = eks_responses.EKSResponse.update_nodegroup_config


def _update_nodegroup_config_answering_the_update(self):
    _update_nodegroup_config(self)
    return _update("ConfigUpdate", [])


def _update_nodegroup_version(self):
    cluster = self.eks_backend.clusters[self._get_param("name")]
    nodegroup = cluster.nodegroups[self._get_param("nodegroupName")]
    nodegroup.version = self._get_param("version") or cluster.version
    return _update("VersionUpdate", [{"type": "Version", "value": nodegroup.version}])


def _describe_update(self):
    update = UPDATES.get(self._get_param("updateId"))
    if update is None:
        return 404, {"x-amzn-ErrorType": "ResourceNotFoundException"}, json.dumps({"message": "No update found"})
    return 200, {}, json.dumps({"update": update})


_tag_resource = eks.EKSBackend.tag_resource


def _tag_clusters_and_nodegroups(self, resource_arn, tags):
    for cluster in self.clusters.values():
        for nodegroup in cluster.nodegroups.values():
            if nodegroup.arn == resource_arn:
                nodegroup.tags.update(tags)
                return
    _tag_resource(self, resource_arn, tags)


eks.EKSBackend.tag_resource = _tag_clusters_and_nodegroups

_modify_subnet_group = rds_models.RDSBackend.modify_db_subnet_group


def _modify_subnet_group_keeping_it(self, subnet_name, description, subnets):
    group = _modify_subnet_group(self, subnet_name, description, subnets)
    self.subnet_groups[subnet_name] = group
    return group


rds_models.RDSBackend.modify_db_subnet_group = _modify_subnet_group_keeping_it

ENDPOINTS = {
    "postgres": os.environ.get("PAVED_TEST_RDS_ENDPOINT"),
    "mysql": os.environ.get("PAVED_TEST_RDS_MYSQL_ENDPOINT"),
}


def _endpoint_of(instance):
    endpoint = ENDPOINTS.get(instance.engine)
    if not endpoint:
        return None
    host, port = endpoint.rsplit(":", 1)
    return {"Address": host, "Port": int(port)}


_address = rds_models.DBInstance.address
_endpoint = rds_models.DBInstance.endpoint
rds_models.DBInstance.address = property(lambda self: (_endpoint_of(self) or {}).get("Address") or _address.fget(self))
rds_models.DBInstance.endpoint = property(lambda self: _endpoint_of(self) or _endpoint.fget(self))


def _master_secret_string(self):
    return json.dumps({"username": getattr(self.resource, "master_username", "admin"), "password": "P@55w0rd!"})


rds_models.MasterUserSecret._generate_secret_string = _master_secret_string

eks_responses.EKSResponse.update_cluster_version = _update_cluster_version
eks_responses.EKSResponse.update_cluster_config = _update_cluster_config_answering_the_update
eks_responses.EKSResponse.update_nodegroup_config = _update_nodegroup_config_answering_the_update
eks_responses.EKSResponse.update_nodegroup_version = _update_nodegroup_version
eks_responses.EKSResponse.describe_update = _describe_update
eks_urls.url_paths["{0}/clusters/(?P<name>[^/]+)/updates$"] = eks_urls.response.dispatch
eks_urls.url_paths["{0}/clusters/(?P<name>[^/]+)/updates/(?P<updateId>[^/]+)$"] = eks_urls.response.dispatch
eks_urls.url_paths[
    "{0}/clusters/(?P<name>[^/]+)/node-groups/(?P<nodegroupName>[^/]+)/update-version$"
] = eks_urls.response.dispatch

import moto.elasticache.models as elasticache_models  # noqa: E402
import moto.elasticache.responses as elasticache_responses  # noqa: E402


def _delete_cache_subnet_group(self, name):
    if name not in self.cache_subnet_groups:
        raise elasticache_models.CacheSubnetGroupNotFound(name)
    return self.cache_subnet_groups.pop(name)


def _delete_cache_subnet_group_response(self):
    self.elasticache_backend.delete_cache_subnet_group(self._get_param("CacheSubnetGroupName"))
    return elasticache_responses.EmptyResult()


_describe_groups = elasticache_models.ElastiCacheBackend.describe_replication_groups


def _describe_forgetting_deleted(self, replication_group_id=None, *args, **kwargs):
    groups = _describe_groups(self, replication_group_id, *args, **kwargs)
    for g in list(self.replication_groups.values()):
        if g.status == "deleting":
            if getattr(g, "_seen_deleting", False):
                self.replication_groups.pop(g.replication_group_id, None)
            g._seen_deleting = True
    return groups


elasticache_models.ElastiCacheBackend.delete_cache_subnet_group = _delete_cache_subnet_group
elasticache_models.ElastiCacheBackend.describe_replication_groups = _describe_forgetting_deleted
elasticache_responses.ElastiCacheResponse.delete_cache_subnet_group = _delete_cache_subnet_group_response

if __name__ == "__main__":
    sys.exit(main())
