"""Where a Helm release's chart comes from: its repository (name, version, repository URL), or
the `.tgz` an airgapped site names."""

from __future__ import annotations

import pulumi
from pulumi_kubernetes.helm import v3 as helm


def chart_source(
    chart: str,
    version: pulumi.Input[str],
    repository: pulumi.Input[str],
    chart_file: str | None,
) -> dict[str, object]:
    """The ReleaseArgs that name the chart (version and repository may be secret Outputs)."""
    if chart_file:
        return {"chart": chart_file}
    return {
        "chart": chart,
        "version": version,
        "repository_opts": helm.RepositoryOptsArgs(repo=repository),
    }
