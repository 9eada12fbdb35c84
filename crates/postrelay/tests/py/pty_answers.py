"""Runs a command on a new pseudo-terminal and answers its questions, as a
person at a terminal would.

usage: pty_answers.py PROMPT ANSWER [PROMPT ANSWER ...] -- COMMAND [ARG ...]

Each ANSWER is typed (with a line end) once PROMPT has appeared, in order.
Prints everything the terminal showed (what the command wrote and what the
terminal echoed); exits with the command's status, or 124 when it has not
finished within 120 seconds (it is then killed).
"""

import os
import pty
import select
import sys
import time

args = sys.argv[1:]
sep = args.index("--")
pairs = args[:sep]
answers = list(zip(pairs[0::2], pairs[1::2]))
command = args[sep + 1:]

pid, fd = pty.fork()
if pid == 0:
    os.execvp(command[0], command)

seen = b""
pos = 0
deadline = time.monotonic() + 120
while True:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        sys.stdout.buffer.write(seen)
        sys.exit(124)
    ready, _, _ = select.select([fd], [], [], remaining)
    if not ready:
        continue
    try:
        chunk = os.read(fd, 4096)
    except OSError:  # EIO: the command has closed the terminal
        break
    if not chunk:
        break
    seen += chunk
    if answers:
        prompt = answers[0][0].encode()
        at = seen.find(prompt, pos)
        if at >= 0:
            pos = at + len(prompt)
            os.write(fd, (answers[0][1] + "\n").encode())
            answers.pop(0)

_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(seen)
sys.exit(os.waitstatus_to_exitcode(status))
