#!/bin/bash
# Health checks: probe [-H "Name: value"]... http://HOST:PORT/PATH
# Exits 0 when the URL answers 2xx. Bash and its /dev/tcp only: health checks run
# every second in every container, so they must cost next to nothing.
headers=""
while [ "$1" = -H ]; do headers+="$2"$'\r\n'; shift 2; done
url=${1#http://}
hostport=${url%%/*}
path=/${url#*/}
[ "$path" = "/$url" ] && path=/
exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: %s\r\n%s\r\n' "$path" "$hostport" "$headers" >&3
read -r -t 5 _ status _ <&3 || exit 1
echo "$status"
[[ $status == 2?? ]]
