set $x = (int)getpid()
printf "MEMDIAG-PROBE %d\n", $x
