"""moto's server, with one of AWS's rules it does not keep put back, and
ACM's validation delay shortened.

EKS gives every cluster its own OIDC issuer
(https://oidc.eks.REGION.amazonaws.com/id/<32 hex digits of the cluster>);
moto draws one suffix when it starts, so every cluster of a region shares
an issuer, and two environments' IAM OIDC providers would be one. Here
each cluster gets an issuer of its own, derived from its ARN.

    python moto_server.py -H 127.0.0.1 -p PORT
"""

import hashlib
import os
import sys

# ACM issues a DNS-validated certificate minutes after its records resolve;
# moto after MOTO_ACM_VALIDATION_WAIT seconds (60 by default): here 2, so a
# test meets the pending state without waiting a minute.
os.environ.setdefault("MOTO_ACM_VALIDATION_WAIT", "2")

import moto.eks.models as eks  # noqa: E402
from moto.server import main  # noqa: E402

_init = eks.Cluster.__init__


def _init_with_own_issuer(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    suffix = hashlib.sha256(self.arn.encode()).hexdigest()[:32].upper()
    region = self.arn.split(":")[3]
    self.identity = {"oidc": {"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{suffix}"}}


eks.Cluster.__init__ = _init_with_own_issuer

if __name__ == "__main__":
    sys.exit(main())
