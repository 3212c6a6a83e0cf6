"""Shared storage (`convecthub:storage`): the NFS export mounted on every node by
storage-mount.sh (run for real against stand-ins for mount, umount and findmnt: there is no
NFS server here), the node's k3s waiting for it, and the hub's users' homes on it."""

from __future__ import annotations

import pytest

from components.hub import home_volume_spec, user_storage_values
from stacks.config import ConfigError, load_site
from tests.conftest import name_of, needs_private_root, resources_by_name, three_node_site
from tests.standin_node import StandinNode

NFS = {"server": "10.0.0.5", "path": "/export/k8s"}


def nfs_site() -> dict:
    return {**three_node_site(), "storage": {"nfs": NFS}}


def depends(resource: dict) -> set[str]:
    return {name_of(urn) for urn in resource["dependencies"]}


def test_every_node_mounts_the_export_before_it_joins(render) -> None:
    resources = resources_by_name(render(nfs_site()))
    for node in ("master", "worker1", "worker2"):
        mount = resources[f"{node}-storage"]
        assert mount["parent"] == resources[node]["urn"]
        assert depends(mount) == {f"{node}-os-prep"}
        assert f"{node}-storage" in depends(resources[f"{node}-k3s-install"])
    stdin = resources["worker1-storage"]["inputs"]["stdin"]
    assert "export CONVECTHUB_NFS_SOURCE=10.0.0.5:/export/k8s\n" in stdin
    assert "export CONVECTHUB_MOUNT_POINT=/data/k8s\n" in stdin
    assert "export CONVECTHUB_NFS_OPTIONS=hard,_netdev\n" in stdin


def test_the_hub_keeps_each_user_home_on_the_shared_volume(render) -> None:
    resources = resources_by_name(render(nfs_site()))
    volume = resources["hub-home-volume"]["inputs"]
    assert volume["spec"]["nfs"] == NFS
    assert volume["spec"]["accessModes"] == ["ReadWriteMany"]
    claim = resources["hub-home-claim"]["inputs"]
    assert claim["metadata"] == {"name": "convecthub-home", "namespace": "convecthub"}
    assert claim["spec"]["volumeName"] == "convecthub-home"
    assert claim["spec"]["storageClassName"] == "convecthub-nfs"
    assert resources["hub-storage-class"]["inputs"]["provisioner"] == "kubernetes.io/no-provisioner"
    storage = resources["hub-release"]["inputs"]["values"]["singleuser"]["storage"]
    assert storage == {
        "type": "static",
        "static": {"pvcName": "convecthub-home", "subPath": "home/{username}"},
    }
    assert "hub-home-claim" in depends(resources["hub-release"])


def test_without_nfs_users_get_local_path_volumes(render) -> None:
    resources = resources_by_name(render(three_node_site()))
    assert not [name for name in resources if name.endswith("-storage")]
    assert "hub-home-volume" not in resources
    storage = resources["hub-release"]["inputs"]["values"]["singleuser"]["storage"]
    assert storage == {
        "type": "dynamic",
        "capacity": "10Gi",
        "dynamic": {"storageClass": "local-path"},
    }


def test_pure_storage_values() -> None:
    site = load_site({**nfs_site(), "storage": {"nfs": {**NFS, "options": ["nfsvers=4.1"]}}}).site
    assert home_volume_spec(site.storage)["mountOptions"] == ["nfsvers=4.1"]
    assert user_storage_values(site.storage)["type"] == "static"


def test_no_volumes_for_users_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as raised:
        load_site({**three_node_site(), "k3s": {"disable": ["traefik", "local-storage"]}})
    assert str(raised.value) == (
        "convecthub:storage.nfs: the hub's users need volumes, and k3s.disable turns off "
        "local-storage, the only other place for them: set storage.nfs to the site's NFS "
        "export, or keep local-storage"
    )


# ---- storage-mount.sh ------------------------------------------------------------------------


def mount(node: StandinNode, action: str, source: str = "10.0.0.5:/export/k8s"):
    return node.run(
        "storage-mount.sh",
        action,
        CONVECTHUB_NFS_SOURCE=source,
        CONVECTHUB_MOUNT_POINT=str(node.work / "data-k8s"),
        CONVECTHUB_NFS_OPTIONS="hard,_netdev",
    )


def fstab_block(node: StandinNode) -> list[str]:
    fstab = node.upper("/etc/fstab")
    lines = fstab.read_text().splitlines() if fstab.exists() else []
    return [line for line in lines if "data-k8s" in line]


@needs_private_root
def test_the_export_is_mounted_once_and_remounted_when_it_changes(tmp_path) -> None:
    node = StandinNode(tmp_path / "node")
    target = node.work / "data-k8s"
    first = mount(node, "apply")
    assert first.returncode == 0, first.stderr
    assert (
        "apt-get -q -o DPkg::Lock::Timeout=300 -y install --no-install-recommends nfs-common"
        in (node.calls)
    )
    assert fstab_block(node) == [f"10.0.0.5:/export/k8s\t{target}\tnfs\thard,_netdev\t0\t0"]
    assert (node.state / "mounts").read_text() == f"{target} 10.0.0.5:/export/k8s\n"

    calls = node.calls
    again = mount(node, "apply")
    assert again.returncode == 0, again.stderr
    assert node.calls == calls  # mounted already: nothing runs

    moved = mount(node, "apply", source="10.0.0.6:/export/k8s")
    assert moved.returncode == 0, moved.stderr
    assert node.calls[len(calls) :].splitlines() == [f"umount {target}", f"mount {target}"]
    assert (node.state / "mounts").read_text() == f"{target} 10.0.0.6:/export/k8s\n"

    removed = mount(node, "remove")
    assert removed.returncode == 0, removed.stderr
    assert fstab_block(node) == []
    assert (node.state / "mounts").read_text() == ""
    assert not target.exists()


@needs_private_root
def test_an_export_that_does_not_answer_fails_in_one_line(tmp_path) -> None:
    node = StandinNode(tmp_path / "node").has("nfs.unreachable")
    result = mount(node, "apply")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"convecthub: node gpu1: cannot mount 10.0.0.5:/export/k8s at {node.work}/data-k8s: "
        "check that the NFS server exports it to this node (showmount -e 10.0.0.5), or fix "
        "convecthub:storage.nfs"
    )
