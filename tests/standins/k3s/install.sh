#!/bin/sh
# STAND-IN for the k3s install script (get.k3s.io), for tests only. Honours the documented
# contract this project relies on: INSTALL_K3S_VERSION, INSTALL_K3S_EXEC (server | agent),
# INSTALL_K3S_SKIP_DOWNLOAD (use /usr/local/bin/k3s as it is), INSTALL_K3S_SKIP_START; writes
# the systemd unit, its environment file (proxy variables it sees) and the uninstall script.
set -e
# shellcheck disable=SC1091 # written by the test, inside its private /etc
[ ! -f /etc/convecthub-standin.env ] || . /etc/convecthub-standin.env
exec_cmd=${INSTALL_K3S_EXEC:-server}
case "$exec_cmd" in agent*) unit=k3s-agent; uninstall=k3s-agent-uninstall.sh ;; *) unit=k3s; uninstall=k3s-uninstall.sh ;; esac
echo "[INFO]  Using ${INSTALL_K3S_VERSION} as release"
if [ "${INSTALL_K3S_SKIP_DOWNLOAD:-}" != true ]; then
  sed "s/@VERSION@/${INSTALL_K3S_VERSION}/" "${STANDIN_K3S_BINARY:?}" >/usr/local/bin/k3s
  chmod 0755 /usr/local/bin/k3s
fi
mkdir -p /etc/systemd/system
printf '%s\n' "[Unit]" "Description=k3s stand-in (tests only)" "After=network-online.target" \
  "[Service]" "Type=simple" "EnvironmentFile=-/etc/systemd/system/${unit}.service.env" \
  "ExecStart=/usr/local/bin/k3s ${exec_cmd}" "Restart=on-failure" "RestartSec=2" \
  "[Install]" "WantedBy=multi-user.target" >"/etc/systemd/system/${unit}.service"
# The stand-in cluster's kubectl travels with this script in the bundle.
[ ! -f "$(dirname "$0")/kubectl.py" ] || install -m 0755 "$(dirname "$0")/kubectl.py" /usr/local/bin/k3s-standin-kubectl.py
env | grep -E '^(HTTP_PROXY|HTTPS_PROXY|NO_PROXY)=' | sed "s/=\(.*\)/='\1'/" >"/etc/systemd/system/${unit}.service.env" || true
chmod 0600 "/etc/systemd/system/${unit}.service.env"
cat >"/usr/local/bin/${uninstall}" <<UNINSTALL
#!/bin/sh
systemctl stop ${unit}
systemctl disable ${unit} >/dev/null 2>&1 || true
rm -f /etc/systemd/system/${unit}.service /etc/systemd/system/${unit}.service.env /usr/local/bin/k3s /usr/local/bin/k3s-standin-kubectl.py /usr/local/bin/${uninstall}
rm -rf /etc/rancher/k3s /var/lib/rancher/k3s
UNINSTALL
chmod 0755 "/usr/local/bin/${uninstall}"
[ "${INSTALL_K3S_SKIP_START:-}" = true ] || systemctl restart "$unit"
echo "[INFO]  systemd: Starting ${unit}"
