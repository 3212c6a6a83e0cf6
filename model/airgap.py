"""The airgap bundle on the provisioner (`convecthub:registry.bundleDir`), and its layout.

    <bundleDir>/<arch>/k3s            the k3s binary of that release and arch
    <bundleDir>/<arch>/install.sh     the k3s install script of that release
    <bundleDir>/images/<arch>/*.tar*  image tarballs: k3s-airgap-images-<arch>.tar.zst and any
                                      others the site needs (.tar, .tar.gz, .tar.zst, .tar.lz4,
                                      .tar.bz2, as k3s imports them)

Every node gets `<arch>/` (binary and script); the image tarballs go to the nodes with the
registry role, which serve them to the others through k3s's embedded registry mirror, or to
every node when no node has that role.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".tar", ".tar.gz", ".tar.zst", ".tar.lz4", ".tar.bz2")
# Where the bundle lands in the login user's home on a node; copies add `<arch>` and
# `images/<arch>` below it.
REMOTE_DIR = ".convecthub-bundle"


@dataclass(frozen=True)
class AirgapBundle:
    directory: Path

    def binaries(self, arch: str) -> Path:
        return self.directory / arch

    def images(self, arch: str) -> Path:
        return self.directory / "images" / arch

    def image_files(self, arch: str) -> list[Path]:
        folder = self.images(arch)
        if not folder.is_dir():
            return []
        return sorted(
            path
            for path in folder.iterdir()
            if path.is_file() and path.name.endswith(IMAGE_SUFFIXES)
        )

    def missing(self, arches: list[str]) -> list[str]:
        """What the bundle lacks for a fleet of these arches, as paths relative to it."""
        missing = []
        for arch in arches:
            for name in ("k3s", "install.sh"):
                if not (self.binaries(arch) / name).is_file():
                    missing.append(f"{arch}/{name}")
            if not self.image_files(arch):
                missing.append(f"images/{arch}/k3s-airgap-images-{arch}.tar.zst")
        return missing
