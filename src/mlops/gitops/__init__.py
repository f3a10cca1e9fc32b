"""Release-time concerns, apart from the stages: what happens to a model after ``dvc repro``.

- ``versions``: version numbers, when a signature change breaks clients, the registration plan.
- ``tags``: the registry itself, GTO git tags (read the latest and production versions and every
  event of a model, register, make and push stage tags).
- ``champion``: fetch the production model's package for the acceptance test.
- ``release``: name a release from its git ref: image tags, OCI labels, whether to deploy.
- ``outputs``: values for ``$GITHUB_OUTPUT`` and the job summary.
- ``registry``: the command line of the above (``python -m mlops.gitops.registry``).
- ``records``: the messages of the tags that say who did what and why.
- ``rollout``: the promotion rules: the champion and the challenger the tags give, promotion,
  rollback, the monitoring sidecar's verdict.
- ``promotion``: their command line (``python -m mlops.gitops.promotion``).
- ``deployments``: the release's deployment tags (standard library only).
- ``audit``: a model's history from the tags (``make audit``).
- ``smoke``: the smoke test of a deployed scorer and sidecar (standard library only).
- ``k8s_resources``: the Kubernetes resources patch from the packaged model's resource profile.

Nothing here imports a stage (``mlops.data``, ``mlops.model``): gitops works on the packaged
artifacts and the git tags only (contracts in pyproject.toml, docs/architecture.md).
"""
