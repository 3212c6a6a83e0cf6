"""Where a Helm release's chart comes from: its repository (name, version, repository URL), or
the `.tgz` an airgapped site names."""

from __future__ import annotations

from pulumi_kubernetes.helm import v3 as helm


def chart_source(
    chart: str, version: str, repository: str, chart_file: str | None
) -> dict[str, object]:
    """The ReleaseArgs that name the chart."""
    if chart_file:
        return {"chart": chart_file}
    return {
        "chart": chart,
        "version": version,
        "repository_opts": helm.RepositoryOptsArgs(repo=repository),
    }
