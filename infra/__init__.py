"""This repository's own CDK app. The public constructs are in ``infra/tollgate/cdk`` (shipped as
``tollgate.cdk``)."""
