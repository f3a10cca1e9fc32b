"""Release-time concerns, apart from the stages: what happens to a model after ``dvc repro``.

- ``versions``: version numbers, when a signature change breaks clients, the registration plan.
- ``tags``: the registry itself, GTO git tags (read the latest and production versions, register,
  promote).
- ``champion``: fetch the production model's package for the acceptance test.
- ``release``: name a release from its git ref: image tags, OCI labels, whether to deploy.
- ``outputs``: values for ``$GITHUB_OUTPUT``.
- ``registry``: the command line of the above (``python -m mlops.gitops.registry``).
- ``smoke``: the smoke test of a deployed scorer and sidecar (standard library only).
- ``k8s_resources``: the Kubernetes resources patch from the packaged model's resource profile.

Nothing here imports a stage (``mlops.data``, ``mlops.model``): gitops works on the packaged
artifacts and the git tags only (contracts in pyproject.toml, docs/architecture.md).
"""
