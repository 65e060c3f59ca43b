#!/bin/bash
# tools/measure-rss.sh LABEL CMD...: wall time, peak RSS (/usr/bin/time -v) and the peaks of RssFile / RssAnon sampled every 50 ms
label=$1; shift
/usr/bin/time -v "$@" > /dev/null 2> /tmp/m.err &
tp=$!
sleep 0.05
pid=$(pgrep -P $tp | head -1)
mf=0; ma=0
while kill -0 $tp 2>/dev/null; do
  if [ -n "$pid" ] && [ -r /proc/$pid/status ]; then
    f=$(awk '/RssFile/{print $2}' /proc/$pid/status 2>/dev/null); a=$(awk '/RssAnon/{print $2}' /proc/$pid/status 2>/dev/null)
    [ -n "$f" ] && [ "$f" -gt "$mf" ] && mf=$f; [ -n "$a" ] && [ "$a" -gt "$ma" ] && ma=$a
  fi
  sleep 0.05
done
wait $tp; rc=$?
w=$(grep "Elapsed (wall" /tmp/m.err | awk '{print $NF}'); r=$(grep "Maximum resident" /tmp/m.err | awk '{print $NF}')
printf "%-40s rc %s wall %s peak RSS %d MB (file %d MB, anon %d MB)\n" "$label" $rc $w $((r/1024)) $((mf/1024)) $((ma/1024))
