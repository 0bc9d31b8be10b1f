#!/bin/sh
# chassis_control program for ipmi_sim (see ipmi_lan(5), "chassis_control"): the simulated
# machine's power is a real process (sleep) whose PID lives in $RPW_NODE_DIR/node.pid, so
# "on" means that process is alive. Every call is appended to calls.log for the tests.
#   chassis.sh <mc> get power|boot ...     prints "power:1" / "boot:pxe"
#   chassis.sh <mc> set power 1|0 | reset 1 | boot none|pxe|default|cdrom|bios
S=${RPW_NODE_DIR:?RPW_NODE_DIR not set}
mkdir -p "$S"
echo "$*" >> "$S/calls.log"
op=$2; shift 2
alive() { [ -f "$S/node.pid" ] && kill -0 "$(cat "$S/node.pid")" 2>/dev/null; }
power_on() { alive || { setsid sleep 100000 </dev/null >/dev/null 2>&1 & echo $! > "$S/node.pid"; }; }
power_off() { if alive; then kill "$(cat "$S/node.pid")"; fi; rm -f "$S/node.pid"; }
case $op in
  get) for p in "$@"; do case $p in
         power) if alive; then echo power:1; else echo power:0; fi;;
         boot)  echo "boot:$(cat "$S/boot" 2>/dev/null || echo default)";;
         *) echo "Invalid parameter: $p"; exit 1;; esac; done;;
  set) while [ $# -ge 2 ]; do p=$1; v=$2; shift 2; case $p in
         power) if [ "$v" = 1 ]; then power_on; else power_off; fi;;
         reset) power_off; power_on;;
         boot)  echo "$v" > "$S/boot";;
         identify) shift;;
         *) echo "Invalid parameter: $p"; exit 1;; esac; done;;
  check) exit 1;;
  *) echo "Unknown operation: $op"; exit 1;;
esac
exit 0
