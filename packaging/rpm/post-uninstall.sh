# esi-monitor post-uninstall: on upgrade, restart the service if it runs (new binary).
# systemd's own file triggers reload the unit files.
if [ "$1" -ge 1 ] && [ -d /run/systemd/system ]; then
    systemctl try-restart esi-monitor.service >/dev/null 2>&1 || :
fi
exit 0
