# esi-monitor pre-install: the system user the service runs as. It exists before the files
# are laid down, so /etc/esi-monitor/config.yaml gets root:esi-monitor 0640 from the package.
getent group esi-monitor >/dev/null || groupadd -r esi-monitor
getent passwd esi-monitor >/dev/null || \
    useradd -r -g esi-monitor -s /sbin/nologin -d /nonexistent -M -c "esi-monitor service" esi-monitor
exit 0
