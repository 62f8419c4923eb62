"""What the three commands share and the recording format does not: `command.py` (run a
command's main: one-line errors with their exit code, Ctrl-C, a closed pipe; terminal
detection), `flags.py` (click flags with their PYROSCOPE_* twins, bad flags as one line) and
`timeparse.py` (the one vocabulary of durations and --from/--until times). Nothing is imported here.
"""
