"""Tests of the CDK app: the synthesized templates, cdk-nag, cfn-lint, MeteredApi and the bundling helper."""
