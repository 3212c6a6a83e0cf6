"""Maps the ConvectHub Ansible installer's inventory (seed 001) to a site's config.

`[driver]` hosts become servers, `[worker]` hosts agents; the `ansible_ssh_*` variables become
`convecthub:ssh` (what every node shares) and per-node `ssh:` overrides; `my_iface`, `has_gpu`,
`install_nvidia_driver`, `install_docker`, `docker_repo`, `http_port`, `https_port` and
`jhub_config_path` their keys of the contract. `convect_token` and SSH passwords become
instructions to set secrets, never values. Whatever has no meaning here is a warning.
"""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path

from model.site import DockerSettings
from stacks.config import ConfigError
from stacks.importers.ansible_ini import ALL, UNGROUPED, Inventory, Var
from stacks.importers.result import ImportResult, SecretToSet, in_file_order
from stacks.importers.values import ansible_bool, node_name, port_number

SERVER_GROUP = "driver"
AGENT_GROUP = "worker"
REGISTRY_GROUP = "registry"
# Aliases of one setting: where both are set, the last wins, as in Ansible's ssh connection.
HOST_VARS = ("ansible_host", "ansible_ssh_host")
PORT_VARS = ("ansible_port", "ansible_ssh_port")
USER_VARS = ("ansible_user", "ansible_ssh_user")
KEY_FILE_VARS = ("ansible_private_key_file", "ansible_ssh_private_key_file")
PASSWORD_VARS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
BECOME_PASSWORD_VARS = (
    "ansible_become_pass",
    "ansible_become_password",
    "ansible_sudo_pass",
    "ansible_sudo_password",
)
SEED_VARS = (
    "my_iface",
    "has_gpu",
    "install_nvidia_driver",
    "install_docker",
    "docker_repo",
    "http_port",
    "https_port",
    "jhub_config_path",
    "convect_token",
)
KNOWN_VARS = {
    *HOST_VARS,
    *PORT_VARS,
    *USER_VARS,
    *KEY_FILE_VARS,
    *PASSWORD_VARS,
    *BECOME_PASSWORD_VARS,
    *SEED_VARS,
    "ansible_group_priority",  # the parser's: it orders the groups' variables
}
# Why a variable Ansible or the seed knows has no meaning here.
NO_MEANING = {
    "convect_workdir": "the seed's working directory on the nodes; the program streams its "
    "scripts over SSH and keeps no working directory",
    "ansible_python_interpreter": "the program runs shell scripts over SSH; nodes need no Python",
    "ansible_connection": "the program always connects over SSH",
    "ansible_become": "the program always runs `sudo -n` as the SSH user",
    "ansible_become_user": "the program always runs `sudo -n` as the SSH user",
    "ansible_become_method": "the program always runs `sudo -n` as the SSH user",
    "ansible_ssh_common_args": "SSH options are not passed through; a jump host is "
    "convecthub:ssh.bastion",
    "ansible_ssh_extra_args": "SSH options are not passed through; a jump host is "
    "convecthub:ssh.bastion",
}
UNKNOWN_REASON = "neither the seed's playbook nor this program uses it"


def import_convecthub_inventory(
    inventory: Inventory, bundle_dir: Path | None = None
) -> ImportResult:
    """The site the inventory describes. `bundle_dir` is the airgap bundle (the seed's
    shared/bin/): with it, `[registry]` hosts get the registry role."""
    return _Mapper(inventory, bundle_dir).run()


class _Mapper:
    def __init__(self, inventory: Inventory, bundle_dir: Path | None):
        self.inventory = inventory
        self.bundle_dir = bundle_dir
        self.warnings: list[str] = []
        self.secrets: list[SecretToSet] = []
        self.vars: dict[str, dict[str, Var]] = {}  # each host's, as Ansible merges them
        self.used_driver_settings: set[Var] = set()

    def where(self, line: int) -> str:
        return self.inventory.where(line)

    def host_where(self, host: str) -> str:
        return self.where(self.inventory.hosts[host].line)

    def run(self) -> ImportResult:
        inventory = self.inventory
        hosts, roles = self._hosts_and_roles()
        names = self._node_names(hosts)
        self.vars = {host: inventory.host_vars(host) for host in hosts}
        nodes: list[dict[str, object]] = []
        ssh_of: list[dict[str, object]] = []
        for host in hosts:
            node: dict[str, object] = {"name": names[host]}
            _, address = self._alias(host, HOST_VARS)
            node["host"] = address.value if address else host
            ssh_of.append(self._ssh(host))
            node["roles"] = roles[host]
            if "my_iface" in self.vars[host]:
                node["iface"] = self.vars[host]["my_iface"].value
            gpu = self._gpu(host)
            if gpu:
                node["gpu"] = gpu
            nodes.append(node)
        config: dict[str, object] = {}
        site_ssh = self._shared_ssh(nodes, ssh_of)
        if site_ssh:
            config["ssh"] = site_ssh
        self._passwords(hosts)
        self._unused_driver_settings()
        os_settings = self._docker(hosts, nodes)
        config["nodes"] = nodes
        if os_settings:
            config["os"] = os_settings
        token = self._site_wide(hosts, "convect_token", secret=True)
        if token is not None:
            self.secrets.append(SecretToSet("k3s.token", "the inventory's convect_token"))
        if self.bundle_dir is not None:
            config["registry"] = {"bundleDir": str(self.bundle_dir)}
        hub = self._hub(hosts)
        if hub:
            config["hub"] = hub
        self._other_groups()
        self._variables_without_meaning()
        return ImportResult(
            config=config,
            warnings=in_file_order(self.warnings, (inventory.path,)),
            secrets=tuple(dict.fromkeys(self.secrets)),
            sources=(inventory.path,),
        )

    # The fleet: who is a server, who an agent, and their names.

    def _hosts_and_roles(self) -> tuple[list[str], dict[str, list[str]]]:
        inventory = self.inventory
        if not inventory.hosts:
            raise ConfigError(
                str(inventory.path),
                "names no host: list the machines, one line each, and put them under "
                f"[{SERVER_GROUP}] and [{AGENT_GROUP}]",
            )
        servers = self._members(SERVER_GROUP)
        workers = self._members(AGENT_GROUP)
        agents = [host for host in workers if host not in servers]
        for host in servers:
            if host in workers:
                self.warnings.append(
                    f"{self.host_where(host)}: host {host} is in [{SERVER_GROUP}] and "
                    f"[{AGENT_GROUP}]: it becomes a server (k3s servers run workloads too)"
                )
        rest = [host for host in inventory.hosts if host not in servers and host not in agents]
        for host in rest:
            self.warnings.append(
                f"{self.host_where(host)}: host {host} is in neither [{SERVER_GROUP}] nor "
                f"[{AGENT_GROUP}]: it becomes an agent (list it under [{SERVER_GROUP}] to make "
                "it a server)"
            )
        roles = {host: ["server"] for host in servers}
        roles.update({host: ["agent"] for host in agents + rest})
        registry = self._members(REGISTRY_GROUP)
        if registry and self.bundle_dir is not None:
            for host in registry:
                roles[host].append("registry")
        elif registry:
            group = self.inventory.groups[REGISTRY_GROUP]
            self.warnings.append(
                f"{self.where(group.line)}: [{REGISTRY_GROUP}] ({', '.join(registry)}) is not "
                "imported: the registry role serves the airgap bundle's images (the seed's "
                "shared/bin/) to the other nodes; re-run with --bundle-dir DIR pointing at the "
                "bundle to keep it, or leave it out to install online"
            )
        return servers + agents + rest, roles

    def _members(self, group: str) -> list[str]:
        return self.inventory.members(group) if group in self.inventory.groups else []

    def _node_names(self, hosts: list[str]) -> dict[str, str]:
        names: dict[str, str] = {}
        taken: dict[str, str] = {}
        for host in hosts:
            name, warning = node_name(host, self.host_where(host))
            if name in taken:
                raise ConfigError(
                    self.host_where(host),
                    f"host {host!r} becomes node {name!r}, as host {taken[name]!r} does: "
                    "rename one of them",
                )
            taken[name] = host
            names[host] = name
            if warning:
                self.warnings.append(warning)
        return names

    # SSH

    def _alias(self, host: str, aliases: tuple[str, ...]) -> tuple[str, Var | None]:
        """The setting several variable names give, the later name winning as in Ansible, and
        the name that gave it."""
        found = [(name, self.vars[host][name]) for name in aliases if name in self.vars[host]]
        if not found:
            return aliases[-1], None
        (last_name, last), (first_name, first) = found[-1], found[0]
        if first.value != last.value:
            self.warnings.append(
                f"{self.where(first.line)}: {first_name} ({first.scope}) differs from "
                f"{last_name} (line {last.line}) for host {host}: {last_name} is kept, as "
                "Ansible's ssh connection does"
            )
        return last_name, last

    def _ssh(self, host: str) -> dict[str, object]:
        ssh: dict[str, object] = {}
        _, user = self._alias(host, USER_VARS)
        if user:
            ssh["user"] = user.value
        name, port = self._alias(host, PORT_VARS)
        if port:
            ssh["port"] = port_number(port.value, name, self.where(port.line))
        name, key = self._alias(host, KEY_FILE_VARS)
        if key:
            ssh["privateKeyFile"] = self._key_file(name, key)
        return ssh

    def _key_file(self, name: str, key: Var) -> str:
        if key.value.startswith(("~", "/")):
            return key.value
        path = (self.inventory.path.parent / key.value).resolve()
        self.warnings.append(
            f"{self.where(key.line)}: {name} ({key.scope}) is a relative path: "
            f"it is taken from the inventory's directory, as {path}"
        )
        return str(path)

    def _shared_ssh(
        self, nodes: list[dict[str, object]], ssh_of: list[dict[str, object]]
    ) -> dict[str, object]:
        """Settings every node has alike go to convecthub:ssh, the rest to the nodes."""
        shared: dict[str, object] = {}
        for field in ("user", "port", "privateKeyFile"):
            values = [ssh.get(field) for ssh in ssh_of]
            if None not in values and len(set(values)) == 1:
                shared[field] = values[0]
        for node, ssh in zip(nodes, ssh_of, strict=True):
            own = {field: value for field, value in ssh.items() if field not in shared}
            if own:
                node["ssh"] = own
        return shared

    def _passwords(self, hosts: list[str]) -> None:
        passwords = {host: self._alias(host, PASSWORD_VARS)[1] for host in hosts}
        given = {host: var for host, var in passwords.items() if var is not None}
        if not given:
            return
        values = {var.value for var in given.values()}
        if len(given) == len(hosts) and len(values) == 1:
            self.secrets.append(SecretToSet("ssh.password", "the inventory's SSH password"))
            return
        for index, host in enumerate(hosts):
            if host in given:
                self.secrets.append(
                    SecretToSet(
                        f"nodes[{index}].ssh.password", f"the inventory's SSH password of {host}"
                    )
                )

    # GPU and Docker

    def _gpu(self, host: str) -> dict[str, object] | None:
        has_gpu = self.vars[host].get("has_gpu")
        if has_gpu is None or not ansible_bool(has_gpu.value, "has_gpu", self.where(has_gpu.line)):
            return None
        gpu: dict[str, object] = {"vendor": "nvidia"}
        driver = self.vars[host].get("install_nvidia_driver")
        if driver is not None:
            where = self.where(driver.line)
            gpu["installDriver"] = ansible_bool(driver.value, "install_nvidia_driver", where)
            self.used_driver_settings.add(driver)
        return gpu

    def _unused_driver_settings(self) -> None:
        for var in self._declarations("install_nvidia_driver"):
            if var not in self.used_driver_settings:
                self.warnings.append(
                    f"{self.where(var.line)}: install_nvidia_driver ({var.scope}) has no effect: "
                    "no node it applies to has has_gpu=true"
                )

    def _docker(self, hosts: list[str], nodes: list[dict[str, object]]) -> dict[str, object]:
        """`install_docker` and `docker_repo`: convecthub:os.docker, or each node's
        installDocker."""
        docker: dict[str, object] = {}
        install = {host: self.vars[host].get("install_docker") for host in hosts}
        if all(var is not None and var.scope == "[all:vars]" for var in install.values()):
            var = install[hosts[0]]
            assert var is not None
            docker["install"] = ansible_bool(var.value, "install_docker", self.where(var.line))
        else:
            for index, host in enumerate(hosts):
                var = install[host]
                if var is not None:
                    wanted = ansible_bool(var.value, "install_docker", self.where(var.line))
                    nodes[index]["installDocker"] = wanted
        if not self._declarations("install_docker"):
            self.warnings.append(
                f"{self.inventory.path}: install_docker is not set, so the seed's playbook "
                "installed Docker on every node; here k3s runs its own containerd and Docker "
                "goes only where asked: set convecthub:os.docker.install to true if the site's "
                "users need Docker on the nodes"
            )
        repository = self._site_wide(hosts, "docker_repo")
        if repository is not None:
            docker["repository"] = repository.value
            if repository.value.rstrip("/") != DockerSettings().repository:
                docker["keyUrl"] = repository.value.rstrip("/") + "/gpg"
                self.warnings.append(
                    f"{self.where(repository.line)}: docker_repo is a mirror: its signing key "
                    f"is taken to be at {docker['keyUrl']}, as on download.docker.com; set "
                    "convecthub:os.docker.keyUrl if it is elsewhere"
                )
        return {"docker": docker} if docker else {}

    # Site-wide settings: the hub, the token.

    def _hub(self, hosts: list[str]) -> dict[str, object]:
        hub: dict[str, object] = {}
        for variable, key in (("http_port", "httpPort"), ("https_port", "httpsPort")):
            var = self._site_wide(hosts, variable)
            if var is not None:
                hub[key] = port_number(var.value, variable, self.where(var.line))
        values = self._site_wide(hosts, "jhub_config_path")
        if values is not None:
            path = Path(values.value).expanduser()
            if not path.is_absolute():
                path = self.inventory.path.parent / path
            path = path.resolve()
            if path.is_file():
                hub["valuesFile"] = str(path)
            else:
                self.warnings.append(
                    f"{self.where(values.line)}: jhub_config_path ({values.scope}) names "
                    f"{path}, which is not on this machine, so hub.valuesFile is left out: copy "
                    "the site's JupyterHub values there, then run "
                    f"`pulumi config set --path hub.valuesFile {shlex.quote(str(path))}`"
                )
        return hub

    def _site_wide(self, hosts: list[str], variable: str, *, secret: bool = False) -> Var | None:
        """A setting the site has once: [all:vars]'s, else the value most hosts have, with a
        warning naming the hosts whose value is not kept."""
        given = {host: self.vars[host][variable] for host in hosts if variable in self.vars[host]}
        if not given:
            return None
        counts = Counter(var.value for var in given.values())
        if len(counts) == 1:
            return next(iter(given.values()))
        kept = self.inventory.groups[ALL].vars.get(variable)
        if kept is None:
            most = counts.most_common(1)[0][0]
            kept = next(var for var in given.values() if var.value == most)
        value = "" if secret else f"={kept.value}"
        dropped = [
            f"{host} ({var.scope}, line {var.line}{'' if secret else ': ' + var.value})"
            for host, var in given.items()
            if var.value != kept.value
        ]
        self.warnings.append(
            f"{self.where(kept.line)}: {variable} differs between hosts, and the site has one: "
            f"{variable}{value} ({kept.scope}) is kept, not the value of {', '.join(dropped)}"
        )
        return kept

    # What has no meaning here.

    def _declarations(self, variable: str) -> list[Var]:
        """Every declaration of the variable in the file, in line order."""
        found = [g.vars[variable] for g in self.inventory.groups.values() if variable in g.vars]
        found += [h.vars[variable] for h in self.inventory.hosts.values() if variable in h.vars]
        return sorted(found, key=lambda var: (var.line, var.scope))

    def _variables_without_meaning(self) -> None:
        declared: list[tuple[str, Var]] = []
        for group in self.inventory.groups.values():
            declared += list(group.vars.items())
        for host in self.inventory.hosts.values():
            declared += list(host.vars.items())
        for name, var in sorted(declared, key=lambda item: (item[1].line, item[1].scope)):
            where = self.where(var.line)
            if name in BECOME_PASSWORD_VARS:
                self.warnings.append(
                    f"{where}: {name} ({var.scope}) is not imported: the program runs `sudo -n`, "
                    "so give the SSH user passwordless sudo on every node, as the seed "
                    'recommends: echo "$USER ALL=(ALL:ALL) NOPASSWD: ALL" | '
                    "sudo tee /etc/sudoers.d/$USER"
                )
            elif name not in KNOWN_VARS:
                reason = NO_MEANING.get(name, UNKNOWN_REASON)
                self.warnings.append(
                    f"{where}: {name} ({var.scope}) has no meaning here and is not imported: "
                    f"{reason}"
                )

    def _other_groups(self) -> None:
        known = {ALL, UNGROUPED, SERVER_GROUP, AGENT_GROUP, REGISTRY_GROUP}
        for name, group in self.inventory.groups.items():
            if name not in known:
                self.warnings.append(
                    f"{self.where(group.line)}: group [{name}] has no meaning here: its hosts "
                    "and variables are imported, the group itself is not (to mark its nodes, "
                    "give them labels in convecthub:nodes)"
                )
