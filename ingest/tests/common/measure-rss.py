#!/usr/bin/env python3
"""Runs a command and writes its exit code and its own peak RSS to a file.

Usage: measure-rss.py OUT_FILE PROGRAM [ARGS...]

OUT_FILE gets one line, "CODE MAX_RSS_KIB" (CODE is negative for a signal, as
waitstatus_to_exitcode gives it). The command is forked from this small process rather
than spawned straight from the test process, because Linux carries the old address
space's high-water mark across exec: a child that a test process spawns (vfork, or
posix_spawn) reports at least the test process's own peak RSS, so one test that held
300 MiB would make every later child look that big. Forked from here, the floor is this
interpreter's current RSS (about 10 MiB).
"""
import os
import sys

out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}\n")
