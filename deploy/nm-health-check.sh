#!/bin/sh
# Yarn NodeManager health script (yarn.nodemanager.health-checker.script.path).
# enforcer closes the node to new offline work when the protection ladder triggers
# (SPEC §4 "stop scheduling") by writing "closed <trigger>" to its state file; the
# NodeManager marks the node unhealthy when this script prints a line starting with ERROR,
# so the ResourceManager stops placing containers here until enforcer reopens it.
STATE="${ENFORCER_STATE_DIR:-/run/enforcer}/scheduling"
[ -r "$STATE" ] || exit 0          # no enforcer on this node: say nothing
read -r gate reason < "$STATE"
if [ "$gate" = "closed" ]; then
    echo "ERROR enforcer: node closed to new offline work: $reason"
fi
exit 0
